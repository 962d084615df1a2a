"""The node's SQLite copy of the shared tables, kept in step with PostgreSQL.

Theory of operation
-------------------
Settings, dashboard accounts and sessions, the voicemail index, announcements, music uploads,
call records and provisioning tokens are read and written by their own modules through the
node's SQLite connection, synchronously, in tens of microseconds (b2bua.settings,
b2bua.calls.records...). With `[store] url` that SQLite file is a cache of PostgreSQL, made
afresh in a node-local directory at every start:

- **start** (`Replica.load`): every row of `shared_rows` is written into the new SQLite file,
  and the change log position is remembered;
- **out**: triggers on each replicated table append every local insert, update and delete to
  `_replica_outbox` (the primary key and the row as JSON). `ship()` sends the outbox to
  PostgreSQL in one transaction through the node's ordered writer: each row upserted into (or
  deleted from) `shared_rows`, one line per change in `shared_changes`, and a notice on
  `b2bua_shared`. The node ships every 100 ms, and the API awaits `ship()` before it answers
  an unsafe request, so a saved setting is in PostgreSQL when the dashboard says so;
- **in**: on a notice from another node (or every 2 s, in case one was lost), `pull()` reads
  the changes past the last one seen (with a window, since change ids are given at insert and a
  transaction may commit after a later one) joined to the rows as they are now, and writes them
  into SQLite with the triggers muted. A row this node changed and not yet shipped is left
  alone (it goes out next and wins, as it is the later write). The tables touched are reported
  (`on_change`): the server applies settings, tells MWI subscribers.

Rows keyed by an AUTOINCREMENT id (voicemail, call records) must not collide between nodes:
an id this node makes is renumbered right after insertion (a trigger) to a time-ordered id
unique to the node, `milliseconds * 1024 + node number` (or the node's previous id + 1024 when
that is higher), so "the last N calls" stays in time order across nodes.

Conflicts are last-writer-wins per row, in PostgreSQL's commit order. The settings revision
(`meta.settings_revision`, a tenant's `settings_revision@DOMAIN`) is one of the rows: every node
that sees it change re-reads and applies that tenant's settings.

Tenants (docs/tenants.md): a table with a `tenant` column travels with it as the row's
`tenant` in `shared_rows` and `shared_changes`, and its key (`pk`) is the rest of the table's
primary key, so a row stored before tenants existed (tenant '') keeps its key.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from b2bua.pgstore.writer import Job, Writer
from b2bua.store import transaction

log = logging.getLogger("b2bua.pgstore")

CHANNEL = "b2bua_shared"
TABLES = (
    "meta", "user_settings", "music_uploads", "dashboard_accounts", "dashboard_sessions",
    "voicemail", "announcement_uploads", "call_records", "provisioning_tokens", "tenants",
)
# Keys of `meta` that stay local (none today: the nonce key of a node comes from cluster_meta).
LOCAL_META: frozenset[str] = frozenset()
ID_TABLES = ("voicemail", "call_records")  # INTEGER PRIMARY KEY AUTOINCREMENT
NODE_BITS = 1024
WINDOW = 256  # change ids re-read behind the last seen (see the module docstring)
BATCH = 2000

_SHIP_UPSERT = (
    "INSERT INTO shared_rows (tenant, tbl, pk, row, node) VALUES ($1, $2, $3, $4::jsonb, $5) "
    "ON CONFLICT (tenant, tbl, pk) DO UPDATE SET row = EXCLUDED.row, node = EXCLUDED.node"
)
_SHIP_DELETE = "DELETE FROM shared_rows WHERE tenant = $1 AND tbl = $2 AND pk = $3"
_SHIP_CHANGE = "INSERT INTO shared_changes (tenant, tbl, pk, node) VALUES ($1, $2, $3, $4)"


def prepare_local_schema(conn: sqlite3.Connection) -> None:
    """Create every replicated table (each module's own migrations), so that triggers can be
    put on all of them before anything is written."""
    from b2bua.calls.records import CallRecorder
    from b2bua.registrar.sqlite_store import ensure_schema as registrar_schema
    from b2bua.settings import announcements
    from b2bua.settings.tables import ensure_schema as settings_schema

    settings_schema(conn)
    announcements.ensure_schema(conn)
    registrar_schema(conn)
    CallRecorder(conn)


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[str, ...]
    blob_columns: frozenset[str]
    key: tuple[str, ...]  # the primary key without `tenant`
    tenant: bool = False  # the table has a `tenant` column

def _describe(conn: sqlite3.Connection, name: str) -> Table | None:
    rows = conn.execute(f"PRAGMA table_info({name})").fetchall()
    if not rows:
        return None
    columns = tuple(str(r[1]) for r in rows)
    blobs = frozenset(str(r[1]) for r in rows if str(r[2]).upper() == "BLOB")
    key = tuple(str(r[1]) for r in sorted((r for r in rows if r[5]), key=lambda r: r[5])
                if str(r[1]) != "tenant")
    return Table(name, columns, blobs, key or ("rowid",), "tenant" in columns)


def _json_value(column: str, ref: str, blobs: frozenset[str]) -> str:
    expr = f"{ref}.{column}"
    if column in blobs:
        # JSON holds no BLOB: a blob travels as {"$blob": HEX}.
        return (f"CASE WHEN typeof({expr}) = 'blob' THEN json_object('$blob', hex({expr}))"
                f" ELSE {expr} END")
    return expr


class Replica:
    def __init__(self, conn: sqlite3.Connection, pool: Any, writer: Writer, node: str,
                 number: int) -> None:
        self.conn = conn
        self.pool = pool
        self.writer = writer
        self.node = node
        self.number = number
        self.tables: dict[str, Table] = {}
        self.last_change = 0
        self._seen: set[int] = set()
        self.on_change: Callable[[dict[str, list[dict[str, Any]]]], None] | None = None
        self.counters = {"shipped": 0, "pulled": 0, "skipped_pending": 0}

    # -- set-up --------------------------------------------------------------------------
    def install(self) -> None:
        """Tables, the outbox, the triggers (on a fresh SQLite file, before `load`)."""
        conn = self.conn
        prepare_local_schema(conn)
        conn.executescript(
            "CREATE TABLE IF NOT EXISTS _replica_state (muted INTEGER NOT NULL);"
            "CREATE TABLE IF NOT EXISTS _replica_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " tbl TEXT NOT NULL, tenant TEXT NOT NULL DEFAULT '', pk TEXT NOT NULL, row TEXT);"
            "CREATE TABLE IF NOT EXISTS _replica_ids (tbl TEXT PRIMARY KEY, last INTEGER);"
        )
        with transaction(conn):
            conn.execute("DELETE FROM _replica_state")
            conn.execute("INSERT INTO _replica_state VALUES (0)")
        for name in TABLES:
            table = _describe(conn, name)
            if table is None:
                continue
            self.tables[name] = table
            self._triggers(table)

    def _triggers(self, t: Table) -> None:
        unmuted = "(SELECT muted FROM _replica_state) = 0"
        mine = ""
        if t.name in ID_TABLES:
            mine = " AND 0"  # the renumbering below updates the row: captured as an update
        if t.name == "meta" and LOCAL_META:
            names = ", ".join(f"'{k}'" for k in sorted(LOCAL_META))
            mine += f" AND NEW.key NOT IN ({names})"

        def pk(ref: str) -> str:
            return "json_array(" + ", ".join(f"{ref}.{c}" for c in t.key) + ")"

        def row(ref: str) -> str:
            return "json_object(" + ", ".join(
                f"'{c}', {_json_value(c, ref, t.blob_columns)}" for c in t.columns) + ")"

        def tenant(ref: str) -> str:
            return f"{ref}.tenant" if t.tenant else "''"

        out = "INSERT INTO _replica_outbox (tbl, tenant, pk, row)"
        self.conn.executescript(f"""
            CREATE TRIGGER IF NOT EXISTS _rep_{t.name}_ins AFTER INSERT ON {t.name}
            WHEN {unmuted}{mine} BEGIN
                {out} VALUES ('{t.name}', {tenant("NEW")}, {pk("NEW")}, {row("NEW")});
            END;
            CREATE TRIGGER IF NOT EXISTS _rep_{t.name}_upd AFTER UPDATE ON {t.name}
            WHEN {unmuted} BEGIN
                {out} SELECT '{t.name}', {tenant("OLD")}, {pk("OLD")}, NULL
                    WHERE {pk("OLD")} <> {pk("NEW")} OR {tenant("OLD")} <> {tenant("NEW")};
                {out} VALUES ('{t.name}', {tenant("NEW")}, {pk("NEW")}, {row("NEW")});
            END;
            CREATE TRIGGER IF NOT EXISTS _rep_{t.name}_del AFTER DELETE ON {t.name}
            WHEN {unmuted} BEGIN
                {out} VALUES ('{t.name}', {tenant("OLD")}, {pk("OLD")}, NULL);
            END;
        """)
        if t.name in ID_TABLES:
            now_ms = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
            self.conn.executescript(f"""
                INSERT OR IGNORE INTO _replica_ids (tbl, last) VALUES ('{t.name}', 0);
                CREATE TRIGGER IF NOT EXISTS _rep_{t.name}_id AFTER INSERT ON {t.name}
                WHEN {unmuted} BEGIN
                    UPDATE _replica_ids SET last = max(last + {NODE_BITS},
                        {now_ms} * {NODE_BITS} + {self.number}) WHERE tbl = '{t.name}';
                    UPDATE {t.name} SET id = (SELECT last FROM _replica_ids
                        WHERE tbl = '{t.name}') WHERE id = NEW.id;
                END;
            """)

    async def load(self) -> int:
        """Fill the fresh SQLite file from PostgreSQL; the count of rows."""
        async with self.pool.acquire() as pg:
            async with pg.transaction(isolation="repeatable_read", readonly=True):
                last = await pg.fetchval("SELECT coalesce(max(id), 0) FROM shared_changes")
                rows = await pg.fetch("SELECT tbl, tenant, pk, row FROM shared_rows")
        changes = [(r[0], r[1], r[2], r[3]) for r in rows]
        self._apply(changes)
        self.last_change = int(last)
        for name in ID_TABLES:
            if name in self.tables:
                top = self.conn.execute(
                    f"SELECT max(id) FROM {name} WHERE id % {NODE_BITS} = ?", (self.number,)
                ).fetchone()[0]
                with transaction(self.conn):
                    self.conn.execute("UPDATE _replica_ids SET last = max(last, ?) WHERE tbl = ?",
                                      (top or 0, name))
        return len(changes)

    # -- out -----------------------------------------------------------------------------
    def pending(self) -> bool:
        return self.conn.execute("SELECT 1 FROM _replica_outbox LIMIT 1").fetchone() is not None

    async def ship(self) -> int:
        """Send the outbox to PostgreSQL (awaited commit); the count of changes sent."""
        sent = 0
        while True:
            rows = self.conn.execute(
                "SELECT seq, tbl, tenant, pk, row FROM _replica_outbox ORDER BY seq LIMIT ?",
                (BATCH,)
            ).fetchall()
            if not rows:
                return sent
            job = Job(what="shared rows")
            for _, tbl, tenant, pk, row in rows:
                if row is None:
                    job.statements.append((_SHIP_DELETE, (tenant, tbl, pk)))
                else:
                    job.statements.append((_SHIP_UPSERT, (tenant, tbl, pk, row, self.node)))
                job.statements.append((_SHIP_CHANGE, (tenant, tbl, pk, self.node)))
            job.notices.append((CHANNEL, self.node))
            await self.writer.run(job)  # StoreError: left in the outbox, tried again later
            top = rows[-1][0]
            with transaction(self.conn):
                self.conn.execute("DELETE FROM _replica_outbox WHERE seq <= ?", (top,))
            sent += len(rows)
            self.counters["shipped"] += len(rows)

    # -- in ------------------------------------------------------------------------------
    async def pull(self) -> int:
        """Apply the other nodes' changes since the last pull; the count applied."""
        low = max(0, self.last_change - WINDOW)
        async with self.pool.acquire() as pg:
            rows = await pg.fetch(
                "SELECT c.id, c.tbl, c.tenant, c.pk, c.node, r.row FROM shared_changes c"
                " LEFT JOIN shared_rows r ON r.tenant = c.tenant AND r.tbl = c.tbl"
                " AND r.pk = c.pk WHERE c.id > $1 ORDER BY c.id", low)
        changes: list[tuple[str, str, str, str | None]] = []
        top = self.last_change
        for change_id, tbl, tenant, pk, node, row in rows:
            if change_id in self._seen:
                continue
            self._seen.add(change_id)
            top = max(top, change_id)
            if node != self.node:
                changes.append((tbl, tenant, pk, row))
        self.last_change = top
        floor = top - WINDOW
        self._seen = {i for i in self._seen if i > floor}
        if not changes:
            return 0
        touched = self._apply(changes, skip_pending=True)
        self.counters["pulled"] += len(changes)
        if touched and self.on_change is not None:
            self.on_change(touched)
        return len(changes)

    def _apply(self, changes: Iterable[tuple[str, str, str, str | None]], *,
               skip_pending: bool = False) -> dict[str, list[dict[str, Any]]]:
        """Write rows (table, tenant, key, row) into SQLite with the triggers muted; the rows
        written, by table (a deletion is its key alone, with its tenant)."""
        conn = self.conn
        touched: dict[str, list[dict[str, Any]]] = {}
        pending: set[tuple[str, str, str]] = set()
        if skip_pending:
            pending = {(str(t), str(n), str(p)) for t, n, p in
                       conn.execute("SELECT tbl, tenant, pk FROM _replica_outbox").fetchall()}
        with transaction(conn):
            conn.execute("UPDATE _replica_state SET muted = 1")
            try:
                for tbl, tenant, pk, row in changes:
                    table = self.tables.get(tbl)
                    if table is None:
                        continue
                    if (tbl, tenant, pk) in pending:
                        self.counters["skipped_pending"] += 1
                        continue
                    key = json.loads(pk)
                    if row is None:
                        names = (("tenant",) if table.tenant else ()) + table.key
                        args = ([tenant] if table.tenant else []) + list(key)
                        where = " AND ".join(f"{c} = ?" for c in names)
                        conn.execute(f"DELETE FROM {tbl} WHERE {where}", args)
                        touched.setdefault(tbl, []).append(dict(zip(names, args, strict=True)))
                        continue
                    values = json.loads(row) if isinstance(row, str) else dict(row)
                    if table.tenant and "tenant" not in values:  # a row of before tenants
                        values["tenant"] = tenant
                    cols = [c for c in table.columns if c in values]
                    args = [_from_json(values[c]) for c in cols]
                    conn.execute(
                        f"INSERT OR REPLACE INTO {tbl} ({', '.join(cols)}) VALUES "
                        f"({', '.join('?' * len(cols))})", args)
                    touched.setdefault(tbl, []).append(values)
            finally:
                conn.execute("UPDATE _replica_state SET muted = 0")
        return touched

    async def prune(self, older_than_s: float = 3600.0) -> None:
        """Forget changes older than that (every node has read them long ago)."""
        self.writer.submit(Job([(
            "DELETE FROM shared_changes WHERE at < now() - make_interval(secs => $1)",
            (older_than_s,))], what="old changes"))


def _from_json(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"$blob"}:
        return bytes.fromhex(str(value["$blob"]))
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return value
