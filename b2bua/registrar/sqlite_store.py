"""The embedded LocationStore: bindings and device claims in the shared SQLite database.

Every `apply()` is one transaction, committed before it returns (WAL, synchronous=NORMAL), so
a REGISTER answered 200 survives a crash of the process. `load_all()` reads every row in one
query and builds slotted `Binding`s with shared strings: 100,000 bindings load in well under
a second.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Iterable, Sequence

from b2bua.push.model import PushTarget
from b2bua.registrar.model import Binding, DeviceClaim, StoreError
from b2bua.sip.flow import Flow
from b2bua.store import migrate, transaction
from b2bua.tenants.names import scoped, split

COMPONENT = "registrar"

MIGRATIONS: list[str] = [
    """
    CREATE TABLE registrar_bindings (
        aor               TEXT NOT NULL,
        key               TEXT NOT NULL,
        username          TEXT NOT NULL,
        contact           TEXT NOT NULL,
        instance          TEXT,
        reg_id            INTEGER,
        transport         TEXT NOT NULL,
        source_host       TEXT NOT NULL,
        source_port       INTEGER NOT NULL,
        connection_id     INTEGER,
        local_host        TEXT,
        local_port        INTEGER,
        user_agent        TEXT,
        expires_at        REAL NOT NULL,
        call_id           TEXT NOT NULL,
        cseq              INTEGER NOT NULL,
        q                 REAL,
        path              TEXT,
        device            INTEGER,
        outbound          INTEGER NOT NULL,
        reachable         INTEGER NOT NULL,
        last_seen         REAL NOT NULL,
        registered_at     REAL NOT NULL,
        unreachable_since REAL,
        PRIMARY KEY (aor, key)
    ) WITHOUT ROWID;
    CREATE INDEX registrar_bindings_expires ON registrar_bindings (expires_at);
    CREATE TABLE registrar_device_claims (
        extension  TEXT NOT NULL,
        device     INTEGER NOT NULL,
        identity   TEXT NOT NULL,
        claimed_at REAL NOT NULL,
        PRIMARY KEY (extension, device)
    );
    CREATE TABLE provisioning_tokens (
        token_hash TEXT PRIMARY KEY,
        extension  TEXT NOT NULL,
        device     INTEGER NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        used_at    REAL
    );
    """,
    # RFC 8599 push parameters of a binding, and the last push sent to it.
    """
    ALTER TABLE registrar_bindings ADD COLUMN pn_provider TEXT;
    ALTER TABLE registrar_bindings ADD COLUMN pn_prid TEXT;
    ALTER TABLE registrar_bindings ADD COLUMN pn_param TEXT;
    ALTER TABLE registrar_bindings ADD COLUMN last_push_at REAL;
    ALTER TABLE registrar_bindings ADD COLUMN last_push_result TEXT;
    """,
    # Tenants (docs/tenants.md): the company a row belongs to joins the keys; '' is the
    # top-level company, so every row stored before keeps its meaning.
    """
    CREATE TABLE registrar_bindings_t (
        tenant            TEXT NOT NULL DEFAULT '',
        aor               TEXT NOT NULL,
        key               TEXT NOT NULL,
        username          TEXT NOT NULL,
        contact           TEXT NOT NULL,
        instance          TEXT,
        reg_id            INTEGER,
        transport         TEXT NOT NULL,
        source_host       TEXT NOT NULL,
        source_port       INTEGER NOT NULL,
        connection_id     INTEGER,
        local_host        TEXT,
        local_port        INTEGER,
        user_agent        TEXT,
        expires_at        REAL NOT NULL,
        call_id           TEXT NOT NULL,
        cseq              INTEGER NOT NULL,
        q                 REAL,
        path              TEXT,
        device            INTEGER,
        outbound          INTEGER NOT NULL,
        reachable         INTEGER NOT NULL,
        last_seen         REAL NOT NULL,
        registered_at     REAL NOT NULL,
        unreachable_since REAL,
        pn_provider       TEXT,
        pn_prid           TEXT,
        pn_param          TEXT,
        last_push_at      REAL,
        last_push_result  TEXT,
        PRIMARY KEY (tenant, aor, key)
    ) WITHOUT ROWID;
    INSERT INTO registrar_bindings_t (tenant, aor, key, username, contact, instance, reg_id,
        transport, source_host, source_port, connection_id, local_host, local_port, user_agent,
        expires_at, call_id, cseq, q, path, device, outbound, reachable, last_seen,
        registered_at, unreachable_since, pn_provider, pn_prid, pn_param, last_push_at,
        last_push_result)
    SELECT '', aor, key, username, contact, instance, reg_id, transport, source_host,
        source_port, connection_id, local_host, local_port, user_agent, expires_at, call_id,
        cseq, q, path, device, outbound, reachable, last_seen, registered_at, unreachable_since,
        pn_provider, pn_prid, pn_param, last_push_at, last_push_result
    FROM registrar_bindings;
    DROP TABLE registrar_bindings;
    ALTER TABLE registrar_bindings_t RENAME TO registrar_bindings;
    CREATE INDEX registrar_bindings_expires ON registrar_bindings (expires_at);
    CREATE TABLE registrar_device_claims_t (
        tenant     TEXT NOT NULL DEFAULT '',
        extension  TEXT NOT NULL,
        device     INTEGER NOT NULL,
        identity   TEXT NOT NULL,
        claimed_at REAL NOT NULL,
        PRIMARY KEY (tenant, extension, device)
    );
    INSERT INTO registrar_device_claims_t (tenant, extension, device, identity, claimed_at)
    SELECT '', extension, device, identity, claimed_at FROM registrar_device_claims;
    DROP TABLE registrar_device_claims;
    ALTER TABLE registrar_device_claims_t RENAME TO registrar_device_claims;
    ALTER TABLE provisioning_tokens ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
    """,
]

_COLUMNS = (
    "tenant, aor, key, username, contact, instance, reg_id, transport, source_host, source_port, "
    "connection_id, local_host, local_port, user_agent, expires_at, call_id, cseq, q, path, "
    "device, outbound, reachable, last_seen, registered_at, unreachable_since, "
    "pn_provider, pn_prid, pn_param, last_push_at, last_push_result"
)
_UPSERT = f"INSERT OR REPLACE INTO registrar_bindings ({_COLUMNS}) VALUES ({', '.join('?' * 30)})"


def ensure_schema(conn: sqlite3.Connection) -> None:
    migrate(conn, COMPONENT, MIGRATIONS)


def _row(b: Binding) -> tuple[object, ...]:
    f = b.flow
    tenant, aor = split(b.aor)
    return (
        tenant, aor, b.key, split(b.username)[1], b.contact, b.instance, b.reg_id, f.transport, f.host, f.port,
        f.connection_id, f.local_host, f.local_port, b.user_agent, b.expires_at, b.call_id,
        b.cseq, b.q, json.dumps(list(b.path)) if b.path else None, b.device, int(b.outbound),
        int(b.reachable), b.last_seen, b.registered_at, b.unreachable_since,
        p.provider if (p := b.push) else None, p.prid if p else None, p.param if p else None,
        b.last_push_at, b.last_push_result,
    )


class SqliteLocationStore:
    """LocationStore over a connection from `b2bua.store.open_database`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        ensure_schema(conn)

    def load_all(self) -> Iterable[Binding]:
        return self._load(f"SELECT {_COLUMNS} FROM registrar_bindings", ())

    def load_aor(self, aor: str) -> Iterable[Binding]:
        tenant, bare = split(aor)
        return self._load(f"SELECT {_COLUMNS} FROM registrar_bindings WHERE tenant = ? AND"
                          " aor = ?", (tenant, bare))

    def _load(self, query: str, params: tuple[object, ...]) -> list[Binding]:
        try:
            rows = self.conn.execute(query, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc
        intern = sys.intern
        loads = json.loads
        out: list[Binding] = []
        append = out.append
        # Positional construction (field order of Binding): the hot loop of a restart.
        for (
            tenant, aor, key, username, contact, instance, reg_id, transport, host, port, cid,
            local_host, local_port, user_agent, expires_at, call_id, cseq, q, path, device,
            outbound, reachable, last_seen, registered_at, unreachable_since,
            pn_provider, pn_prid, pn_param, last_push_at, last_push_result,
        ) in rows:
            flow = Flow(
                intern(transport), host, port, cid,
                intern(local_host) if local_host is not None else None, local_port,
            )
            if tenant:  # a tenant's names are scoped in memory (b2bua.tenants.names)
                aor, username = f"{aor}@{tenant}", f"{username}@{tenant}"
            append(
                Binding(
                    intern(aor), intern(username), key, contact, flow, expires_at, call_id,
                    cseq, instance, reg_id,
                    intern(user_agent) if user_agent is not None else None,
                    q, tuple(loads(path)) if path else (), device, bool(outbound),
                    bool(reachable), last_seen, registered_at, unreachable_since,
                    push=PushTarget(intern(pn_provider), pn_prid, pn_param or "")
                    if pn_provider is not None and pn_prid else None,
                    last_push_at=last_push_at,
                    last_push_result=last_push_result,
                )
            )
        return out

    def upsert(self, binding: Binding) -> None:
        self.apply([binding], [])

    def delete(self, aor: str, key: str) -> None:
        self.apply([], [(aor, key)])

    def purge_expired(self, now: float) -> int:
        try:
            with transaction(self.conn):
                cur = self.conn.execute(
                    "DELETE FROM registrar_bindings WHERE expires_at <= ?", (now,)
                )
            return cur.rowcount
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc

    def apply(
        self,
        upserts: Sequence[Binding],
        deletes: Sequence[tuple[str, str]],
        claims: Sequence[DeviceClaim] = (),
    ) -> None:
        if not upserts and not deletes and not claims:
            return
        try:
            with transaction(self.conn):
                if deletes:
                    self.conn.executemany(
                        "DELETE FROM registrar_bindings WHERE tenant = ? AND aor = ? AND key = ?",
                        [(*split(aor), key) for aor, key in deletes]
                    )
                if upserts:
                    self.conn.executemany(_UPSERT, [_row(b) for b in upserts])
                if claims:
                    self.conn.executemany(
                        "INSERT OR REPLACE INTO registrar_device_claims "
                        "(tenant, extension, device, identity, claimed_at) VALUES (?, ?, ?, ?, ?)",
                        [(*split(c.extension), c.device, c.identity, c.claimed_at)
                         for c in claims],
                    )
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc

    def housekeep(self, updated: Sequence[Binding], removed: Sequence[Binding]) -> None:
        """Each change applies only to the row as this process knew it (same Call-ID and
        CSeq): a worker that expires or marks a binding unreachable leaves alone a binding that
        another worker registered again meanwhile."""
        if not updated and not removed:
            return
        try:
            with transaction(self.conn):
                if removed:
                    self.conn.executemany(
                        "DELETE FROM registrar_bindings WHERE tenant = ? AND aor = ? AND key = ?"
                        " AND call_id = ? AND cseq = ?",
                        [(*split(b.aor), b.key, b.call_id, b.cseq) for b in removed])
                if updated:
                    self.conn.executemany(
                        "UPDATE registrar_bindings SET reachable = ?, unreachable_since = ?,"
                        " last_seen = ?, pn_provider = ?, pn_prid = ?, pn_param = ?,"
                        " last_push_at = ?, last_push_result = ? WHERE tenant = ? AND aor = ?"
                        " AND key = ? AND call_id = ? AND cseq = ?",
                        [(int(b.reachable), b.unreachable_since, b.last_seen,
                          p.provider if (p := b.push) else None, p.prid if p else None,
                          p.param if p else None, b.last_push_at, b.last_push_result,
                          *split(b.aor), b.key, b.call_id, b.cseq) for b in updated])
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc

    def load_claims(self) -> Iterable[DeviceClaim]:
        try:
            rows = self.conn.execute(
                "SELECT tenant, extension, device, identity, claimed_at"
                " FROM registrar_device_claims"
            ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc
        return [DeviceClaim(scoped(e, tenant), d, i, t) for tenant, e, d, i, t in rows]


def read_bindings(conn: sqlite3.Connection) -> list[Binding]:
    """Every stored binding, through a (possibly read-only) connection: for the CLI."""
    try:
        conn.execute("SELECT 1 FROM registrar_bindings LIMIT 1")
    except sqlite3.OperationalError:
        return []  # no registrar schema yet: nothing ever registered
    store = SqliteLocationStore.__new__(SqliteLocationStore)
    store.conn = conn
    return list(store.load_all())
