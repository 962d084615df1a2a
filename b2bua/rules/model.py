"""What the rules engine hands to the call engine: a `Decision` naming a `Destination`.

Both are immutable, slotted values. A call keeps the Decision it got even if the configuration
is swapped while it rings.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal, NamedTuple, Protocol, get_args

__all__ = [
    "DESTINATION_KINDS",
    "RULES",
    "Decision",
    "Destination",
    "DestinationKind",
    "Outcome",
    "Rule",
    "Step",
    "TraceLine",
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
        """The configuration shape: `{"kind": "mobile", "bounce": true}` (a new dict)."""
        return dict(_config_dict(self, self.explicit))

    def _config_dict(self) -> dict[str, Any]:
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


class Step(NamedTuple):
    """One step of a decision's trace, as data: a code and its parameters (plain JSON values;
    destinations in the configuration's shape). b2bua.rules.i18n words it in French or English;
    docs/rules.md lists the codes. (A named tuple: a trace makes ten of them per call.)"""

    code: str
    params: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "params": self.params}


class TraceLine(str):
    """A line of `Decision.trace` (English) that still knows its `step`: whoever keeps the
    lines as strings (a call record) can recover the steps from them."""

    step: Step


@lru_cache(maxsize=4096)
def _config_dict(destination: Destination, explicit: frozenset[str]) -> dict[str, Any]:
    """`Destination.to_config_dict` computed once per destination (the traces of every call
    name the same few destinations). `explicit` is part of the key: it is not compared."""
    return destination._config_dict()


class _Explainer(Protocol):
    def explain(self, decision: Decision, caller: str, when: datetime) -> tuple[Step, ...]: ...


# (destination, rule, rule_name): compiled once per rule and shared by the decisions it makes.
Outcome = tuple[Destination, Rule, str | None]


class Decision:
    """The routing decision for one call.

    `rule` is the rule that won; `rule_name` the exceptional period's name or the caller-ID
    exception's pattern (None for other rules). `trace` (computed on demand) lists, in order,
    every rule considered and why it applied or not, ending with the decision.

    An immutable value: assigning a field raises FrozenInstanceError, equality and hash are
    those of (destination, rule, rule_name). It is a plain slotted class rather than a frozen
    dataclass because decide() builds one per call, and a frozen dataclass can only be filled
    through `object.__setattr__`, which costs more than the rest of the decision.
    """

    __slots__ = ("_caller", "_outcome", "_source", "_when")

    _outcome: Outcome
    # What made the decision (its first item explains it), the caller and the instant; None
    # for a decision built by hand, whose trace is only its last line.
    _source: tuple[_Explainer, Any] | None
    _caller: str
    _when: datetime | float | None  # as decide() got it: aware datetime or UTC epoch seconds

    def __init__(self, destination: Destination, rule: Rule, rule_name: str | None = None) -> None:
        self._outcome = (destination, rule, rule_name)
        self._source = None
        self._caller = ""
        self._when = None

    @property
    def destination(self) -> Destination:
        return self._outcome[0]

    @destination.setter
    def destination(self, value: Destination) -> None:
        raise FrozenInstanceError("cannot assign to field 'destination'")

    @property
    def rule(self) -> Rule:
        return self._outcome[1]

    @rule.setter
    def rule(self, value: Rule) -> None:
        raise FrozenInstanceError("cannot assign to field 'rule'")

    @property
    def rule_name(self) -> str | None:
        return self._outcome[2]

    @rule_name.setter
    def rule_name(self, value: str | None) -> None:
        raise FrozenInstanceError("cannot assign to field 'rule_name'")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decision):
            return NotImplemented
        return self._outcome == other._outcome

    def __hash__(self) -> int:
        return hash(self._outcome)

    def __repr__(self) -> str:
        d, rule, name = self._outcome
        return f"Decision(destination={d!r}, rule={rule!r}, rule_name={name!r})"

    def __copy__(self) -> Decision:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Decision:
        return self

    @property
    def steps(self) -> tuple[Step, ...]:
        """Every rule considered, in order, and why it applied or not, ending with the decision
        (computed on demand)."""
        source, when = self._source, self._when
        if source is None or when is None:
            return (
                Step("decision", {
                    "rule": self.rule, "rule_name": self.rule_name,
                    "destination": self.destination.to_config_dict(),
                }),
            )  # fmt: skip
        if not isinstance(when, datetime):  # decided at UTC epoch seconds
            when = datetime.fromtimestamp(when, UTC)
        return source[0].explain(self, self._caller, when)

    @property
    def trace(self) -> tuple[TraceLine, ...]:
        """`steps` in English, one line each (each line keeps its step)."""
        from b2bua.rules.i18n import trace_lines

        return trace_lines(self.steps)

    def trace_in(self, lang: str) -> tuple[str, ...]:
        """`steps` in `lang` ("fr" or "en"), one line each."""
        from b2bua.rules.i18n import render_steps

        return render_steps(self.steps, lang)

    def to_json(self, lang: str = "en") -> dict[str, Any]:
        """The `b2bua trace --json` object: `trace` in `lang`, `steps` as data."""
        steps = self.steps
        from b2bua.rules.i18n import render_steps

        return {
            "destination": self.destination.to_config_dict(),
            "rule": self.rule,
            "rule_name": self.rule_name,
            "trace": list(render_steps(steps, lang)),
            "steps": [s.to_json() for s in steps],
        }


# The hot path builds decisions without __init__: `d = new_decision(Decision)`, then it sets
# the four slots directly (plain slot stores, the fastest way CPython fills an object).
new_decision = object.__new__
