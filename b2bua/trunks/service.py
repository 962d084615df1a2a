"""Every trunk of the server in one sans-IO object: registrations, OPTIONS pings, lines, outbound
choice and the status `b2bua trunks` and the dashboard show.

Theory of operation. `Trunks` holds, per configured trunk, a `Registration` (when it registers),
an `OptionsPing` and its `Lines`. The shell (the SIP stack's owner) calls `start(now)` once,
then after every input drains `take_requests()` (each an `OutgoingRequest` to send to that
trunk, with the shell's own Via) and `take_events()` (log lines), and re-arms its one timer
for `next_deadline()`. Responses and failures of those requests come back through
`handle_response(trunk, purpose, response, now)` and `handle_failure(trunk, purpose, reason,
now)`.

An inbound call is recognised as coming from a trunk by the Contact we registered there: our
Contact carries a `line` parameter unique to the trunk (the carrier's registrar sends calls to
that URI, parameters included), and `by_request_uri` finds the trunk from it, or from the user
part when only one registering trunk has that username.

Our Contact at a trunk is asked of `contact_for` when the trunks start (the shell knows its
listening addresses only then). `reconfigure` installs new specs live: a trunk whose spec did
not change keeps its registration, pings and lines; a removed trunk is unregistered; a new or
changed one starts afresh (its lines in use are carried over).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from b2bua.sip.flow import Flow
from b2bua.sip.message import Response
from b2bua.trunks.health import OptionsPing
from b2bua.trunks.lines import Direction, Lines
from b2bua.trunks.model import TrunkSpec
from b2bua.trunks.registration import Registration, TrunkEvent
from b2bua.trunks.requests import OutgoingRequest, Purpose
from b2bua.trunks.routing import Candidates, candidates

__all__ = ["TrunkStatus", "Trunks", "line_token"]


def line_token(trunk: TrunkSpec) -> str:
    """The `line` parameter of our Contact at `trunk`: stable across restarts, unique per
    trunk name."""
    return hashlib.sha256(trunk.name.encode()).hexdigest()[:10]


@dataclass(frozen=True, slots=True)
class TrunkStatus:
    """One row of `b2bua trunks` (the shape is part of the external contract)."""

    name: str
    registered: bool | None  # None: the trunk does not register
    up: bool
    lines: int  # 0 = unlimited
    lines_in_use: int
    last_error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "registered": self.registered,
            "up": self.up,
            "lines": self.lines,
            "lines_in_use": self.lines_in_use,
            "last_error": self.last_error,
        }


class Trunks:
    """The trunks of one server (see the module docstring)."""

    def __init__(
        self,
        specs: Sequence[TrunkSpec],
        *,
        contact_for: Callable[[TrunkSpec], str],
        from_uri: str,
        random_token: Callable[[], str],
        random_fraction: Callable[[], float] | None = None,
        base_backoff: float = 30.0,
        max_backoff: float = 1800.0,
    ) -> None:
        """`contact_for(trunk)` is our Contact URI (without brackets) as the trunk must reach
        us: the shell knows the local address of the trunk's flow. `from_uri` is the From of
        OPTIONS pings."""
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError("trunk names must be unique")
        self.contact_for = contact_for
        self.from_uri = from_uri
        self.random_token = random_token
        self.random_fraction = random_fraction
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.specs = {s.name: s for s in specs}
        self.order = tuple(specs)
        self.lines = {s.name: Lines(s.lines) for s in specs}
        self.registrations: dict[str, Registration] = {}
        self.pings: dict[str, OptionsPing] = {}
        self._contacts: dict[str, str] = {}
        self._leaving: list[Registration] = []  # removed trunks, unregistering
        # The address a trunk's host name resolved to (the shell resolves them without
        # blocking); a trunk without one is reached at its `host` as configured.
        self.addresses: dict[str, str] = {}
        self.started = False
        for spec in specs:
            self._add(spec)

    def _add(self, spec: TrunkSpec) -> None:
        if spec.register and spec.username:
            self.registrations[spec.name] = Registration(
                spec, contact="", random_token=self.random_token,
                random_fraction=self.random_fraction, base_backoff=self.base_backoff,
                max_backoff=self.max_backoff,
            )
        self.pings[spec.name] = OptionsPing(spec, from_uri=self.from_uri,
                                            random_token=self.random_token)

    # ---- the life cycle -----------------------------------------------------------------

    def start(self, now: float) -> None:
        self.started = True
        for name, registration in self.registrations.items():
            self._start_registration(name, registration, now)
        for ping in self.pings.values():
            ping.start(now)

    def _start_registration(self, name: str, registration: Registration, now: float) -> None:
        contact = self.contact(name)
        if contact is not None:
            registration.contact = contact
        registration.start(now)

    def stop(self, now: float) -> None:
        """Unregister (the REGISTERs with Expires: 0 are in `take_requests`) and stop pinging."""
        self.started = False
        for registration in self.registrations.values():
            registration.stop(now)
        for ping in self.pings.values():
            ping.stop()

    @property
    def unregistering(self) -> bool:
        """An un-REGISTER is still waiting for its outcome (see `stop`)."""
        return any(r.pending for r in (*self.registrations.values(), *self._leaving))

    def reconfigure(self, specs: Sequence[TrunkSpec], now: float) -> None:
        """Install new trunk specs live (see the module docstring)."""
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError("trunk names must be unique")
        new = {s.name: s for s in specs}
        for name, old in self.specs.items():
            if new.get(name) == old:
                continue
            registration = self.registrations.pop(name, None)
            if registration is not None and name not in new:
                registration.stop(now)  # its un-REGISTER goes out with the next requests
                self._leaving.append(registration)
            self.pings.pop(name).stop()
            self._contacts.pop(name, None)
        lines = self.lines
        self.lines = {}
        for spec in specs:
            held = lines.get(spec.name)
            if held is not None and spec.lines == held.limit:
                self.lines[spec.name] = held
            else:
                self.lines[spec.name] = Lines.carried(spec.lines, held)
            if self.specs.get(spec.name) == spec:
                continue
            self._add(spec)
            if self.started:
                registration = self.registrations.get(spec.name)
                if registration is not None:
                    self._start_registration(spec.name, registration, now)
                self.pings[spec.name].start(now)
        self.specs = new
        self.order = tuple(specs)

    # ---- inputs -------------------------------------------------------------------------

    def handle_response(self, trunk: str, purpose: Purpose, response: Response, now: float) -> None:
        machine = self._machine(trunk, purpose)
        if machine is not None:
            machine.handle_response(response, now)

    def handle_failure(self, trunk: str, purpose: Purpose, reason: str, now: float) -> None:
        machine = self._machine(trunk, purpose)
        if machine is not None:
            machine.handle_failure(reason, now)

    def handle_deadline(self, now: float) -> None:
        for registration in self.registrations.values():
            registration.handle_deadline(now)
        for ping in self.pings.values():
            ping.handle_deadline(now)

    def _machine(self, trunk: str, purpose: Purpose) -> Registration | OptionsPing | None:
        if purpose == "register":
            return self.registrations.get(trunk) or next(
                (r for r in self._leaving if r.trunk.name == trunk), None)
        return self.pings.get(trunk)

    # ---- outputs ------------------------------------------------------------------------

    def take_requests(self) -> list[OutgoingRequest]:
        out: list[OutgoingRequest] = []
        for registration in self._leaving:
            out += registration.take_requests()
        self._leaving = [r for r in self._leaving if r.pending]
        for registration in self.registrations.values():
            out += registration.take_requests()
        for ping in self.pings.values():
            out += ping.take_requests()
        return out

    def take_events(self) -> list[TrunkEvent]:
        out: list[TrunkEvent] = []
        for registration in self.registrations.values():
            out += registration.take_events()
        for ping in self.pings.values():
            out += ping.take_events()
        return out

    def next_deadline(self) -> float | None:
        """The earliest deadline of the registrations and pings (asked at every drain of the
        stack: a plain loop, no list built)."""
        earliest: float | None = None
        for machines in (self.registrations, self.pings):
            for machine in machines.values():
                when = machine.next_deadline()
                if when is not None and (earliest is None or when < earliest):
                    earliest = when
        return earliest

    def _machines(self) -> Iterable[Registration | OptionsPing]:
        yield from self.registrations.values()
        yield from self.pings.values()

    # ---- queries for calls --------------------------------------------------------------

    def is_up(self, name: str) -> bool:
        ping = self.pings.get(name)
        if ping is not None and ping.enabled:
            return ping.up
        registration = self.registrations.get(name)
        if registration is not None and registration.failures:
            return registration.registered
        return True

    def has_free_line(self, name: str) -> bool:
        return self.lines[name].free != 0

    def route(self, number: str, canonical: str | None = None) -> Candidates:
        """The trunks to try for an outbound `number` (as dialled; its `canonical` form is
        matched against the prefixes too), in order."""
        return candidates(number, self.order, is_up=self.is_up, has_free_line=self.has_free_line,
                          canonical=canonical)

    def acquire_line(self, name: str, call_id: str, direction: Direction) -> bool:
        return self.lines[name].acquire(call_id, direction)

    def release_line(self, name: str, call_id: str) -> bool:
        return self.lines[name].release(call_id)

    def flow(self, name: str) -> Flow:
        """Where requests to trunk `name` go. Over TLS the host name stays (the connection
        resolves it and verifies the certificate against it)."""
        spec = self.specs[name]
        host = spec.host if spec.transport == "tls" else self.addresses.get(name, spec.host)
        return Flow(spec.transport, host, spec.target_port)

    def contact(self, name: str) -> str | None:
        """Our Contact at registering trunk `name` (with its `line` parameter)."""
        contact = self._contacts.get(name)
        if contact is None and name in self.registrations:
            spec = self.specs[name]
            contact = self._contacts[name] = f"<{self.contact_for(spec)};line={line_token(spec)}>"
        return contact

    def call_succeeded(self, name: str) -> None:
        """A call through trunk `name` got an answer from it (health, see OptionsPing)."""
        ping = self.pings.get(name)
        if ping is not None:
            ping.call_succeeded()

    def call_failed(self, name: str, reason: str) -> None:
        """A call through trunk `name` timed out, met a transport failure or a 503."""
        ping = self.pings.get(name)
        if ping is not None:
            ping.call_failed(reason)

    def by_request_uri(self, user: str | None, params: dict[str, str | None]) -> TrunkSpec | None:
        """The registering trunk an inbound request was sent to, from its Request-URI."""
        line = params.get("line")
        if line:
            for name in self.registrations:
                spec = self.specs[name]
                if line_token(spec) == line:
                    return spec
            return None
        matches = [self.specs[n] for n in self.registrations if self.specs[n].username == user]
        return matches[0] if len(matches) == 1 else None

    # ---- status -------------------------------------------------------------------------

    def status(self) -> list[TrunkStatus]:
        rows = []
        for spec in self.order:
            registration = self.registrations.get(spec.name)
            ping = self.pings[spec.name]
            error = None
            if registration is not None and registration.last_error:
                error = registration.last_error
            elif ping.enabled and not ping.up:
                error = ping.last_error
            rows.append(TrunkStatus(
                name=spec.name,
                registered=registration.registered if registration is not None else None,
                up=self.is_up(spec.name),
                lines=spec.lines,
                lines_in_use=self.lines[spec.name].in_use,
                last_error=error,
            ))
        return rows
