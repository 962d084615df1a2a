"""Hostile load for benchmarks and soak runs: mutated SIP datagrams, paced floods, RSS samples.

`Mutator` turns a few well-formed requests (OPTIONS, INVITE with SDP, REGISTER with
credentials, BYE, SUBSCRIBE) and responses into random variants: bytes flipped, inserted or
deleted, lines repeated, swapped or dropped, values replaced by garbage, Content-Length lied
about, the message cut short. Every datagram gets a fresh branch and Call-ID first, so the
ones that still parse start new transactions, as a real fuzzer's do.

`flood()` sends datagrams at a paced rate from one or many loopback source addresses, for a
bounded count or time. `RssSampler` reads a process's resident set from /proc in a thread.
Only loopback targets are accepted.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

_SDP = (
    "v=0\r\no=fz 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
)

_TEMPLATES = {
    "OPTIONS": (
        "OPTIONS sip:{user}@{target} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:fz@{host}>;tag={tag}\r\n"
        "To: <sip:{user}@{target}>\r\n"
        "Call-ID: {call_id}\r\n"
        "CSeq: {cseq} OPTIONS\r\n"
        "Accept: application/sdp\r\n"
        "Content-Length: 0\r\n\r\n"
    ),
    "INVITE": (
        "INVITE sip:{user}@{target} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        'From: "Fuzz" <sip:1001@{target}>;tag={tag}\r\n'
        "To: <sip:{user}@{target}>\r\n"
        "Call-ID: {call_id}\r\n"
        "CSeq: {cseq} INVITE\r\n"
        "Contact: <sip:fz@{host}:{port}>\r\n"
        "Supported: timer, replaces\r\n"
        "Session-Expires: 1800\r\n"
        "User-Agent: fz/1.0\r\n"
        "Content-Type: application/sdp\r\n"
        "Content-Length: {length}\r\n\r\n{sdp}"
    ),
    "REGISTER": (
        "REGISTER sip:{target} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:{user}@{target}>;tag={tag}\r\n"
        "To: <sip:{user}@{target}>\r\n"
        "Call-ID: {call_id}\r\n"
        "CSeq: {cseq} REGISTER\r\n"
        'Contact: <sip:{user}@{host}:{port}>;+sip.instance="<urn:uuid:{call_id}>";reg-id=1\r\n'
        "Expires: 3600\r\n"
        'Authorization: Digest username="{user}", realm="{target}", nonce="{branch}", '
        'uri="sip:{target}", response="{response}", algorithm=MD5, qop=auth, nc=00000001, '
        'cnonce="{tag}", opaque="{tag}"\r\n'
        "Content-Length: 0\r\n\r\n"
    ),
    "BYE": (
        "BYE sip:{user}@{target} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:fz@{host}>;tag={tag}\r\n"
        "To: <sip:{user}@{target}>;tag={tag}x\r\n"
        "Call-ID: {call_id}\r\n"
        "CSeq: {cseq} BYE\r\n"
        "Content-Length: 0\r\n\r\n"
    ),
    "SUBSCRIBE": (
        "SUBSCRIBE sip:{user}@{target} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:{user}@{target}>;tag={tag}\r\n"
        "To: <sip:{user}@{target}>\r\n"
        "Call-ID: {call_id}\r\n"
        "CSeq: {cseq} SUBSCRIBE\r\n"
        "Event: message-summary\r\n"
        "Accept: application/simple-message-summary\r\n"
        "Expires: 3600\r\n"
        "Contact: <sip:{user}@{host}:{port}>\r\n"
        "Content-Length: 0\r\n\r\n"
    ),
    "RESPONSE": (
        "SIP/2.0 200 OK\r\n"
        "Via: SIP/2.0/UDP {target};branch=z9hG4bK{branch}\r\n"
        "From: <sip:{user}@{target}>;tag={tag}\r\n"
        "To: <sip:fz@{host}>;tag={tag}y\r\n"
        "Call-ID: {call_id}\r\n"
        "CSeq: {cseq} INVITE\r\n"
        "Content-Length: 0\r\n\r\n"
    ),
}

_GARBAGE = [
    b"\x00", b"\xff\xfe", b"\r\n", b"\r", b"\n", b" ", b"\t", b":", b";", b",", b"<", b">",
    b'"', b"\\", b"%", b"%00", b"=", b"@", b"[", b"]", b"\xc3\xa9", b"\xe2\x80\xae",
    b"SIP/2.0", b"sip:", b"tel:", b";tag=", b";branch=", b"z9hG4bK", b"Content-Length: 99999",
    b"9" * 12, b"-1", b"A" * 300, b"\r\n\r\n", b"Via: SIP/2.0/UDP", b"\x80\x81\x82",
]


class Mutator:
    """Random variants of SIP messages, reproducible from `seed`."""

    def __init__(self, target: str, users: Sequence[str] = ("1001", "1002", "100"),
                 seed: int = 1, mutation_rate: float = 0.9) -> None:
        self.target = target
        self.users = list(users)
        self.rng = random.Random(seed)
        self.mutation_rate = mutation_rate
        self._n = 0

    def message(self, host: str, port: int, kind: str | None = None) -> bytes:
        """One well-formed message of `kind` (random when None), with fresh identifiers."""
        rng = self.rng
        self._n += 1
        kind = kind or rng.choice(list(_TEMPLATES))
        sdp = _SDP.format(host=host)
        text = _TEMPLATES[kind].format(
            user=rng.choice(self.users), target=self.target, host=host, port=port,
            branch=f"{self._n:x}{rng.getrandbits(40):x}", tag=f"{rng.getrandbits(32):x}",
            call_id=f"fz{self._n}-{rng.getrandbits(48):x}", cseq=rng.randint(1, 2**31 - 1),
            response=f"{rng.getrandbits(128):032x}", length=len(sdp), sdp=sdp,
        )
        return text.encode()

    def datagram(self, host: str, port: int) -> bytes:
        """A message, mutated (with probability `mutation_rate`) one to four times."""
        data = self.message(host, port)
        if self.rng.random() >= self.mutation_rate:
            return data
        for _ in range(self.rng.randint(1, 4)):
            data = self._mutate(data)
        return data[:65_000]

    def _mutate(self, data: bytes) -> bytes:
        rng = self.rng
        if not data:
            return rng.choice(_GARBAGE)
        op = rng.randrange(9)
        i = rng.randrange(len(data))
        if op == 0:  # flip a byte
            return data[:i] + bytes([rng.randrange(256)]) + data[i + 1:]
        if op == 1:  # insert garbage
            return data[:i] + rng.choice(_GARBAGE) + data[i:]
        if op == 2:  # delete a range
            return data[:i] + data[i + rng.randint(1, 40):]
        if op == 3:  # cut short
            return data[:i]
        lines = data.split(b"\r\n")
        j = rng.randrange(len(lines))
        if op == 4:  # repeat a line
            lines.insert(j, lines[j])
        elif op == 5:  # swap two lines
            k = rng.randrange(len(lines))
            lines[j], lines[k] = lines[k], lines[j]
        elif op == 6:  # drop a line
            del lines[j]
        elif op == 7:  # replace a header value with garbage
            name, sep, _ = lines[j].partition(b":")
            if sep:
                lines[j] = name + b": " + b"".join(
                    rng.choice(_GARBAGE) for _ in range(rng.randint(1, 6)))
        else:  # lie about the body
            lines = [b"Content-Length: %d" % rng.choice([0, 1, 7, 300, 70000, -5])
                     if line.lower().startswith(b"content-length") else line for line in lines]
        return b"\r\n".join(lines)


def loopback_sources(count: int, base: str = "127.0.1.1") -> list[str]:
    """`count` consecutive loopback addresses from `base`."""
    first = ipaddress.ip_address(base)
    hosts = [str(first + i) for i in range(count)]
    for host in hosts:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"{host} is not a loopback address")
    return hosts


@dataclass
class FloodResult:
    sent: int = 0
    send_errors: int = 0
    seconds: float = 0.0
    replies: int = 0

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


def flood(
    target: tuple[str, int],
    make: Callable[[str, int], bytes],
    *,
    sources: Sequence[str] = ("127.0.0.3",),
    rate: float,
    count: int | None = None,
    seconds: float | None = None,
    stop: threading.Event | None = None,
) -> FloodResult:
    """Send `make(host, port)` datagrams to `target` at `rate` per second, spread over one
    socket per source address, until `count` are sent or `seconds` pass (one of them is
    required: the loop is bounded). Replies are read and counted, never answered."""
    if not ipaddress.ip_address(target[0]).is_loopback:
        raise ValueError("floods go to loopback addresses only")
    if count is None and seconds is None:
        raise ValueError("a flood needs a count or a duration")
    socks = []
    for host in sources:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"{host} is not a loopback address")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        s.bind((host, 0))
        s.setblocking(False)
        socks.append((s, host, s.getsockname()[1]))
    result = FloodResult()
    start = time.monotonic()
    limit = count if count is not None else 1 << 62
    end = start + seconds if seconds is not None else float("inf")
    tick = 0.005  # send in small batches, paced against the absolute schedule
    try:
        i = 0
        while result.sent < limit:
            now = time.monotonic()
            if now >= end or (stop is not None and stop.is_set()):
                break
            due = min(limit, int((now - start) * rate) + 1)
            while result.sent < due:
                sock, host, port = socks[i % len(socks)]
                i += 1
                try:
                    sock.sendto(make(host, port), target)
                except (BlockingIOError, OSError):
                    result.send_errors += 1
                result.sent += 1
            for sock, _, _ in socks:
                while True:
                    try:
                        sock.recv(65535)
                    except (BlockingIOError, OSError):
                        break
                    result.replies += 1
            time.sleep(tick)
    finally:
        result.seconds = time.monotonic() - start
        for sock, _, _ in socks:
            sock.close()
    return result


def rss_bytes(pid: int) -> int:
    """Resident set size of `pid` (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class RssSampler:
    """Samples `pid`'s RSS every `interval` seconds in a thread: `samples` is (t, bytes)."""

    pid: int
    interval: float = 0.25
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - self._t0, rss_bytes(self.pid)))
            self._stop.wait(self.interval)

    def now(self) -> float:
        return time.monotonic() - self._t0

    def peak(self, since: float = 0.0, until: float = float("inf")) -> int:
        return max((b for t, b in self.samples if since <= t <= until), default=0)

    def last(self) -> int:
        return self.samples[-1][1] if self.samples else 0


def megabytes(n: int) -> float:
    """Bytes in MB (10^6 bytes, as the server's log writes them)."""
    return n / 1e6
