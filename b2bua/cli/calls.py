"""`b2bua calls --last N`: the latest call records, with the routing decision of each."""

from __future__ import annotations

import argparse
import json
import sqlite3
from datetime import datetime
from pathlib import Path

from b2bua.calls.records import CallRecorder
from b2bua.cli.common import load


def cmd_calls(args: argparse.Namespace) -> int:
    effective = load(args, "calls")
    if effective is None:
        return 1
    config = effective.config
    path = Path(config.server.data_dir) / "b2bua.sqlite"
    if not path.exists():
        records = []
    else:
        db = sqlite3.connect(path)
        try:
            records = CallRecorder(db).last(args.last)
        finally:
            db.close()
    if args.json:
        print(json.dumps([r.to_dict() for r in records], indent=2, ensure_ascii=False))
        return 0
    if not records:
        print("no calls yet")
        return 0
    for r in records:
        start = datetime.fromtimestamp(r.started).strftime("%Y-%m-%d %H:%M:%S")
        length = f"{r.ended - r.answered:.0f}s" if r.answered else "-"
        who = f" by {r.answered_by}" if r.answered_by else ""
        did = f" (DID {r.did})" if r.did else ""
        print(f"{start}  {r.caller or 'anonymous'} -> {r.callee}{did}: {r.outcome}{who}, {length}")
        if r.rule:
            dest = r.destination.get("kind") if r.destination else "?"
            print(f"    rule {r.rule} -> {dest}")
        for line in r.trace:
            print(f"    {line}")
    return 0
