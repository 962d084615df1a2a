"""`b2bua trunks [--json]`: each configured trunk's registration, health and lines.

The running server keeps the status in its database (`b2bua.trunks.store`); this command reads
it. A trunk the server has not reported on lately (no server running, or one started with
another configuration) is shown from the configuration alone: not registered, not up, no line
in use, and `last_error` saying why.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time

from b2bua.store import database_path
from b2bua.trunks.model import TrunkSpec
from b2bua.trunks.service import TrunkStatus
from b2bua.trunks.store import STALE_AFTER, TrunkStatusStore

__all__ = ["cmd_trunks", "trunk_rows"]

NOT_RUNNING = f"no running server has reported on this trunk in the last {STALE_AFTER:.0f} s"


def trunk_rows(specs: list[TrunkSpec], reported: dict[str, TrunkStatus]) -> list[TrunkStatus]:
    """One row per configured trunk, in configuration order."""
    rows = []
    for spec in specs:
        row = reported.get(spec.name)
        if row is None:
            row = TrunkStatus(spec.name, False if spec.register else None, False, spec.lines, 0,
                              NOT_RUNNING)
        rows.append(row)
    return rows


def cmd_trunks(args: argparse.Namespace) -> int:
    from b2bua.cli.common import load

    effective = load(args, "trunks")
    if effective is None:
        return 1
    config = effective.config
    specs = [TrunkSpec.from_config(t) for t in config.trunks]
    reported: dict[str, TrunkStatus] = {}
    path = database_path(config.server.data_dir)
    if path.exists():
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            reported = TrunkStatusStore(conn, readonly=True).load(time.time())
        finally:
            conn.close()
    rows = trunk_rows(specs, reported)
    if getattr(args, "json", False):
        print(json.dumps([r.to_json() for r in rows], indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print("no trunks configured")
        return 0
    for r in rows:
        reg = "-" if r.registered is None else ("registered" if r.registered else "NOT registered")
        lines = f"{r.lines_in_use}/{r.lines or 'unlimited'}"
        state = "up" if r.up else "DOWN"
        error = f"  ({r.last_error})" if r.last_error else ""
        print(f"{r.name}: {state}, {reg}, lines {lines}{error}")
    return 0
