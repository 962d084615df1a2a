"""Loopback helpers for tests: free ports, a one-shot UDP SIP exchange."""

from __future__ import annotations

import random
import socket
import time

_handed_out: set[int] = set()


def free_port(kind: int = socket.SOCK_DGRAM, host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on `host` (so one number serves both transports), never
    one this process handed out before (two ports asked in a row are different even though
    nothing holds the first yet)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if not _free_for_both(host, port):
            continue
        if port in _handed_out:
            continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port")


# Below the kernel's ephemeral range (32768-60999 by default), which a connect() or a bind to
# port 0 anywhere on the machine may take at any moment; above the fixed ranges tests use.
_PAIR_RANGE = (21000, 25998)


def _free_for_both(host: str, port: int) -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            t.bind((host, port))
            u.bind((host, port))
    except OSError:
        return False
    return True


def free_port_pair(host: str = "127.0.0.1") -> int:
    """A port P such that P and P+1 are both free for UDP and TCP (baresip binds SIP on P and
    SIP over TLS on P+1), outside the ephemeral range so that no other socket takes P+1 before
    the UA binds it."""
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(*_PAIR_RANGE)
        if port in _handed_out or port + 1 in _handed_out:
            continue
        if _free_for_both(host, port) and _free_for_both(host, port + 1):
            _handed_out.update((port, port + 1))
            return port
    raise RuntimeError("no free pair of ports")


def udp_exchange(
    data: bytes, target: tuple[str, int], timeout: float = 2.0, source_host: str = "127.0.0.1"
) -> bytes | None:
    """Send one datagram and return the first datagram that comes back (or None)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source_host, 0))
        s.settimeout(timeout)
        s.sendto(data, target)
        try:
            reply, _ = s.recvfrom(65535)
        except TimeoutError:
            return None
        return reply


def wait_for_sip(target: tuple[str, int], timeout: float = 15.0) -> None:
    """Poll with OPTIONS until the element at `target` answers (it is up)."""
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        n += 1
        probe = (
            f"OPTIONS sip:{target[0]}:{target[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKprobe{n};rport\r\n"
            f"From: <sip:probe@127.0.0.1>;tag=p{n}\r\nTo: <sip:{target[0]}>\r\n"
            f"Call-ID: probe-{n}-{time.monotonic_ns()}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        if udp_exchange(probe, target, timeout=0.3) is not None:
            return
    raise TimeoutError(f"no SIP answer from {target} within {timeout}s")


def wait_for_tcp(target: tuple[str, int], timeout: float = 15.0) -> None:
    """Poll until something accepts TCP connections at `target`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(target, timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing accepts TCP at {target} within {timeout}s")
