"""`b2bua devices` and `b2bua qr`: the registrar seen from the command line.

Both read the configuration and the shared SQLite database directly; WAL lets them run next to
a live server (`devices` opens the file read-only).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from b2bua.registrar.model import Binding
from b2bua.registrar.provisioning import (
    TOKEN_TTL,
    ProvisioningError,
    create_token,
    device_settings,
    provisioning_url,
)
from b2bua.registrar.sqlite_store import read_bindings
from b2bua.store import open_database


def _load_config(path: str) -> Any:
    from b2bua.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return None
    except OSError as exc:
        print(f"{path}: {exc.strerror or exc}", file=sys.stderr)
        return None


def _stored_bindings(config: Any) -> list[Binding]:
    try:
        conn = open_database(config.server.data_dir, readonly=True)
    except (FileNotFoundError, sqlite3.Error):
        return []  # the server never ran with this data_dir: nothing registered
    try:
        return read_bindings(conn)
    finally:
        conn.close()


def _best(bindings: Iterable[Binding]) -> Binding | None:
    best: Binding | None = None
    for b in bindings:
        if best is None or (b.reachable, b.registered_at) > (best.reachable, best.registered_at):
            best = b
    return best


def _binding_row(b: Binding, now: float) -> dict[str, Any]:
    return {
        "state": "registered" if b.reachable else "unreachable",
        "contact": b.contact,
        "source": str(b.flow),
        "user_agent": b.user_agent,
        "expires_in": b.expires_in(now),
        "instance": b.instance,
    }


def device_report(config: Any, bindings: Iterable[Binding], now: float) -> list[dict[str, Any]]:
    """Per extension, each configured device with its state (and unassigned registrations)."""
    by_ext: dict[str, list[Binding]] = {}
    for b in bindings:
        if b.expires_at > now:
            by_ext.setdefault(b.aor, []).append(b)
    report: list[dict[str, Any]] = []
    for user in config.users:
        ext = str(user.extension)
        mine = by_ext.get(ext, [])
        devices: list[dict[str, Any]] = []
        specs = list(getattr(user, "devices", ()))
        for i, spec in enumerate(specs):
            row: dict[str, Any] = {
                "device": i + 1,
                "type": str(spec.type),
                "label": str(spec.label),
                "username": getattr(spec, "username", None) or ext,
            }
            contact = getattr(spec, "contact", None)
            if contact:
                row.update(state="static", contact=contact, source=None, user_agent=None,
                           expires_in=None, instance=None)
            else:
                best = _best(b for b in mine if b.device == i)
                if best is None:
                    row.update(state="offline", contact=None, source=None, user_agent=None,
                               expires_in=None, instance=None)
                else:
                    row.update(_binding_row(best, now))
            devices.append(row)
        for b in mine:
            if b.device is None or not 0 <= b.device < len(specs):
                row = {"device": None, "type": None, "label": "(unassigned)",
                       "username": b.username}
                row.update(_binding_row(b, now))
                devices.append(row)
        report.append({"extension": ext, "name": str(user.name), "devices": devices})
    return report


def _text(report: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    header = ("#", "type", "label", "state", "contact", "source", "user agent", "expires")
    for ext in report:
        lines.append(f"{ext['extension']}  {ext['name']}")
        rows = [header]
        for d in ext["devices"]:
            expires = "" if d["expires_in"] is None else f"{d['expires_in']} s"
            rows.append((
                "-" if d["device"] is None else str(d["device"]),
                d["type"] or "-", d["label"], d["state"], d["contact"] or "-",
                d["source"] or "-", d["user_agent"] or "-", expires or "-",
            ))
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        for r in rows:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        lines.append("")
    return "\n".join(lines)


def cmd_devices(args: argparse.Namespace) -> int:
    """List each extension's devices: type, label, state, contact, source flow, user agent,
    expiry (`--json` for one JSON document)."""
    config = _load_config(args.config)
    if config is None:
        return 1
    report = device_report(config, _stored_bindings(config), time.time())
    if getattr(args, "json", False):
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(_text(report), end="")
    return 0


def cmd_qr(args: argparse.Namespace) -> int:
    """Create a one-time provisioning token for a device and save its QR code as PNG."""
    import segno

    config = _load_config(args.config)
    if config is None:
        return 1
    device = int(args.device) - 1
    try:
        settings = device_settings(config, str(args.ext), device)
    except ProvisioningError as exc:
        print(f"b2bua qr: {exc}", file=sys.stderr)
        return 1
    ttl = float(getattr(args, "ttl", None) or TOKEN_TTL)
    now = time.time()
    conn = open_database(config.server.data_dir)
    try:
        token = create_token(conn, settings.extension, device, now, ttl=ttl)
    finally:
        conn.close()
    url = provisioning_url(config, token)
    segno.make(url, error="m").save(args.out, scale=8, border=4)
    until = datetime.fromtimestamp(now + ttl, UTC).isoformat(timespec="seconds")
    print(f"{args.out}: {url}")
    print(f"device {device + 1} of {settings.extension} ({settings.username}); "
          f"one use, valid until {until}")
    return 0
