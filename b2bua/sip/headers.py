"""Typed views of the headers the engine reads: name-addr (From, To, Contact, Route), Via, CSeq.

Header names: compact forms (RFC 3261 §7.3.3) expand to their long form, names compare
case-insensitively; `header_key()` gives the lower-case long name used for lookups and
`canonical_name()` the spelling we write.

The typed objects are views: changing one does not change the message; set the header instead
(`msg.headers.set("To", str(new_to))`).
"""

from __future__ import annotations

import re

from b2bua.sip.errors import SipParseError
from b2bua.sip.grammar import (
    SIMPLE_PARAM,
    TOKEN_RE,
    WS,
    format_params,
    is_digits,
    parse_params,
    parsed_once,
    quote,
    read_quoted,
    split_list,
    unquote,
)
from b2bua.sip.uri import SipUri, Uri, clear_uri_cache, parse_hostport, parse_uri

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
    "min-se": "Min-SE",
}

# Headers whose value is never a comma-separated list (commas are part of the value, or the
# header holds one value only).
SINGLE_VALUE = frozenset(
    {
        "authentication-info",
        "authorization",
        "call-id",
        "content-disposition",
        "content-length",
        "content-type",
        "cseq",
        "date",
        "event",
        "expires",
        "from",
        "identity",
        "identity-info",
        "max-forwards",
        "mime-version",
        "min-expires",
        "min-se",
        "organization",
        "priority",
        "proxy-authenticate",
        "proxy-authorization",
        "rack",
        "refer-to",
        "referred-by",
        "replaces",
        "reply-to",
        "retry-after",
        "rseq",
        "server",
        "session-expires",
        "subject",
        "subscription-state",
        "timestamp",
        "to",
        "user-agent",
        "www-authenticate",
    }
)


def header_key(name: str) -> str:
    """Lower-case long form of a header name (`i` -> `call-id`, `CALL-ID` -> `call-id`)."""
    key = name.lower()
    return COMPACT.get(key, key)


def canonical_name(name: str) -> str:
    """The spelling we write for a header name (`i` -> `Call-ID`, `max-forwards` -> `Max-Forwards`)."""
    key = header_key(name)
    known = _CANONICAL.get(key)
    if known:
        return known
    return "-".join(p[:1].upper() + p[1:] for p in key.split("-"))


# display-name = *(token LWS) / quoted-string: written bare only when it is tokens and spaces.
_BARE_DISPLAY = re.compile(f"{TOKEN_RE}(?: {TOKEN_RE})*")
_TOKENS_LWS = re.compile(f"[ \t]*{TOKEN_RE}(?:[ \t]+{TOKEN_RE})*[ \t]*")


class NameAddr:
    """`[display-name] <uri> *(;param)` or `addr-spec *(;param)` (From, To, Contact, Route).

    The URI of a parsed address is parsed on first use of `uri`: reading a tag costs no URI
    parse. A malformed URI raises `SipParseError` then. Read-only once made: parsed addresses
    are shared between messages (see `parse_name_addr`); `with_params` makes a changed copy.
    """

    __slots__ = ("_uri", "_uri_text", "display_name", "params")

    def __init__(
        self,
        uri: Uri,
        display_name: str | None = None,
        params: dict[str, str | None] | None = None,
    ) -> None:
        self._uri: Uri | None = uri
        self._uri_text = ""
        self.display_name = display_name
        self.params = params if params is not None else {}

    @classmethod
    def _parsed(
        cls, uri_text: str, display_name: str | None, params: dict[str, str | None]
    ) -> NameAddr:
        na = cls.__new__(cls)
        na._uri = None
        na._uri_text = uri_text
        na.display_name = display_name
        na.params = params
        return na

    @property
    def uri(self) -> Uri:
        uri = self._uri
        if uri is None:
            uri = self._uri = parse_uri(self._uri_text)
        return uri

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def sip_uri(self) -> SipUri:
        """The URI if it is sip: or sips:; any other scheme is a 416."""
        uri = self.uri
        if not isinstance(uri, SipUri):
            raise SipParseError(f"Unsupported URI scheme {uri.scheme!r}", status=416)
        return uri

    def param(self, name: str) -> str | None:
        """A parameter's value, unquoted."""
        value = self.params.get(name.lower())
        return None if value is None else unquote(value)

    def with_params(self, **params: str | None) -> NameAddr:
        merged = dict(self.params)
        merged.update(params)
        if self._uri is None:
            return NameAddr._parsed(self._uri_text, self.display_name, merged)
        return NameAddr(self._uri, self.display_name, merged)

    def __str__(self) -> str:
        uri = self._uri_text if self._uri is None else str(self._uri)
        name = self.display_name
        if name:
            shown = name if _BARE_DISPLAY.fullmatch(name) else quote(name)
            head = f"{shown} <{uri}>"
        else:
            head = f"<{uri}>"
        return head + format_params(self.params)

    def __repr__(self) -> str:
        return f"NameAddr({str(self)!r})"


# The usual shapes, `"Display" <uri>` (no escapes), `Display Name <uri>` and `<uri>`: one scan.
_SIMPLE_NAME_ADDR = re.compile(
    rf'[ \t]*(?:"([^"\\]*)"[ \t]*|({TOKEN_RE}(?:[ \t]+{TOKEN_RE})*)[ \t]*)?<[ \t]*([^<>"\s]+)[ \t]*>'
)




def clear_caches() -> None:
    """Forget every parsed text. The caches fill again from the next messages; emptying them
    after a flood lets the allocator give back the memory their entries held on to."""
    _NAME_ADDR_CACHE.clear()
    _VIA_CACHE.clear()
    clear_uri_cache()
    _CSEQ_CACHE.clear()


# Parsed addresses by their text: a dialog's From and To come back in every message of it.
# NameAddr objects are not changed once made (with_params makes a new one; the URI parsed on
# demand is the same for every holder), so they can be shared.
_NAME_ADDR_CACHE: dict[str, NameAddr] = {}


def parse_name_addr(text: str) -> NameAddr:
    """Parse one name-addr or addr-spec with its header parameters."""
    return parsed_once(_NAME_ADDR_CACHE, text, _parse_name_addr)


def _parse_name_addr(text: str) -> NameAddr:
    m = _SIMPLE_NAME_ADDR.match(text)
    if m is not None:
        quoted, bare, uri_text = m.groups()
        name = quoted if bare is None else " ".join(bare.split())
        return NameAddr._parsed(uri_text, name, parse_params(text.rstrip(WS), m.end()))
    text = text.strip(WS)
    if not text:
        raise SipParseError("Empty address")
    display: str | None = None
    i = 0
    if text[0] == '"':
        display, i = read_quoted(text, 0)
        while i < len(text) and text[i] in WS:
            i += 1
        if i >= len(text) or text[i] != "<":
            raise SipParseError("Expected a URI in angle brackets after the display name")
        lt = i
    else:
        lt = text.find("<")
        if lt > 0:
            bare = text[:lt]
            if _TOKENS_LWS.fullmatch(bare) is None:
                if '"' in bare:
                    raise SipParseError("Malformed display name (quote not at the start)")
                # No display name before '<': an addr-spec whose parameters hold a '<'.
                lt = -1
            else:
                display = " ".join(bare.split())
    if lt >= 0:
        gt = text.find(">", lt)
        if gt < 0:
            raise SipParseError("Unterminated angle bracket in address")
        uri_text = text[lt + 1 : gt].strip(WS)
        if not uri_text:
            raise SipParseError("Empty URI in address")
        return NameAddr._parsed(uri_text, display, parse_params(text, gt + 1))
    # addr-spec: "If the URI is not enclosed in angle brackets, any semicolon-delimited
    # parameters are header-parameters, not URI parameters" (RFC 3261 §20).
    semi = text.find(";")
    uri_text, rest = (text, "") if semi < 0 else (text[:semi].rstrip(WS), text[semi:])
    if not uri_text or any(c in WS for c in uri_text):
        raise SipParseError(f"Malformed address {text[:60]!r}")
    if "?" in uri_text or "," in uri_text:
        raise SipParseError("A URI with '?' or ',' must be in angle brackets")
    return NameAddr._parsed(uri_text, None, parse_params(rest) if rest else {})


def parse_name_addr_list(value: str) -> list[NameAddr]:
    return [parse_name_addr(part) for part in split_list(value)]


class Via:
    """`SIP/2.0/UDP host:port;branch=...;received=...;rport`. Read-only once made: parsed Vias
    are shared between messages (see `parse_via`); make a new one to change it."""

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
        """The rport value (RFC 3581); None when absent or without value (checked at parse)."""
        value = self.params.get("rport")
        return int(value) if value else None

    def __str__(self) -> str:
        hostport = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"SIP/2.0/{self.transport} {hostport}{format_params(self.params)}"

    def __repr__(self) -> str:
        return f"Via({str(self)!r})"


# via-parm = sent-protocol LWS sent-by; sent-protocol = name SLASH version SLASH transport, where
# SLASH = SWS "/" SWS, and sent-by = host [ COLON port ] with COLON = SWS ":" SWS.
_VIA = re.compile(
    rf"[ \t]*({TOKEN_RE})[ \t]*/[ \t]*({TOKEN_RE})[ \t]*/[ \t]*({TOKEN_RE})[ \t]+"
    r"(\[[^\]\s]*\]|[^\s;:\[]+)(?:[ \t]*:[ \t]*([0-9]{1,5}))?"
)


# The shape nearly every Via has: `SIP/2.0/UDP host[:port]` and simple parameters, no white
# space inside, no IPv6 reference. One scan instead of five; anything else takes the full path.
_FAST_VIA = re.compile(
    r"[ \t]*SIP/2\.0/([A-Za-z]+) ([A-Za-z0-9\-.]+)(?::([0-9]{1,5}))?"
    rf"((?:{SIMPLE_PARAM.pattern})*)[ \t]*"
)


# Parsed Vias by their text. Ours comes back in every response to the request (and its CANCEL
# and ACK share it), so each is parsed once instead of three to five times. Via objects are never
# changed in place (add_received makes a new one), so they can be shared.
_VIA_CACHE: dict[str, Via] = {}


def parse_via(text: str) -> Via:
    """Parse one via-parm."""
    return parsed_once(_VIA_CACHE, text, _parse_via)


def _parse_via(text: str) -> Via:
    m = _FAST_VIA.fullmatch(text)
    if m is not None:
        transport, host, port_text, param_text = m.group(1, 2, 3, 4)
        params = {name.lower(): value or None for name, value in SIMPLE_PARAM.findall(param_text)}
        return _checked_via(transport, host, port_text, params)
    m = _VIA.match(text)
    if m is None:
        raise SipParseError("Malformed Via")
    name, version, transport, host_text, port_text = m.groups()
    if name.upper() != "SIP" or version != "2.0":
        raise SipParseError(f"Unsupported Via protocol {name[:10]}/{version[:10]}")
    host, _ = parse_hostport(host_text)
    return _checked_via(transport, host, port_text, parse_params(text, m.end()))


def _checked_via(
    transport: str, host: str, port_text: str | None, params: dict[str, str | None]
) -> Via:
    port = None if port_text is None else int(port_text)
    if port is not None and port > 65535:
        raise SipParseError("Via port out of range")
    if "branch" in params and not params["branch"]:
        raise SipParseError("Empty Via branch")
    rport = params.get("rport")
    if rport is not None and (not is_digits(rport) or len(rport) > 5 or int(rport) > 65535):
        raise SipParseError("Malformed Via rport")
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
        return isinstance(other, CSeq) and (self.number, self.method) == (
            other.number,
            other.method,
        )

    def __hash__(self) -> int:
        return hash((self.number, self.method))


_CSEQ = re.compile(rf"[ \t]*([0-9]{{1,10}})[ \t]+({TOKEN_RE})[ \t]*")


# Parsed CSeq values by their text: a few texts ("1 INVITE", "2 BYE"...) make most of them.
_CSEQ_CACHE: dict[str, CSeq] = {}


def parse_cseq(text: str) -> CSeq:
    """Parse `1*DIGIT LWS Method` (the result is shared: do not change it)."""
    return parsed_once(_CSEQ_CACHE, text, _parse_cseq)


def _parse_cseq(text: str) -> CSeq:
    m = _CSEQ.fullmatch(text)
    if m is None:
        raise SipParseError("Malformed CSeq")
    number = int(m.group(1))
    # The number "MUST be expressible as a 32-bit unsigned integer" and less than 2**31 in a
    # request (RFC 3261 §8.1.1.5).
    if number >= 2**31:
        raise SipParseError("CSeq number out of range")
    return CSeq(number, m.group(2))
