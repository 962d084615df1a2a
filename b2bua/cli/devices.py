"""`b2bua devices` and `b2bua qr`: the registrar seen from the command line.

Both read the effective configuration (the file plus the devices stored from the dashboard) and
the shared SQLite database directly; WAL lets them run next to a live server (`devices` opens
the file read-only).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sqlite3
import sys
import time
from datetime import UTC, datetime
from typing import Any

from b2bua.cli.common import load
from b2bua.config import Config
from b2bua.registrar.model import Binding
from b2bua.registrar.provisioning import (
    TOKEN_TTL,
    ProvisioningError,
    create_token,
    device_settings,
    provisioning_url,
)
from b2bua.registrar.report import device_report
from b2bua.registrar.sqlite_store import read_bindings
from b2bua.store import open_database
from b2bua.tenants.names import scoped, split


def _stored_bindings(config: Config) -> list[Binding]:
    if config.store.url:  # several nodes: the bindings are in PostgreSQL
        from b2bua.pgstore.snapshot import snapshot

        conn = snapshot(config.store.url)
        try:
            return read_bindings(conn)
        finally:
            conn.close()
    try:
        conn = open_database(config.server.data_dir, readonly=True)
    except (FileNotFoundError, sqlite3.Error):
        return []  # the server never ran with this data_dir: nothing registered
    try:
        return read_bindings(conn)
    finally:
        conn.close()


def _text(report: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    header = ("#", "type", "label", "state", "contact", "source", "user agent", "expires", "push")
    for ext in report:
        lines.append(f"{ext['extension']}  {ext['name']}")
        rows = [header]
        for d in ext["devices"]:
            expires = "" if d["expires_in"] is None else f"{d['expires_in']} s"
            rows.append((
                "-" if d["device"] is None else str(d["device"]),
                d["type"] or "-", d["label"], d["state"], _short_contact(d["contact"]) or "-",
                d["source"] or "-", d["user_agent"] or "-", expires or "-",
                _push_text(d.get("push")),
            ))
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        for r in rows:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        lines.append("")
    return "\n".join(lines)


def _short_contact(contact: str | None) -> str | None:
    """The contact without its RFC 8599 parameters (the push column says how it is woken)."""
    return re.sub(r";pn-[a-z]+(=[^;>?]*)?", "", contact) if contact else contact


def _push_text(push: dict[str, Any] | None) -> str:
    if not push:
        return "-"
    text = push["provider"] or "none"
    if push["last_push_at"] is not None:
        when = datetime.fromtimestamp(push["last_push_at"], UTC).isoformat(timespec="seconds")
        text += f" (last {when}: {push['last_push_result']})"
    return text


def cmd_devices(args: argparse.Namespace) -> int:
    """List each extension's devices: type, label, state, contact, source flow, user agent,
    expiry (`--json` for one JSON document)."""
    effective = load(args, "devices")
    if effective is None:
        return 1
    config = effective.config
    try:
        bindings = _stored_bindings(config)
    except OSError as exc:  # PostgreSQL cannot be read
        print(f"b2bua devices: {exc}", file=sys.stderr)
        return 1
    # The company's own bindings, by their extension (b2bua.tenants.names).
    bindings = [dataclasses.replace(b, aor=split(b.aor)[1]) for b in bindings
                if split(b.aor)[0] == effective.tenant]
    report = device_report(config, bindings, time.time())
    if getattr(args, "json", False):
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(_text(report), end="")
    return 0


def cmd_qr(args: argparse.Namespace) -> int:
    """Create a one-time provisioning token for a device and save its QR code as PNG."""
    import segno

    effective = load(args, "qr")
    if effective is None:
        return 1
    config = effective.config
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
        # A tenant's device is EXT@DOMAIN in the token (docs/tenants.md).
        token = create_token(conn, scoped(settings.extension, effective.tenant), device, now,
                             ttl=ttl)
    finally:
        conn.close()
    url = provisioning_url(config, token)
    segno.make(url, error="m").save(args.out, scale=8, border=4)
    until = datetime.fromtimestamp(now + ttl, UTC).isoformat(timespec="seconds")
    print(f"{args.out}: {url}")
    print(f"device {device + 1} of {settings.extension} ({settings.username}); "
          f"one use, valid until {until}")
    return 0
