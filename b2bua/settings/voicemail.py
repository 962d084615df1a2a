"""The voicemail index: `voicemail(id, extension, caller, received_at, duration, path, read)`.

The media layer writes the recording to `data_dir/voicemail/<extension>/<file>.wav` and then
calls `add_voicemail()`; `path` is the bare file name inside that directory.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from b2bua.settings.tables import ensure_schema
from b2bua.store import transaction

__all__ = [
    "VOICEMAIL_DIR",
    "Voicemail",
    "add_voicemail",
    "get_voicemail",
    "list_voicemail",
    "voicemail_dir",
    "voicemail_file",
]

VOICEMAIL_DIR = "voicemail"


@dataclass(frozen=True, slots=True)
class Voicemail:
    id: int
    extension: str
    caller: str
    received_at: float
    duration: float
    path: str
    read: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "caller": self.caller,
            "received_at": self.received_at,
            "duration": self.duration,
            "read": self.read,
        }


_VM_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def voicemail_dir(data_dir: str | Path, extension: str) -> Path:
    return Path(data_dir) / VOICEMAIL_DIR / extension


def add_voicemail(
    conn: sqlite3.Connection, extension: str, caller: str, received_at: float, duration: float,
    file_name: str,
) -> int:
    """Index a recording already written to `data_dir/voicemail/<extension>/<file_name>`."""
    if not _VM_FILE.match(file_name) or ".." in file_name:
        raise ValueError(f"invalid voicemail file name {file_name!r}")
    ensure_schema(conn)
    with transaction(conn):
        cur = conn.execute(
            "INSERT INTO voicemail (extension, caller, received_at, duration, path, read)"
            " VALUES (?, ?, ?, ?, ?, 0)",
            (extension, caller, received_at, duration, file_name),
        )
    return int(cur.lastrowid or 0)


def list_voicemail(conn: sqlite3.Connection, extension: str) -> list[Voicemail]:
    rows = conn.execute(
        "SELECT id, extension, caller, received_at, duration, path, read FROM voicemail"
        " WHERE extension = ? ORDER BY received_at DESC, id DESC",
        (extension,),
    ).fetchall()
    return [Voicemail(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6])) for r in rows]


def get_voicemail(conn: sqlite3.Connection, extension: str, vm_id: int) -> Voicemail | None:
    r = conn.execute(
        "SELECT id, extension, caller, received_at, duration, path, read FROM voicemail"
        " WHERE extension = ? AND id = ?",
        (extension, vm_id),
    ).fetchone()
    return Voicemail(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6])) if r else None


def voicemail_file(data_dir: str | Path, vm: Voicemail) -> Path | None:
    """The recording's path, or None if it would leave the extension's directory."""
    base = voicemail_dir(data_dir, vm.extension).resolve()
    if not _VM_FILE.match(vm.path) or ".." in vm.path:
        return None
    path = (base / vm.path).resolve()
    return path if path.parent == base else None
