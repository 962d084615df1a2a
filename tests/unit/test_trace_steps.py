"""Traces as data: every decision explains itself as steps that read in English (what `b2bua
trace` always printed) and in French, and survive a JSON round trip (call records)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from b2bua.config import load_config
from b2bua.rules import compile_rules
from b2bua.rules.i18n import _EN, _FR, describe, render
from b2bua.rules.model import Destination, Step

ROOT = Path(__file__).resolve().parents[2]
TABLE = compile_rules(load_config(ROOT / "conf" / "default.toml"))
ENGLISH = ("not checked", "decision:", "exception #", "office hours", "ring all devices",
           "exceptional ", "caller-ID", "closed destination", "anonymous caller", "call to ")


def test_every_step_code_reads_in_both_languages() -> None:
    assert set(_EN) == set(_FR)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["1001", "1002", "1003", "800"]),
    st.sampled_from(["", "0612345678", "+33 6 12 34 56 78", "0499999999", "anonymous", "1002"]),
    st.integers(0, 366 * 24 * 60 - 1),
)
def test_every_decision_reads_in_french_without_english(ext: str, caller: str, minute: int) -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minute)
    decision = TABLE.decide(ext, caller, when)
    steps = decision.steps
    assert steps[0].code in ("call", "system_call") and steps[-1].code == "decision"
    assert steps[-1].params["rule"] == decision.rule
    assert steps[-1].params["destination"] == decision.destination.to_config_dict()
    english = decision.trace
    french = decision.trace_in("fr")
    assert len(english) == len(french) == len(steps)
    for step, en, fr in zip(steps, english, french, strict=True):
        assert en.step == step
        assert not fr.startswith(step.code + " {"), fr  # worded, not shown as data
        assert not any(word in fr for word in ENGLISH), fr
    # What a call record stores (JSON) reads back the same.
    stored = json.loads(json.dumps([s.to_json() for s in steps]))
    again = [Step(s["code"], s["params"]) for s in stored]
    assert [render(s, "en") for s in again] == list(english)
    assert [render(s, "fr") for s in again] == list(french)


def test_the_french_trace_of_a_sick_leave_names_the_colleague() -> None:
    from b2bua.config import config_from_text

    config = config_from_text(
        (ROOT / "conf" / "default.toml").read_text(encoding="utf-8").replace(
            '[[users.schedule.exceptional]]\n  name = "Fermeture de fin d\'année"',
            '[[users.schedule.exceptional]]\n  name = "Congé maladie"\n'
            '  dates = ["2026-07-01"]\n  destination = { kind = "extension", extension = "1002" }'
            '\n\n  [[users.schedule.exceptional]]\n  name = "Fermeture de fin d\'année"',
            1,
        ),
        base_dir=ROOT / "conf",
    )  # fmt: skip
    decision = compile_rules(config).decide("1001", "0499999999",
                                            datetime(2026, 7, 1, 8, 0, tzinfo=UTC))
    assert decision.rule_name == "Congé maladie"
    french = decision.trace_in("fr")
    assert (
        "période exceptionnelle « Congé maladie » (01/07/2026) : en cours le 01/07/2026 à 10:00 "
        "-> poste 1002"
    ) in french
    assert french[-1] == "décision : période exceptionnelle « Congé maladie » -> poste 1002"


@pytest.mark.parametrize(
    ("destination", "en", "fr"),
    [
        ({"kind": "devices"}, "ring all devices", "tous les appareils sonnent"),
        ({"kind": "voicemail"}, "voicemail", "messagerie vocale"),
        ({"kind": "voicemail", "extension": "1002"}, "voicemail of 1002",
         "messagerie vocale de 1002"),
        ({"kind": "extension", "extension": "1002"}, "ring extension 1002", "poste 1002"),
        ({"kind": "extension", "extension": "1002", "voicemail": True}, "voicemail of 1002",
         "messagerie vocale de 1002"),
        ({"kind": "mobile", "bounce": True}, "mobile (bounce)", "mobile (avec annonce d'attente)"),
        ({"kind": "external", "number": "0611"}, "external 0611", "numéro externe 0611"),
        ({"kind": "system", "extension": "800"}, "system extension 800", "poste système 800"),
        ({"kind": "busy"}, "busy (486)", "occupé (486)"),
        ({"kind": "announcement", "message": "absence"}, "announcement 'absence'",
         "annonce « absence »"),
    ],
)  # fmt: skip
def test_destinations_in_words(destination: dict[str, object], en: str, fr: str) -> None:
    assert describe(destination, "en") == en == Destination.from_config(destination).describe()
    assert describe(destination, "fr") == fr


def test_a_step_from_another_version_is_shown_not_dropped() -> None:
    assert render(Step("teleported", {"to": "mars"}), "fr") == 'teleported {"to": "mars"}'
    assert render(Step("decision", {"rule": "closed"}), "en").startswith("decision {")
