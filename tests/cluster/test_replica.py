"""The node's SQLite copy of the shared tables against a real PostgreSQL: what one node writes
through its own modules (settings store, voicemail index, call records) reaches the other; ids
never collide; a row changed locally and not yet shipped is not overwritten."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from b2bua.calls.records import CallRecord, CallRecorder
from b2bua.pgstore.db import SharedDatabase
from b2bua.pgstore.replica import Replica
from b2bua.settings import add_voicemail, list_voicemail
from b2bua.store import open_database, transaction


class Node:
    def __init__(self, db: SharedDatabase, replica: Replica) -> None:
        self.db = db
        self.replica = replica
        self.conn = replica.conn
        self.changes: list[dict[str, list[dict[str, Any]]]] = []
        replica.on_change = self.changes.append


@pytest.fixture
async def nodes(pg_url: str, tmp_path: Path) -> AsyncIterator[list[Node]]:
    made: list[Node] = []
    try:
        for name in ("a", "b"):
            made.append(await start(pg_url, tmp_path / name, name))
        yield made
    finally:
        for node in made:
            await node.db.close()


async def start(url: str, directory: Path, name: str) -> Node:
    db = await SharedDatabase.open(url)
    number = await db.join(name)
    replica = Replica(open_database(directory), db.pool, db.writer, name, number)
    replica.install()
    await replica.load()
    return Node(db, replica)


async def test_settings_rows_reach_the_other_node(nodes: list[Node]) -> None:
    a, b = nodes
    with transaction(a.conn):
        a.conn.execute(
            "INSERT INTO user_settings (extension, json, updated_at) VALUES (?, ?, ?)",
            ("1001", json.dumps({"ring_timeout": 7}), 1.0))
        a.conn.execute("INSERT INTO meta (key, value) VALUES ('settings_revision', 1) "
                       "ON CONFLICT (key) DO UPDATE SET value = value + 1")
    assert await a.replica.ship() == 2
    assert await b.replica.pull() == 2
    row = b.conn.execute("SELECT json FROM user_settings WHERE extension = '1001'").fetchone()
    assert json.loads(row[0]) == {"ring_timeout": 7}
    assert b.conn.execute("SELECT value FROM meta WHERE key = 'settings_revision'"
                          ).fetchone()[0] == 1
    assert set(b.changes[-1]) == {"user_settings", "meta"}
    # B's own apply is not sent back out.
    assert not b.replica.pending()
    # A deletion travels too.
    with transaction(a.conn):
        a.conn.execute("DELETE FROM user_settings WHERE extension = '1001'")
    await a.replica.ship()
    await b.replica.pull()
    assert b.conn.execute("SELECT count(*) FROM user_settings").fetchone()[0] == 0


async def test_ids_made_on_two_nodes_never_collide(nodes: list[Node]) -> None:
    a, b = nodes
    for i in range(3):
        add_voicemail(a.conn, "1001", f"06000000{i}", 100.0 + i, 5.0, f"a{i}.wav")
        add_voicemail(b.conn, "1001", f"07000000{i}", 200.0 + i, 5.0, f"b{i}.wav")
    await a.replica.ship()
    await b.replica.ship()
    await a.replica.pull()
    await b.replica.pull()
    on_a = list_voicemail(a.conn, "1001")
    on_b = list_voicemail(b.conn, "1001")
    assert len(on_a) == 6 and [v.id for v in on_a] == [v.id for v in on_b]
    assert len({v.id for v in on_a}) == 6
    assert {v.id % 1024 for v in on_a if v.path.startswith("a")} == {a.replica.number}
    assert {v.id % 1024 for v in on_a if v.path.startswith("b")} == {b.replica.number}
    # B marks one of A's messages read: A sees it.
    target = next(v for v in on_b if v.path == "a1.wav")
    with transaction(b.conn):
        b.conn.execute("UPDATE voicemail SET read = 1 WHERE id = ?", (target.id,))
    await b.replica.ship()
    await a.replica.pull()
    assert next(v for v in list_voicemail(a.conn, "1001") if v.id == target.id).read


async def test_call_records_of_both_nodes_in_time_order(nodes: list[Node]) -> None:
    a, b = nodes
    rec_a, rec_b = CallRecorder(a.conn), CallRecorder(b.conn)

    def record(call_id: str) -> CallRecord:
        return CallRecord(call_id, "0600000001", "1001", None, 1.0, 2.0, 3.0, "answered",
                          "Bureau", None, None, ["ring"])

    # Ids are time-ordered to the millisecond (within one, by node number).
    rec_a.write(record("first"))
    time.sleep(0.002)
    rec_b.write(record("second"))
    time.sleep(0.002)
    rec_a.write(record("third"))
    await a.replica.ship()
    await b.replica.ship()
    await a.replica.pull()
    await b.replica.pull()
    assert [r.call_id for r in rec_a.last(10)] == ["third", "second", "first"]
    assert [r.call_id for r in rec_b.last(10)] == ["third", "second", "first"]


async def test_a_row_not_yet_shipped_is_not_overwritten(nodes: list[Node]) -> None:
    a, b = nodes
    with transaction(a.conn):
        a.conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'from a')")
    await a.replica.ship()
    with transaction(b.conn):
        b.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('k', 'from b')")
    await b.replica.pull()  # A's older write must not replace B's pending one
    assert b.conn.execute("SELECT value FROM meta WHERE key = 'k'").fetchone()[0] == "from b"
    await b.replica.ship()
    await a.replica.pull()
    assert a.conn.execute("SELECT value FROM meta WHERE key = 'k'").fetchone()[0] == "from b"


async def test_a_new_node_starts_with_everything(nodes: list[Node], pg_url: str,
                                                 tmp_path: Path) -> None:
    a, _ = nodes
    with transaction(a.conn):
        a.conn.execute("INSERT INTO meta (key, value) VALUES ('secret', ?)", (b"\x00\xffkey",))
        a.conn.execute(
            "INSERT INTO dashboard_accounts (login, role, password_hash, changed_at)"
            " VALUES ('admin', 'admin', 'h', 1.0)")
    add_voicemail(a.conn, "1002", "0600", 5.0, 2.0, "m.wav")
    await a.replica.ship()
    c = await start(pg_url, tmp_path / "c", "c")
    try:
        assert c.replica.number == 3
        assert c.conn.execute("SELECT value FROM meta WHERE key = 'secret'"
                              ).fetchone()[0] == b"\x00\xffkey"
        assert c.conn.execute("SELECT login FROM dashboard_accounts").fetchall() == [("admin",)]
        (vm,) = list_voicemail(c.conn, "1002")
        # Its own next id is still its own and after A's.
        add_voicemail(c.conn, "1002", "0700", 6.0, 2.0, "n.wav")
        mine = next(v for v in list_voicemail(c.conn, "1002") if v.path == "n.wav")
        assert mine.id % 1024 == 3 and mine.id != vm.id
    finally:
        await c.db.close()


async def test_two_processes_cannot_be_the_same_node(nodes: list[Node]) -> None:
    from b2bua.pgstore.journal import DialogJournal

    a, _ = nodes
    first, second = await a.db.connect(), await a.db.connect()
    try:
        journal = DialogJournal(a.db.writer, "a", a.replica.number)
        await journal.lock_self(first)
        with pytest.raises(OSError, match="node a is already running"):
            await journal.lock_self(second, wait=0.6)
        await first.close()  # the first one dies: its lock goes with its connection
        await journal.lock_self(second, wait=5.0)
    finally:
        for conn in (first, second):
            if not conn.is_closed():
                await conn.close()
