"""Softphone provisioning: one-time tokens (only their SHA-256 is stored) and the settings a
device needs (Linphone remote-provisioning XML, or JSON).

A token is created by `b2bua qr EXT --device N`, rendered as a QR code of
`http://<server.http or public_url>/provision/<token>`, and consumed atomically by the first
GET: one UPDATE ... WHERE used_at IS NULL AND expires_at > now ... RETURNING, so two phones
scanning the same code cannot both get the password.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from b2bua.registrar.sqlite_store import ensure_schema

TOKEN_TTL = 24 * 3600
LINPHONE_NS = "http://www.linphone.org/xsds/lpconfig.xsd"
_WILDCARD = {"0.0.0.0", "::", ""}


class TokenState(enum.Enum):
    VALID = "valid"
    USED = "used"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class TokenGrant:
    extension: str
    device: int  # 0-based


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def create_token(
    conn: sqlite3.Connection,
    extension: str,
    device: int,
    now: float,
    *,
    ttl: float = TOKEN_TTL,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> str:
    """A new one-time token for device `device` (0-based) of `extension`, valid `ttl` s."""
    ensure_schema(conn)
    token = base64.urlsafe_b64encode(random_bytes(24)).decode().rstrip("=")
    conn.execute(
        "INSERT INTO provisioning_tokens (token_hash, extension, device, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (token_hash(token), extension, device, now, now + ttl),
    )
    return token


def consume_token(
    conn: sqlite3.Connection, token: str, now: float
) -> tuple[TokenState, TokenGrant | None]:
    """Use a token: VALID (and the grant) the first time only."""
    digest = token_hash(token)
    # fetchall(): the statement must run to completion for its implicit transaction to end.
    rows = conn.execute(
        "UPDATE provisioning_tokens SET used_at = ? "
        "WHERE token_hash = ? AND used_at IS NULL AND expires_at > ? "
        "RETURNING extension, device",
        (now, digest, now),
    ).fetchall()
    if rows:
        return TokenState.VALID, TokenGrant(str(rows[0][0]), int(rows[0][1]))
    row = conn.execute(
        "SELECT used_at, expires_at FROM provisioning_tokens WHERE token_hash = ?", (digest,)
    ).fetchone()
    if row is None:
        return TokenState.UNKNOWN, None
    if row[0] is not None:
        return TokenState.USED, None
    return TokenState.EXPIRED, None


def purge_tokens(conn: sqlite3.Connection, now: float, keep: float = 7 * 86400) -> int:
    """Forget tokens used or expired more than `keep` seconds ago."""
    cur = conn.execute(
        "DELETE FROM provisioning_tokens WHERE expires_at < ? OR used_at < ?",
        (now - keep, now - keep),
    )
    return cur.rowcount


# -- what a device is told ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceSettings:
    extension: str
    display_name: str
    domain: str
    username: str
    password: str
    server_host: str
    server_port: int
    transport: str
    # Push notification services the server wakes softphones with ([push]; RFC 8599).
    push: tuple[str, ...] = ()

    @property
    def server(self) -> str:
        host = f"[{self.server_host}]" if ":" in self.server_host else self.server_host
        return f"{host}:{self.server_port}"

    @property
    def proxy(self) -> str:
        return f"sip:{self.server};transport={self.transport}"

    @property
    def identity(self) -> str:
        return f"sip:{self.username}@{self.domain}"

    def as_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "proxy": self.proxy,
            "domain": self.domain,
            "username": self.username,
            "password": self.password,
            "transport": self.transport,
            "display_name": self.display_name,
            "extension": self.extension,
            "push": list(self.push),
        }


class ProvisioningError(LookupError):
    """The extension or device of a token is not (or no longer) provisionable."""


def device_settings(
    config: Any, extension: str, device: int, listen: Iterable[Any] | None = None
) -> DeviceSettings:
    """The account settings of device `device` (0-based) of `extension` under `config`.
    `listen`: the SIP addresses actually served (`--listen`), else the configuration's."""
    user = next((u for u in config.users if u.extension == extension), None)
    if user is None:
        raise ProvisioningError(f"no user with extension {extension}")
    devices = tuple(getattr(user, "devices", ()))
    if devices:
        if not 0 <= device < len(devices):
            raise ProvisioningError(f"{extension} has no device {device + 1}")
        spec = devices[device]
        if getattr(spec, "contact", None):
            raise ProvisioningError(f"device {device + 1} of {extension} has a static contact")
        username = getattr(spec, "username", None) or extension
    elif device == 0:
        username = extension
    else:
        raise ProvisioningError(f"{extension} has no device {device + 1}")
    host, port, transport = sip_address(config, listen)
    return DeviceSettings(
        extension=extension,
        display_name=str(user.name),
        domain=str(config.server.domain),
        username=username,
        password=str(user.secret),
        server_host=host,
        server_port=port,
        transport=transport,
        push=push_services(config),
    )


def push_services(config: Any) -> tuple[str, ...]:
    """The push notification services configured (`[push.apns]`, `[push.fcm]`)."""
    push = getattr(config, "push", None)
    return tuple(name for name in ("apns", "fcm") if getattr(push, name, None) is not None)


def sip_address(config: Any, listen: Iterable[Any] | None = None) -> tuple[str, int, str]:
    """Where devices reach us: the first listen address (UDP preferred); a wildcard host is
    replaced by the host of `public_url`, else of `http`, else the domain."""
    listens = list(getattr(config.server, "listen", ()) if listen is None else listen)
    order = {"udp": 0, "tcp": 1, "tls": 2}
    listens.sort(key=lambda s: order.get(str(s.transport), 3))
    if listens:
        spec = listens[0]
        host, port, transport = str(spec.host), int(spec.port), str(spec.transport)
    else:
        host, port, transport = "", 5060, "udp"
    if host in _WILDCARD:
        host = _public_host(config)
    return host, port, transport


def _public_host(config: Any) -> str:
    public = getattr(config.server, "public_url", None)
    if public:
        from urllib.parse import urlsplit

        name = urlsplit(str(public)).hostname
        if name:
            return name
    http = getattr(config.server, "http", None)
    host = str(getattr(http, "host", "")) if http is not None else ""
    if host and host not in _WILDCARD:
        return host
    return str(config.server.domain)


def provisioning_url(config: Any, token: str) -> str:
    public = getattr(config.server, "public_url", None)
    if public:
        return f"{str(public).rstrip('/')}/provision/{token}"
    http = config.server.http
    host = str(http.host)
    if host in _WILDCARD:
        host = _public_host(config)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{int(http.port)}/provision/{token}"


def linphone_xml(s: DeviceSettings, *, expires: int = 3600) -> str:
    """Linphone remote provisioning (lpconfig) for one account."""

    def entry(name: str, value: str | int) -> str:
        return f'    <entry name="{name}" overwrite="true">{escape(str(value))}</entry>'

    display = s.display_name.replace("\\", "\\\\").replace('"', '\\"')
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<config xmlns="{LINPHONE_NS}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:schemaLocation="{LINPHONE_NS} lpconfig.xsd">',
        '  <section name="proxy_0">',
        entry("reg_proxy", f"<{s.proxy}>"),
        entry("reg_route", f"<{s.proxy};lr>"),
        entry("reg_identity", f'"{display}" <{s.identity}>'),
        entry("realm", s.domain),
        entry("transport", s.transport),
        entry("reg_expires", expires),
        entry("reg_sendregister", 1),
        entry("publish", 0),
        # Register with push parameters (RFC 8599) when the server can wake the phone.
        entry("push_notification_allowed", 1 if s.push else 0),
        entry("remote_push_notification_allowed", 1 if s.push else 0),
        "  </section>",
        '  <section name="auth_info_0">',
        entry("username", s.username),
        entry("userid", s.username),
        entry("passwd", s.password),
        entry("realm", s.domain),
        entry("domain", s.domain),
        entry("transport", s.transport),
        "  </section>",
        "</config>",
        "",
    ]
    return "\n".join(lines)
