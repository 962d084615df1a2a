"""Overload protection: request rates per source address, and a global overload state.

Theory of operation
-------------------
Two sans-IO parts (no asyncio, no socket; the clock is the `now` argument) and a thin receiver
that puts them in front of the SIP stack.

`SourceLimiter`, in the spirit of Kamailio's `pike`: each source address gets one-second
windows. A source that sends more than `rate` requests within one window is *blocked* for
`block_seconds`; while blocked it stays blocked as long as any of its windows goes over the
rate again, so a flood stays blocked until it stops, and a phone that misbehaved for a moment
is back within `block_seconds`. What a blocked source sends is dropped, or, with
`action = "reject"`, answered `503 Service Unavailable` with `Retry-After` (the time left of
its block), at most `REJECTS_PER_WINDOW` times per window, the rest dropped: the answers cost a
parse and a send each, and a flood must not buy CPU with them. Only requests count: a response
answers something we sent. Addresses in `trusted` networks (trunks, an edge proxy that carries
every phone's traffic) are never limited. The table of sources is capped (`max_sources`);
idle sources are swept out, and when it is full of live ones the oldest is forgotten.

`OverloadGuard`, in the spirit of Flexisip's DoS protection: the event loop reports how busy it
was (share of wall time spent running, from the thread's CPU clock) and how late its timers
fire. When either stays over its threshold the server is *overloaded*: new INVITEs (without a
To tag) are answered `503` with `Retry-After` at once, before any parse beyond the first bytes
they need, so calls in progress keep the CPU they need (their in-dialog requests, responses and
RTP pass as before). The state ends when the load has stayed below three quarters of the
thresholds for `hold_seconds`.

`GuardedReceiver` sits between the transports and the stack (`message_received`,
`connection_lost`): it asks both parts, drops or answers, and hands the rest to the stack.
Blocks and the drops of each logging interval are reported once per interval, never per
message: a flood must not become a flood of log lines.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from b2bua.sip.errors import SipParseError
from b2bua.sip.flow import Flow
from b2bua.sip.message import Request, make_response, parse_message
from b2bua.transport.base import Receiver

log = logging.getLogger(__name__)

WINDOW = 1.0  # seconds per counting window
REJECTS_PER_WINDOW = 10  # 503s per blocked source per window with action "reject"
SMOOTHING = 0.3  # weight of a new load sample in the smoothed busy share and lag
# Samples (100 ms each) in a row over a threshold before the server is overloaded. Timers that
# fire late mean the loop is already behind: half a second of it is enough. A busy thread is
# not behind yet (on a shared machine its CPU share swings with the neighbours' load): only two
# seconds of it, a saturation that the next burst would turn into lag, refuse calls.
ENTER_SAMPLES = 5  # timer lag over its threshold
BUSY_ENTER_SAMPLES = 20  # busy share over its threshold
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Admission(enum.Enum):
    ADMIT = "admit"
    REJECT = "reject"  # answer 503 + Retry-After
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class GuardSettings:
    """Thresholds of `SourceLimiter` and `OverloadGuard` (`[overload]` in the configuration)."""

    source_rate: int = 500  # requests per second from one address before it is blocked
    block_seconds: float = 10.0
    action: str = "drop"  # "drop" | "reject": what a blocked source's requests get
    trusted: tuple[Network, ...] = ()
    max_sources: int = 65_536
    log_interval: float = 10.0
    busy: float = 0.9  # share of wall time the loop may spend running
    lag: float = 0.1  # seconds the loop's timers may fire late
    hold_seconds: float = 2.0
    retry_after: int = 5  # seconds, in the 503 of a new INVITE refused while overloaded

    def __post_init__(self) -> None:
        if self.action not in ("drop", "reject"):
            raise ValueError(f"overload action must be drop or reject, not {self.action!r}")
        if self.source_rate < 1 or self.max_sources < 1 or self.block_seconds <= 0:
            raise ValueError("source_rate, max_sources and block_seconds must be positive")
        if not 0 < self.busy <= 1 or self.lag <= 0:
            raise ValueError("busy must be in (0, 1] and lag positive")


class _Source:
    __slots__ = ("blocked_at", "blocked_until", "count", "dropped", "rejected", "trusted",
                 "window", "window_rejects")

    def __init__(self, window: float) -> None:
        self.window = window  # start of the current window
        self.count = 0
        self.window_rejects = 0
        self.blocked_at = 0.0
        self.blocked_until = 0.0
        self.dropped = 0  # since the last report
        self.rejected = 0
        self.trusted = False


class SourceLimiter:
    """Requests per source address (see the module docstring). Counters: `blocks` (sources
    blocked), `dropped` and `rejected` (their requests)."""

    def __init__(self, settings: GuardSettings) -> None:
        self.settings = settings
        self._sources: dict[str, _Source] = {}
        self._swept = 0.0
        self._reported: float | None = None
        self._new_blocks: list[str] = []
        self.blocks = 0
        self.dropped = 0
        self.rejected = 0

    def __len__(self) -> int:
        return len(self._sources)

    def admit(self, host: str, now: float) -> Admission:
        """Count one request from `host`; what to do with it."""
        s = self._sources.get(host)
        if s is None:
            s = self._new_source(host, now)
        elif now - s.window >= WINDOW:
            if (s.blocked_until > now and s.count > self.settings.source_rate
                    and s.window > s.blocked_at):
                # A whole window over the rate while blocked: the block goes on.
                s.blocked_until = now + self.settings.block_seconds
            s.window = now
            s.count = 0
            s.window_rejects = 0
        s.count += 1
        if s.blocked_until > now:
            return self._refuse(s)
        if s.count <= self.settings.source_rate or s.trusted:
            return Admission.ADMIT
        if self._is_trusted(host):
            s.trusted = True
            return Admission.ADMIT
        s.blocked_at = now
        s.blocked_until = now + self.settings.block_seconds
        self.blocks += 1
        self._new_blocks.append(host)
        return self._refuse(s)

    def _refuse(self, s: _Source) -> Admission:
        if self.settings.action == "reject" and s.window_rejects < REJECTS_PER_WINDOW:
            s.window_rejects += 1
            s.rejected += 1
            self.rejected += 1
            return Admission.REJECT
        s.dropped += 1
        self.dropped += 1
        return Admission.DROP

    def _new_source(self, host: str, now: float) -> _Source:
        sources = self._sources
        if len(sources) >= self.settings.max_sources:
            if now - self._swept >= WINDOW:
                self.sweep(now)
            if len(sources) >= self.settings.max_sources:
                del sources[next(iter(sources))]
        s = sources[host] = _Source(now)
        return s

    def _is_trusted(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.settings.trusted)

    def retry_after(self, host: str, now: float) -> int:
        """Whole seconds until `host`'s block ends (at least 1)."""
        s = self._sources.get(host)
        left = 0.0 if s is None else s.blocked_until - now
        return max(1, int(left + 0.999))

    def sweep(self, now: float) -> int:
        """Forget sources that are not blocked and sent nothing for two windows."""
        self._swept = now
        idle = [
            host for host, s in self._sources.items()
            if s.blocked_until <= now and now - s.window >= 2 * WINDOW
        ]
        for host in idle:
            del self._sources[host]
        return len(idle)

    def blocked(self, now: float) -> dict[str, float]:
        """Blocked source addresses and when their block ends (as it stands)."""
        return {h: s.blocked_until for h, s in self._sources.items() if s.blocked_until > now}

    def report(self, now: float) -> list[str]:
        """Log lines for what happened since the last report: every new block at once, the
        drops and rejections of blocked sources once per `log_interval`."""
        lines = []
        rate, block = self.settings.source_rate, self.settings.block_seconds
        for host in self._new_blocks:
            lines.append(f"source {host} sent more than {rate} requests in a second: "
                         f"its requests are {self._verb()} for at least {block:g} s")
        self._new_blocks.clear()
        last = self._reported
        if last is not None and now - last < self.settings.log_interval:
            return lines
        busy = sorted(
            ((s.dropped + s.rejected, host) for host, s in self._sources.items()
             if s.dropped or s.rejected),
            reverse=True,
        )
        if busy:
            self._reported = now
            span = f"in the last {now - last:.0f} s" if last is not None else "so far"
            top = ", ".join(f"{host} ({n})" for n, host in busy[:5])
            more = f" and {len(busy) - 5} more" if len(busy) > 5 else ""
            total = sum(n for n, _ in busy)
            lines.append(f"{total} requests from {len(busy)} blocked sources {self._verb()} "
                         f"{span}: {top}{more}")
            for s in self._sources.values():
                s.dropped = s.rejected = 0
        return lines

    def _verb(self) -> str:
        return "refused (503)" if self.settings.action == "reject" else "dropped"


@dataclass
class OverloadGuard:
    """The global overload state, from the load samples the loop reports (every 100 ms).

    Entering takes `ENTER_SAMPLES` samples in a row with the timers late, or
    `BUSY_ENTER_SAMPLES` with the thread busy over its share: one long pause of the loop (a
    collection, a slow disk write) does not refuse calls, a loop that stays behind does within
    half a second, one that stays saturated within two. Leaving takes `hold_seconds` with both
    smoothed values below three quarters of their thresholds."""

    settings: GuardSettings
    overloaded: bool = False
    busy: float = 0.0  # smoothed share of wall time the loop spent running
    lag: float = 0.0  # smoothed lateness of the loop's timers, seconds
    since: float = 0.0  # when the state last changed
    entered: int = 0  # times the server became overloaded
    refused: int = 0  # new INVITEs answered 503
    _late: int = 0  # samples in a row with the timers late
    _busy: int = 0  # samples in a row with the thread over its busy share
    _calm_since: float | None = None
    _changes: list[str] = field(default_factory=list)

    def sample(self, busy: float, lag: float, now: float) -> None:
        """One measurement: the share of wall time the loop was running since the last one,
        and how late a timer of the loop fired."""
        self.busy += SMOOTHING * (busy - self.busy)
        self.lag += SMOOTHING * (lag - self.lag)
        s = self.settings
        if not self.overloaded:
            self._late = self._late + 1 if lag >= s.lag else 0
            self._busy = self._busy + 1 if busy >= s.busy else 0
            if self._late >= ENTER_SAMPLES or self._busy >= BUSY_ENTER_SAMPLES:
                self.overloaded = True
                self.since = now
                self._calm_since = None
                self.entered += 1
                self._changes.append(
                    f"overloaded (loop busy {self.busy:.0%}, timers {self.lag * 1000:.0f} ms "
                    f"late): new calls get 503 with Retry-After {s.retry_after} s")
            return
        if self.busy < 0.75 * s.busy and self.lag < 0.75 * s.lag:
            if self._calm_since is None:
                self._calm_since = now
            elif now - self._calm_since >= s.hold_seconds:
                self.overloaded = False
                self._late = self._busy = 0
                self._changes.append(
                    f"no longer overloaded after {now - self.since:.0f} s: "
                    f"{self.refused} new calls refused in all so far")
                self.since = now
        else:
            self._calm_since = None

    def report(self) -> list[str]:
        lines, self._changes = self._changes, []
        return lines


def is_new_invite(data: bytes) -> bool:
    """Whether a datagram is an INVITE that starts a dialog (no To tag), told from its bytes
    where they tell: the start line, then the To header (long or compact form). A To whose
    display name holds a tag look-alike is treated as in-dialog (never refused): the guard
    errs on the side of letting a request through."""
    if not data.startswith(b"INVITE "):
        return False
    head_end = data.find(b"\r\n\r\n")
    head = data if head_end < 0 else data[:head_end]
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() in (b"to", b"t"):
            return b"tag=" not in value.lower()
    return False


class GuardedReceiver:
    """The transports' receiver, in front of the stack: per-source limits and the overload
    guard, then `inner.message_received`. `send(data, flow)` answers what is refused, with a
    To tag from `new_tag()`."""

    def __init__(
        self,
        inner: Receiver,
        settings: GuardSettings,
        clock: Callable[[], float],
        new_tag: Callable[[], str],
        send: Callable[[bytes, Flow], None] | None = None,
    ) -> None:
        self.inner = inner
        self.new_tag = new_tag
        self.settings = settings
        self.limiter = SourceLimiter(settings)
        self.overload = OverloadGuard(settings)
        self._clock = clock
        self.send = send

    def message_received(self, data: bytes, flow: Flow) -> None:
        if data[:4] != b"SIP/":  # a request (a response answers us: never limited)
            now = self._clock()
            verdict = self.limiter.admit(flow.host, now)
            if verdict is not Admission.ADMIT:
                if verdict is Admission.REJECT:
                    self._answer_503(data, flow, self.limiter.retry_after(flow.host, now))
                return
            if self.overload.overloaded and is_new_invite(data):
                self.overload.refused += 1
                self._answer_503(data, flow, self.settings.retry_after)
                return
        self.inner.message_received(data, flow)

    def connection_lost(self, flow: Flow) -> None:
        self.inner.connection_lost(flow)

    def _answer_503(self, data: bytes, flow: Flow, retry_after: int) -> None:
        """`503 Service Unavailable` with Retry-After (RFC 3261 §21.5.4), statelessly; nothing
        when the request is too broken to answer."""
        if self.send is None:
            return
        try:
            request = parse_message(data, stream=flow.reliable)
            if not isinstance(request, Request) or request.method == "ACK":
                return
            request.via  # noqa: B018 - where the answer goes
        except SipParseError:
            return
        response = make_response(request, 503, to_tag=self.new_tag(),
                                 headers=[("Retry-After", str(retry_after))])
        self.send(bytes(response), flow)

    def report(self, now: float) -> Iterable[str]:
        yield from self.limiter.report(now)
        yield from self.overload.report()

    def counters(self) -> dict[str, int]:
        return {
            "sources_blocked_total": self.limiter.blocks,
            "requests_dropped_over_rate_total": self.limiter.dropped,
            "requests_rejected_over_rate_total": self.limiter.rejected,
            "overload_entered_total": self.overload.entered,
            "overload_invites_refused_total": self.overload.refused,
        }
