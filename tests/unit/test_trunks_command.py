"""`b2bua trunks`: the rows a running server stored, and the configuration alone otherwise."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytest

from b2bua.store import open_database
from b2bua.trunks.commands import NOT_RUNNING, cmd_trunks
from b2bua.trunks.service import TrunkStatus
from b2bua.trunks.store import HEARTBEAT, STALE_AFTER, TrunkStatusStore

CONFIG = """\
[server]
domain = "pbx.test"
data_dir = "var"

[[trunks]]
name = "carrier"
address = "127.0.0.1:5080"
username = "u"
password = "p"
register = true
lines = 2

[[trunks]]
name = "gateway"
address = "127.0.0.1:5081"
"""


def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *, as_json: bool = True) -> object:
    config = tmp_path / "pbx.toml"
    config.write_text(CONFIG)
    assert cmd_trunks(argparse.Namespace(config=str(config), json=as_json)) == 0
    out = capsys.readouterr().out
    return json.loads(out) if as_json else out


def test_without_a_server_the_configuration_is_shown(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, capsys) == [
        {"name": "carrier", "registered": False, "up": False, "lines": 2, "lines_in_use": 0,
         "last_error": NOT_RUNNING},
        {"name": "gateway", "registered": None, "up": False, "lines": 0, "lines_in_use": 0,
         "last_error": NOT_RUNNING},
    ]


def test_rows_of_the_running_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conn = open_database(tmp_path / "var")
    store = TrunkStatusStore(conn)
    now = time.time()
    rows = [TrunkStatus("carrier", True, True, 2, 1, None),
            TrunkStatus("gateway", None, False, 0, 0, "OPTIONS: timeout")]
    assert store.save(rows, now)
    assert not store.save(rows, now + 1)  # nothing changed: no write before the heartbeat
    assert store.save(rows, now + HEARTBEAT)
    out = run(tmp_path, capsys)
    assert out == [r.to_json() for r in rows]
    text = run(tmp_path, capsys, as_json=False)
    assert text == ("carrier: up, registered, lines 1/2\n"
                    "gateway: DOWN, -, lines 0/unlimited  (OPTIONS: timeout)\n")
    # Rows nobody refreshed for a while say nothing about now.
    assert TrunkStatusStore(conn).load(now + HEARTBEAT + STALE_AFTER + 1) == {}
    conn.close()
