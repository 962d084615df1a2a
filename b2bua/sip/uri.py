"""SIP and SIPS URIs (RFC 3261 §19.1), plus any other absolute URI kept opaque.

A `SipUri` remembers the text it was parsed from, so an unchanged URI prints back exactly;
`replace()` returns a modified copy that prints canonically. The user part is kept escaped as
written (`user`); comparisons use `user_unescaped`.
"""

from __future__ import annotations

from urllib.parse import unquote as pct_unquote

from b2bua.sip.errors import SipParseError
from b2bua.sip.grammar import format_params, is_digits, parse_params

_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.")
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.")


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
        return None if self.user is None else pct_unquote(self.user)

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
        """URI comparison of RFC 3261 §19.1.4 (the common subset)."""
        if not isinstance(other, SipUri):
            return NotImplemented
        if self.scheme != other.scheme or self.user_unescaped != other.user_unescaped:
            return False
        if self.host.lower() != other.host.lower() or self.port != other.port:
            return False
        for name in ("transport", "user", "ttl", "method", "maddr"):
            a, b = self.params.get(name), other.params.get(name)
            if (a or "").lower() != (b or "").lower():
                return False
        for name in set(self.params) & set(other.params):
            a, b = self.params[name], other.params[name]
            if (a or "").lower() != (b or "").lower():
                return False
        return True

    def __hash__(self) -> int:
        return hash((self.scheme, self.user_unescaped, self.host.lower(), self.port))


Uri = SipUri | AbsoluteUri


def parse_uri(text: str) -> Uri:
    """Parse an absolute URI; sip/sips are parsed fully, other schemes kept opaque."""
    colon = text.find(":")
    if colon <= 0:
        raise SipParseError(f"Malformed URI {text[:60]!r}")
    scheme = text[:colon]
    if not all(c in _SCHEME_CHARS for c in scheme) or not scheme[0].isalpha():
        raise SipParseError(f"Malformed URI scheme {scheme[:20]!r}")
    lowered = scheme.lower()
    if lowered not in ("sip", "sips"):
        rest = text[colon + 1 :]
        if not rest or any(c in " \t\r\n" for c in rest):
            raise SipParseError(f"Malformed URI {text[:60]!r}")
        return AbsoluteUri(lowered, rest)
    return _parse_sip(text, lowered, colon + 1)


def parse_sip_uri(text: str) -> SipUri:
    uri = parse_uri(text)
    if not isinstance(uri, SipUri):
        raise SipParseError(f"Unsupported URI scheme {uri.scheme!r}", status=416)
    return uri


def _parse_sip(text: str, scheme: str, i: int) -> SipUri:
    rest = text[i:]
    if any(c in " \t\r\n<>\"" for c in rest):
        raise SipParseError(f"Illegal character in URI {text[:60]!r}")
    user: str | None = None
    password: str | None = None
    at = rest.rfind("@")
    if at >= 0:
        userinfo = rest[:at]
        rest = rest[at + 1 :]
        if not userinfo:
            raise SipParseError("Empty user part in URI")
        pc = userinfo.find(":")
        if pc >= 0:
            user, password = userinfo[:pc], userinfo[pc + 1 :]
        else:
            user = userinfo
        _check_escapes(user)
    headers: str | None = None
    q = rest.find("?")
    if q >= 0:
        headers = rest[q + 1 :]
        rest = rest[:q]
    semi = rest.find(";")
    hostport, param_text = (rest, "") if semi < 0 else (rest[:semi], rest[semi:])
    host, port = parse_hostport(hostport)
    params = parse_params(param_text) if param_text else {}
    return SipUri(host, user, port, params, headers, scheme, password, _text=text)


def _check_escapes(text: str) -> None:
    i = text.find("%")
    while i >= 0:
        h = text[i + 1 : i + 3]
        if len(h) != 2 or not all(c in "0123456789abcdefABCDEF" for c in h):
            raise SipParseError("Bad percent-escape in URI")
        i = text.find("%", i + 3)


def parse_hostport(text: str) -> tuple[str, int | None]:
    """Parse `host[:port]`, host being a name, IPv4 address or `[IPv6]` reference."""
    if not text:
        raise SipParseError("Missing host")
    if text[0] == "[":
        end = text.find("]")
        if end < 0:
            raise SipParseError("Unterminated IPv6 reference")
        host = text[: end + 1]
        inner = host[1:-1]
        if not inner or not all(c in "0123456789abcdefABCDEF:." for c in inner):
            raise SipParseError("Malformed IPv6 reference")
        tail = text[end + 1 :]
    else:
        colon = text.find(":")
        host, tail = (text, "") if colon < 0 else (text[:colon], text[colon:])
        if not host or not all(c in _HOST_CHARS for c in host):
            raise SipParseError(f"Malformed host {host[:40]!r}")
    if not tail:
        return host, None
    if tail[0] != ":" or not is_digits(tail[1:]) or len(tail) > 6:
        raise SipParseError(f"Malformed port {tail[:10]!r}")
    port = int(tail[1:])
    if port > 65535:
        raise SipParseError("Port out of range")
    return host, port
