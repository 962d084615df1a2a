"""Credentials and endpoints of the push providers, read and checked: the APNs `.p8` signing key,
the FCM service-account key file, a provider base URL.

Kept apart from the HTTP clients (no `httpx` here) so that loading a configuration checks them
cheaply. Errors are `PushConfigError(field, reason)`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from b2bua.push.model import PushConfigError

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
ASSERTION_LIFETIME = 3600  # Google accepts at most one hour
_SERVICE_ACCOUNT_FIELDS = ("project_id", "private_key_id", "private_key", "client_email", "token_uri")


def load_apns_key(key_file: str | Path) -> ec.EllipticCurvePrivateKey:
    """Read an APNs token signing key (a `.p8` file: PKCS#8 PEM, EC P-256)."""
    field = "push.apns.key_file"
    try:
        data = Path(key_file).read_bytes()
    except OSError as exc:
        raise PushConfigError(field, f"{key_file}: {exc.strerror or exc}") from None
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise PushConfigError(field, f"{key_file}: not a PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise PushConfigError(field, f"{key_file}: not an EC P-256 key (.p8)")
    return key


@dataclass(frozen=True, slots=True)
class ApnsCredentials:
    """The team's token signing key (the `.p8` file Apple issues), its key ID and the team ID."""

    key: ec.EllipticCurvePrivateKey
    key_id: str
    team_id: str

    @classmethod
    def load(cls, key_file: str | Path, key_id: str, team_id: str) -> ApnsCredentials:
        """Read and check a `.p8` key: PushConfigError naming the field at fault."""
        for field, value in (("push.apns.key_id", key_id), ("push.apns.team_id", team_id)):
            if len(value) != 10 or not value.isascii() or not value.isalnum():
                raise PushConfigError(field, f"{value!r} is not a 10-character Apple identifier")
        key = load_apns_key(key_file)
        return cls(key, key_id, team_id)


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """The fields of a Google service-account key file that FCM needs."""

    project_id: str
    client_email: str
    private_key_id: str
    private_key: rsa.RSAPrivateKey
    token_uri: str

    @classmethod
    def load(cls, path: str | Path) -> ServiceAccount:
        field = "push.fcm.service_account"
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise PushConfigError(field, f"{path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise PushConfigError(field, f"{path}: not UTF-8 text") from None
        return cls.parse(text, str(path))

    @classmethod
    def parse(cls, text: str, source: str = "service account") -> ServiceAccount:
        field = "push.fcm.service_account"
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise PushConfigError(field, f"{source}: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise PushConfigError(field, f"{source}: not a service-account key (a JSON object)")
        if data.get("type", "service_account") != "service_account":
            raise PushConfigError(field, f"{source}: type is {data.get('type')!r}, not 'service_account'")
        missing = [k for k in _SERVICE_ACCOUNT_FIELDS if not isinstance(data.get(k), str) or not data[k]]
        if missing:
            raise PushConfigError(field, f"{source}: missing {', '.join(missing)}")
        token_uri = str(data["token_uri"])
        if not token_uri.startswith(("https://", "http://")):
            raise PushConfigError(field, f"{source}: token_uri {token_uri!r} is not an HTTP URL")
        try:
            key = load_pem_private_key(str(data["private_key"]).encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise PushConfigError(field, f"{source}: private_key is not a PEM key ({exc})") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise PushConfigError(field, f"{source}: private_key is not an RSA key")
        return cls(str(data["project_id"]), str(data["client_email"]),
                   str(data["private_key_id"]), key, token_uri)

    def assertion(self, now: float) -> str:
        """The signed JWT of the bearer grant (RFC 7523 §3)."""
        iat = int(now)
        claims = {"iss": self.client_email, "scope": SCOPE, "aud": self.token_uri,
                  "iat": iat, "exp": iat + ASSERTION_LIFETIME}
        return jwt.encode(claims, self.private_key, algorithm="RS256",
                          headers={"kid": self.private_key_id})


def check_url(field: str, url: str) -> str:
    """A provider base URL: http(s)://host[:port], no query or fragment."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise PushConfigError(field, f"{url!r} is not an http:// or https:// URL")
    if parts.query or parts.fragment:
        raise PushConfigError(field, f"{url!r}: a base URL takes no query or fragment")
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError:
        raise PushConfigError(field, f"{url!r}: bad port") from None
    return url.rstrip("/")
