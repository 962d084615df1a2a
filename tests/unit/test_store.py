"""The shared SQLite database: WAL, migrations, transactions, secrets, read-only access."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from b2bua.store import (
    DB_NAME,
    database_path,
    get_or_create_secret,
    migrate,
    open_database,
    schema_version,
    transaction,
)


def test_open_creates_a_wal_database(tmp_path: Path) -> None:
    data = tmp_path / "var" / "deep"
    conn = open_database(data)
    assert database_path(data) == data / DB_NAME
    assert (data / DB_NAME).exists()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.isolation_level is None


def test_migrations_apply_in_order_once(tmp_path: Path) -> None:
    conn = open_database(tmp_path)
    calls: list[int] = []

    def step3(c: sqlite3.Connection) -> None:
        calls.append(3)
        c.execute("INSERT INTO t (v) VALUES ('from python')")

    steps: list[str | object] = [
        "CREATE TABLE t (v TEXT); INSERT INTO t (v) VALUES ('a;b')",
        "ALTER TABLE t ADD COLUMN w INTEGER; CREATE INDEX t_v ON t (v);",
    ]
    assert migrate(conn, "demo", steps[:1]) == 1  # type: ignore[arg-type]
    assert migrate(conn, "demo", [*steps, step3]) == 3  # type: ignore[list-item]
    assert migrate(conn, "demo", [*steps, step3]) == 3  # type: ignore[list-item]
    assert calls == [3]
    assert schema_version(conn, "demo") == 3
    assert schema_version(conn, "other") == 0
    assert conn.execute("SELECT v, w FROM t").fetchall() == [("a;b", None), ("from python", None)]


def test_failed_migration_rolls_back(tmp_path: Path) -> None:
    conn = open_database(tmp_path)
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, "demo", ["CREATE TABLE a (x);", "CREATE TABLE a (x);"])
    assert schema_version(conn, "demo") == 0
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'a'").fetchall() == []


def test_newer_database_is_left_alone(tmp_path: Path) -> None:
    conn = open_database(tmp_path)
    migrate(conn, "demo", ["CREATE TABLE a (x);", "CREATE TABLE b (x);"])
    assert migrate(conn, "demo", ["CREATE TABLE a (x);"]) == 2


def test_transaction_commits_or_rolls_back(tmp_path: Path) -> None:
    conn = open_database(tmp_path)
    conn.execute("CREATE TABLE t (v INTEGER)")
    with transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(RuntimeError), transaction(conn):
        conn.execute("INSERT INTO t VALUES (2)")
        raise RuntimeError("boom")
    assert conn.execute("SELECT v FROM t").fetchall() == [(1,)]


def test_secret_is_created_once(tmp_path: Path) -> None:
    conn = open_database(tmp_path)
    first = get_or_create_secret(conn, "k", 32, lambda n: b"\x07" * n)
    again = get_or_create_secret(open_database(tmp_path), "k", 32, lambda n: b"\x08" * n)
    assert first == again == b"\x07" * 32


def test_readonly_reader_next_to_a_writer(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_database(tmp_path, readonly=True)
    writer = open_database(tmp_path)
    writer.execute("CREATE TABLE t (v INTEGER)")
    writer.execute("INSERT INTO t VALUES (1)")
    reader = open_database(tmp_path, readonly=True)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (2)")
    assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 1  # not blocked by WAL
    writer.execute("COMMIT")
    assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 2
    with pytest.raises(sqlite3.OperationalError):
        reader.execute("INSERT INTO t VALUES (3)")
