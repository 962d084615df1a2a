"""`b2bua calls --last N`: the latest call records, with the routing decision of each, explained
in `--lang` (default: each callee's language)."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from datetime import datetime
from pathlib import Path

from b2bua.calls.records import CallRecorder
from b2bua.cli.common import Lang, language, load
from b2bua.rules.i18n import describe


def cmd_calls(args: argparse.Namespace) -> int:
    effective = load(args, "calls")
    if effective is None:
        return 1
    config = effective.config
    path = Path(config.server.data_dir) / "b2bua.sqlite"
    if config.store.url:  # several nodes: the records are in PostgreSQL
        from b2bua.pgstore.snapshot import snapshot

        try:
            db = snapshot(config.store.url)
        except OSError as exc:
            print(f"b2bua calls: {exc}", file=sys.stderr)
            return 1
        try:
            records = CallRecorder(db).last(args.last, tenant=effective.tenant)
        finally:
            db.close()
    elif not path.exists():
        records = []
    else:
        db = sqlite3.connect(path)
        try:
            records = CallRecorder(db).last(args.last, tenant=effective.tenant)
        finally:
            db.close()
    def lang_of(callee: str) -> Lang:
        return language(args, config, config.user(callee))

    if args.json:
        rows = [r.to_dict(lang_of(r.callee)) for r in records]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
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
        lang = lang_of(r.callee)
        if r.rule:
            print(f"    rule {r.rule} -> {describe(r.destination, lang)}")
        for line in r.trace_in(lang):
            print(f"    {line}")
    return 0
