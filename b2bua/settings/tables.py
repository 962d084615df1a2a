"""The settings store's tables in SQLite (component `settings` of `b2bua.store.migrate`).

- `user_settings(extension, json, created, deleted, ...)`: per user, a *partial* `[[users]]`
  section holding only the keys changed from the dashboard (b2bua.settings.overrides).
- `music_uploads(name, files, ...)`: hold-music classes uploaded by admins.
- `dashboard_accounts`, `dashboard_sessions`: b2bua.settings.accounts.
- `voicemail(...)`: the voicemail index, b2bua.settings.voicemail.
- `meta.settings_revision`: bumped by every write, so that a running server notices a change
  made by another process (`b2bua import`); a tenant's is `settings_revision@DOMAIN`.
- `tenants(domain, json, created, deleted, ...)`: tenants created, changed or deleted from the
  API (b2bua.tenants.store), over the TOML file's `[[tenants]]`.

Every table of a company's data has a `tenant` column (docs/tenants.md): `''` is the top-level
company, so the rows stored before tenants existed keep their meaning.

A new table is a new string appended to `MIGRATIONS` (never an edit of an applied one).
"""

from __future__ import annotations

import sqlite3

from b2bua.store import migrate

__all__ = ["COMPONENT", "MIGRATIONS", "REVISION_KEY", "ensure_schema", "revision_key"]

COMPONENT = "settings"
REVISION_KEY = "settings_revision"

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
    # Tenants: the company of each row joins the keys ('' is the top-level company).
    """
    CREATE TABLE user_settings_t (
        tenant     TEXT NOT NULL DEFAULT '',
        extension  TEXT NOT NULL,
        json       TEXT NOT NULL,
        created    INTEGER NOT NULL DEFAULT 0,
        deleted    INTEGER NOT NULL DEFAULT 0,
        updated_at REAL NOT NULL,
        updated_by TEXT,
        PRIMARY KEY (tenant, extension)
    );
    INSERT INTO user_settings_t (tenant, extension, json, created, deleted, updated_at,
        updated_by)
    SELECT '', extension, json, created, deleted, updated_at, updated_by FROM user_settings;
    DROP TABLE user_settings;
    ALTER TABLE user_settings_t RENAME TO user_settings;
    CREATE TABLE music_uploads_t (
        tenant      TEXT NOT NULL DEFAULT '',
        name        TEXT NOT NULL,
        files       TEXT NOT NULL,
        original    TEXT,
        duration    REAL,
        uploaded_at REAL NOT NULL,
        uploaded_by TEXT,
        PRIMARY KEY (tenant, name)
    );
    INSERT INTO music_uploads_t (tenant, name, files, original, duration, uploaded_at,
        uploaded_by)
    SELECT '', name, files, original, duration, uploaded_at, uploaded_by FROM music_uploads;
    DROP TABLE music_uploads;
    ALTER TABLE music_uploads_t RENAME TO music_uploads;
    ALTER TABLE dashboard_accounts ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
    ALTER TABLE dashboard_sessions ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
    ALTER TABLE voicemail ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
    CREATE INDEX voicemail_tenant ON voicemail (tenant, extension, received_at);
    CREATE TABLE tenants (
        domain     TEXT PRIMARY KEY,
        json       TEXT NOT NULL,
        created    INTEGER NOT NULL DEFAULT 0,
        deleted    INTEGER NOT NULL DEFAULT 0,
        updated_at REAL NOT NULL,
        updated_by TEXT
    );
    """,
]


def revision_key(tenant: str) -> str:
    """The `meta` key of a tenant's settings revision (the top-level company's is the one
    that existed before tenants)."""
    return f"{REVISION_KEY}@{tenant}" if tenant else REVISION_KEY


def ensure_schema(conn: sqlite3.Connection) -> None:
    migrate(conn, COMPONENT, MIGRATIONS)
