"""Call records: one row per call in SQLite, with the routing decision and its trace."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass
from typing import Any

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
    ended_by TEXT
);
CREATE INDEX IF NOT EXISTS call_records_callee ON call_records (callee, started);
"""

OUTCOMES = ("answered", "busy", "no_answer", "cancelled", "failed", "declined", "voicemail")


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
    trace: list[str]
    ended_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
        json.dumps(record.trace),
        record.ended_by,
    )


_INSERT = (
    "INSERT INTO call_records (call_id, caller, callee, did, started, answered, ended,"
    " outcome, answered_by, rule, destination, trace, ended_by)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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

    def last(self, n: int, callee: str | None = None) -> list[CallRecord]:
        query = (
            "SELECT call_id, caller, callee, did, started, answered, ended, outcome, answered_by,"
            " rule, destination, trace, ended_by FROM call_records"
        )
        args: tuple[Any, ...] = ()
        if callee is not None:
            query += " WHERE callee = ?"
            args = (callee,)
        query += " ORDER BY id DESC LIMIT ?"
        rows = self.db.execute(query, (*args, n)).fetchall()
        return [
            CallRecord(
                r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9],
                json.loads(r[10]) if r[10] else None, json.loads(r[11]), r[12],
            )
            for r in rows
        ]
