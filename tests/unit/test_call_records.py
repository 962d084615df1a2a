"""Call records keep the decision's trace as steps, derived from the lines the call engine hands
over, and read back in English or French."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

import pytest

from b2bua.calls.records import CallRecord, CallRecorder, note_step, steps_of
from b2bua.config import config_from_text
from b2bua.rules import compile_rules
from b2bua.rules.i18n import render

CONFIG = """
[server]
domain = "pbx.test"
timezone = "Europe/Paris"

[[users]]
extension = "1001"
name = "Alice"
secret = "s"
  [[users.devices]]
  type = "sip"
  label = "Bureau"
  [users.schedule]
  [[users.schedule.hours]]
  start = "08:00"
  end = "18:00"
  days = ["mon", "tue", "wed", "thu", "fri"]
  [[users.exceptions]]
  callers = "06*"
  destination = { kind = "busy" }
"""

ENGINE_NOTES = [
    "ring timeout", "no device registered", "declined by Bureau (sip)", "ring group 800",
    "media backend: rtpengine did not answer", "DTMF 12#", "voicemail not available",
    "busy by rule", "no such number", "external destination without a number", "no device",
    "no device responded", "declined", "every device busy", "every branch failed (486,480)",
    "every branch failed", "media failure", "no trunk configured", "announcement unavailable",
    "voicemail of 1002", "announcement absence", "bounce to 0611111111",
    "bounce not answered: voicemail", "media: no RTP for 60 s",
]  # fmt: skip


def decision_lines() -> list[str]:
    table = compile_rules(config_from_text(CONFIG))
    when = datetime(2026, 1, 7, 9, 0, tzinfo=UTC)  # Wednesday 10:00 in Paris
    return list(table.decide("1001", "0611223344", when).trace)


@pytest.mark.parametrize("line", ENGINE_NOTES)
def test_engine_notes_become_steps_that_read_back_the_same(line: str) -> None:
    step = note_step(line)
    assert step.code != "note", line
    assert render(step, "en") == line
    assert render(step, "fr") != line


def test_an_unknown_note_is_kept_verbatim() -> None:
    step = note_step("something new happened")
    assert (step.code, step.params) == ("note", {"text": "something new happened"})
    assert render(step, "fr") == "something new happened"


def test_a_record_stores_steps_and_reads_back_in_both_languages() -> None:
    lines = [*decision_lines(), "ring timeout"]
    db = sqlite3.connect(":memory:")
    recorder = CallRecorder(db)
    record = CallRecord(
        "c1", "0611223344", "1001", None, 1.0, None, 2.0, "busy", None, "exception",
        {"kind": "busy"}, lines,
    )  # fmt: skip
    recorder.write(record)
    (back,) = recorder.last(1)
    assert back.trace == lines  # the English lines, as the engine wrote them
    codes = [s.code for s in back.all_steps()]
    assert codes[0] == "call" and "exception_match" in codes and codes[-1] == "ring_timeout"
    french = back.to_dict("fr")["trace"]
    assert french[-1] == "pas de réponse dans le délai"
    assert any(line.startswith("exception n° 1 (appelants « 06* ») : correspond") for line in french)
    # Stored once, as steps: the trace column holds nothing more.
    raw_trace, raw_steps = db.execute("SELECT trace, steps FROM call_records").fetchone()
    assert raw_trace == "[]" and json.loads(raw_steps)[0][0] == "call"
    assert back.to_dict()["steps"] == [s.to_json() for s in steps_of(lines)]


def test_rows_written_before_steps_existed_are_read_as_they_are() -> None:
    db = sqlite3.connect(":memory:")
    db.executescript(
        "CREATE TABLE call_records (id INTEGER PRIMARY KEY AUTOINCREMENT, call_id TEXT NOT NULL,"
        " caller TEXT NOT NULL, callee TEXT NOT NULL, did TEXT, started REAL NOT NULL,"
        " answered REAL, ended REAL NOT NULL, outcome TEXT NOT NULL, answered_by TEXT,"
        " rule TEXT, destination TEXT, trace TEXT NOT NULL, ended_by TEXT);"
    )
    db.execute(
        "INSERT INTO call_records (call_id, caller, callee, started, ended, outcome, trace)"
        " VALUES ('old', '0611', '1001', 1, 2, 'busy', ?)",
        (json.dumps(["call to 1001 from 0611", "decision: closed -> voicemail"]),),
    )
    (old,) = CallRecorder(db).last(1)
    assert old.trace == ["call to 1001 from 0611", "decision: closed -> voicemail"]
    assert old.to_dict("fr")["trace"] == old.trace
    assert [s.code for s in old.all_steps()] == ["note", "note"]
