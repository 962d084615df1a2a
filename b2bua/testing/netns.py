"""A lossy link between two network namespaces, for soak runs (needs root and `ip netns`).

    namespace "peer" (SIPp: the trunk, the devices)  <== link ==>  namespace "server" (B2BUA)
        10.213.0.2 .. 10.213.0.9                    loss, delay, jitter        10.213.0.1

The link is a veth pair with `tc netem` on both ends (`loss 5% delay 20ms 20ms`: every
packet, each way). Where the kernel has no netem, the same impairment is applied in user
space: a TUN device in each namespace and a relay process between them that drops and delays
packets alike (`python -m b2bua.testing.netns relay`). Either way nothing touches the host's
own interfaces, and `close()` deletes both namespaces (and with them their devices).
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import heapq
import os
import random
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field

SERVER_ADDRESS = "10.213.0.1"
PEER_ADDRESSES = tuple(f"10.213.0.{i}" for i in range(2, 10))
PREFIX = 24
CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def available() -> str | None:
    """None when namespaces can be made here, else why not."""
    if shutil.which("ip") is None:
        return "the `ip` command is missing (Debian package iproute2)"
    if os.geteuid() != 0:
        return "network namespaces need root"
    name = f"b2bua-probe-{os.getpid()}"
    try:
        _ip("netns", "add", name)
    except subprocess.CalledProcessError as exc:
        return f"`ip netns add` failed: {exc.stderr.strip()}"
    _ip("netns", "del", name)
    return None


@dataclass
class LossyLink:
    """Two namespaces and the link between them (see the module docstring)."""

    loss_percent: float = 5.0
    delay_ms: float = 20.0
    jitter_ms: float = 20.0
    name: str = field(default_factory=lambda: f"b2bua-soak-{os.getpid()}")
    kind: str = ""  # "netem" or "userspace", once up
    relay: subprocess.Popen[bytes] | None = None

    @property
    def server_ns(self) -> str:
        return f"{self.name}-s"

    @property
    def peer_ns(self) -> str:
        return f"{self.name}-p"

    def prefix(self, ns: str) -> list[str]:
        """Run a command inside `ns`."""
        return ["ip", "netns", "exec", ns]

    def __enter__(self) -> LossyLink:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def up(self) -> None:
        for ns in (self.server_ns, self.peer_ns):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        try:
            self._veth_netem()
            self.kind = "netem"
        except subprocess.CalledProcessError:
            self._delete_veth()
            self._tun_relay()
            self.kind = "userspace"

    def _addresses(self, ns: str, dev: str, peer: bool) -> None:
        for address in PEER_ADDRESSES if peer else (SERVER_ADDRESS,):
            _ip("-n", ns, "addr", "add", f"{address}/{PREFIX}", "dev", dev)
        _ip("-n", ns, "link", "set", dev, "up")

    def _veth_netem(self) -> None:
        s_dev, p_dev = "b2s0", "b2p0"
        # Both ends are made inside their namespaces: the host never sees them.
        _ip("link", "add", s_dev, "netns", self.server_ns, "type", "veth",
            "peer", "name", p_dev, "netns", self.peer_ns)
        self._addresses(self.server_ns, s_dev, peer=False)
        self._addresses(self.peer_ns, p_dev, peer=True)
        for ns, dev in ((self.server_ns, s_dev), (self.peer_ns, p_dev)):
            _ip("netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "netem",
                "delay", f"{self.delay_ms}ms", f"{self.jitter_ms}ms",
                "loss", f"{self.loss_percent}%")

    def _delete_veth(self) -> None:
        for ns, dev in ((self.server_ns, "b2s0"), (self.peer_ns, "b2p0")):
            subprocess.run(["ip", "-n", ns, "link", "del", dev], capture_output=True)

    def _tun_relay(self) -> None:
        for ns, dev, peer in ((self.server_ns, "b2s0", False), (self.peer_ns, "b2p0", True)):
            _ip("-n", ns, "tuntap", "add", "dev", dev, "mode", "tun")
            self._addresses(ns, dev, peer)
        self.relay = subprocess.Popen(
            [sys.executable, "-m", "b2bua.testing.netns", "relay", self.server_ns, "b2s0",
             self.peer_ns, "b2p0", str(self.loss_percent), str(self.delay_ms),
             str(self.jitter_ms)],
        )
        time.sleep(0.3)
        if self.relay.poll() is not None:
            raise RuntimeError("the userspace link relay did not start")

    def close(self) -> None:
        if self.relay is not None and self.relay.poll() is None:
            self.relay.send_signal(signal.SIGTERM)
            try:
                self.relay.wait(5)
            except subprocess.TimeoutExpired:
                self.relay.kill()
                self.relay.wait(5)
        for ns in (self.server_ns, self.peer_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


# -- the userspace relay (its own process) ------------------------------------------------------


def _enter(ns: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)


def _open_tun(ns: str, dev: str) -> int:
    _enter(ns)
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", dev.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def relay(args: list[str]) -> int:
    """Forward IP packets between two TUN devices, dropping `loss` percent and delaying the
    others by `delay` ± `jitter` ms (uniform), as netem does."""
    ns_a, dev_a, ns_b, dev_b = args[:4]
    loss, delay, jitter = (float(x) / f for x, f in zip(args[4:7], (100, 1000, 1000), strict=True))
    fd_a, fd_b = _open_tun(ns_a, dev_a), _open_tun(ns_b, dev_b)
    other = {fd_a: fd_b, fd_b: fd_a}
    rng = random.Random()
    sel = selectors.DefaultSelector()
    for fd in (fd_a, fd_b):
        sel.register(fd, selectors.EVENT_READ)
    queue: list[tuple[float, int, int, bytes]] = []
    seq = 0
    stop = False

    def finish(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    deadline = time.monotonic() + 24 * 3600  # bounded even if nobody stops it
    while not stop and time.monotonic() < deadline:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, out, packet = heapq.heappop(queue)
            try:
                os.write(out, packet)
            except OSError:
                pass
        timeout = max(0.0, queue[0][0] - now) if queue else 0.5
        for key, _ in sel.select(timeout):
            fd = int(key.fd)  # type: ignore[arg-type]
            while True:
                try:
                    packet = os.read(fd, 65535)
                except BlockingIOError:
                    break
                if rng.random() < loss:
                    continue
                seq += 1
                wait = max(0.0, delay + rng.uniform(-jitter, jitter))
                heapq.heappush(queue, (time.monotonic() + wait, seq, other[fd], packet))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="b2bua.testing.netns")
    parser.add_argument("command", choices=["relay"])
    parser.add_argument("args", nargs="*")
    ns = parser.parse_args()
    return relay(ns.args)


if __name__ == "__main__":
    sys.exit(main())
