"""The settings store: what users and admins change from the dashboard, kept in SQLite.

Theory of operation
-------------------
The effective configuration is the TOML file, then the changes stored here:

- `user_settings(extension, json, created, deleted, ...)`: per user, a *partial* `[[users]]`
  section in the CONTRACT.md shape holding only the keys changed from the dashboard
  (`{"schedule": {...}, "exceptions": [...]}`). At merge time each stored key replaces the
  TOML's key of that user; a `null` value removes the key (`"forward": null`: no manual
  forward). So a later edit of the TOML file (a new secret, say) still shows through for every
  key the dashboard never touched. `created = 1` marks a user that exists only here (created by
  an admin; the json is then the whole section); `deleted = 1` hides a TOML user.
- `music_uploads(name, files, ...)`: hold-music classes uploaded by admins; they become
  `[[music]]` entries whose files live under `data_dir/uploads/music/<name>/`.
- `dashboard_accounts`: dashboard passwords, PBKDF2-SHA256 in the standard
  `$pbkdf2-sha256$ROUNDS$SALT$HASH` format (adapted base64, as passlib writes it). A user
  without a row signs in with their SIP secret (constant-time comparison) until they choose a
  password. The `admin` account is created at first start (see `ensure_admin`).
- `dashboard_sessions`: only the SHA-256 of a session token is stored, with its CSRF token.
- `voicemail(id, extension, caller, received_at, duration, path, read)`: the voicemail index.
  The media layer writes the recording to `data_dir/voicemail/<extension>/<file>.wav` and then
  calls `add_voicemail()`; `path` is the bare file name inside that directory.

A change is validated by merging it over everything else and running the same pydantic models
and cross-checks as `b2bua check` (`config_from_dict`); a refused change raises
`SettingsRejected` and writes nothing. An accepted change is written in one transaction that
also installs the new configuration (the `apply` callback, `Server.apply_config`): if that
raises, the transaction rolls back. Every write bumps `meta.settings_revision`, which lets a
running server notice a change made by another process (`b2bua import`).

If a stored override no longer validates at start (the TOML changed under it), it is logged and
left out: that user keeps the TOML's settings until someone saves again.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from b2bua.config import (
    Config,
    ConfigError,
    ConfigIssue,
    User,
    config_from_dict,
    load_config,
)
from b2bua.store import migrate, transaction

log = logging.getLogger("b2bua.settings")

COMPONENT = "settings"
ADMIN_LOGIN = "admin"
ADMIN_PASSWORD_ENV = "B2BUA_ADMIN_PASSWORD"
PBKDF2_ITERATIONS = 600_000
REVISION_KEY = "settings_revision"
VOICEMAIL_DIR = "voicemail"
UPLOADS_DIR = "uploads"

MIGRATIONS: list[str] = [
    """
    CREATE TABLE user_settings (
        extension  TEXT PRIMARY KEY,
        json       TEXT NOT NULL,
        created    INTEGER NOT NULL DEFAULT 0,
        deleted    INTEGER NOT NULL DEFAULT 0,
        updated_at REAL NOT NULL,
        updated_by TEXT
    );
    CREATE TABLE music_uploads (
        name        TEXT PRIMARY KEY,
        files       TEXT NOT NULL,
        original    TEXT,
        duration    REAL,
        uploaded_at REAL NOT NULL,
        uploaded_by TEXT
    );
    CREATE TABLE dashboard_accounts (
        login         TEXT PRIMARY KEY,
        role          TEXT NOT NULL CHECK (role IN ('admin', 'user')),
        extension     TEXT,
        password_hash TEXT NOT NULL,
        changed_at    REAL NOT NULL
    );
    CREATE TABLE dashboard_sessions (
        token_hash TEXT PRIMARY KEY,
        login      TEXT NOT NULL,
        role       TEXT NOT NULL,
        extension  TEXT,
        csrf       TEXT NOT NULL,
        created_at REAL NOT NULL,
        last_seen  REAL NOT NULL
    );
    CREATE INDEX dashboard_sessions_login ON dashboard_sessions (login);
    CREATE TABLE voicemail (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        extension   TEXT NOT NULL,
        caller      TEXT NOT NULL,
        received_at REAL NOT NULL,
        duration    REAL NOT NULL,
        path        TEXT NOT NULL,
        read        INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX voicemail_extension ON voicemail (extension, received_at);
    """,
]


def ensure_schema(conn: sqlite3.Connection) -> None:
    migrate(conn, COMPONENT, MIGRATIONS)


# ---------------------------------------------------------------------------------------------
# Passwords


def _ab64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=").replace("+", ".")


def _ab64_decode(text: str) -> bytes:
    text = text.replace(".", "+")
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(
    password: str, *, iterations: int = PBKDF2_ITERATIONS, salt: bytes | None = None
) -> str:
    """`$pbkdf2-sha256$ROUNDS$SALT$HASH` (adapted base64, the passlib format)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"$pbkdf2-sha256${iterations}${_ab64(salt)}${_ab64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether `password` matches an encoded PBKDF2-SHA256 hash (False if malformed)."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[1] != "pbkdf2-sha256":
        return False
    try:
        iterations = int(parts[2])
        salt, expected = _ab64_decode(parts[3]), _ab64_decode(parts[4])
    except ValueError:
        return False
    if not 1 <= iterations <= 10_000_000:
        return False
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(digest, expected)


# ---------------------------------------------------------------------------------------------
# The configuration as a TOML-shaped dict, and back to TOML text


def user_to_raw(user: User) -> dict[str, Any]:
    """A user's section as written in the file (JSON types; defaults not written left out)."""
    return user.model_dump(mode="json", exclude_unset=True, warnings=False)


def config_to_raw(config: Config) -> dict[str, Any]:
    """The whole configuration as the dict `tomllib` would read from an equivalent file."""
    raw = config.model_dump(mode="json", exclude_unset=True, warnings=False)
    server = raw.get("server", {})
    server["listen"] = [str(s) for s in config.server.listen]
    server["http"] = str(config.server.http)
    server["data_dir"] = str(config.server.data_dir)
    for key in ("tls_cert", "tls_key"):
        value = getattr(config.server, key)
        if value is not None:
            server[key] = str(value)
    media = raw.get("media")
    if media is not None:
        if "rtp_ports" in media:
            media["rtp_ports"] = str(config.media.rtp_ports)
        if "rtpengine" in media:
            media["rtpengine"] = str(config.media.rtpengine)
    for i, trunk in enumerate(config.trunks):
        raw["trunks"][i]["address"] = str(trunk.address)
        if "inbound_from" in raw["trunks"][i]:
            raw["trunks"][i]["inbound_from"] = [str(n) for n in trunk.inbound_from]
    for i, music in enumerate(config.music):
        raw["music"][i]["files"] = [str(f) for f in music.files]
    for i, ann in enumerate(config.announcements):
        raw["announcements"][i]["file"] = str(ann.file)
    raw["users"] = [user_to_raw(u) for u in config.users]
    return raw


_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE.match(key) else _toml_string(key)


def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError("TOML cannot hold NaN or infinity here")
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _is_sub_table(value: Any) -> bool:
    """A dict written as a [table] rather than inline: one that holds tables itself."""
    return isinstance(value, dict) and any(
        isinstance(v, dict) or _is_table_array(v) for v in value.values()
    )


def _emit_table(out: list[str], path: tuple[str, ...], table: Mapping[str, Any], depth: int) -> None:
    indent = "  " * max(0, depth - 1)
    for key, value in table.items():
        if value is None or _is_table_array(value) or (path == () and isinstance(value, dict)):
            continue
        if _is_sub_table(value):
            continue
        out.append(f"{indent}{_toml_key(key)} = {_toml_value(value)}")
    for key, value in table.items():
        if value is None:
            continue
        sub = (*path, key)
        name = ".".join(_toml_key(k) for k in sub)
        if isinstance(value, dict) and (path == () or _is_sub_table(value)):
            out.append("")
            out.append(f"{'  ' * max(0, depth)}[{name}]" if depth else f"[{name}]")
            _emit_table(out, sub, value, depth + 1)
        elif _is_table_array(value):
            for item in value:
                out.append("")
                out.append(f"{'  ' * depth}[[{name}]]")
                _emit_table(out, sub, item, depth + 1)


def raw_to_toml(raw: Mapping[str, Any], header: str = "") -> str:
    """TOML text for a configuration dict (nested sections as tables, destinations inline)."""
    out: list[str] = [f"# {line}" if line else "#" for line in header.splitlines()]
    _emit_table(out, (), raw, 0)
    return "\n".join(out).lstrip("\n") + "\n"


# ---------------------------------------------------------------------------------------------
# Merging stored settings over the TOML


@dataclass(frozen=True, slots=True)
class UserOverride:
    extension: str
    values: dict[str, Any]
    created: bool = False
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class MusicUpload:
    name: str
    files: tuple[str, ...]  # relative to data_dir
    original: str | None
    duration: float | None
    uploaded_at: float
    uploaded_by: str | None


def merge_raw(
    base: Mapping[str, Any],
    overrides: Mapping[str, UserOverride],
    uploads: Iterable[MusicUpload],
    data_dir: Path,
) -> dict[str, Any]:
    """The TOML dict with the stored user sections and uploaded music merged in."""
    raw = {k: v for k, v in base.items() if k not in ("users", "music")}
    music = [dict(m) for m in base.get("music", [])]
    names = {m.get("name") for m in music}
    for upload in uploads:
        if upload.name not in names:
            music.append({"name": upload.name, "files": [str(data_dir / f) for f in upload.files]})
    if music:
        raw["music"] = music
    users: list[dict[str, Any]] = []
    seen: set[str] = set()
    for section in base.get("users", []):
        ext = section.get("extension")
        seen.add(ext)
        override = overrides.get(ext)
        if override is None:
            users.append(dict(section))
        elif not override.deleted:
            users.append(_apply(section, override.values))
    for ext, override in sorted(overrides.items()):
        if ext not in seen and override.created and not override.deleted:
            users.append(_apply({"extension": ext}, override.values))
    raw["users"] = users
    return raw


def _apply(section: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    merged = {**section, **values}
    merged["extension"] = section["extension"]
    return {k: v for k, v in merged.items() if v is not None}


class SettingsRejected(Exception):
    """A change that does not validate; `.issues` are `{"field", "reason"}` dicts."""

    def __init__(self, issues: Sequence[Mapping[str, str]], status: int = 422) -> None:
        self.issues = [dict(i) for i in issues]
        self.status = status
        super().__init__("; ".join(f"{i['field']}: {i['reason']}" for i in self.issues))


def _issues_for(error: ConfigError, raw: Mapping[str, Any], extension: str | None) -> list[dict[str, str]]:
    return map_issues([(i.field, i.reason) for i in error.issues], raw, extension)


def map_issues(
    issues: Iterable[tuple[str, str]], raw: Mapping[str, Any], extension: str | None
) -> list[dict[str, str]]:
    """(field, reason) pairs as dicts, `users[i].` stripped for the user being changed."""
    prefix = None
    if extension is not None:
        for i, u in enumerate(raw.get("users", [])):
            if u.get("extension") == extension:
                prefix = f"users[{i}]"
    out: list[dict[str, str]] = []
    for field, reason in issues:
        if prefix is not None and (field == prefix or field.startswith(prefix + ".")):
            field = field[len(prefix) + 1 :] or "(user)"
        out.append({"field": field, "reason": reason})
    return out


# ---------------------------------------------------------------------------------------------
# The store


class SettingsStore:
    """Stored settings over a base (TOML) configuration. Methods touching SQLite run on the
    thread that owns the connection; `validate()` is pure and may run in a worker thread."""

    def __init__(self, conn: sqlite3.Connection, base: Config) -> None:
        self.conn = conn
        self.base = base
        self.base_raw = config_to_raw(base)
        self.data_dir = Path(base.server.data_dir)
        self.base_dir = Path(base.source).resolve().parent if Path(base.source).is_file() else None
        ensure_schema(conn)

    # ---- reading -------------------------------------------------------------------------

    def overrides(self) -> dict[str, UserOverride]:
        rows = self.conn.execute(
            "SELECT extension, json, created, deleted FROM user_settings"
        ).fetchall()
        return {
            str(r[0]): UserOverride(str(r[0]), json.loads(r[1]), bool(r[2]), bool(r[3]))
            for r in rows
        }

    def uploads(self) -> list[MusicUpload]:
        rows = self.conn.execute(
            "SELECT name, files, original, duration, uploaded_at, uploaded_by FROM music_uploads"
            " ORDER BY name"
        ).fetchall()
        return [
            MusicUpload(str(r[0]), tuple(json.loads(r[1])), r[2], r[3], float(r[4]), r[5])
            for r in rows
        ]

    def revision(self) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (REVISION_KEY,)).fetchone()
        return int(row[0]) if row else 0

    def merged_raw(
        self,
        overrides: Mapping[str, UserOverride] | None = None,
        uploads: Iterable[MusicUpload] | None = None,
    ) -> dict[str, Any]:
        return merge_raw(
            self.base_raw,
            self.overrides() if overrides is None else overrides,
            self.uploads() if uploads is None else uploads,
            self.data_dir,
        )

    def validate(self, raw: Mapping[str, Any], extension: str | None = None) -> Config:
        """The Config for `raw`, or SettingsRejected naming each field (pure)."""
        try:
            config = config_from_dict(
                raw, file=self.base.source, base_dir=self.base_dir or Path.cwd()
            )
        except ConfigError as exc:
            raise SettingsRejected(_issues_for(exc, raw, extension)) from None
        return config

    def effective(self) -> Config:
        """The TOML plus every stored setting that still validates (the others are logged and
        left out)."""
        overrides = self.overrides()
        uploads = self.uploads()
        if not overrides and not uploads:
            return self.base
        try:
            return self.validate(self.merged_raw(overrides, uploads))
        except SettingsRejected:
            pass
        good: dict[str, UserOverride] = {}
        for ext, override in sorted(overrides.items()):
            try:
                self.validate(self.merged_raw({**good, ext: override}, uploads))
            except SettingsRejected as exc:
                log.error("stored settings of %s no longer validate, keeping the file's: %s",
                          ext, exc)
                continue
            good[ext] = override
        try:
            return self.validate(self.merged_raw(good, uploads))
        except SettingsRejected as exc:
            log.error("stored settings do not validate together, using the file alone: %s", exc)
            return self.base

    # ---- writing -------------------------------------------------------------------------

    def _bump(self) -> None:
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, 1) "
            "ON CONFLICT (key) DO UPDATE SET value = value + 1",
            (REVISION_KEY,),
        )

    def user_candidate(
        self, extension: str, changes: Mapping[str, Any] | None, *, create: bool = False
    ) -> tuple[dict[str, Any], UserOverride]:
        """The merged dict with `changes` applied to `extension` (None: delete the user), and
        the override row that would be stored."""
        overrides = self.overrides()
        current = overrides.get(extension)
        in_base = any(u.get("extension") == extension for u in self.base_raw.get("users", []))
        if changes is None:
            if in_base:
                row = UserOverride(extension, current.values if current else {}, False, True)
            else:
                row = UserOverride(extension, {}, True, True)
        elif create:
            row = UserOverride(extension, dict(changes), not in_base, False)
        else:
            values = dict(current.values) if current and not current.deleted else {}
            values.update(changes)
            created = current.created if current else not in_base
            row = UserOverride(extension, values, created, False)
        overrides[extension] = row
        return self.merged_raw(overrides), row

    def save_user(
        self, row: UserOverride, config: Config, apply: Callable[[Config], None], by: str | None,
        now: float,
    ) -> None:
        """Store `row` and install `config` (already validated with it) in one transaction."""
        with transaction(self.conn):
            if not row.created and not row.deleted and not row.values:
                self.conn.execute("DELETE FROM user_settings WHERE extension = ?", (row.extension,))
            elif row.created and row.deleted:
                self.conn.execute("DELETE FROM user_settings WHERE extension = ?", (row.extension,))
            else:
                self.conn.execute(
                    "INSERT INTO user_settings (extension, json, created, deleted, updated_at,"
                    " updated_by) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (extension) DO UPDATE SET"
                    " json = excluded.json, created = excluded.created,"
                    " deleted = excluded.deleted, updated_at = excluded.updated_at,"
                    " updated_by = excluded.updated_by",
                    (row.extension, json.dumps(row.values, ensure_ascii=False), int(row.created),
                     int(row.deleted), now, by),
                )
            self._bump()
            apply(config)

    def reset_user(self, extension: str) -> dict[str, Any]:
        """The merged dict without `extension`'s stored override (back to the TOML's)."""
        overrides = self.overrides()
        overrides.pop(extension, None)
        return self.merged_raw(overrides)

    def music_candidate(self, upload: MusicUpload | None, remove: str | None = None) -> dict[str, Any]:
        uploads = [u for u in self.uploads() if u.name != (upload.name if upload else remove)]
        if upload is not None:
            uploads.append(upload)
        return self.merged_raw(uploads=uploads)

    def save_music(
        self, upload: MusicUpload | None, remove: str | None, config: Config,
        apply: Callable[[Config], None],
    ) -> None:
        with transaction(self.conn):
            if remove is not None:
                self.conn.execute("DELETE FROM music_uploads WHERE name = ?", (remove,))
            if upload is not None:
                self.conn.execute(
                    "INSERT INTO music_uploads (name, files, original, duration, uploaded_at,"
                    " uploaded_by) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                    " files = excluded.files, original = excluded.original,"
                    " duration = excluded.duration, uploaded_at = excluded.uploaded_at,"
                    " uploaded_by = excluded.uploaded_by",
                    (upload.name, json.dumps(list(upload.files)), upload.original,
                     upload.duration, upload.uploaded_at, upload.uploaded_by),
                )
            self._bump()
            apply(config)

    def replace_all(
        self, overrides: Mapping[str, UserOverride], uploads: Sequence[MusicUpload], now: float,
        by: str | None,
    ) -> None:
        """Replace every stored user setting and upload (what `b2bua import` does)."""
        with transaction(self.conn):
            self.conn.execute("DELETE FROM user_settings")
            for row in overrides.values():
                self.conn.execute(
                    "INSERT INTO user_settings (extension, json, created, deleted, updated_at,"
                    " updated_by) VALUES (?, ?, ?, ?, ?, ?)",
                    (row.extension, json.dumps(row.values, ensure_ascii=False),
                     int(row.created), int(row.deleted), now, by),
                )
            self.conn.execute("DELETE FROM music_uploads")
            for u in uploads:
                self.conn.execute(
                    "INSERT INTO music_uploads (name, files, original, duration, uploaded_at,"
                    " uploaded_by) VALUES (?, ?, ?, ?, ?, ?)",
                    (u.name, json.dumps(list(u.files)), u.original, u.duration, u.uploaded_at,
                     u.uploaded_by),
                )
            self._bump()


def attach_settings(server: Any) -> SettingsStore:
    """At start: open the store over the server's (TOML) configuration and install the TOML
    merged with the stored settings. (The dashboard creates the admin account.)"""
    store = SettingsStore(server.db, server.config)
    effective = store.effective()
    if effective is not server.config:
        server.apply_config(effective)
    server.settings = store
    return store


# ---------------------------------------------------------------------------------------------
# Dashboard accounts and sessions


@dataclass(frozen=True, slots=True)
class Account:
    login: str
    role: str  # "admin" | "user"
    extension: str | None


def admin_missing(conn: sqlite3.Connection) -> bool:
    ensure_schema(conn)
    row = conn.execute(
        "SELECT 1 FROM dashboard_accounts WHERE login = ?", (ADMIN_LOGIN,)
    ).fetchone()
    return row is None


def admin_password(configured: str | None) -> tuple[str, bool]:
    """The password to give the new `admin` account, and whether it was generated (then the
    caller prints it once)."""
    if configured:
        return configured, False
    return secrets.token_urlsafe(12), True


def create_admin(conn: sqlite3.Connection, encoded: str, now: float) -> bool:
    """Store the `admin` account's hash unless it exists; True if created."""
    with transaction(conn):
        cur = conn.execute(
            "INSERT OR IGNORE INTO dashboard_accounts (login, role, extension, password_hash,"
            " changed_at) VALUES (?, 'admin', NULL, ?, ?)",
            (ADMIN_LOGIN, encoded, now),
        )
    return cur.rowcount == 1


def ensure_admin(conn: sqlite3.Connection, password: str | None, now: float) -> str | None:
    """Create the `admin` account if missing (synchronously). Returns the password when one was
    generated, None otherwise. `password` (from the environment) is used only at creation."""
    if not admin_missing(conn):
        return None
    password, generated = admin_password(password)
    created = create_admin(conn, hash_password(password), now)
    return password if created and generated else None


def stored_password(conn: sqlite3.Connection, login: str) -> tuple[str, str, str | None] | None:
    """(role, hash, extension) of a login that has a stored password."""
    row = conn.execute(
        "SELECT role, password_hash, extension FROM dashboard_accounts WHERE login = ?", (login,)
    ).fetchone()
    return (str(row[0]), str(row[1]), row[2]) if row else None


def set_password(
    conn: sqlite3.Connection, account: Account, encoded: str, now: float, keep_session: str | None
) -> None:
    """Store a new password hash and end the account's other sessions."""
    with transaction(conn):
        conn.execute(
            "INSERT INTO dashboard_accounts (login, role, extension, password_hash, changed_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (login) DO UPDATE SET"
            " password_hash = excluded.password_hash, changed_at = excluded.changed_at",
            (account.login, account.role, account.extension, encoded, now),
        )
        conn.execute(
            "DELETE FROM dashboard_sessions WHERE login = ? AND token_hash IS NOT ?",
            (account.login, keep_session),
        )


def forget_password(conn: sqlite3.Connection, login: str) -> None:
    """Back to the initial password (the SIP secret) for a user login."""
    with transaction(conn):
        conn.execute(
            "DELETE FROM dashboard_accounts WHERE login = ? AND role = 'user'", (login,)
        )
        conn.execute("DELETE FROM dashboard_sessions WHERE login = ?", (login,))


def session_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


# ---------------------------------------------------------------------------------------------
# Voicemail index


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


# ---------------------------------------------------------------------------------------------
# `b2bua export` and `b2bua import`


def _open_store(config: Config, readonly: bool) -> SettingsStore | None:
    from b2bua.store import open_database

    try:
        conn = open_database(config.server.data_dir, readonly=readonly)
    except (FileNotFoundError, sqlite3.Error):
        return None
    if readonly:
        # A read-only connection cannot migrate: only read an already-created schema.
        has = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'user_settings'"
        ).fetchone()
        if has is None:
            conn.close()
            return None
        store = SettingsStore.__new__(SettingsStore)
        store.conn, store.base = conn, config
        store.base_raw = config_to_raw(config)
        store.data_dir = Path(config.server.data_dir)
        store.base_dir = Path(config.source).resolve().parent
        return store
    return SettingsStore(conn, config)


def cmd_export(args: argparse.Namespace) -> int:
    """Print (or write) the whole effective configuration: the TOML plus the stored settings."""
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    store = _open_store(config, readonly=True)
    effective = config if store is None else store.effective()
    if store is not None:
        store.conn.close()
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


def import_rows(base: Config, source: Config) -> tuple[dict[str, UserOverride], list[str]]:
    """The stored rows that make `base` + rows equal `source`'s users; plus notes about what an
    import cannot carry (server-wide sections stay the TOML file's)."""
    notes: list[str] = []
    base_raw = config_to_raw(base)
    src_raw = config_to_raw(source)
    for section in ("server", "registrar", "media", "trunks", "announcements",
                    "system_extensions"):
        if base_raw.get(section) != src_raw.get(section):
            notes.append(f"[{section}] differs from the running file's: not imported "
                         "(edit the TOML file for server-wide sections)")
    base_users = {u["extension"]: u for u in base_raw.get("users", [])}
    rows: dict[str, UserOverride] = {}
    for section in src_raw.get("users", []):
        ext = section["extension"]
        old = base_users.get(ext)
        if old is None:
            rows[ext] = UserOverride(ext, {k: v for k, v in section.items() if k != "extension"},
                                     True, False)
            continue
        values = {k: v for k, v in section.items() if old.get(k) != v}
        values.update({k: None for k in old if k not in section})
        if values:
            rows[ext] = UserOverride(ext, values, False, False)
    src_exts = {u["extension"] for u in src_raw.get("users", [])}
    for ext in base_users:
        if ext not in src_exts:
            rows[ext] = UserOverride(ext, {}, False, True)
    return rows, notes


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
    store = _open_store(config, readonly=False)
    assert store is not None
    try:
        merged = merge_raw(store.base_raw, rows, uploads, store.data_dir)
        try:
            store.validate(merged)
        except SettingsRejected as exc:
            for issue in exc.issues:
                print(f"{args.file}: {issue['field']}: {issue['reason']}", file=sys.stderr)
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


def issues_as_json(issues: Iterable[ConfigIssue]) -> list[dict[str, str]]:
    return [{"field": i.field, "reason": i.reason} for i in issues]
