"""`b2bua check`: validate and compile the effective configuration (the TOML file plus the
settings stored from the dashboard); print a summary and every warning, each where it can be
fixed: `FILE:LINE: field: reason` for the file, `DATABASE: EXT: field: reason` for what the
dashboard stored (fields numbered from 1 as the dashboard shows them). Exit 1 on errors,
including stored settings that no longer validate (the server leaves them out)."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime

from b2bua.cli.common import load, plural
from b2bua.config import ConfigIssue, format_path
from b2bua.config.lang import Lang
from b2bua.config.messages import render
from b2bua.rules.compiler import compile_rules
from b2bua.settings import Effective

__all__ = ["cmd_check", "locate"]


def reason(issue: ConfigIssue, lang: Lang) -> str:
    """The issue's reason in `lang` (English is what the check always printed)."""
    return issue.reason if lang == "en" else render(issue.code, issue.params, lang)


def locate(effective: Effective, issue: ConfigIssue, lang: Lang = "en") -> str:
    """Where `issue` (about the effective configuration) can be fixed, as one line."""
    path = issue.path
    config, base = effective.config, effective.base
    why = reason(issue, lang)
    if config is base or not path:
        return f"{issue.file}:{issue.line}: {issue.field}: {why}"
    if path[0] == "users" and len(path) >= 2 and isinstance(path[1], int):
        user = config.users[path[1]]
        rest = path[2:]
        keys = effective.stored_keys(user.extension)
        if "*" in keys or (rest and rest[0] in keys):
            where = effective.database or "stored settings"
            field = format_path(rest, first=1) or "(user)"
            return f"{where}: {user.extension}: {field}: {why}"
        for j, u in enumerate(base.users):
            if u.extension == user.extension:
                return str(base.issue(("users", j, *rest), why))
    if path[0] in ("music", "announcements") and len(path) >= 2 and isinstance(path[1], int):
        # Past the file's own entries: an upload stored from the dashboard.
        declared = base.music if path[0] == "music" else base.announcements
        if path[1] >= len(declared):
            where = effective.database or "stored settings"
            what, entries = (("music", config.music) if path[0] == "music"
                             else ("announcement", config.announcements))
            name = entries[path[1]].name
            return f"{where}: {what} {name!r}: {format_path(path[2:], first=1)}: {why}"
    return str(base.issue(path, why))


def cmd_check(args: argparse.Namespace) -> int:
    """Validate and compile; print a summary and every warning. Exit 1 on errors."""
    from b2bua.rules.warnings import check_warnings

    lang: Lang = getattr(args, "lang", None) or "en"
    t0 = time.perf_counter()
    effective = load(args, "check")
    if effective is None:
        return 1
    config = effective.config
    t1 = time.perf_counter()
    table = compile_rules(config)
    t2 = time.perf_counter()
    warnings = check_warnings(config, today=datetime.now(UTC).astimezone().date())
    s = table.stats
    devices = sum(len(u.devices) for u in config.users)
    print(f"{effective.base.source}: OK")
    print(
        f"  {plural(s.users, 'user')} ({plural(devices, 'device')}), "
        f"{plural(s.system_extensions, 'system extension')}, "
        f"{plural(len(config.trunks), 'trunk')}, "
        f"{plural(len(config.music), 'music class', 'music classes')}, "
        f"{plural(len(config.announcements), 'announcement')}"
    )
    print(
        f"  rules compiled: {plural(s.office_hours, 'office-hour range')}, "
        f"{plural(s.exceptional_periods, 'exceptional period')}, "
        f"{plural(s.exceptions, 'caller-ID exception')} "
        f"(load {1000 * (t1 - t0):.1f} ms, compile {1000 * (t2 - t1):.1f} ms)"
    )
    if effective.stored or effective.uploads:
        users = sum(1 for row in effective.stored.values() if row.values or row.deleted)
        print(
            f"  stored from the dashboard ({effective.database}): "
            f"{plural(users, 'user')} changed, "
            f"{plural(len(effective.uploads), 'uploaded music class', 'uploaded music classes')}"
        )
    if warnings:
        print(f"{plural(len(warnings), 'warning')}:")
        for w in warnings:
            print(f"  {locate(effective, w, lang)}")
    else:
        print("no warnings")
    if not effective.rejected:
        return 0
    where = effective.database or "stored settings"
    for rejection in effective.rejected:
        if rejection.extension is None:
            print(f"{where}: the stored settings do not validate together; the server uses the "
                  "file alone:", file=sys.stderr)
            for issue in rejection.issues:
                print(f"{where}: {issue.field}: {reason(issue, lang)}", file=sys.stderr)
            continue
        for field, issue in rejection.fields():
            print(f"{where}: {rejection.extension}: {field}: {reason(issue, lang)}",
                  file=sys.stderr)
        print(f"{where}: {rejection.extension}: the settings stored from the dashboard no longer "
              "validate; the server uses the file's settings for this user until they are saved "
              "again", file=sys.stderr)
    return 1
