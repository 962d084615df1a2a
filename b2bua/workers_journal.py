"""The workers' journal: each worker's answered calls and MWI subscriptions, so that a worker
started again ends the calls it lost and takes its subscriptions back.

Theory of operation
-------------------
With several workers (b2bua.workers) a call and an MWI subscription live in the memory of the
worker that owns them; their Call-ID, tags and branches carry its letter, so every request of
their dialogs reaches that worker. A worker that dies loses them. The first worker starts it
again with the same index, hence the same letter: the dialogs' requests reach the new process,
which finds nothing in memory. So every worker journals, in the shared SQLite database
(`worker_journal`):

- a row per answered call (both legs: what a BYE needs, and what the call record needs), deleted
  when the call ends;
- a row per MWI subscription (its dialog, flow and expiry), written again at each refresh and
  deleted when it ends.

Rows are written behind: changes are kept in memory and committed together every
`FLUSH_DELAY` seconds (a call answered and ended within that time is never written). At its
start a worker takes (reads and deletes) the rows of its index written before its start -- its
previous life -- and the first worker also those of indexes beyond the current count (a run with
more workers). Then:

- each call is ended on both legs with a BYE whose CSeq is `STEP` above the journaled one
  (RFC 3261 §12.2.2: "If the remote sequence number was not empty, but the sequence number of
  the request is lower than the remote sequence number, the request is out of order and MUST be
  rejected with a 500" -- a gap is allowed), and a call record is written;
- each subscription not yet expired is taken back as it was (its CSeq also `STEP` above, and
  journaled again for a next restart), and a NOTIFY with the current message count goes out at
  once (RFC 6665 §4.2.2: a notifier sends
  a NOTIFY when the state changes; the subscriber learns nothing was lost).

A whole restart of `b2bua run` is a previous life for every worker. Limits: a call or a
subscription made less than `FLUSH_DELAY` before a crash is not journaled; a call that was only
ringing is not journaled (its caller's INVITE transaction times out).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from b2bua.calls.records import CallRecord
from b2bua.commands import SendRequest
from b2bua.sip.dialog import Dialog, DialogState
from b2bua.sip.flow import Flow
from b2bua.sip.message import Request
from b2bua.sip.uri import parse_uri
from b2bua.store import transaction
from b2bua.workers import decode_flow, encode_flow

log = logging.getLogger("b2bua.workers")

FLUSH_DELAY = 0.2  # seconds a change waits to be committed with others
STEP = 1000  # CSeq added to the journaled one for our next request in a dialog taken back
REASON = 'Q.850;cause=41;text="worker restart"'
CALL = "call"
MWI = "mwi"

SCHEMA = """
CREATE TABLE IF NOT EXISTS worker_journal (
    worker INTEGER NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    entry TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (worker, kind, key)
)
"""


def dialog_entry(dialog: Dialog, flow: Flow) -> dict[str, Any]:
    """What a request in `dialog` needs, on `flow` (kept whole: a TCP/TLS flow's connection
    is held by the first worker and outlives this one)."""
    return {
        "call_id": dialog.call_id, "local_tag": dialog.local_tag,
        "remote_tag": dialog.remote_tag, "local_uri": dialog.local_uri,
        "remote_uri": dialog.remote_uri, "remote_target": str(dialog.remote_target),
        "route_set": list(dialog.route_set), "cseq": dialog.local_cseq,
        "flow": encode_flow(flow).decode().rstrip("\n"),
    }


def dialog_of(entry: dict[str, Any]) -> tuple[Dialog, Flow]:
    """The dialog of a journal entry, its local CSeq `STEP` above the journaled one."""
    cseq = int(entry["cseq"]) + STEP
    dialog = Dialog(
        str(entry["call_id"]), str(entry["local_tag"]), entry.get("remote_tag"),
        str(entry["local_uri"]), str(entry["remote_uri"]), parse_uri(str(entry["remote_target"])),
        [str(r) for r in entry.get("route_set", [])], cseq, None, DialogState.CONFIRMED,
    )
    return dialog, decode_flow(str(entry["flow"]).encode())


def call_entry(call: Any) -> dict[str, Any]:
    """What the journal keeps of an answered call (b2bua.calls.model.Call)."""
    legs = [dialog_entry(leg.dialog, leg.flow) for leg in (call.a_leg, call.b_leg)
            if leg is not None]
    tenant = getattr(call, "tenant", None)
    return {
        "legs": legs,
        "record": {"call_id": call.a_request.call_id, "caller": call.caller,
                   "callee": call.callee, "did": call.did, "started": call.started,
                   "answered": call.answered_at, "answered_by": call.answered_by,
                   "tenant": getattr(tenant, "key", "") or ""},
    }


def subscription_entry(sub: Any) -> dict[str, Any]:
    """What the journal keeps of an MWI subscription (b2bua.calls.mwi.Subscription)."""
    return {"extension": sub.extension, "expires_at": sub.expires_at,
            **dialog_entry(sub.dialog, sub.flow)}


class WorkerJournal:
    """One worker's journal rows in the shared database (see the module's docstring)."""

    def __init__(self, db: sqlite3.Connection, index: int, count: int,
                 now: Callable[[], float] = time.time) -> None:
        self.db = db
        self.index = index
        self.count = count
        self.now = now
        self.started = now()
        self._pending: dict[tuple[str, str], tuple[str | None, float]] = {}
        self._flush_scheduled = False
        self.schedule: Callable[[float, Callable[[], None]], object] | None = None
        self.counters = {"journal_writes": 0, "journal_errors": 0}
        db.execute(SCHEMA)

    # -- what the engine and MWI tell ------------------------------------------------------
    def call_answered(self, call: Any) -> None:
        entry = call_entry(call)
        if len(entry["legs"]) == 2:
            self._put(CALL, str(call.key), json.dumps(entry))

    def call_ended(self, call: Any) -> None:
        self._put(CALL, str(call.key), None)

    def subscription(self, sub: Any, alive: bool) -> None:
        key = f"{sub.dialog.call_id} {sub.dialog.local_tag}"
        self._put(MWI, key, json.dumps(subscription_entry(sub)) if alive else None)

    def _put(self, kind: str, key: str, entry: str | None) -> None:
        self._pending[(kind, key)] = (entry, self.now())
        if not self._flush_scheduled:
            self._flush_scheduled = True
            if self.schedule is not None:
                self.schedule(FLUSH_DELAY, self.flush)
            else:
                self.flush()

    def flush(self) -> None:
        """Commit what changed since the last flush, in one transaction."""
        self._flush_scheduled = False
        pending, self._pending = self._pending, {}
        if not pending:
            return
        ups = [(self.index, kind, key, entry, at) for (kind, key), (entry, at) in pending.items()
               if entry is not None]
        gone = [(self.index, kind, key) for (kind, key), (entry, _) in pending.items()
                if entry is None]
        try:
            with transaction(self.db):
                self.db.executemany(
                    "INSERT OR REPLACE INTO worker_journal (worker, kind, key, entry, at) "
                    "VALUES (?, ?, ?, ?, ?)", ups)
                self.db.executemany(
                    "DELETE FROM worker_journal WHERE worker = ? AND kind = ? AND key = ?", gone)
            self.counters["journal_writes"] += 1
        except sqlite3.Error as exc:  # busy or gone: the journal is best effort
            self.counters["journal_errors"] += 1
            log.error("worker journal not written: %s", exc)

    # -- the previous life --------------------------------------------------------------------
    def take_previous(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Read and delete the rows of this worker's previous life (and, in the first worker,
        of workers beyond the count): (kind, key, entry)."""
        extra = " OR worker >= ?" if self.index == 0 else ""
        args: tuple[Any, ...] = (self.index, self.started)
        if extra:
            args += (self.count,)
        where = f"(worker = ? AND at < ?){extra}"
        try:
            with transaction(self.db):
                rows = self.db.execute(
                    f"SELECT kind, key, entry FROM worker_journal WHERE {where}", args).fetchall()
                self.db.execute(f"DELETE FROM worker_journal WHERE {where}", args)
        except sqlite3.Error as exc:
            log.error("worker journal not read: %s", exc)
            return []
        out = []
        for kind, key, entry in rows:
            try:
                out.append((str(kind), str(key), dict(json.loads(entry))))
            except (ValueError, TypeError):
                log.error("worker journal: row %s %s unreadable", kind, key)
        return out


def take_over(server: Any, journal: WorkerJournal) -> tuple[int, int]:
    """End the calls and take back the subscriptions of this worker's previous life. Returns
    (calls ended, subscriptions taken back)."""
    ended = restored = 0
    now = time.time()
    for kind, key, entry in journal.take_previous():
        try:
            if kind == CALL:
                end_call(server, key, entry, now, journal.index)
                ended += 1
            elif kind == MWI and float(entry["expires_at"]) > now:
                dialog, flow = dialog_of(entry)
                server.mwi.restore(str(entry["extension"]), dialog, flow,
                                   float(entry["expires_at"]))
                restored += 1
        except (KeyError, ValueError, TypeError) as exc:
            log.error("worker journal: %s %s unusable: %s", kind, key, exc)
    server.stack.flush()
    if ended or restored:
        log.warning("worker %d: %d calls of its previous life ended, %d MWI subscriptions "
                    "taken back", journal.index, ended, restored)
    return ended, restored


def bye(entry: dict[str, Any], via: Callable[[Flow], str]) -> tuple[Request, Flow]:
    dialog, flow = dialog_of(entry)
    request = dialog.request("BYE", via(flow), headers=[("Reason", REASON)],
                             cseq=dialog.local_cseq)
    return request, flow


def end_call(server: Any, key: str, entry: dict[str, Any], now: float, index: int) -> None:
    """BYE both legs of a call of the previous life, and write its record."""
    local = server.calls.local
    for leg in entry.get("legs", []):
        request, flow = bye(leg, lambda f: local.via(f)[0])
        server.stack.outbox.append(SendRequest(request, flow, None))
    info = entry.get("record", {})
    try:
        server.recorder.write(CallRecord(
            call_id=str(info.get("call_id", key)), caller=str(info.get("caller", "")),
            callee=str(info.get("callee", "")), did=info.get("did"),
            started=float(info.get("started") or now), answered=info.get("answered"),
            ended=now, outcome="answered", answered_by=info.get("answered_by"), rule=None,
            destination=None, trace=[f"worker restart: ended by worker {index}"],
            tenant=str(info.get("tenant", "")),
        ))
    except Exception:  # a task boundary: the BYEs are out; the record is best effort
        log.exception("record of call %s not written", key)
    log.warning("call %s ended (worker %d started again)", key, index)
