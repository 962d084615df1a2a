"""The voicemail index: `voicemail(id, tenant, extension, caller, received_at, duration, path,
read)`.

The media layer writes the recording to `data_dir/voicemail/<extension>/<file>.wav` and then
calls `add_voicemail()`; `path` is the bare file name inside that directory. A box is named as
the call engine names it: `1001` for the top-level company, `1001@acme.example` for a tenant's
(b2bua.tenants.names), whose recordings live under `data_dir/tenants/acme.example/voicemail/`.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from b2bua.settings.tables import ensure_schema
from b2bua.store import transaction
from b2bua.tenants.names import scoped, split

__all__ = [
    "VOICEMAIL_DIR",
    "Voicemail",
    "add_voicemail",
    "get_voicemail",
    "greeting_file",
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
    tenant: str = ""

    @property
    def box(self) -> str:
        """The box as the call engine names it (scoped)."""
        return scoped(self.extension, self.tenant)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "caller": self.caller,
            "received_at": self.received_at,
            "duration": self.duration,
            "read": self.read,
        }


_VM_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def voicemail_dir(data_dir: str | Path, box: str) -> Path:
    """Where the recordings of a box (`1001`, or a tenant's `1001@acme.example`) are."""
    tenant, extension = split(box)
    base = Path(data_dir) / "tenants" / tenant if tenant else Path(data_dir)
    return base / VOICEMAIL_DIR / extension


def greeting_file(data_dir: str | Path, box: str) -> Path:
    """A box's own greeting (recorded from the dashboard): `data_dir/greetings/EXT.wav`, under
    the tenant's directory for a tenant's box."""
    tenant, extension = split(box)
    base = Path(data_dir) / "tenants" / tenant if tenant else Path(data_dir)
    return base / "greetings" / f"{extension}.wav"


def add_voicemail(
    conn: sqlite3.Connection, box: str, caller: str, received_at: float, duration: float,
    file_name: str,
) -> int:
    """Index a recording already written to `voicemail_dir(data_dir, box)/<file_name>`."""
    if not _VM_FILE.match(file_name) or ".." in file_name:
        raise ValueError(f"invalid voicemail file name {file_name!r}")
    ensure_schema(conn)
    tenant, extension = split(box)
    with transaction(conn):
        cur = conn.execute(
            "INSERT INTO voicemail (tenant, extension, caller, received_at, duration, path, read)"
            " VALUES (?, ?, ?, ?, ?, ?, 0)",
            (tenant, extension, caller, received_at, duration, file_name),
        )
    return int(cur.lastrowid or 0)


_COLUMNS = "id, extension, caller, received_at, duration, path, read, tenant"


def _vm(r: Any) -> Voicemail:
    return Voicemail(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7])


def list_voicemail(conn: sqlite3.Connection, box: str) -> list[Voicemail]:
    """The messages of a box (scoped name), newest first."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM voicemail WHERE tenant = ? AND extension = ?"
        " ORDER BY received_at DESC, id DESC",
        split(box),
    ).fetchall()
    return [_vm(r) for r in rows]


def get_voicemail(conn: sqlite3.Connection, box: str, vm_id: int) -> Voicemail | None:
    """Message `vm_id` of a box (scoped name): None when it is not that box's."""
    r = conn.execute(
        f"SELECT {_COLUMNS} FROM voicemail WHERE tenant = ? AND extension = ? AND id = ?",
        (*split(box), vm_id),
    ).fetchone()
    return _vm(r) if r else None


def voicemail_file(data_dir: str | Path, vm: Voicemail) -> Path | None:
    """The recording's path, or None if it would leave the extension's directory."""
    base = voicemail_dir(data_dir, vm.box).resolve()
    if not _VM_FILE.match(vm.path) or ".." in vm.path:
        return None
    path = (base / vm.path).resolve()
    return path if path.parent == base else None
