"""The workers' journal (b2bua.workers_journal): rows of a previous life, and the dialogs they
give back."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import SimpleNamespace

from b2bua.sip.dialog import Dialog, DialogState
from b2bua.sip.flow import Flow
from b2bua.sip.uri import parse_uri
from b2bua.workers_journal import MWI, STEP, WorkerJournal, dialog_of, subscription_entry


def db(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path / "j.sqlite", isolation_level=None)


def subscription(call_id: str, cseq: int = 5) -> SimpleNamespace:
    dialog = Dialog(call_id, "h1tag", "their", "<sip:1002@pbx.test>", "<sip:1002@pbx.test>",
                    parse_uri("sip:1002@192.0.2.7:5062;transport=tcp"), ["<sip:edge;lr>"],
                    cseq, 1, DialogState.CONFIRMED)
    return SimpleNamespace(extension="1002", dialog=dialog, expires_at=2000.0,
                           flow=Flow("tcp", "192.0.2.7", 40001, 9, "127.0.0.1", 5060))


def test_a_subscription_comes_back_whole_its_cseq_above_the_last(tmp_path: Path) -> None:
    sub = subscription("a")
    dialog, flow = dialog_of(subscription_entry(sub))
    assert flow == sub.flow  # the connection id too: the first worker still holds it
    assert (dialog.call_id, dialog.local_tag, dialog.remote_tag) == ("a", "h1tag", "their")
    assert str(dialog.remote_target) == str(sub.dialog.remote_target)
    assert dialog.route_set == ["<sip:edge;lr>"]
    assert dialog.local_cseq == 5 + STEP


def test_a_worker_takes_only_the_rows_of_its_previous_life(tmp_path: Path) -> None:
    clock = [100.0]
    before = WorkerJournal(db(tmp_path), 1, 2, now=lambda: clock[0])
    before.subscription(subscription("old"), True)
    before.subscription(subscription("gone"), True)
    before.subscription(subscription("gone"), False)
    other = WorkerJournal(db(tmp_path), 0, 2, now=lambda: clock[0])
    other.subscription(subscription("first's"), True)
    clock[0] = 200.0
    again = WorkerJournal(db(tmp_path), 1, 2, now=lambda: clock[0])
    again.subscription(subscription("new"), True)  # this life's: not taken
    taken = again.take_previous()
    assert [(kind, key) for kind, key, _ in taken] == [(MWI, "old h1tag")]
    assert again.take_previous() == []  # taken once
    left = db(tmp_path).execute("SELECT worker, key FROM worker_journal ORDER BY key").fetchall()
    assert left == [(0, "first's h1tag"), (1, "new h1tag")]


def test_the_first_worker_also_takes_the_rows_of_workers_no_longer_run(tmp_path: Path) -> None:
    clock = [100.0]
    WorkerJournal(db(tmp_path), 2, 3, now=lambda: clock[0]).subscription(subscription("w2"), True)
    clock[0] = 200.0
    assert WorkerJournal(db(tmp_path), 1, 2, now=lambda: clock[0]).take_previous() == []
    taken = WorkerJournal(db(tmp_path), 0, 2, now=lambda: clock[0]).take_previous()
    assert [key for _, key, _ in taken] == ["w2 h1tag"]


def test_changes_wait_for_one_commit(tmp_path: Path) -> None:
    later: list[object] = []
    journal = WorkerJournal(db(tmp_path), 0, 1)
    journal.schedule = lambda delay, what: later.append(what)
    journal.subscription(subscription("x"), True)
    journal.subscription(subscription("y"), True)
    journal.subscription(subscription("x"), False)  # made and ended before the commit
    assert len(later) == 1
    assert db(tmp_path).execute("SELECT count(*) FROM worker_journal").fetchone() == (0,)
    journal.flush()
    assert db(tmp_path).execute("SELECT key FROM worker_journal").fetchall() == [("y h1tag",)]
    assert journal.counters["journal_writes"] == 1
