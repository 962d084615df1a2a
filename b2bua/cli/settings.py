"""`b2bua export` and `b2bua import`: the whole installation as TOML, and back."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from b2bua.cli.common import load
from b2bua.config import ConfigError, load_config
from b2bua.settings import (
    MusicUpload,
    SettingsRejected,
    config_to_raw,
    import_rows,
    merge_raw,
    open_store,
    raw_to_toml,
)

__all__ = ["cmd_export", "cmd_import"]


def cmd_export(args: argparse.Namespace) -> int:
    """Print (or write) the whole effective configuration: the TOML plus the stored settings."""
    loaded = load(args, "export")
    if loaded is None:
        return 1
    config, effective = loaded.base, loaded.config
    header = (
        f"Effective configuration exported from {args.config} and the settings stored in\n"
        f"{Path(config.server.data_dir)} (dashboard changes, uploaded music); paths are absolute."
    )
    text = raw_to_toml(config_to_raw(effective), header)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}: {len(effective.users)} users", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Make the users and music of FILE the stored settings of this installation."""
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    try:
        source = load_config(args.file)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    rows, notes = import_rows(config, source)
    for note in notes:
        print(f"b2bua import: note: {note}", file=sys.stderr)
    base_music = {m.name for m in config.music}
    data_dir = Path(config.server.data_dir).resolve()
    uploads: list[MusicUpload] = []
    now = time.time()
    for music in source.music:
        if music.name in base_music:
            continue
        files = []
        for f in music.files:
            try:
                files.append(str(Path(f).resolve().relative_to(data_dir)))
            except ValueError:
                files.append(str(Path(f).resolve()))
        uploads.append(MusicUpload(music.name, tuple(files), None, None, now, "import"))
    store = open_store(config, readonly=False)
    assert store is not None
    try:
        merged = merge_raw(store.base_raw, rows, uploads, store.data_dir)
        try:
            store.validate(merged)
        except SettingsRejected as exc:
            for issue in exc.issues:
                print(f"{args.file}: {issue.field}: {issue.reason}", file=sys.stderr)
            return 1
        if args.dry_run:
            print(f"would store settings for {len(rows)} users and {len(uploads)} music classes")
            return 0
        store.replace_all(rows, uploads, now, "import")
    finally:
        store.conn.close()
    print(f"imported {len(source.users)} users ({len(rows)} differ from {args.config}) and "
          f"{len(uploads)} music classes into {data_dir}; a running server applies them within "
          "a few seconds")
    return 0
