"""SIP and SIPS URIs (RFC 3261 §19.1), plus any other absolute URI kept opaque.

A `SipUri` remembers the text it was parsed from, so an unchanged URI prints back exactly. Treat
it as immutable: `replace()` returns a modified copy, which prints canonically. The user part is
kept escaped as written (`user`); comparisons (`==`, RFC 3261 §19.1.4) unescape.

The user part accepts any character but white space, `<`, `>` and `"` (phones put `#` and `*`
there unescaped); the host must be a host name, an IPv4 address or a valid IPv6 reference.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import unquote as pct_unquote

from b2bua.sip.errors import SipParseError
from b2bua.sip.grammar import format_params, parse_params, parsed_once

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_HOST = re.compile(r"[A-Za-z0-9\-.]+")
_PORT = re.compile(r"[0-9]{1,5}")
_BAD_URI_CHAR = re.compile(r'[\x00-\x20<>"\x7f]')
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def unescape(text: str) -> str:
    """Percent-decode; every escape maps to one distinct character (bytes that are not UTF-8
    become surrogates), so two texts unescape equal exactly when they mean the same octets."""
    return pct_unquote(text, errors="surrogateescape") if "%" in text else text


class AbsoluteUri:
    """A URI of another scheme (tel:, urn:, mailto:...), kept as written."""

    __slots__ = ("rest", "scheme")

    def __init__(self, scheme: str, rest: str) -> None:
        self.scheme = scheme.lower()
        self.rest = rest

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"

    def __repr__(self) -> str:
        return f"AbsoluteUri({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AbsoluteUri) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


class SipUri:
    """sip:user:password@host:port;params?headers"""

    __slots__ = ("_text", "headers", "host", "params", "password", "port", "scheme", "user")

    def __init__(
        self,
        host: str,
        user: str | None = None,
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        headers: str | None = None,
        scheme: str = "sip",
        password: str | None = None,
        _text: str | None = None,
    ) -> None:
        self.scheme = scheme
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.params = params if params is not None else {}
        self.headers = headers
        self._text = _text

    # -- derived values -------------------------------------------------------------------
    @property
    def user_unescaped(self) -> str | None:
        return None if self.user is None else unescape(self.user)

    @property
    def transport(self) -> str | None:
        t = self.params.get("transport")
        return t.lower() if t else None

    @property
    def host_for_socket(self) -> str:
        """Host without IPv6 brackets."""
        h = self.host
        return h[1:-1] if h.startswith("[") else h

    @property
    def hostport(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def header_fields(self) -> dict[str, str]:
        """The `?name=value&...` part, names lower-cased, both unescaped."""
        out: dict[str, str] = {}
        if self.headers:
            for item in self.headers.split("&"):
                name, _, value = item.partition("=")
                out[unescape(name).lower()] = unescape(value)
        return out

    def replace(self, **changes: object) -> SipUri:
        fields: dict[str, object] = {
            "host": self.host,
            "user": self.user,
            "port": self.port,
            "params": dict(self.params),
            "headers": self.headers,
            "scheme": self.scheme,
            "password": self.password,
        }
        fields.update(changes)
        return SipUri(**fields)  # type: ignore[arg-type]

    def __str__(self) -> str:
        if self._text is None:
            parts = [self.scheme, ":"]
            if self.user is not None:
                parts.append(self.user)
                if self.password is not None:
                    parts.append(":" + self.password)
                parts.append("@")
            parts.append(self.hostport)
            parts.append(format_params(self.params))
            if self.headers:
                parts.append("?" + self.headers)
            self._text = "".join(parts)
        return self._text

    def __repr__(self) -> str:
        return f"SipUri({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        """URI comparison of RFC 3261 §19.1.4.

        Scheme, host and parameter names compare case-insensitively, the user and password
        case-sensitively, all after unescaping. "A URI omitting any component with a default
        value will not match a URI explicitly containing that component with a default value":
        no port never equals 5060. user, ttl, method, maddr and transport "must match if present
        in either"; other parameters must match when present in both; header components "MUST
        be present in both URIs and match".
        """
        if not isinstance(other, SipUri):
            return NotImplemented
        if self.scheme.lower() != other.scheme.lower():
            return False
        if self.user_unescaped != other.user_unescaped:
            return False
        if (None if self.password is None else unescape(self.password)) != (
            None if other.password is None else unescape(other.password)
        ):
            return False
        if self.host.lower() != other.host.lower() or self.port != other.port:
            return False
        mine = _comparable_params(self.params)
        theirs = _comparable_params(other.params)
        for name in ("transport", "user", "ttl", "method", "maddr"):
            if mine.get(name) != theirs.get(name):
                return False
        for name in mine.keys() & theirs.keys():
            if mine[name] != theirs[name]:
                return False
        return self.header_fields() == other.header_fields()

    def __hash__(self) -> int:
        return hash((self.scheme.lower(), self.user_unescaped, self.host.lower(), self.port))


def _comparable_params(params: dict[str, str | None]) -> dict[str, str | None]:
    return {
        unescape(k).lower(): None if v is None else unescape(v).lower() for k, v in params.items()
    }


Uri = SipUri | AbsoluteUri


# Parsed URIs by their text, shared (a URI is not changed once parsed: the name-addrs that
# hold them are shared too, b2bua.sip.headers): a dialog's targets and a device's Contact
# come back in every call.
_URI_CACHE: dict[str, Uri] = {}


def parse_uri(text: str) -> Uri:
    """Parse an absolute URI; sip/sips are parsed fully, other schemes kept opaque. The result
    is shared with other holders of the same text: do not change it."""
    return parsed_once(_URI_CACHE, text, _parse_uri)


def clear_uri_cache() -> None:
    _URI_CACHE.clear()


def _parse_uri(text: str) -> Uri:
    colon = text.find(":")
    if colon <= 0:
        raise SipParseError(f"Malformed URI {text[:60]!r}")
    scheme = text[:colon]
    lowered = scheme.lower()
    if lowered == "sip" or lowered == "sips":
        return _parse_sip(text, lowered, colon + 1)
    if _SCHEME.fullmatch(scheme) is None:
        raise SipParseError(f"Malformed URI scheme {scheme[:20]!r}")
    rest = text[colon + 1 :]
    if not rest or _BAD_URI_CHAR.search(rest):
        raise SipParseError(f"Malformed URI {text[:60]!r}")
    return AbsoluteUri(lowered, rest)


def parse_sip_uri(text: str) -> SipUri:
    """Parse a sip: or sips: URI; any other scheme is a 416."""
    uri = parse_uri(text)
    if not isinstance(uri, SipUri):
        raise SipParseError(f"Unsupported URI scheme {uri.scheme!r}", status=416)
    return uri


def _parse_sip(text: str, scheme: str, i: int) -> SipUri:
    rest = text[i:]
    if _BAD_URI_CHAR.search(rest):
        raise SipParseError(f"Illegal character in URI {text[:60]!r}")
    user: str | None = None
    password: str | None = None
    at = rest.rfind("@")
    if at >= 0:
        userinfo = rest[:at]
        rest = rest[at + 1 :]
        if not userinfo:
            raise SipParseError("Empty user part in URI")
        user, colon, password_text = userinfo.partition(":")
        if colon:
            password = password_text
        if _BAD_ESCAPE.search(userinfo):
            raise SipParseError("Bad percent-escape in URI user part")
    headers: str | None = None
    q = rest.find("?")
    if q >= 0:
        headers = rest[q + 1 :]
        rest = rest[:q]
        if _BAD_ESCAPE.search(headers):
            raise SipParseError("Bad percent-escape in URI headers")
    semi = rest.find(";")
    if semi < 0:
        host, port = parse_hostport(rest)
        params: dict[str, str | None] = {}
    else:
        host, port = parse_hostport(rest[:semi])
        params = parse_params(rest, semi)
        if "%" in rest[semi:] and _BAD_ESCAPE.search(rest, semi):
            raise SipParseError("Bad percent-escape in URI parameters")
    return SipUri(host, user, port, params, headers, scheme, password, _text=text)


def parse_hostport(text: str) -> tuple[str, int | None]:
    """Parse `host[:port]`, host being a name, IPv4 address or `[IPv6]` reference."""
    if not text:
        raise SipParseError("Missing host")
    if text[0] == "[":
        end = text.find("]")
        if end < 0:
            raise SipParseError("Unterminated IPv6 reference")
        host = text[: end + 1]
        if "%" in host:  # no zone index in a SIP URI (RFC 3261 §25.1 IPv6reference)
            raise SipParseError(f"Malformed IPv6 reference {host[:48]!r}")
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise SipParseError(f"Malformed IPv6 reference {host[:48]!r}") from None
        tail = text[end + 1 :]
    else:
        host, colon, port_text = text.partition(":")
        tail = colon + port_text
        if _HOST.fullmatch(host) is None:
            raise SipParseError(f"Malformed host {host[:40]!r}")
    if not tail:
        return host, None
    if tail[0] != ":" or _PORT.fullmatch(tail, 1) is None:
        raise SipParseError(f"Malformed port {tail[:10]!r}")
    port = int(tail[1:])
    if port > 65535:
        raise SipParseError("Port out of range")
    return host, port
