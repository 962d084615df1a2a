"""Announcements stored from the dashboard (b2bua/api/announcements.py): admins' uploads and
users' own absence messages, one row each in `announcement_uploads`. `merge_announcements` adds
them to the effective configuration as `[[announcements]]` entries (`SettingsStore.merged_raw`),
so that rules may name them and every command knows them.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from b2bua.store import migrate

COMPONENT = "announcements"
MIGRATIONS: list[str] = [
    """
    CREATE TABLE announcement_uploads (
        name        TEXT PRIMARY KEY,
        label       TEXT,
        owner       TEXT,
        file        TEXT NOT NULL,
        original    TEXT,
        duration    REAL,
        uploaded_at REAL NOT NULL,
        uploaded_by TEXT
    );
    """,
    # Tenants (docs/tenants.md): each company's announcements ('' is the top-level one's).
    """
    CREATE TABLE announcement_uploads_t (
        tenant      TEXT NOT NULL DEFAULT '',
        name        TEXT NOT NULL,
        label       TEXT,
        owner       TEXT,
        file        TEXT NOT NULL,
        original    TEXT,
        duration    REAL,
        uploaded_at REAL NOT NULL,
        uploaded_by TEXT,
        PRIMARY KEY (tenant, name)
    );
    INSERT INTO announcement_uploads_t (tenant, name, label, owner, file, original, duration,
        uploaded_at, uploaded_by)
    SELECT '', name, label, owner, file, original, duration, uploaded_at, uploaded_by
    FROM announcement_uploads;
    DROP TABLE announcement_uploads;
    ALTER TABLE announcement_uploads_t RENAME TO announcement_uploads;
    """,
]


@dataclass(frozen=True, slots=True)
class AnnouncementUpload:
    name: str
    label: str | None
    owner: str | None  # the extension of a user's own message; None: shared
    file: str  # relative to data_dir
    original: str | None
    duration: float | None
    uploaded_at: float
    uploaded_by: str | None


def own_name(extension: str) -> str:
    """The announcement name of `extension`'s own absence message."""
    return f"absence.{extension}"


def ensure_schema(conn: sqlite3.Connection) -> None:
    migrate(conn, COMPONENT, MIGRATIONS)


def stored_announcements(conn: sqlite3.Connection, tenant: str = "") -> list[AnnouncementUpload]:
    """Every stored announcement of a company (`tenant`), by name; none when the table does not
    exist yet (a database opened read-only before the first upload)."""
    try:
        rows = conn.execute(
            "SELECT name, label, owner, file, original, duration, uploaded_at, uploaded_by"
            " FROM announcement_uploads WHERE tenant = ? ORDER BY name", (tenant,)
        ).fetchall()
    except sqlite3.OperationalError:
        return []
    return [AnnouncementUpload(str(r[0]), r[1], r[2], str(r[3]), r[4], r[5], float(r[6]), r[7])
            for r in rows]  # fmt: skip


def merge_announcements(
    raw: dict[str, Any], conn: sqlite3.Connection, data_dir: Path,
    rows: list[AnnouncementUpload] | None = None,
) -> dict[str, Any]:
    """`raw` with the stored announcements added as `[[announcements]]` (a name the TOML file
    declares keeps the file's entry)."""
    stored = stored_announcements(conn) if rows is None else rows
    if not stored:
        return raw
    entries = [dict(a) for a in raw.get("announcements", [])]
    names = {a.get("name") for a in entries}
    for row in stored:
        if row.name not in names:
            entries.append({"name": row.name, "file": str(data_dir / row.file)})
    return {**raw, "announcements": entries}
