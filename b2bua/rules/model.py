"""What the rules engine hands to the call engine: a `Decision` naming a `Destination`.

Both are frozen, slotted values. A call keeps the Decision it got even if the configuration
is swapped while it rings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, get_args

__all__ = [
    "DESTINATION_KINDS",
    "RULES",
    "Decision",
    "Destination",
    "DestinationKind",
    "Rule",
    "UnknownExtension",
]

Rule = Literal["schedule_disabled", "exceptional", "exception", "office_hours", "forward", "closed"]
RULES: tuple[Rule, ...] = get_args(Rule)

DestinationKind = Literal[
    "devices", "voicemail", "extension", "mobile", "external", "system", "busy", "announcement"
]
DESTINATION_KINDS: tuple[DestinationKind, ...] = get_args(DestinationKind)

# Fields each kind carries in the configuration, required first.
_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "devices": ((), ()),
    "voicemail": ((), ("extension",)),
    "extension": (("extension",), ("voicemail",)),
    "mobile": ((), ("bounce",)),
    "external": (("number",), ("bounce",)),
    "system": (("extension",), ()),
    "busy": ((), ()),
    "announcement": (("message",), ()),
}
_DEFAULTS: dict[str, Any] = {"extension": None, "voicemail": False, "bounce": False}


class UnknownExtension(KeyError):
    """`decide()` was asked about an extension that is neither a user nor a system extension."""

    def __init__(self, extension: str) -> None:
        super().__init__(extension)
        self.extension = extension

    def __str__(self) -> str:
        return f"unknown extension {self.extension!r}"


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a call goes. Only the fields of its kind are meaningful (see CONTRACT.md)."""

    kind: DestinationKind
    extension: str | None = None
    voicemail: bool = False
    number: str | None = None
    bounce: bool = False
    message: str | None = None
    # Optional fields the configuration wrote explicitly (kept in `to_config_dict`).
    explicit: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    @classmethod
    def from_config(cls, model: Any) -> Destination:
        """Build from a configuration destination (pydantic model or dict of the config shape)."""
        data: dict[str, Any] = (
            model if isinstance(model, dict) else model.model_dump(exclude_unset=True)
        )
        kind = data["kind"]
        if kind not in _FIELDS:
            raise ValueError(f"unknown destination kind {kind!r}")
        required, optional = _FIELDS[kind]
        values = {k: data[k] for k in required + optional if k in data}
        return cls(kind=kind, explicit=frozenset(k for k in optional if k in data), **values)

    def to_config_dict(self) -> dict[str, Any]:
        """The configuration shape: `{"kind": "mobile", "bounce": true}`."""
        required, optional = _FIELDS[self.kind]
        out: dict[str, Any] = {"kind": self.kind}
        for name in required:
            out[name] = getattr(self, name)
        for name in optional:
            value = getattr(self, name)
            if name in self.explicit or value != _DEFAULTS[name]:
                out[name] = value
        return out

    def describe(self) -> str:
        """A short human description: `mobile (bounce)`, `voicemail of 1002`."""
        kind = self.kind
        if kind == "devices":
            return "ring all devices"
        if kind == "voicemail":
            return f"voicemail of {self.extension}" if self.extension else "voicemail"
        if kind == "extension":
            return f"{'voicemail of' if self.voicemail else 'ring extension'} {self.extension}"
        if kind == "mobile":
            return "mobile" + (" (bounce)" if self.bounce else "")
        if kind == "external":
            return f"external {self.number}" + (" (bounce)" if self.bounce else "")
        if kind == "system":
            return f"system extension {self.extension}"
        if kind == "busy":
            return "busy (486)"
        return f"announcement {self.message!r}"


class _Explainer(Protocol):
    def explain(self, decision: Decision, caller: str, when: datetime) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class Decision:
    """The routing decision for one call.

    `rule` is the rule that won; `rule_name` the exceptional period's name or the caller-ID
    exception's pattern (None for other rules). `trace` (computed on demand) lists, in order,
    every rule considered and why it applied or not, ending with the decision.
    """

    destination: Destination
    rule: Rule
    rule_name: str | None
    _context: tuple[_Explainer, str, datetime] | None = field(
        default=None, repr=False, compare=False
    )

    @property
    def trace(self) -> tuple[str, ...]:
        ctx = self._context
        if ctx is None:
            return (f"decision: {self.rule} -> {self.destination.describe()}",)
        return ctx[0].explain(self, ctx[1], ctx[2])

    def to_json(self) -> dict[str, Any]:
        """The `b2bua trace --json` object."""
        return {
            "destination": self.destination.to_config_dict(),
            "rule": self.rule,
            "rule_name": self.rule_name,
            "trace": list(self.trace),
        }


# Allocation-light constructor for the hot path: a frozen dataclass __init__ goes through
# object.__setattr__ once per field, which costs more than the whole decision.
_new = object.__new__
_set_destination = Decision.__dict__["destination"].__set__
_set_rule = Decision.__dict__["rule"].__set__
_set_rule_name = Decision.__dict__["rule_name"].__set__
_set_context = Decision.__dict__["_context"].__set__


def make_decision(
    destination: Destination,
    rule: Rule,
    rule_name: str | None,
    context: tuple[_Explainer, str, datetime] | None,
) -> Decision:
    """Same as `Decision(destination, rule, rule_name, context)`, faster."""
    d: Decision = _new(Decision)
    _set_destination(d, destination)
    _set_rule(d, rule)
    _set_rule_name(d, rule_name)
    _set_context(d, context)
    return d
