"""`b2bua trace`, `week`, `ics-export` and `ics-import`.

Thin shells around the pure rules engine: they read the effective configuration (the file plus
the stored settings), the wall clock and the arguments, print, and return an exit code (0 ok,
1 error).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tomllib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from b2bua.cli.common import fail, language, load, plural
from b2bua.config import ExceptionalPeriod, parse_day, parse_instant
from b2bua.rules.compiler import RuleTable, compile_rules, local_instant
from b2bua.rules.i18n import describe
from b2bua.rules.model import UnknownExtension

__all__ = ["cmd_ics_export", "cmd_ics_import", "cmd_trace", "cmd_week"]


def _unknown(command: str, table: RuleTable, ext: str) -> int:
    known = ", ".join(sorted(table.extensions)) or "none"
    return fail(command, f"unknown extension {ext!r} (known: {known})")


def _parse_at(text: str | None, table: RuleTable, ext: str) -> datetime:
    if text is None:
        return datetime.now(UTC)
    when = parse_instant(text)
    if when.tzinfo is None:
        return local_instant(when, table.zone(ext))
    return when


def cmd_trace(args: argparse.Namespace) -> int:
    """Print the routing decision for one call and why (`--json`: one JSON object)."""
    effective = load(args, "trace")
    if effective is None:
        return 1
    config = effective.config
    table = compile_rules(config)
    if args.to not in table:
        return _unknown("trace", table, args.to)
    try:
        when = _parse_at(args.at, table, args.to)
    except ValueError:
        return fail(
            "trace",
            f"--at {args.at!r} is not an ISO 8601 date-time (2026-07-01T10:00, or 01/07/2026 10:00)",
        )
    try:
        decision = table.decide(args.to, args.caller, when)
    except UnknownExtension:
        return _unknown("trace", table, args.to)
    lang = language(args, config, config.user(args.to))
    if args.json:
        print(json.dumps(decision.to_json(lang), ensure_ascii=False))
        return 0
    # The labels and codes stay as they are (scripts read them); the words follow --lang.
    dest = decision.destination
    name = f" {decision.rule_name!r}" if decision.rule_name is not None else ""
    print(f"destination: {describe(dest, lang)}  {json.dumps(dest.to_config_dict())}")
    print(f"rule: {decision.rule}{name}")
    print("why:")
    for line in decision.trace_in(lang):
        print(f"  {line}")
    return 0


def _this_monday(table: RuleTable, ext: str) -> date:
    today = datetime.now(UTC).astimezone(table.zone(ext)).date()
    return today - timedelta(days=today.weekday())


def _write_png(svg: str, out: Path) -> str | None:
    """Render SVG to PNG with an installed converter; an error message if none works."""
    tmp = out.with_suffix(".svg.tmp")
    png = out.with_suffix(".png.tmp")  # renamed over `out` only once complete
    tmp.write_text(svg, encoding="utf-8")
    try:
        commands = []
        if shutil.which("rsvg-convert"):
            commands.append(["rsvg-convert", "-o", str(png), str(tmp)])
        if shutil.which("convert"):
            commands.append(["convert", f"svg:{tmp}", f"png:{png}"])
        if not commands:
            return "PNG needs rsvg-convert (librsvg2-bin) or ImageMagick; use --out FILE.svg"
        errors = []
        for cmd in commands:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
            if done.returncode == 0 and png.exists() and png.stat().st_size > 0:
                os.replace(png, out)
                return None
            errors.append(f"{cmd[0]}: {done.stderr.strip()[:200] or f'exit {done.returncode}'}")
        return "cannot render PNG (" + "; ".join(errors) + "); use --out FILE.svg"
    finally:
        tmp.unlink(missing_ok=True)
        png.unlink(missing_ok=True)


def cmd_week(args: argparse.Namespace) -> int:
    """Print a week timeline of where calls from a caller to EXT go; optionally save a picture."""
    from b2bua.rules.week import render_svg, render_text, sample_week

    effective = load(args, "week")
    if effective is None:
        return 1
    config = effective.config
    table = compile_rules(config)
    if args.ext not in table:
        return _unknown("week", table, args.ext)
    if args.start:
        try:
            first = parse_day(args.start)
        except ValueError:
            return fail("week", f"--start {args.start!r} is not a date (YYYY-MM-DD or DD/MM/YYYY)")
    else:
        first = _this_monday(table, args.ext)
    caller = "" if args.caller == "*" else args.caller
    week = sample_week(table, args.ext, caller, first)
    lang = getattr(args, "lang", None) or "en"
    sys.stdout.write(render_text(week, lang))
    if args.out:
        out = Path(args.out)
        suffix = out.suffix.lower()
        if suffix == ".svg":
            out.write_text(render_svg(week, lang), encoding="utf-8")
        elif suffix == ".png":
            problem = _write_png(render_svg(week, lang), out)
            if problem is not None:
                return fail("week", problem)
        else:
            return fail("week", f"--out {args.out!r}: use a .svg or .png file name")
        print(f"saved {out}")
    return 0


def cmd_ics_export(args: argparse.Namespace) -> int:
    """Write EXT's exceptional periods to an .ics file."""
    from b2bua.rules.ical import export_ics

    effective = load(args, "ics-export")
    if effective is None:
        return 1
    config = effective.config
    user = config.user(args.ext)
    if user is None:
        return fail("ics-export", f"{args.ext!r} is not a user extension")
    now = datetime.now(UTC)
    text = export_ics(user, domain=config.server.domain, now=now, year=args.year)
    Path(args.out).write_bytes(text.encode("utf-8"))
    count = len(user.schedule.exceptional) if user.schedule else 0
    print(f"wrote {plural(count, 'exceptional period')} of {user.extension} to {args.out}")
    return 0


def cmd_ics_import(args: argparse.Namespace) -> int:
    """Read an .ics file and print the exceptional periods to add to EXT's configuration."""
    from pydantic import ValidationError

    from b2bua.rules.ical import import_ics, periods_to_toml

    effective = load(args, "ics-import")
    if effective is None:
        return 1
    config = effective.config
    user = config.user(args.ext)
    if user is None:
        return fail("ics-import", f"{args.ext!r} is not a user extension")
    try:
        text = Path(args.file).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        return fail("ics-import", f"cannot read {args.file}: {exc}")
    destination: dict[str, Any]
    if args.destination:
        try:
            destination = tomllib.loads(f"d = {args.destination}")["d"]
        except tomllib.TOMLDecodeError as exc:
            return fail("ics-import", f"--destination is not a TOML inline table: {exc}")
    elif user.schedule is not None:
        destination = user.schedule.closed.to_config_dict()
    else:
        destination = {"kind": "voicemail"}
    result = import_ics(text, timezone=user.tz, default_destination=destination)
    for warning in result.warnings:
        print(f"b2bua ics-import: warning: {warning}", file=sys.stderr)
    for period in result.periods:
        try:
            ExceptionalPeriod.model_validate(period)
        except ValidationError as exc:
            return fail("ics-import", f"{period['name']!r}: {exc.errors()[0]['msg']}")
    if not result.periods:
        return fail("ics-import", f"no usable event in {args.file}")
    print(f"# {plural(len(result.periods), 'exceptional period')} from {args.file}")
    print(
        f"# Add under the [[users]] table of extension {user.extension} "
        f"(after its [users.schedule]); times are {user.tz}."
    )
    sys.stdout.write(periods_to_toml(result.periods))
    return 0
