"""Tenants created, changed and deleted from the API (`/api/tenants`), over the TOML file's
`[[tenants]]`: one row each in the `tenants` table (b2bua.settings.tables).

A row is like a user's stored settings (b2bua.settings.overrides): for a tenant of the file, a
partial section holding only what the API changed (`name`, `limits`), or `deleted`; for a
tenant created from the API (`created`), its whole section without users (`name`, `limits`,
and optionally `trunks`, `system_extensions`), its users being stored as any user's. Every
write bumps `meta.tenants_revision`, so other processes and nodes notice.

`declared(config, rows)` merges them into the list of tenants the server serves.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from b2bua.config import Config, Limits, TenantSection
from b2bua.tenants.model import TenantLimits
from b2bua.tenants.names import DEFAULT

__all__ = [
    "REVISION_KEY",
    "Declared",
    "TenantRow",
    "declared",
    "revision",
    "save_row",
    "section_of",
    "stored_rows",
]

log = logging.getLogger("b2bua.tenants")

REVISION_KEY = "tenants_revision"


@dataclass(frozen=True, slots=True)
class TenantRow:
    domain: str
    values: dict[str, Any] = field(default_factory=dict)
    created: bool = False
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class Declared:
    """A tenant to serve: `section` is None for the top-level company; `index` its place in
    the file's `[[tenants]]` (None for one created from the API)."""

    key: str
    domain: str
    name: str
    limits: TenantLimits
    section: TenantSection | None
    index: int | None
    origin: str  # "file" or "api"

    def view(self, config: Config) -> Config:
        """The tenant's configuration from the file (before its stored user settings)."""
        return config.tenant_view(self.section, self.index)


def stored_rows(conn: sqlite3.Connection) -> dict[str, TenantRow]:
    """Every stored tenant row; none when the table does not exist (a read-only database made
    before tenants)."""
    try:
        rows = conn.execute("SELECT domain, json, created, deleted FROM tenants").fetchall()
    except sqlite3.OperationalError:
        return {}
    return {str(r[0]): TenantRow(str(r[0]), json.loads(r[1]), bool(r[2]), bool(r[3]))
            for r in rows}


def revision(conn: sqlite3.Connection) -> int:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (REVISION_KEY,)).fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0]) if row else 0


def save_row(conn: sqlite3.Connection, row: TenantRow, now: float, by: str | None) -> None:
    """Store (or, for a created tenant now deleted, forget) `row`; bump the revision. Inside
    the caller's transaction when there is one."""
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN IMMEDIATE")
    try:
        if row.created and row.deleted:
            conn.execute("DELETE FROM tenants WHERE domain = ?", (row.domain,))
        else:
            conn.execute(
                "INSERT INTO tenants (domain, json, created, deleted, updated_at, updated_by)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (domain) DO UPDATE SET"
                " json = excluded.json, created = excluded.created, deleted = excluded.deleted,"
                " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                (row.domain, json.dumps(row.values, ensure_ascii=False), int(row.created),
                 int(row.deleted), now, by))
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, 1) "
            "ON CONFLICT (key) DO UPDATE SET value = value + 1", (REVISION_KEY,))
    except BaseException:
        if own:
            conn.execute("ROLLBACK")
        raise
    if own:
        conn.execute("COMMIT")


def section_of(domain: str, values: Mapping[str, Any], base_dir: Path | None) -> TenantSection:
    """A created tenant's section from its stored values (ValidationError when invalid)."""
    return TenantSection.model_validate({**values, "domain": domain},
                                        context={"base_dir": base_dir or Path.cwd()})


def declared(config: Config, rows: Mapping[str, TenantRow]) -> list[Declared]:
    """The tenants to serve: the top-level company, the file's `[[tenants]]` with what the API
    changed (a deleted one left out), then the tenants created from the API. A stored row that
    no longer validates is logged and left out."""
    out = [Declared(DEFAULT, config.server.domain, config.server.domain, TenantLimits(), None,
                    None, "file")]
    seen = {config.server.domain.lower()}
    base_dir = Path(config.source).resolve().parent if Path(config.source).is_file() else None
    for i, section in enumerate(config.tenants):
        row = rows.get(section.domain)
        seen.add(section.domain)
        if row is not None and row.deleted:
            continue
        if row is not None and row.values:
            update: dict[str, Any] = {}
            if isinstance(row.values.get("name"), str) and row.values["name"]:
                update["name"] = row.values["name"]
            if isinstance(row.values.get("limits"), dict):
                try:
                    update["limits"] = Limits.model_validate(
                        {**section.limits.model_dump(), **row.values["limits"]})
                except ValidationError as exc:
                    log.error("tenant %s: stored limits left out: %s", section.domain, exc)
            section = section.model_copy(update=update)
        out.append(Declared(section.domain, section.domain, section.name,
                            TenantLimits.from_config(section.limits), section, i, "file"))
    for domain, row in sorted(rows.items()):
        if not row.created or row.deleted or domain in seen:
            continue
        try:
            section = section_of(domain, row.values, base_dir)
        except ValidationError as exc:
            log.error("tenant %s: its stored section no longer validates, not served: %s",
                      domain, exc)
            continue
        seen.add(domain)
        out.append(Declared(domain, domain, section.name, TenantLimits.from_config(
            section.limits), section, None, "api"))
    return out
