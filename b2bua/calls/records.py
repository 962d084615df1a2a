"""Call records: one row per call in SQLite, with the routing decision and its trace.

The trace is kept as data: one step (code and parameters, b2bua.rules.model.Step) per line, so
that the call history explains a call in French or in English. The call engine hands over the
steps of its decision (`Decision.steps`) followed by those of its own notes ("ring timeout",
"declined by Bureau (sip)"..., read back into steps here by `steps_of`), and no English lines:
they are rendered from the steps when a record is read, so a row stores the explanation once
and a call that ends renders none.

Rows written before steps existed have a `trace` column of English lines and no `steps`: they
are read as they are (each line a `note` step).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from b2bua.rules.i18n import render
from b2bua.rules.model import Step

SCHEMA = """
CREATE TABLE IF NOT EXISTS call_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL,
    caller TEXT NOT NULL,
    callee TEXT NOT NULL,
    did TEXT,
    started REAL NOT NULL,
    answered REAL,
    ended REAL NOT NULL,
    outcome TEXT NOT NULL,
    answered_by TEXT,
    rule TEXT,
    destination TEXT,
    trace TEXT NOT NULL,
    ended_by TEXT,
    steps TEXT
);
CREATE INDEX IF NOT EXISTS call_records_callee ON call_records (callee, started);
"""

OUTCOMES = ("answered", "busy", "no_answer", "cancelled", "failed", "declined", "voicemail")


# The call engine's notes, read back into steps. Each pattern must give back the very line when
# the step is worded in English (checked in `steps_of`); anything else is a `note`.
_NOTES: tuple[tuple[re.Pattern[str], str, tuple[str, ...]], ...] = (
    (re.compile(r"^ring timeout$"), "ring_timeout", ()),
    (re.compile(r"^no device registered$"), "no_device", ()),
    (re.compile(r"^declined by (.+)$"), "declined", ("by",)),
    (re.compile(r"^ring group (\S+)$"), "ring_group", ("extension",)),
    (re.compile(r"^media backend: (.+)$"), "media_backend", ("why",)),
    (re.compile(r"^DTMF ([0-9A-D*#]+)$"), "dtmf", ("digits",)),
    (re.compile(r"^(.+) not available$"), "unavailable", ("what",)),
    (re.compile(r"^busy by rule$"), "busy_by_rule", ()),
    (re.compile(r"^no such number$"), "no_such_number", ()),
    (re.compile(r"^(\S+) destination without a number$"), "no_number", ("kind",)),
    (re.compile(r"^no device$"), "no_device_to_ring", ()),
    (re.compile(r"^no device responded$"), "no_device_responded", ()),
    (re.compile(r"^declined$"), "declined_all", ()),
    (re.compile(r"^every device busy$"), "all_busy", ()),
    (re.compile(r"^every branch failed(?: \(([0-9,]+)\))?$"), "all_failed", ("statuses",)),
    (re.compile(r"^media failure$"), "media_failure", ()),
    (re.compile(r"^no trunk configured$"), "no_trunk", ()),
    (re.compile(r"^no free line$"), "no_free_line", ()),
    (re.compile(r"^no trunk takes this number$"), "no_trunk_for_number", ()),
    (re.compile(r"^trunk (\S+): (.+), trying trunk (\S+)$"), "trunk_failover",
     ("trunk", "what", "next")),
    (re.compile(r"^trunk (\S+): (.+), no other trunk$"), "trunk_failed", ("trunk", "what")),
    (re.compile(r"^trunk (\S+) refused our credentials \((.+)\)$"), "trunk_auth_refused",
     ("trunk", "response")),
    (re.compile(r"^(.+) unavailable$"), "destination_unavailable", ("what",)),
    (re.compile(r"^voicemail of (\S+)$"), "to_voicemail", ("extension",)),
    (re.compile(r"^announcement (.+)$"), "to_announcement", ("message",)),
    (re.compile(r"^bounce to (.+)$"), "bounce_to", ("number",)),
    (re.compile(r"^bounce not answered: voicemail$"), "bounce_unanswered", ()),
    (re.compile(r"^media: (.+)$"), "media_problem", ("reason",)),
    (re.compile(r"^([0-9]+) device\(s\) woken by push$"), "woken_by_push", ("count",)),
    (re.compile(r"^no device woke up$"), "none_woke_up", ()),
    (re.compile(r"^(.+) woke up$"), "woke_up", ("device",)),
    (re.compile(r"^transferred by (\S+) to (\S+)$"), "transferred", ("by", "to")),
    (re.compile(r"^transfer answered by (.+)$"), "transfer_answered", ("by",)),
    (re.compile(r"^transfer failed: (.+)$"), "transfer_failed", ("why",)),
    (re.compile(r"^picked up by (\S+)$"), "picked_up", ("by",)),
    (re.compile(r"^attended transfer to (.+)$"), "attended_transfer", ("to",)),
    (re.compile(r"^transferred by (\S+): connected to (\S+)$"), "joined_call", ("by", "to")),
    (re.compile(r"^transferred by (\S+): joined call (\S+)$"), "joined_call", ("by", "call")),
)


def note_step(line: str) -> Step:
    """The step of one of the call engine's notes (a `note` when it is none we know)."""
    for pattern, code, names in _NOTES:
        m = pattern.match(line)
        if m is not None:
            params = {k: v for k, v in zip(names, m.groups(), strict=True) if v is not None}
            step = Step(code, params)
            if render(step, "en") == line:
                return step
    return Step("note", {"text": line})


def steps_of(trace: Iterable[str]) -> list[Step]:
    """The steps of a record's trace lines: the decision's lines carry theirs."""
    return [getattr(line, "step", None) or note_step(line) for line in trace]


@dataclass(frozen=True, slots=True)
class CallRecord:
    call_id: str
    caller: str
    callee: str
    did: str | None
    started: float
    answered: float | None
    ended: float
    outcome: str
    answered_by: str | None
    rule: str | None
    destination: dict[str, Any] | None
    trace: list[str]  # English lines; empty when `steps` are given (rendered from them)
    ended_by: str | None = None
    steps: Sequence[Step] | None = None  # None: derived from `trace`
    tenant: str = ""  # the company of the call (b2bua.tenants): '' for the top-level one

    def all_steps(self) -> list[Step]:
        return list(self.steps) if self.steps is not None else steps_of(self.trace)

    def trace_in(self, lang: str) -> list[str]:
        """The explanation in `lang` ("fr" or "en"), one line per step."""
        return [render(step, lang) for step in self.all_steps()]

    def to_dict(self, lang: str | None = None) -> dict[str, Any]:
        """The record as JSON: `trace` in `lang` (None: in English, as written or rendered)
        and `steps`."""
        out = asdict(self)
        steps = self.all_steps()
        out["steps"] = [s.to_json() for s in steps]
        if lang is not None or not self.trace:
            out["trace"] = [render(step, lang or "en") for step in steps]
        return out


def _row(record: CallRecord) -> tuple[Any, ...]:
    return (
        record.call_id,
        record.caller,
        record.callee,
        record.did,
        record.started,
        record.answered,
        record.ended,
        record.outcome,
        record.answered_by,
        record.rule,
        json.dumps(record.destination) if record.destination is not None else None,
        "[]",
        record.ended_by,
        json.dumps([(s.code, s.params) for s in record.all_steps()], ensure_ascii=False),
        record.tenant,
    )


_INSERT = (
    "INSERT INTO call_records (call_id, caller, callee, did, started, answered, ended,"
    " outcome, answered_by, rule, destination, trace, ended_by, steps, tenant)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _ensure_steps_column(db: sqlite3.Connection) -> None:
    """Databases made before steps existed get the column (their rows keep `trace`)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(call_records)")}
    if "steps" not in columns:
        db.execute("ALTER TABLE call_records ADD COLUMN steps TEXT")
    if "tenant" not in columns:  # tenants (docs/tenants.md): rows before them are ''
        db.execute("ALTER TABLE call_records ADD COLUMN tenant TEXT NOT NULL DEFAULT ''")


def _read(row: Sequence[Any]) -> CallRecord:
    if row[13] is not None:
        steps = [Step(code, params) for code, params in json.loads(row[13])]
        trace = [render(step, "en") for step in steps]
    else:
        trace = json.loads(row[11])
        steps = [Step("note", {"text": line}) for line in trace]
    return CallRecord(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9],
        json.loads(row[10]) if row[10] else None, trace, row[12], steps,
        row[14] if len(row) > 14 else "",
    )


class CallRecorder:
    """Writes call records. With `batch_delay`, records written within that many seconds go
    to SQLite in one transaction (one commit for many calls under load); `flush()` writes what
    is pending at once (the server calls it on stop)."""

    def __init__(self, db: sqlite3.Connection, batch_delay: float = 0.0) -> None:
        self.db = db
        self.batch_delay = batch_delay
        self._pending: list[tuple[Any, ...]] = []
        self._timer: Any = None
        db.executescript(SCHEMA)
        _ensure_steps_column(db)

    def write(self, record: CallRecord) -> None:
        self._pending.append(_row(record))
        if self.batch_delay <= 0:
            self.flush()
        elif self._timer is None:
            import asyncio

            self._timer = asyncio.get_running_loop().call_later(self.batch_delay, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        rows, self._pending = self._pending, []
        if not rows:
            return
        if self.db.isolation_level is None:  # autocommit connection (b2bua.store)
            self.db.execute("BEGIN")
            try:
                self.db.executemany(_INSERT, rows)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        else:
            with self.db:
                self.db.executemany(_INSERT, rows)

    def last(self, n: int, callee: str | None = None, tenant: str | None = None
             ) -> list[CallRecord]:
        """The last `n` records, newest first: of extension `callee`, of company `tenant`
        (b2bua.tenants; None: every company's)."""
        query = (
            "SELECT call_id, caller, callee, did, started, answered, ended, outcome, answered_by,"
            " rule, destination, trace, ended_by, steps, tenant FROM call_records"
        )
        where: list[str] = []
        args: tuple[Any, ...] = ()
        if callee is not None:
            where.append("callee = ?")
            args = (callee,)
        if tenant is not None:
            where.append("tenant = ?")
            args = (*args, tenant)
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY id DESC LIMIT ?"
        rows = self.db.execute(query, (*args, n)).fetchall()
        return [_read(r) for r in rows]
