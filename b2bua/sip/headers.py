"""Typed views of the headers the engine reads: name-addr (From, To, Contact, Route), Via, CSeq.

Header names: compact forms (RFC 3261 §7.3.3) expand to their long form, names compare
case-insensitively; `header_key()` gives the lower-case long name used for lookups and
`canonical_name()` the spelling we write.
"""

from __future__ import annotations

from b2bua.sip.errors import SipParseError
from b2bua.sip.grammar import (
    TOKEN_CHARS,
    WS,
    format_params,
    is_digits,
    is_token,
    parse_params,
    quote,
    read_quoted,
    split_list,
    unquote,
)
from b2bua.sip.uri import SipUri, Uri, parse_hostport, parse_uri

COMPACT: dict[str, str] = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

_CANONICAL: dict[str, str] = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
    "rack": "RAck",
    "rseq": "RSeq",
    "sip-etag": "SIP-ETag",
    "sip-if-match": "SIP-If-Match",
    "history-info": "History-Info",
    "p-asserted-identity": "P-Asserted-Identity",
    "p-preferred-identity": "P-Preferred-Identity",
}

# Headers whose value is never a comma-separated list (commas are part of the value).
SINGLE_VALUE = frozenset(
    {
        "www-authenticate",
        "authorization",
        "proxy-authenticate",
        "proxy-authorization",
        "date",
        "call-id",
        "cseq",
        "from",
        "to",
        "content-length",
        "content-type",
        "max-forwards",
        "user-agent",
        "server",
        "subject",
        "organization",
        "retry-after",
        "timestamp",
    }
)


def header_key(name: str) -> str:
    """Lower-case long form of a header name (`i` -> `call-id`, `CALL-ID` -> `call-id`)."""
    key = name.lower()
    return COMPACT.get(key, key)


def canonical_name(name: str) -> str:
    key = header_key(name)
    known = _CANONICAL.get(key)
    if known:
        return known
    return "-".join(p[:1].upper() + p[1:] for p in key.split("-"))


class NameAddr:
    """`[display-name] <uri> *(;param)` or `addr-spec *(;param)` (From, To, Contact, Route)."""

    __slots__ = ("display_name", "params", "uri")

    def __init__(
        self,
        uri: Uri,
        display_name: str | None = None,
        params: dict[str, str | None] | None = None,
    ) -> None:
        self.uri = uri
        self.display_name = display_name
        self.params = params if params is not None else {}

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def sip_uri(self) -> SipUri:
        if not isinstance(self.uri, SipUri):
            raise SipParseError(f"Unsupported URI scheme {self.uri.scheme!r}", status=416)
        return self.uri

    def param(self, name: str) -> str | None:
        value = self.params.get(name.lower())
        return None if value is None else unquote(value)

    def with_params(self, **params: str | None) -> NameAddr:
        merged = dict(self.params)
        merged.update(params)
        return NameAddr(self.uri, self.display_name, merged)

    def __str__(self) -> str:
        if self.display_name is not None:
            name = self.display_name
            shown = name if name and all(c in TOKEN_CHARS or c == " " for c in name) else quote(name)
            head = f"{shown} <{self.uri}>" if shown else f"<{self.uri}>"
        else:
            head = f"<{self.uri}>"
        return head + format_params(self.params)

    def __repr__(self) -> str:
        return f"NameAddr({str(self)!r})"


def parse_name_addr(text: str) -> NameAddr:
    text = text.strip()
    if not text:
        raise SipParseError("Empty address")
    display: str | None = None
    i = 0
    if text[0] == '"':
        display, i = read_quoted(text, 0)
        while i < len(text) and text[i] in WS:
            i += 1
        if i >= len(text) or text[i] != "<":
            raise SipParseError("Expected '<' after display name")
    lt = text.find("<", i)
    if lt >= 0 and (display is not None or '"' not in text[:lt]):
        if display is None:
            token_name = text[:lt].strip()
            if token_name:
                if not all(c in TOKEN_CHARS or c in WS for c in token_name):
                    raise SipParseError(f"Malformed display name {token_name[:40]!r}")
                display = " ".join(token_name.split())
        gt = text.find(">", lt)
        if gt < 0:
            raise SipParseError("Unterminated '<' in address")
        uri = parse_uri(text[lt + 1 : gt].strip())
        params = parse_params(text, gt + 1)
        return NameAddr(uri, display, params)
    # addr-spec: parameters after the URI belong to the header, not the URI (RFC 3261 §20.10).
    semi = text.find(";")
    uri_text, rest = (text, "") if semi < 0 else (text[:semi], text[semi:])
    uri_text = uri_text.strip()
    if any(c in WS for c in uri_text):
        raise SipParseError(f"Malformed address {text[:60]!r}")
    if "?" in uri_text or "," in uri_text:
        raise SipParseError("URI with '?' or ',' must be enclosed in '<>'")
    return NameAddr(parse_uri(uri_text), None, parse_params(rest) if rest else {})


def parse_name_addr_list(value: str) -> list[NameAddr]:
    return [parse_name_addr(part) for part in split_list(value)]


class Via:
    """`SIP/2.0/UDP host:port;branch=...;received=...;rport`"""

    __slots__ = ("host", "params", "port", "transport")

    def __init__(
        self,
        transport: str,
        host: str,
        port: int | None = None,
        params: dict[str, str | None] | None = None,
    ) -> None:
        self.transport = transport.upper()
        self.host = host
        self.port = port
        self.params = params if params is not None else {}

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        value = self.params.get("rport")
        return int(value) if value and is_digits(value) else None

    def __str__(self) -> str:
        hostport = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"SIP/2.0/{self.transport} {hostport}{format_params(self.params)}"

    def __repr__(self) -> str:
        return f"Via({str(self)!r})"


def parse_via(text: str) -> Via:
    # sent-protocol = protocol-name SLASH protocol-version SLASH transport (LWS allowed)
    parts: list[str] = []
    i = 0
    n = len(text)
    for _ in range(3):
        while i < n and text[i] in WS:
            i += 1
        j = i
        while j < n and text[j] not in "/" + WS:
            j += 1
        parts.append(text[i:j])
        i = j
        while i < n and text[i] in WS:
            i += 1
        if len(parts) < 3:
            if i >= n or text[i] != "/":
                raise SipParseError("Malformed Via sent-protocol")
            i += 1
    name, version, transport = parts
    if name.upper() != "SIP" or version != "2.0":
        raise SipParseError(f"Unsupported Via protocol {name}/{version}")
    if not is_token(transport):
        raise SipParseError("Malformed Via transport")
    while i < n and text[i] in WS:
        i += 1
    j = i
    while j < n and text[j] not in ";" + WS:
        j += 1
    host, port = parse_hostport(text[i:j])
    params = parse_params(text, j)
    if "branch" in params and not params["branch"]:
        raise SipParseError("Empty Via branch")
    return Via(transport, host, port, params)


def parse_via_list(value: str) -> list[Via]:
    return [parse_via(part) for part in split_list(value)]


class CSeq:
    __slots__ = ("method", "number")

    def __init__(self, number: int, method: str) -> None:
        self.number = number
        self.method = method

    def __str__(self) -> str:
        return f"{self.number} {self.method}"

    def __repr__(self) -> str:
        return f"CSeq({self.number}, {self.method!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CSeq) and (self.number, self.method) == (other.number, other.method)

    def __hash__(self) -> int:
        return hash((self.number, self.method))


def parse_cseq(text: str) -> CSeq:
    parts = text.split()
    if len(parts) != 2:
        raise SipParseError("Malformed CSeq")
    number, method = parts
    # CSeq = 1*DIGIT LWS Method; "MUST be expressible as a 32-bit unsigned integer" and less
    # than 2**31 for requests (RFC 3261 §8.1.1.5).
    if not is_digits(number) or len(number) > 10 or int(number) >= 2**31:
        raise SipParseError("Malformed CSeq number")
    if not is_token(method):
        raise SipParseError("Malformed CSeq method")
    return CSeq(int(number), method)
