"""What the call engine needs from its neighbours, as Protocols: the seams tests fill with their
own objects, and the places another implementation (a network location store) plugs in."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from b2bua.registrar.model import AuthResult, Binding
from b2bua.rules.model import Decision
from b2bua.sip.flow import Flow
from b2bua.sip.message import Request
from b2bua.sip.uri import SipUri


class Location(Protocol):
    """The registrar's location service and authentication, as the engine uses them."""

    def authenticate(
        self, request: Request, now: float, header: str = ..., *, flow: Flow | None = ...
    ) -> AuthResult: ...

    def lookup(self, extension: str, now: float) -> Iterable[Binding]: ...

    def target_for(self, binding: Binding) -> tuple[SipUri, Flow]: ...


class RuleTable(Protocol):
    def decide(self, callee: str, caller: str, when: float) -> Decision: ...


class Rules(Protocol):
    """The rule book: its current table (swapped live)."""

    @property
    def table(self) -> RuleTable: ...
