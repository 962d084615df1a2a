"""The location store in PostgreSQL, shared by every node (docs/cluster.md).

Theory of operation
-------------------
The registrar's dict (b2bua.registrar.location) stays the cache every lookup reads; this store
only persists and shares it, and never blocks the event loop:

- a REGISTER's changes are committed through the async seam (`commit`, awaited by
  b2bua.registrar.shell.RegisterShell) before the 200 goes out, with a notice
  (`pg_notify('b2bua_bindings', 'NODE<TAB>TENANT<TAB>AOR')`) that tells the other nodes to read
  that address of record back (`fetch_aor`, then `Registrar.install`);
- housekeeping (keep-alive and push results, expiry, closed connections) is written behind, in
  order, through the node's one writer (b2bua.pgstore.writer). Each such change applies only to
  the row as this node knew it (same Call-ID and CSeq): a node that expires or marks a binding
  unreachable never undoes a registration another node committed meanwhile. Every node expires
  bindings itself; expiry is not announced;
- at start, `preload` reads every row once (asynchronously, before the registrar is built), so
  that `load_all` and `load_claims` answer from memory.

A tenant's address of record is `1001@acme.example` in memory (b2bua.tenants.names) and the
row (`acme.example`, `1001`) here; the top-level company's rows have tenant ''.

A row remembers the node that wrote it: a flow's connection id and local socket mean something
only in that process, so rows of other nodes are read without them (a request to such a device
goes from this node's own socket; one registered through the edge goes to its Path anyway).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Any

from b2bua.pgstore.writer import Job, Writer
from b2bua.push.model import PushTarget
from b2bua.registrar.model import Binding, DeviceClaim, StoreBatch
from b2bua.sip.flow import Flow
from b2bua.tenants.names import scoped, split

CHANNEL = "b2bua_bindings"

_COLUMNS = (
    "tenant, aor, key, username, contact, instance, reg_id, transport, source_host, source_port, "
    "connection_id, local_host, local_port, user_agent, expires_at, call_id, cseq, q, path, "
    "device, outbound, reachable, last_seen, registered_at, unreachable_since, "
    "pn_provider, pn_prid, pn_param, last_push_at, last_push_result, node"
)
_NAMES = [c.strip() for c in _COLUMNS.split(",")]
UPSERT = (
    f"INSERT INTO registrar_bindings ({_COLUMNS}) VALUES "
    f"({', '.join(f'${i}' for i in range(1, len(_NAMES) + 1))}) "
    "ON CONFLICT (tenant, aor, key) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _NAMES[3:])
)
DELETE = "DELETE FROM registrar_bindings WHERE tenant = $1 AND aor = $2 AND key = $3"
# Housekeeping: only the row as this node knew it.
HOUSEKEEP_UPDATE = (
    "UPDATE registrar_bindings SET reachable = $6, unreachable_since = $7, last_seen = $8, "
    "pn_provider = $9, pn_prid = $10, pn_param = $11, last_push_at = $12, "
    "last_push_result = $13 WHERE tenant = $1 AND aor = $2 AND key = $3 AND call_id = $4 "
    "AND cseq = $5"
)
HOUSEKEEP_DELETE = (
    "DELETE FROM registrar_bindings WHERE tenant = $1 AND aor = $2 AND key = $3 "
    "AND call_id = $4 AND cseq = $5"
)
PURGE = "DELETE FROM registrar_bindings WHERE expires_at <= $1"
CLAIM = (
    "INSERT INTO registrar_device_claims (tenant, extension, device, identity, claimed_at) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, extension, device) DO UPDATE SET "
    "identity = EXCLUDED.identity, claimed_at = EXCLUDED.claimed_at"
)
CLAIMS = "SELECT tenant, extension, device, identity, claimed_at FROM registrar_device_claims"


def notice(node: str, aor: str) -> str:
    """The payload of a bindings notice: `NODE<TAB>TENANT<TAB>AOR`."""
    tenant, bare = split(aor)
    return f"{node}\t{tenant}\t{bare}"


def read_notice(rest: str) -> str:
    """The address of record (scoped) of a notice's payload after its node (a node of before
    tenants sends `AOR` alone)."""
    tenant, tab, bare = rest.partition("\t")
    return scoped(bare, tenant) if tab else rest


def read_claim(r: Any) -> DeviceClaim:
    return DeviceClaim(scoped(r[1], r[0]), r[2], r[3], r[4])


def binding_row(b: Binding, node: str) -> tuple[Any, ...]:
    f = b.flow
    p = b.push
    tenant, aor = split(b.aor)
    return (
        tenant, aor, b.key, split(b.username)[1], b.contact, b.instance, b.reg_id, f.transport, f.host, f.port,
        f.connection_id, f.local_host, f.local_port, b.user_agent, b.expires_at, b.call_id,
        b.cseq, b.q, list(b.path) if b.path else None, b.device, b.outbound, b.reachable,
        b.last_seen, b.registered_at, b.unreachable_since,
        p.provider if p else None, p.prid if p else None, p.param if p else None,
        b.last_push_at, b.last_push_result, node,
    )


def read_binding(r: Any, node: str) -> Binding:
    """A row (asyncpg Record, by position in `_COLUMNS`) as a Binding; see the module
    docstring for rows of other nodes."""
    intern = sys.intern
    tenant = r[0]
    r = r[1:]
    own = r[29] == node
    local_host = r[10]
    flow = Flow(
        intern(r[6]), r[7], r[8], r[9] if own else None,
        (intern(local_host) if local_host is not None else None) if own else None,
        r[11] if own else None,
    )
    ua = r[12]
    aor, username = (f"{r[0]}@{tenant}", f"{r[2]}@{tenant}") if tenant else (r[0], r[2])
    return Binding(
        intern(aor), intern(username), r[1], r[3], flow, r[13], r[14], r[15], r[4], r[5],
        intern(ua) if ua is not None else None, r[16], tuple(r[17]) if r[17] else (), r[18],
        r[19], r[20], r[21], r[22], r[23],
        push=PushTarget(intern(r[24]), r[25], r[26] or "") if r[24] is not None and r[25]
        else None,
        last_push_at=r[27], last_push_result=r[28],
    )


class PgLocationStore:
    """LocationStore (sync, for the location service: answers from the preloaded rows and
    queues writes) and AsyncLocationStore (`commit`, for RegisterShell) over PostgreSQL."""

    def __init__(self, pool: Any, writer: Writer, node: str) -> None:
        self.pool = pool
        self.writer = writer
        self.node = node
        self._rows: list[Binding] = []
        self._claims: list[DeviceClaim] = []

    # -- start ---------------------------------------------------------------------------
    async def preload(self, now: float) -> int:
        """Purge expired rows and read every other one, for `load_all` (at start)."""
        async with self.pool.acquire() as conn:
            await conn.execute(PURGE, now)
            rows = await conn.fetch(f"SELECT {_COLUMNS} FROM registrar_bindings")
            claims = await conn.fetch(CLAIMS)
        node = self.node
        self._rows = [read_binding(r, node) for r in rows]
        self._claims = [read_claim(r) for r in claims]
        return len(self._rows)

    def load_all(self) -> Iterable[Binding]:
        rows, self._rows = self._rows, []
        return rows

    def load_claims(self) -> Iterable[DeviceClaim]:
        return list(self._claims)

    def load_aor(self, aor: str) -> Iterable[Binding]:
        """Not served synchronously: a node reads an address of record back with
        `fetch_aor` (b2bua.pgstore.node)."""
        return []

    # -- reading back (another node changed an address of record) --------------------------
    async def fetch_aor(self, aor: str) -> tuple[list[Binding], list[DeviceClaim]]:
        tenant, bare = split(aor)
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM registrar_bindings WHERE tenant = $1 AND aor = $2",
                tenant, bare)
            claims = await conn.fetch(CLAIMS + " WHERE tenant = $1 AND extension = $2",
                                      tenant, bare)
        node = self.node
        return ([read_binding(r, node) for r in rows], [read_claim(r) for r in claims])

    async def fetch_all(self) -> list[Binding]:
        """Every stored row (tests, the CLI)."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(f"SELECT {_COLUMNS} FROM registrar_bindings")
        return [read_binding(r, self.node) for r in rows]

    # -- REGISTER (awaited) --------------------------------------------------------------------
    async def commit(self, batch: StoreBatch) -> None:
        """All of the batch in one transaction, or nothing (StoreError)."""
        if not (batch.upserts or batch.deletes or batch.claims):
            return
        job = self._job(batch.upserts, batch.deletes, batch.claims, "REGISTER")
        await self.writer.run(job)

    def _job(self, upserts: Sequence[Binding], deletes: Sequence[tuple[str, str]],
             claims: Sequence[DeviceClaim], what: str, notify: bool = True) -> Job:
        node = self.node
        job = Job(what=what)
        st = job.statements
        for aor, key in deletes:
            st.append((DELETE, (*split(aor), key)))
        for b in upserts:
            st.append((UPSERT, binding_row(b, node)))
        for c in claims:
            st.append((CLAIM, (*split(c.extension), c.device, c.identity, c.claimed_at)))
        if notify:
            aors = {b.aor for b in upserts} | {a for a, _ in deletes} | {c.extension
                                                                       for c in claims}
            job.notices.extend((CHANNEL, notice(node, aor)) for aor in sorted(aors))
        return job

    # -- housekeeping and the rest (written behind) -------------------------------------------
    def apply(self, upserts: Sequence[Binding], deletes: Sequence[tuple[str, str]],
              claims: Sequence[DeviceClaim] = ()) -> None:
        if upserts or deletes or claims:
            self.writer.submit(self._job(upserts, deletes, claims, "bindings"))

    def upsert(self, binding: Binding) -> None:
        self.apply([binding], [])

    def delete(self, aor: str, key: str) -> None:
        self.apply([], [(aor, key)])

    def purge_expired(self, now: float) -> int:
        self.writer.submit(Job([(PURGE, (now,))], what="expired bindings"))
        return 0

    def housekeep(self, updated: Sequence[Binding], removed: Sequence[Binding]) -> None:
        if not updated and not removed:
            return
        job = Job(what="binding housekeeping")
        for b in removed:
            job.statements.append((HOUSEKEEP_DELETE, (*split(b.aor), b.key, b.call_id, b.cseq)))
        for b in updated:
            p = b.push
            job.statements.append((HOUSEKEEP_UPDATE, (
                *split(b.aor), b.key, b.call_id, b.cseq, b.reachable, b.unreachable_since,
                b.last_seen,
                p.provider if p else None, p.prid if p else None, p.param if p else None,
                b.last_push_at, b.last_push_result)))
        aors = sorted({b.aor for b in updated})
        job.notices.extend((CHANNEL, notice(self.node, aor)) for aor in aors)
        self.writer.submit(job)
