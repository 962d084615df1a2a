"""`b2bua export` and `b2bua import`: the whole installation as TOML, and back; with `--out`,
its sounds (uploaded music and announcements, users' own messages and greetings) in a folder
beside the file (b2bua.cli.bundle)."""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import time
from pathlib import Path

from b2bua.cli.common import load
from b2bua.config import ConfigError, load_config
from b2bua.settings import (
    SettingsRejected,
    config_to_raw,
    import_rows,
    merge_raw,
    open_store,
    raw_to_toml,
)

__all__ = ["cmd_export", "cmd_import"]


def cmd_export(args: argparse.Namespace) -> int:
    """Print (or write) the whole effective configuration: the TOML plus the stored settings;
    with `--out`, the sounds too (FILE.audio/ beside FILE)."""
    from b2bua.cli.bundle import audio_folder, write_export

    loaded = load(args, "export")
    if loaded is None:
        return 1
    config, effective = loaded.base, loaded.config
    if not args.out:
        header = (
            f"Effective configuration exported from {args.config} and the settings stored in\n"
            f"{Path(config.server.data_dir)} (dashboard changes, uploads); paths are absolute.\n"
            "Voicemail greetings are exported with --out FILE.toml only."
        )
        sys.stdout.write(raw_to_toml(config_to_raw(effective), header))
        return 0
    out = Path(args.out)
    folder = audio_folder(out)
    header = (
        f"Effective configuration exported from {args.config} and the settings stored in\n"
        f"{Path(config.server.data_dir)} (dashboard changes, uploads). Its sounds are in\n"
        f"{folder.name}/ beside this file (keep them together): `b2bua import {out.name}`."
    )
    try:
        store = open_store(config, readonly=True)
    except OSError as exc:
        print(f"b2bua export: {exc}", file=sys.stderr)
        return 1
    try:
        notes = write_export(effective, store.conn if store is not None else None, out, header,
                             loaded.tenant)
    except OSError as exc:
        print(f"b2bua export: {exc}", file=sys.stderr)
        return 1
    finally:
        if store is not None:
            store.conn.close()
    for note in notes:
        print(f"b2bua export: note: {note}", file=sys.stderr)
    print(f"wrote {out} ({len(effective.users)} users) and its sounds in {folder}",
          file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Make the users, music, announcements and greetings of FILE the stored settings of this
    installation."""
    from b2bua.cli.bundle import plan_import
    from b2bua.settings.announcements import merge_announcements, stored_announcements

    try:
        config = load_config(args.config)
        source = load_config(args.file)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if config.store.url:
        print("b2bua import: with [store] url the stored settings are changed through a node's "
              "API (docs/cluster.md)", file=sys.stderr)
        return 1
    rows, notes = import_rows(config, source)
    users = {u.extension for u in source.users}
    try:
        plan = asyncio.run(plan_import(config, source, Path(args.file), users))
    except ValueError as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        return 1
    for note in notes + plan.notes:
        print(f"b2bua import: note: {note}", file=sys.stderr)
    data_dir = Path(config.server.data_dir).resolve()
    now = time.time()
    uploads = plan.music_uploads(now)
    announcements = plan.announcement_rows(now)
    try:
        store = open_store(config, readonly=False)
    except OSError as exc:
        print(f"b2bua import: {exc}", file=sys.stderr)
        return 1
    assert store is not None
    try:
        merged = merge_raw(store.base_raw, rows, uploads, store.data_dir)
        merged = merge_announcements(merged, store.conn, store.data_dir, announcements)
        try:
            store.validate(merged)
        except SettingsRejected as exc:
            for issue in exc.issues:
                print(f"{args.file}: {issue.field}: {issue.reason}", file=sys.stderr)
            return 1
        greetings = "kept" if plan.greetings is None else str(len(plan.greetings))
        what = (f"{len(uploads)} music classes, {len(announcements)} announcements and "
                f"{greetings} voicemail greetings")
        if args.dry_run:
            print(f"would store settings for {len(rows)} users, {what}")
            return 0
        old_music = store.uploads()
        old_announcements = stored_announcements(store.conn)
        try:
            plan.write_files(data_dir)
        except OSError as exc:
            print(f"b2bua import: nothing imported: {exc}", file=sys.stderr)
            return 1
        try:
            store.replace_all(rows, uploads, now, "import", announcements)
        except (OSError, sqlite3.Error) as exc:
            plan.remove_files(data_dir)
            print(f"b2bua import: nothing imported: {exc}", file=sys.stderr)
            return 1
    finally:
        store.conn.close()
    declared = {a.name for a in config.announcements}
    asyncio.run(plan.apply(data_dir, old_music, old_announcements, declared))
    print(f"imported {len(source.users)} users ({len(rows)} differ from {args.config}), {what} "
          f"into {data_dir}; a running server applies them within a few seconds")
    return 0
