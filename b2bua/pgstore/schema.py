"""The PostgreSQL schema and its versioned migrations.

Each step is applied once, in order, inside one transaction that also records the new version
in `b2bua_schema`; steps are append-only (a released step is never edited, a change is a new
step). Nodes starting together are serialized by a transaction-level advisory lock, and the
version is read again under it.

Tables (docs/cluster.md):

- `registrar_bindings`, `registrar_device_claims`: the location service's rows (the same
  columns as in SQLite, plus `node`, the node that wrote the row: a flow's connection and local
  socket mean something only there);
- `cluster_meta`: secrets every node must share (the digest nonce key);
- `shared_rows`, `shared_changes`: the tables every node keeps a local SQLite copy of
  (settings, dashboard accounts and sessions, voicemail index, announcements, call records,
  provisioning tokens), one row per stored row, and the ordered log of changes each node
  reads after a notice (b2bua.pgstore.replica);
- `cluster_nodes`: each node's name, number (which makes its row ids unique), addresses;
- `cluster_dialogs`: each node's answered calls, so that a survivor can end them when the
  node dies (b2bua.pgstore.journal).

Step 2, tenants (docs/tenants.md): a `tenant` column (default '', the top-level company, so
every row stored before keeps its meaning) joins the keys of `registrar_bindings` (tenant, aor,
key), `registrar_device_claims` (tenant, extension, device) and `shared_rows` (tenant, tbl, pk),
and is added to `shared_changes` and `cluster_dialogs` (whose rows stay keyed by node and call).
"""

from __future__ import annotations

from typing import Any

COMPONENT = "b2bua"
LOCK_KEY = 0x62326275  # "b2bu": the advisory lock that serializes migrations

MIGRATIONS: list[str] = [
    """
    CREATE TABLE registrar_bindings (
        aor               text NOT NULL,
        key               text NOT NULL,
        username          text NOT NULL,
        contact           text NOT NULL,
        instance          text,
        reg_id            integer,
        transport         text NOT NULL,
        source_host       text NOT NULL,
        source_port       integer NOT NULL,
        connection_id     bigint,
        local_host        text,
        local_port        integer,
        user_agent        text,
        expires_at        double precision NOT NULL,
        call_id           text NOT NULL,
        cseq              bigint NOT NULL,
        q                 real,
        path              text[],
        device            integer,
        outbound          boolean NOT NULL,
        reachable         boolean NOT NULL,
        last_seen         double precision NOT NULL,
        registered_at     double precision NOT NULL,
        unreachable_since double precision,
        pn_provider       text,
        pn_prid           text,
        pn_param          text,
        last_push_at      double precision,
        last_push_result  text,
        node              text NOT NULL,
        PRIMARY KEY (aor, key)
    );
    CREATE INDEX registrar_bindings_expires ON registrar_bindings (expires_at);
    CREATE TABLE registrar_device_claims (
        extension  text NOT NULL,
        device     integer NOT NULL,
        identity   text NOT NULL,
        claimed_at double precision NOT NULL,
        PRIMARY KEY (extension, device)
    );
    CREATE TABLE cluster_meta (
        key   text PRIMARY KEY,
        value bytea NOT NULL
    );
    CREATE TABLE cluster_nodes (
        name       text PRIMARY KEY,
        number     integer NOT NULL UNIQUE,
        sip        text,
        http       text,
        started_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE shared_rows (
        tbl     text NOT NULL,
        pk      text NOT NULL,
        row     jsonb NOT NULL,
        node    text NOT NULL,
        PRIMARY KEY (tbl, pk)
    );
    CREATE TABLE shared_changes (
        id   bigserial PRIMARY KEY,
        tbl  text NOT NULL,
        pk   text NOT NULL,
        node text NOT NULL,
        at   timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE cluster_dialogs (
        node     text NOT NULL,
        call_key text NOT NULL,
        dialog   jsonb NOT NULL,
        at       double precision NOT NULL,
        PRIMARY KEY (node, call_key)
    );
    """,
    """
    ALTER TABLE registrar_bindings ADD COLUMN tenant text NOT NULL DEFAULT '';
    ALTER TABLE registrar_bindings DROP CONSTRAINT registrar_bindings_pkey;
    ALTER TABLE registrar_bindings ADD PRIMARY KEY (tenant, aor, key);
    ALTER TABLE registrar_device_claims ADD COLUMN tenant text NOT NULL DEFAULT '';
    ALTER TABLE registrar_device_claims DROP CONSTRAINT registrar_device_claims_pkey;
    ALTER TABLE registrar_device_claims ADD PRIMARY KEY (tenant, extension, device);
    ALTER TABLE shared_rows ADD COLUMN tenant text NOT NULL DEFAULT '';
    ALTER TABLE shared_rows DROP CONSTRAINT shared_rows_pkey;
    ALTER TABLE shared_rows ADD PRIMARY KEY (tenant, tbl, pk);
    ALTER TABLE shared_changes ADD COLUMN tenant text NOT NULL DEFAULT '';
    ALTER TABLE cluster_dialogs ADD COLUMN tenant text NOT NULL DEFAULT '';
    """,
]


async def migrate(conn: Any, steps: list[str] | None = None) -> int:
    """Bring the database to the last step (asyncpg connection); the version now in force. A
    database newer than this code (more steps applied) is left alone."""
    steps = MIGRATIONS if steps is None else steps
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS b2bua_schema ("
            " component text PRIMARY KEY, version integer NOT NULL)"
        )
        current = await conn.fetchval(
            "SELECT version FROM b2bua_schema WHERE component = $1", COMPONENT
        ) or 0
        if current >= len(steps):
            return int(current)
        for step in steps[current:]:
            await conn.execute(step)
        await conn.execute(
            "INSERT INTO b2bua_schema (component, version) VALUES ($1, $2)"
            " ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version",
            COMPONENT, len(steps),
        )
    return len(steps)
