"""The dialog journal: every node's answered calls, so that none outlives its node.

Theory of operation
-------------------
When a call is answered (both legs confirmed) the call engine tells the journal
(`CallEngine.on_answered`), which writes behind one row in `cluster_dialogs`: for each leg what
a BYE needs (Call-ID, tags, URIs, remote target, route set, CSeq, the flow) and what the call
record needs. When the call ends (`on_ended`) the row is deleted.

Each node holds a session-level advisory lock on its number for as long as its connection to
PostgreSQL lives; a process that dies loses its connection, and the lock with it. Every
`SCAN_INTERVAL` seconds each node looks for rows of other nodes and tries their lock: a lock it
gets belongs to a dead node, whose rows it takes (`DELETE ... RETURNING`: one survivor gets
each) and ends: a BYE on both legs from its own address (CSeq `STEP` above the journaled one:
RFC 3261 §12.2.2 refuses a lower CSeq, not a gap), the call's media deleted in rtpengine, a call
record written (`ended by node failure`). A node that starts ends its own rows of its previous
life the same way. The lock is then released.

A transfer changes a call's legs after the answer; the journal keeps the legs of the answer
(documented limit). A call that was only ringing on the dead node is not journaled: its caller's
INVITE transaction times out (Timer B) and its branches' devices stop at their own timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from b2bua.calls.records import CallRecord
from b2bua.commands import SendRequest
from b2bua.pgstore.writer import Job, Writer
from b2bua.sip.dialog import Dialog, DialogState
from b2bua.sip.flow import Flow
from b2bua.sip.message import Request
from b2bua.sip.uri import parse_uri

log = logging.getLogger("b2bua.pgstore")

LIVE_LOCK = 0x6232  # first key of the node liveness locks; the second is the node number
SCAN_INTERVAL = 1.0
STEP = 1000  # CSeq added to the journaled one for the BYE of a dead node's call
REASON = 'Q.850;cause=41;text="node failure"'

_INSERT = (
    "INSERT INTO cluster_dialogs (node, call_key, dialog, at, tenant) VALUES ($1, $2, $3::jsonb,"
    " $4, $5) ON CONFLICT (node, call_key) DO UPDATE SET dialog = EXCLUDED.dialog,"
    " at = EXCLUDED.at"
)
_DELETE = "DELETE FROM cluster_dialogs WHERE node = $1 AND call_key = $2"


def leg_entry(dialog: Dialog, flow: Flow) -> dict[str, Any]:
    return {
        "call_id": dialog.call_id, "local_tag": dialog.local_tag,
        "remote_tag": dialog.remote_tag, "local_uri": dialog.local_uri,
        "remote_uri": dialog.remote_uri, "remote_target": str(dialog.remote_target),
        "route_set": list(dialog.route_set), "cseq": dialog.local_cseq,
        "flow": [flow.transport, flow.host, flow.port],
    }


def call_entry(call: Any) -> dict[str, Any]:
    """What the journal keeps of an answered call (b2bua.calls.model.Call)."""
    legs = [leg_entry(leg.dialog, leg.flow) for leg in (call.a_leg, call.b_leg)
            if leg is not None]
    return {
        "legs": legs,
        "record": {"call_id": call.a_request.call_id, "caller": call.caller,
                   "callee": call.callee, "did": call.did, "started": call.started,
                   "answered": call.answered_at, "answered_by": call.answered_by,
                   "tenant": call.tenant.key},
    }


def bye_for(leg: dict[str, Any], via: str) -> tuple[Request, Flow]:
    """The BYE that ends one journaled leg, and where it goes."""
    dialog = Dialog(
        leg["call_id"], leg["local_tag"], leg["remote_tag"], leg["local_uri"],
        leg["remote_uri"], parse_uri(leg["remote_target"]), list(leg["route_set"]),
        int(leg["cseq"]) + STEP, None, DialogState.CONFIRMED,
    )
    transport, host, port = leg["flow"]
    request = dialog.request("BYE", via, headers=[("Reason", REASON)], cseq=int(leg["cseq"]) + STEP)
    return request, Flow(str(transport), str(host), int(port))


class DialogJournal:
    def __init__(self, writer: Writer, node: str, number: int) -> None:
        self.writer = writer
        self.node = node
        self.number = number
        self.counters = {"journaled": 0, "taken_over": 0}
        self._own_done = False
        self._started = float("inf")

    # -- the engine's hooks ----------------------------------------------------------------
    def answered(self, call: Any) -> None:
        entry = call_entry(call)
        if len(entry["legs"]) < 2:
            return
        self.counters["journaled"] += 1
        self.writer.submit(Job([(_INSERT, (self.node, call.key, json.dumps(entry),
                                           time.time(), call.tenant.key))],
                               what="dialog journal"))

    def ended(self, call: Any) -> None:
        self.writer.submit(Job([(_DELETE, (self.node, call.key))], what="dialog journal"))

    # -- takeover ------------------------------------------------------------------------------
    async def lock_self(self, conn: Any, wait: float = 15.0) -> None:
        """Hold this node's liveness lock on `conn`. A previous instance of the node that is
        still going away may hold it for a moment; after `wait` seconds, another process runs
        as this node (two nodes with one name): OSError."""
        deadline = time.monotonic() + wait
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", LIVE_LOCK,
                                      self.number):
            if time.monotonic() > deadline:
                raise OSError(f"node {self.node} is already running (each node needs its own "
                              "[store] node name)")
            await asyncio.sleep(0.5)

    async def orphans(self, conn: Any) -> list[tuple[str, str, dict[str, Any]]]:
        """Take the rows of dead nodes (and this node's previous life): (node, call key,
        entry). `conn` holds this node's liveness lock."""
        taken: list[tuple[str, str, dict[str, Any]]] = []
        rows = await conn.fetch(
            "SELECT DISTINCT d.node, n.number FROM cluster_dialogs d"
            " JOIN cluster_nodes n ON n.name = d.node")
        for node, number in rows:
            if node == self.node:
                if self._own_done:
                    continue
                self._own_done = True
                got = True  # our own lock: held; rows left are from before this start
            else:
                got = await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", LIVE_LOCK,
                                          number)
            if not got:
                continue
            # Our own rows: only those of our previous life (before this start).
            before = self._started if node == self.node else float("inf")
            try:
                dead = await conn.fetch(
                    "DELETE FROM cluster_dialogs WHERE node = $1 AND at < $2"
                    " RETURNING call_key, dialog", node, before)
            finally:
                if node != self.node:
                    await conn.execute("SELECT pg_advisory_unlock($1, $2)", LIVE_LOCK, number)
            for key, entry in dead:
                taken.append((node, key, json.loads(entry) if isinstance(entry, str)
                              else dict(entry)))
        self.counters["taken_over"] += len(taken)
        return taken

    def started(self, at: float) -> None:
        """Rows of this node written before `at` are from its previous life."""
        self._started = at


def end_orphan(server: Any, node: str, key: str, entry: dict[str, Any],
               now: Callable[[], float] = time.time) -> None:
    """BYE both legs of a dead node's call, delete its media in rtpengine, write its record."""
    stack = server.stack
    local = server.calls.local
    for leg in entry.get("legs", []):
        try:
            transport, host, port = leg["flow"]
            via, _ = local.via(Flow(str(transport), str(host), int(port)))
            request, flow = bye_for(leg, via)
        except (KeyError, ValueError, TypeError) as exc:
            log.error("journal of call %s (node %s) unusable: %s", key, node, exc)
            continue
        stack.outbox.append(SendRequest(request, flow, None))
    stack.flush()
    server.cluster.delete_media(key)
    info = entry.get("record", {})
    try:
        server.recorder.write(CallRecord(
            call_id=str(info.get("call_id", key)), caller=str(info.get("caller", "")),
            callee=str(info.get("callee", "")), did=info.get("did"),
            started=float(info.get("started") or now()), answered=info.get("answered"),
            ended=now(), outcome="answered", answered_by=info.get("answered_by"), rule=None,
            destination=None, trace=[f"node failure: ended by {server.cluster.node}"],
            tenant=str(info.get("tenant", "")),
        ))
    except Exception:  # a task boundary: the BYEs are out; the record is best effort
        log.exception("record of call %s (node %s) not written", key, node)
    log.warning("call %s of node %s ended (node failure)", key, node)
