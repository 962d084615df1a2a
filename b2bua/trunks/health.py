"""Whether a trunk is up: OPTIONS pings with hysteresis (RFC 3261 §11), sans-IO.

Theory of operation. Every `interval` seconds an OPTIONS goes to the trunk. Any final response
means the far end is alive (a 401, 403 or 404 too: something answered), except 408, 503 and
504, which a proxy in front of a dead or overloaded carrier gives; those, a transaction timeout
and a transport failure count as a failed ping. The trunk starts up (calls are not held back
by a trunk we have not probed yet); `down_after` failed pings in a row mark it down and
`up_after` good ones in a row mark it up again, so one lost datagram does not flap the state.
A change is a `TrunkEvent` (a warning going down, info coming back up).

Calls feed the same state: a call the trunk answered counts as a good ping, a transport failure
of a call as a failed one (`call_succeeded`, `call_failed`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from b2bua.sip.errors import SipParseError
from b2bua.sip.message import Response
from b2bua.trunks.model import TrunkSpec
from b2bua.trunks.registration import RESPONSE_GUARD, TrunkEvent
from b2bua.trunks.requests import OutgoingRequest, build_request

__all__ = ["DEAD_STATUSES", "OptionsPing"]

DEAD_STATUSES = frozenset({408, 503, 504})


class OptionsPing:
    """The up/down state of one trunk (see the module docstring)."""

    def __init__(
        self,
        trunk: TrunkSpec,
        *,
        from_uri: str,
        random_token: Callable[[], str],
        interval: float | None = None,
        down_after: int = 2,
        up_after: int = 2,
    ) -> None:
        self.trunk = trunk
        self.from_uri = from_uri
        self.random_token = random_token
        self.interval = trunk.options_ping if interval is None else interval
        self.down_after = down_after
        self.up_after = up_after
        self.up = True
        self.last_error: str | None = None
        self.last_status: int | None = None
        self._good = 0  # consecutive
        self._bad = 0
        self._cseq = 0
        self._call_id = f"{random_token()}{random_token()}"
        self._pending: int | None = None
        self._guard_at: float | None = None
        self._send_at: float | None = None
        self._outbox: list[OutgoingRequest] = []
        self._events: list[TrunkEvent] = []

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def start(self, now: float) -> None:
        """Ping now, then every `interval` (nothing when disabled)."""
        if self.enabled and self._pending is None:
            self._ping(now)

    def stop(self) -> None:
        self._send_at = self._guard_at = self._pending = None

    # ---- inputs -------------------------------------------------------------------------

    def handle_response(self, response: Response, now: float) -> None:
        try:
            cseq = response.cseq
        except SipParseError:
            return
        if cseq.method != "OPTIONS" or cseq.number != self._pending or response.status < 200:
            return
        self._done(now)
        self.last_status = response.status
        if response.status in DEAD_STATUSES:
            self._failed(f"{response.status} {response.reason} to OPTIONS")
        else:
            self._succeeded()

    def handle_failure(self, reason: str, now: float) -> None:
        if self._pending is None:
            return
        self._done(now)
        self.last_status = None
        self._failed(f"OPTIONS: {reason}")

    def handle_deadline(self, now: float) -> None:
        if self._guard_at is not None and now >= self._guard_at:
            self.handle_failure("no response", now)
        if self._send_at is not None and now >= self._send_at and self._pending is None:
            self._ping(now)

    def call_succeeded(self) -> None:
        """A call through the trunk got a response from it."""
        self._succeeded()

    def call_failed(self, reason: str) -> None:
        """A call through the trunk timed out or met a transport failure."""
        self._failed(reason)

    # ---- outputs ------------------------------------------------------------------------

    def take_requests(self) -> list[OutgoingRequest]:
        out, self._outbox = self._outbox, []
        return out

    def take_events(self) -> list[TrunkEvent]:
        out, self._events = self._events, []
        return out

    def next_deadline(self) -> float | None:
        if self._pending is not None:
            return self._guard_at
        return self._send_at

    # ---- transitions --------------------------------------------------------------------

    def _ping(self, now: float) -> None:
        self._cseq += 1
        trunk = self.trunk
        request = build_request(
            "OPTIONS",
            trunk.uri(),
            from_uri=self.from_uri,
            to_uri=trunk.uri(),
            from_tag=self.random_token(),
            call_id=self._call_id,
            cseq=self._cseq,
            headers=(("Accept", "application/sdp"),),
        )
        self._pending = self._cseq
        self._guard_at = now + RESPONSE_GUARD
        self._send_at = None
        self._outbox.append(OutgoingRequest(trunk.name, "options", request))

    def _done(self, now: float) -> None:
        self._pending = None
        self._guard_at = None
        self._send_at = now + self.interval if self.enabled else None

    def _succeeded(self) -> None:
        self._bad = 0
        self._good += 1
        if not self.up and self._good >= self.up_after:
            self.up = True
            self._events.append(TrunkEvent(
                self.trunk.name, logging.INFO, f"trunk is up again ({self.last_error})"))
            self.last_error = None

    def _failed(self, reason: str) -> None:
        self._good = 0
        self._bad += 1
        self.last_error = reason
        if self.up and self._bad >= self.down_after:
            self.up = False
            self._events.append(TrunkEvent(
                self.trunk.name, logging.WARNING,
                f"trunk is down: {reason} ({self._bad} failures in a row)"))
