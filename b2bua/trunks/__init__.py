"""Trunks to carriers and gateways (docs/trunks.md): outbound registration with digest
authentication, OPTIONS pings, line accounting, the choice of trunk for an outbound number and
failover, all sans-IO; `b2bua trunks` in `commands`."""

from __future__ import annotations

from b2bua.trunks.digest import Challenge, ChallengeError, Credentials
from b2bua.trunks.health import OptionsPing
from b2bua.trunks.lines import Lines
from b2bua.trunks.model import TrunkSpec
from b2bua.trunks.registration import Registration, RegistrationState, TrunkEvent
from b2bua.trunks.requests import OutgoingRequest
from b2bua.trunks.routing import Candidates, fails_over, format_number, presented_number
from b2bua.trunks.service import Trunks, TrunkStatus

__all__ = [
    "Candidates",
    "Challenge",
    "ChallengeError",
    "Credentials",
    "Lines",
    "OptionsPing",
    "OutgoingRequest",
    "Registration",
    "RegistrationState",
    "TrunkEvent",
    "TrunkSpec",
    "TrunkStatus",
    "Trunks",
    "fails_over",
    "format_number",
    "presented_number",
]
