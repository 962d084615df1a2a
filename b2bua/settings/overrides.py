"""Stored settings over the TOML file: what users and admins change from the dashboard.

Theory of operation
-------------------
The effective configuration is the TOML file, then the changes stored here:

- per user, a *partial* `[[users]]` section in the CONTRACT.md shape holding only the keys
  changed from the dashboard (`{"schedule": {...}, "exceptions": [...]}`). At merge time each
  stored key replaces the TOML's key of that user; a `null` value removes the key (`"forward":
  null`: no manual forward). So a later edit of the TOML file (a new secret, say) still shows
  through for every key the dashboard never touched. `created` marks a user that exists only
  here (created by an admin; the json is then the whole section); `deleted` hides a TOML user.
- hold-music classes uploaded by admins; they become `[[music]]` entries whose files live under
  `data_dir/uploads/music/<name>/`.

A change is validated by merging it over everything else and running the same pydantic models
and cross-checks as `b2bua check` (`config_from_dict`); a refused change raises
`SettingsRejected` and writes nothing. An accepted change is written in one transaction that
also installs the new configuration (the `apply` callback, `Server.apply_config`): if that
raises, the transaction rolls back. Every write bumps `meta.settings_revision`.

If a stored override no longer validates at start (the TOML changed under it), it is left out
(`resolve()` says which and why): that user keeps the TOML's settings until someone saves again.

One store per tenant (docs/tenants.md): `tenant` names the company (`''`, the top-level one, is
every row stored before tenants existed); its base is that company's view of the file
(`Config.tenant_view`), and it reads and writes that company's rows only. A change is validated
and compiled for that company alone.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from b2bua.config import Config, ConfigError, ConfigIssue, KeyPath, config_from_dict, format_path
from b2bua.settings.tables import ensure_schema, revision_key
from b2bua.settings.toml_writer import config_to_raw
from b2bua.store import open_database, transaction

__all__ = [
    "UPLOADS_DIR",
    "MusicUpload",
    "Rejection",
    "SettingsRejected",
    "SettingsStore",
    "UserOverride",
    "attach_settings",
    "merge_raw",
    "open_store",
    "user_scope",
]

log = logging.getLogger("b2bua.settings")

UPLOADS_DIR = "uploads"


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


def bump_revision(conn: sqlite3.Connection, tenant: str = "") -> None:
    """A tenant's settings changed: its revision moves (other processes and nodes notice)."""
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, 1) "
        "ON CONFLICT (key) DO UPDATE SET value = value + 1",
        (revision_key(tenant),),
    )


def tenant_dir(data_dir: Path, tenant: str) -> Path:
    """Where a tenant's files live: `data_dir` for the top-level company, else
    `data_dir/tenants/DOMAIN` (uploads, voicemail, greetings)."""
    return data_dir / "tenants" / tenant if tenant else data_dir


class SettingsRejected(Exception):
    """A change that does not validate. `.issues` are the `ConfigIssue`s of the merged document
    (paths from its root); `.scope` is the key path of what the change was about (`("users",
    i)` for a user's settings, `()` otherwise): the API shows fields relative to it."""

    def __init__(
        self, issues: Sequence[ConfigIssue], scope: KeyPath = (), status: int = 422
    ) -> None:
        self.issues = list(issues)
        self.scope = scope
        self.status = status
        super().__init__("; ".join(f"{i.field}: {i.reason}" for i in self.issues))

    def relative(self) -> list[tuple[KeyPath, ConfigIssue]]:
        """Each issue with its path relative to `scope` (its whole path when outside it)."""
        return relative_paths(self.issues, self.scope)


def relative_paths(
    issues: Iterable[ConfigIssue], scope: KeyPath
) -> list[tuple[KeyPath, ConfigIssue]]:
    """Each issue's path relative to `scope` when inside it, else its whole path."""
    n = len(scope)
    return [
        (issue.path[n:] if n and issue.path[:n] == scope else issue.path, issue)
        for issue in issues
    ]


def user_scope(raw: Mapping[str, Any], extension: str | None) -> KeyPath:
    """`("users", i)` for `extension`'s section in a merged document, else `()`."""
    if extension is not None:
        for i, u in enumerate(raw.get("users", [])):
            if u.get("extension") == extension:
                return ("users", i)
    return ()


class SettingsStore:
    """Stored settings over a base (TOML) configuration. Methods touching SQLite run on the
    thread that owns the connection; `validate()` is pure and may run in a worker thread."""

    def __init__(self, conn: sqlite3.Connection, base: Config, *, migrate: bool = True,
                 tenant: str = "") -> None:
        self.conn = conn
        self.tenant = tenant
        self.base = base
        self._base_raw: dict[str, Any] | None = None
        self.data_dir = Path(base.server.data_dir)
        # A tenant's uploads live in its own directory (b2bua.tenants.files).
        self.files_dir = tenant_dir(self.data_dir, tenant)
        self.base_dir = Path(base.source).resolve().parent if Path(base.source).is_file() else None
        if migrate:
            ensure_schema(conn)

    @property
    def base_raw(self) -> dict[str, Any]:
        """The base configuration as a TOML-shaped dict (made at first use: a server with a
        thousand tenants keeps only those it changed)."""
        raw = self._base_raw
        if raw is None:
            raw = self._base_raw = config_to_raw(self.base)
        return raw

    # ---- reading -------------------------------------------------------------------------

    def overrides(self) -> dict[str, UserOverride]:
        rows = self.conn.execute(
            "SELECT extension, json, created, deleted FROM user_settings WHERE tenant = ?",
            (self.tenant,),
        ).fetchall()
        return {
            str(r[0]): UserOverride(str(r[0]), json.loads(r[1]), bool(r[2]), bool(r[3]))
            for r in rows
        }

    def uploads(self) -> list[MusicUpload]:
        rows = self.conn.execute(
            "SELECT name, files, original, duration, uploaded_at, uploaded_by FROM music_uploads"
            " WHERE tenant = ? ORDER BY name", (self.tenant,)
        ).fetchall()
        return [
            MusicUpload(str(r[0]), tuple(json.loads(r[1])), r[2], r[3], float(r[4]), r[5])
            for r in rows
        ]

    def revision(self) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?",
                                (revision_key(self.tenant),)).fetchone()
        return int(row[0]) if row else 0

    def merged_raw(
        self,
        overrides: Mapping[str, UserOverride] | None = None,
        uploads: Iterable[MusicUpload] | None = None,
    ) -> dict[str, Any]:
        raw = merge_raw(
            self.base_raw,
            self.overrides() if overrides is None else overrides,
            self.uploads() if uploads is None else uploads,
            self.files_dir,
        )
        # Announcements uploaded or recorded from the dashboard become [[announcements]].
        from b2bua.settings.announcements import merge_announcements, stored_announcements

        return merge_announcements(raw, self.conn, self.files_dir,
                                   stored_announcements(self.conn, self.tenant))

    def validate(self, raw: Mapping[str, Any], extension: str | None = None) -> Config:
        """The Config for `raw`, or SettingsRejected naming each field (pure)."""
        try:
            config = config_from_dict(
                raw, file=self.base.source, base_dir=self.base_dir or Path.cwd()
            )
        except ConfigError as exc:
            raise SettingsRejected(exc.issues, user_scope(raw, extension)) from None
        return config

    def resolve(self) -> tuple[Config, list[Rejection]]:
        """The TOML plus every stored setting that still validates, and what was left out: a
        user's stored settings that no longer validate (the TOML changed under them) leave
        that user with the file's settings; if the rest still fails together, the file alone
        is used."""
        from b2bua.settings.announcements import stored_announcements

        overrides = self.overrides()
        uploads = self.uploads()
        if not overrides and not uploads and not stored_announcements(self.conn, self.tenant):
            return self.base, []
        try:
            return self.validate(self.merged_raw(overrides, uploads)), []
        except SettingsRejected:
            pass
        rejected: list[Rejection] = []
        good: dict[str, UserOverride] = {}
        for ext, override in sorted(overrides.items()):
            candidate = self.merged_raw({**good, ext: override}, uploads)
            try:
                self.validate(candidate)
            except SettingsRejected as exc:
                rejected.append(Rejection(ext, user_scope(candidate, ext), tuple(exc.issues)))
                continue
            good[ext] = override
        try:
            return self.validate(self.merged_raw(good, uploads)), rejected
        except SettingsRejected as exc:
            rejected.append(Rejection(None, (), tuple(exc.issues)))
            return self.base, rejected

    def effective(self) -> Config:
        """`resolve()`'s configuration; what it left out is logged."""
        config, rejected = self.resolve()
        for r in rejected:
            if r.extension is not None:
                log.error("stored settings of %s no longer validate, keeping the file's: %s",
                          r.extension, r.describe())
            else:
                log.error("stored settings do not validate together, using the file alone: %s",
                          r.describe())
        return config

    # ---- writing -------------------------------------------------------------------------

    def _bump(self) -> None:
        bump_revision(self.conn, self.tenant)

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
            if (not row.created and not row.deleted and not row.values) or (
                    row.created and row.deleted):
                self.conn.execute("DELETE FROM user_settings WHERE tenant = ? AND extension = ?",
                                  (self.tenant, row.extension))
            else:
                self.conn.execute(
                    "INSERT INTO user_settings (tenant, extension, json, created, deleted,"
                    " updated_at, updated_by) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT"
                    " (tenant, extension) DO UPDATE SET"
                    " json = excluded.json, created = excluded.created,"
                    " deleted = excluded.deleted, updated_at = excluded.updated_at,"
                    " updated_by = excluded.updated_by",
                    (self.tenant, row.extension, json.dumps(row.values, ensure_ascii=False),
                     int(row.created), int(row.deleted), now, by),
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
                self.conn.execute("DELETE FROM music_uploads WHERE tenant = ? AND name = ?",
                                  (self.tenant, remove))
            if upload is not None:
                self.conn.execute(
                    "INSERT INTO music_uploads (tenant, name, files, original, duration,"
                    " uploaded_at, uploaded_by) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT"
                    " (tenant, name) DO UPDATE SET"
                    " files = excluded.files, original = excluded.original,"
                    " duration = excluded.duration, uploaded_at = excluded.uploaded_at,"
                    " uploaded_by = excluded.uploaded_by",
                    (self.tenant, upload.name, json.dumps(list(upload.files)), upload.original,
                     upload.duration, upload.uploaded_at, upload.uploaded_by),
                )
            self._bump()
            apply(config)

    def replace_all(
        self, overrides: Mapping[str, UserOverride], uploads: Sequence[MusicUpload], now: float,
        by: str | None, announcements: Sequence[Any] | None = None,
    ) -> None:
        """Replace every stored user setting and upload (what `b2bua import` does), and the
        stored announcements when `announcements` (`AnnouncementUpload`s) is given."""
        if announcements is not None:
            from b2bua.settings.announcements import ensure_schema as announcements_schema

            announcements_schema(self.conn)
        with transaction(self.conn):
            if announcements is not None:
                self.conn.execute("DELETE FROM announcement_uploads WHERE tenant = ?",
                                  (self.tenant,))
                for a in announcements:
                    self.conn.execute(
                        "INSERT INTO announcement_uploads (tenant, name, label, owner, file,"
                        " original, duration, uploaded_at, uploaded_by)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (self.tenant, a.name, a.label, a.owner, a.file, a.original, a.duration,
                         a.uploaded_at, a.uploaded_by),
                    )
            self.conn.execute("DELETE FROM user_settings WHERE tenant = ?", (self.tenant,))
            for row in overrides.values():
                self.conn.execute(
                    "INSERT INTO user_settings (tenant, extension, json, created, deleted,"
                    " updated_at, updated_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (self.tenant, row.extension, json.dumps(row.values, ensure_ascii=False),
                     int(row.created), int(row.deleted), now, by),
                )
            self.conn.execute("DELETE FROM music_uploads WHERE tenant = ?", (self.tenant,))
            for u in uploads:
                self.conn.execute(
                    "INSERT INTO music_uploads (tenant, name, files, original, duration,"
                    " uploaded_at, uploaded_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (self.tenant, u.name, json.dumps(list(u.files)), u.original, u.duration,
                     u.uploaded_at, u.uploaded_by),
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



@dataclass(frozen=True, slots=True)
class Rejection:
    """Stored settings left out of the effective configuration: one user's (`extension`, whose
    section is at `scope` in the merged document), or all of them together (`extension` None)."""

    extension: str | None
    scope: KeyPath
    issues: tuple[ConfigIssue, ...]

    def fields(self) -> list[tuple[str, ConfigIssue]]:
        """Each issue with its field relative to the user's section, numbered from 1 as the
        dashboard shows it."""
        return [
            (format_path(path, first=1) or "(user)", issue)
            for path, issue in relative_paths(self.issues, self.scope)
        ]

    def describe(self) -> str:
        return "; ".join(f"{field}: {issue.reason}" for field, issue in self.fields())


def open_store(config: Config, *, readonly: bool) -> SettingsStore | None:
    """The settings stored for `config`'s data directory, or None when there are none yet (no
    database, or, read-only, a database the server never created the tables in). Read-only
    opening works next to a running server (WAL) and changes nothing. With `[store] url`, the
    stored settings are read from PostgreSQL (b2bua.pgstore.snapshot; OSError when it cannot
    be read), and are changed through a node's API only."""
    url = getattr(getattr(config, "store", None), "url", None)
    if url:
        if not readonly:
            raise OSError("with [store] url the stored settings are changed through a node's "
                          "API (docs/cluster.md)")
        from b2bua.pgstore.snapshot import snapshot

        return SettingsStore(snapshot(url), config, migrate=False)
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
        return SettingsStore(conn, config, migrate=False)
    return SettingsStore(conn, config)
