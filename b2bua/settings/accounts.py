"""Dashboard accounts and sessions.

Passwords are PBKDF2-SHA256 in the standard `$pbkdf2-sha256$ROUNDS$SALT$HASH` format (adapted
base64, as passlib writes it). A user without a row signs in with their SIP secret
(constant-time comparison) until they choose a password. The `admin` account is created at
first start (see `ensure_admin`). Of a session token only its SHA-256 is stored, with its CSRF
token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import sqlite3
from dataclasses import dataclass

from b2bua.settings.tables import ensure_schema
from b2bua.store import transaction

__all__ = [
    "ADMIN_LOGIN",
    "ADMIN_PASSWORD_ENV",
    "PBKDF2_ITERATIONS",
    "Account",
    "admin_missing",
    "admin_password",
    "create_admin",
    "ensure_admin",
    "forget_password",
    "hash_password",
    "session_hash",
    "set_password",
    "stored_password",
    "verify_password",
]

ADMIN_LOGIN = "admin"
ADMIN_PASSWORD_ENV = "B2BUA_ADMIN_PASSWORD"
PBKDF2_ITERATIONS = 600_000


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


@dataclass(frozen=True, slots=True)
class Account:
    login: str
    role: str  # "admin" | "user"
    extension: str | None

    @property
    def tenant(self) -> str:
        """The company of the account: `''` for the top-level one (`admin`, `1001`), else the
        domain of its login (`admin@acme.example`, `1001@acme.example`; docs/tenants.md)."""
        return self.login.partition("@")[2]


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
