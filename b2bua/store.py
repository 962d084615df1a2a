"""The shared SQLite database (`data_dir/b2bua.sqlite`) and its tiny migrations mechanism.

Theory of operation
-------------------
One file for the whole server: registrar bindings, provisioning tokens, and later call records,
voicemail and dashboard state. It runs in WAL mode with `synchronous=NORMAL`: a commit is one
append to the write-ahead log (tens of microseconds, no fsync), durable across a process crash;
readers (the `b2bua devices` CLI, the dashboard) never block the writer.

Connections are opened in autocommit mode (`isolation_level=None`): a layer groups statements
with `with transaction(conn): ...` (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error).

Migrations: each layer owns a *component* name and an ordered list of steps (SQL scripts or
callables). `migrate(conn, component, steps)` applies the steps past the version recorded in
`schema_versions`, all in one transaction; steps are append-only (never edit a released one).
Two processes migrating at once are serialized by BEGIN IMMEDIATE, and the version is read again
inside the transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

DB_NAME = "b2bua.sqlite"
BUSY_TIMEOUT_MS = 5000

MigrationStep = str | Callable[[sqlite3.Connection], None]

_BASE_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_versions (
    component TEXT PRIMARY KEY,
    version   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
"""


def database_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / DB_NAME


def open_database(data_dir: str | Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open (creating the directory and file if needed) the shared database.

    `readonly=True` opens an existing file for reading only (FileNotFoundError if missing): what
    a CLI uses next to a running server.
    """
    path = database_path(data_dir)
    if readonly:
        if not path.exists():
            raise FileNotFoundError(path)
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None
        )
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        return conn
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        conn.close()
        raise sqlite3.OperationalError(f"{path}: could not switch to WAL (got {mode})")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.executescript(_BASE_SCHEMA)
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK when the block raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def schema_version(conn: sqlite3.Connection, component: str) -> int:
    row = conn.execute(
        "SELECT version FROM schema_versions WHERE component = ?", (component,)
    ).fetchone()
    return int(row[0]) if row else 0


def migrate(conn: sqlite3.Connection, component: str, steps: Sequence[MigrationStep]) -> int:
    """Bring `component`'s schema to `len(steps)`; returns the version now in the database.

    A database newer than the code (more steps applied than known) is left alone.
    """
    if schema_version(conn, component) >= len(steps):
        return schema_version(conn, component)
    with transaction(conn):
        current = schema_version(conn, component)
        for step in steps[current:]:
            if isinstance(step, str):
                for statement in _statements(step):
                    conn.execute(statement)
            else:
                step(conn)
        if current < len(steps):
            conn.execute(
                "INSERT INTO schema_versions (component, version) VALUES (?, ?) "
                "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                (component, len(steps)),
            )
    return len(steps)


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (executescript would COMMIT our transaction).
    Semicolons inside strings or trigger bodies stay put: a piece ends a statement only when
    SQLite says the text so far is complete."""
    out: list[str] = []
    buf = ""
    for piece in script.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \t\r\n;"):
                out.append(buf.strip())
            buf = ""
    rest = buf[:-1].strip()
    if rest:
        raise ValueError(f"incomplete SQL statement in migration: {rest[:80]!r}")
    return out


def get_or_create_secret(
    conn: sqlite3.Connection, name: str, size: int, random_bytes: Callable[[int], bytes]
) -> bytes:
    """A random secret kept in `meta` (e.g. the nonce key), created on first use."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (name,)).fetchone()
    if row is not None:
        return bytes(row[0])
    with transaction(conn):
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (name, random_bytes(size))
        )
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (name,)).fetchone()
    return bytes(row[0])
