"""The settings store's tables in SQLite (component `settings` of `b2bua.store.migrate`).

- `user_settings(extension, json, created, deleted, ...)`: per user, a *partial* `[[users]]`
  section holding only the keys changed from the dashboard (b2bua.settings.overrides).
- `music_uploads(name, files, ...)`: hold-music classes uploaded by admins.
- `dashboard_accounts`, `dashboard_sessions`: b2bua.settings.accounts.
- `voicemail(...)`: the voicemail index, b2bua.settings.voicemail.
- `meta.settings_revision`: bumped by every write, so that a running server notices a change
  made by another process (`b2bua import`).

A new table is a new string appended to `MIGRATIONS` (never an edit of an applied one).
"""

from __future__ import annotations

import sqlite3

from b2bua.store import migrate

__all__ = ["COMPONENT", "MIGRATIONS", "REVISION_KEY", "ensure_schema"]

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
]


def ensure_schema(conn: sqlite3.Connection) -> None:
    migrate(conn, COMPONENT, MIGRATIONS)
