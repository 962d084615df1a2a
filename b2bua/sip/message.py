"""SIP messages: model, parser and serializer (RFC 3261 §7, §20, §25).

Theory of operation
-------------------
`parse_message(data)` does the minimum on the hot path. It finds the end of the header section,
decodes it once (UTF-8 with `surrogateescape`, so any byte sequence survives a round trip) and
splits it into header fields with one regular expression. Every field is kept *raw*: a tuple
(key, name, value, raw) where `key` is the lower-case long name used for lookups, `value` the
unfolded value and `raw` the line(s) exactly as received. Folded headers (RFC 3261 §7.3.1), or
anything the fast expression does not cover, take a line-by-line path that also names the error.

Typed views (`via`, `from_`, `to`, `cseq`, `contacts`...) are parsed on first access and cached
until that header changes. A message whose headers, start line and body nobody changed
serializes to the very bytes it was parsed from; a changed one is rebuilt line by line, reusing
the raw text of every untouched header and writing a Content-Length that matches the body.

Only `SipParseError` leaves this module for remote input. When a request fails after its start
line was recognised, the error carries in `partial` what could be read of it, so a server can
still send the stateless answer (see `can_respond`); a response that fails is simply dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any, Final

from b2bua.sip.errors import SipParseError
from b2bua.sip.grammar import PARSED_CACHE_SIZE, is_digits, is_token, split_list
from b2bua.sip.headers import (
    COMPACT,
    SINGLE_VALUE,
    CSeq,
    NameAddr,
    Via,
    canonical_name,
    header_key,
    parse_cseq,
    parse_name_addr,
    parse_via,
)
from b2bua.sip.headers import (
    clear_caches as clear_header_caches,
)
from b2bua.sip.uri import Uri, parse_uri

# Size caps on remote input.
MAX_MESSAGE_BYTES: Final = 65_535
MAX_HEADER_BYTES: Final = 16_384
MAX_HEADERS: Final = 128
MAX_LINE_BYTES: Final = 8_192
MAX_BODY_BYTES: Final = MAX_MESSAGE_BYTES
MAX_REASON_PHRASE: Final = 256  # what we write; a received one is kept as it came

SIP_VERSION: Final = "SIP/2.0"
_ENC: Final = "utf-8"
_ERR: Final = "surrogateescape"

REASONS: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

# A header field: (key, name, value, raw). `raw` is None for a header we added or changed.
Field = tuple[str, str, str, str | None]

# Header names as they are usually spelled, mapped to their lookup key (saves a lower() and a
# dict lookup per header on the hot path; any other spelling goes through `header_key`).
_KEYS: dict[str, str] = {}
for _key in (
    "via", "from", "to", "call-id", "cseq", "contact", "max-forwards", "content-type",
    "content-length", "route", "record-route", "expires", "allow", "supported", "require",
    "user-agent", "server", "accept", "session-expires", "min-se", "authorization",
    "www-authenticate", "proxy-authorization", "proxy-authenticate", "event", "subject",
    "allow-events", "p-asserted-identity", "privacy", "date", "timestamp", "organization",
    "content-disposition", "subscription-state", "refer-to", "referred-by", "reason", "rseq",
    "rack", "path", "min-expires", "warning", "unsupported", "accept-encoding",
    "accept-language", "content-encoding", "mime-version", "retry-after", "call-info",
    "alert-info", "diversion", "history-info", "replaces", "proxy-require",
):  # fmt: skip
    for _spelling in (_key, canonical_name(_key), _key.upper()):
        _KEYS[_spelling] = _key
for _short, _key in COMPACT.items():
    _KEYS[_short] = _KEYS[_short.upper()] = _key

# One header line: CRLF name [WS] ":" [WS] value [WS], followed by CRLF. Groups: the whole line,
# the name, the value without surrounding white space. A folded line never matches (it starts
# with white space), nor does a line with a bare CR or LF.
_HEADER_LINE = re.compile(
    r"\r\n(([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*:[ \t]*((?:[^\r\n]*[^\r\n \t])?)[ \t]*)(?=\r\n)"
)
_NAME_COLON = re.compile(r"([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*:")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_VERSION_SHAPE = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE)
# The sent-protocol of a Via with another SIP version (RFC 4475 §3.4.1 sends `SIP/7.0/UDP`).
_OTHER_VERSION_VIA = re.compile(r"[ \t]*SIP[ \t]*/[ \t]*[0-9]+\.[0-9]+[ \t]*/", re.IGNORECASE)

# Option tags this element supports (RFC 3261 §19.2), listed in `Supported` and checked against
# a request's `Require` (§8.2.2.3). `outbound` and `path`: RFC 5626 and RFC 3327 at the
# registrar. `timer`: Session-Expires and Min-SE cross between the legs of a call, and so do
# the refreshes (re-INVITE, UPDATE). `replaces` and `norefersub`: attended transfer and pickup
# (RFC 3891), REFER without its implicit subscription (RFC 4488). A REGISTER is checked again
# by the registrar against the tags it implements itself.
SUPPORTED_OPTION_TAGS: Final = ("outbound", "path", "timer", "replaces", "norefersub")
_METHODS = frozenset(
    "INVITE ACK BYE CANCEL OPTIONS REGISTER PRACK SUBSCRIBE NOTIFY PUBLISH INFO REFER MESSAGE "
    "UPDATE".split()
)


_NAME_INFO: dict[str, tuple[str, str]] = {}  # name as given -> (key, spelling we write)


def _new_field(name: str, value: str) -> Field:
    """A header we add: its name must be a token and its value must stay on one line."""
    info = _NAME_INFO.get(name)
    if info is None:
        if not is_token(name):
            raise ValueError(f"not a header name: {name!r}")
        info = (header_key(name), canonical_name(name))
        if len(_NAME_INFO) < 4096:  # names come from our code; the cap is a guard
            _NAME_INFO[name] = info
    if "\r" in value or "\n" in value:
        raise ValueError(f"CR or LF in the value of header {name}")
    return (info[0], info[1], value, None)


class Headers:
    """Ordered, repeatable, case-insensitive header fields with typed, cached views.

    Names may be given in any case or compact form (`i`, `Call-ID` and `CALL-ID` are the same
    header). Setting a header whose value holds CR or LF is a programming error (ValueError).
    """

    __slots__ = ("_cache", "_fields", "dirty")

    def __init__(self, fields: Iterable[tuple[str, str]] | None = None) -> None:
        self._cache: dict[str, Any] = {}
        self.dirty = True
        out: list[Field] = []
        self._fields = out
        if fields is not None:
            known = _NAME_INFO
            for name, value in fields:
                info = known.get(name)
                if info is None or "\r" in value or "\n" in value:
                    out.append(_new_field(name, value))  # checks (and learns) the name, or raises
                else:
                    out.append((info[0], info[1], value, None))

    @classmethod
    def _from_parsed(cls, fields: list[Field]) -> Headers:
        h = cls.__new__(cls)
        h._fields = fields
        h._cache = {}
        h.dirty = False
        return h

    # -- reading ---------------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[str, str]]:
        """(name as written, value) of every header, in order."""
        return ((f[1], f[2]) for f in self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _KEYS.get(name) or header_key(name)
        return any(f[0] == key for f in self._fields)

    def get(self, name: str, default: str | None = None) -> str | None:
        """Value of the first header of that name."""
        key = _KEYS.get(name) or header_key(name)
        for f in self._fields:
            if f[0] == key:
                return f[2]
        return default

    def get_all(self, name: str) -> list[str]:
        """Values of every header of that name, each as written (not split at commas)."""
        key = _KEYS.get(name) or header_key(name)
        out = []  # (a loop: on the hot path, a comprehension costs a function object per call)
        for f in self._fields:
            if f[0] == key:
                out.append(f[2])
        return out

    def values(self, name: str) -> list[str]:
        """Every element of a list header, across repeated headers and comma-separated values."""
        key = _KEYS.get(name) or header_key(name)
        if key in SINGLE_VALUE:
            return self.get_all(key)
        out: list[str] = []
        for f in self._fields:
            if f[0] == key:
                out.extend(split_list(f[2]))
        return out

    def cached(self, key: str) -> Any:
        return self._cache.get(key)

    def drop_cache(self) -> None:
        """Forget the parsed views (they are parsed again if asked for)."""
        self._cache.clear()

    def store(self, key: str, value: Any) -> Any:
        self._cache[key] = value
        return value

    # -- changing --------------------------------------------------------------------------
    def _changed(self, key: str) -> None:
        self.dirty = True
        self._cache.pop(key, None)
        self._cache.pop("*" + key, None)

    def set(self, name: str, value: str) -> None:
        """Replace every header of that name by one (in place of the first, else at the end)."""
        new = _new_field(name, value)
        key = new[0]
        fields = self._fields
        for i, f in enumerate(fields):
            if f[0] == key:
                fields[i] = new
                fields[i + 1 :] = [g for g in fields[i + 1 :] if g[0] != key]
                break
        else:
            fields.append(new)
        self._changed(key)

    def add(self, name: str, value: str) -> None:
        """Append a header (after all the others)."""
        new = _new_field(name, value)
        self._fields.append(new)
        self._changed(new[0])

    def add_first(self, name: str, value: str) -> None:
        """Insert before the first header of that name (or at the top): how Via is pushed."""
        new = _new_field(name, value)
        key = new[0]
        for i, f in enumerate(self._fields):
            if f[0] == key:
                self._fields.insert(i, new)
                break
        else:
            self._fields.insert(0, new)
        self._changed(key)

    def remove(self, name: str) -> None:
        """Remove every header of that name."""
        key = header_key(name)
        self._fields = [f for f in self._fields if f[0] != key]
        self._changed(key)

    def pop_first(self, name: str) -> str | None:
        """Remove the first element of a list header (e.g. the top Via or Route) and return it."""
        key = header_key(name)
        for i, f in enumerate(self._fields):
            if f[0] == key:
                parts = split_list(f[2])
                if len(parts) <= 1:
                    del self._fields[i]
                else:
                    self._fields[i] = (key, f[1], ", ".join(parts[1:]), None)
                self._changed(key)
                return parts[0] if parts else None
        return None

    def copy(self) -> Headers:
        h = Headers._from_parsed(list(self._fields))
        h.dirty = self.dirty
        return h

    def _lines(self) -> list[str]:
        return [f"{f[1]}: {f[2]}" if f[3] is None else f[3] for f in self._fields]


class Message:
    """What requests and responses share: headers, body, typed views."""

    __slots__ = ("_raw", "_raw_key", "body", "headers", "source")

    headers: Headers
    body: bytes
    _raw: bytes | None
    _raw_key: tuple[object, ...] | None
    source: Any

    def __init__(self, headers: Headers | Iterable[tuple[str, str]] | None, body: bytes) -> None:
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.body = body
        self._raw = None
        self._raw_key = None
        self.source = None

    # -- typed views (parsed lazily, cached until the header changes) -----------------------
    def _typed(self, key: str, parse: Any) -> Any:
        value = self.headers._cache.get(key)
        if value is None:
            raw = self.headers.get(key)
            if raw is None:
                raise SipParseError(f"Missing {canonical_name(key)} header")
            value = self.headers.store(key, parse(raw))
        return value

    @property
    def call_id(self) -> str:
        value: str | None = self.headers._cache.get("call-id")
        if value is None:
            value = self.headers.get("call-id")
            if not value:
                raise SipParseError("Missing Call-ID header")
            self.headers.store("call-id", value)
        return value

    @property
    def cseq(self) -> CSeq:
        result: CSeq = self._typed("cseq", parse_cseq)
        return result

    @property
    def from_(self) -> NameAddr:
        result: NameAddr = self._typed("from", parse_name_addr)
        return result

    @property
    def to(self) -> NameAddr:
        result: NameAddr = self._typed("to", parse_name_addr)
        return result

    @property
    def vias(self) -> list[Via]:
        """Every Via, top first."""
        value = self.headers._cache.get("via")
        if value is None:
            values = self.headers.values("via")
            if not values:
                raise SipParseError("Missing Via header")
            value = self.headers.store(
                "via", [parse_via(values[0])] if len(values) == 1 else list(map(parse_via, values))
            )
        result: list[Via] = value
        return result

    @property
    def via(self) -> Via:
        """The top Via."""
        value = self.headers._cache.get("via")
        return (value if value is not None else self.vias)[0]

    @property
    def contacts(self) -> list[NameAddr]:
        """Contact header values; a `Contact: *` gives an empty list (see `contact_star`)."""
        value = self.headers.cached("contact")
        if value is None:
            values = self.headers.values("contact")
            if len(values) == 1 and values[0] == "*":
                value = []
            else:
                if "*" in values:
                    raise SipParseError("Contact '*' mixed with other contacts")
                value = [parse_name_addr(v) for v in values]
            self.headers.store("contact", value)
        result: list[NameAddr] = value
        return result

    @property
    def contact_star(self) -> bool:
        """Whether the Contact is `*` (a REGISTER removing all bindings)."""
        values = self.headers.values("contact")
        return len(values) == 1 and values[0] == "*"

    def name_addrs(self, name: str) -> list[NameAddr]:
        """Route, Record-Route, Path...: every element, parsed."""
        key = "*" + header_key(name)
        value = self.headers.cached(key)
        if value is None:
            value = self.headers.store(key, [parse_name_addr(v) for v in self.headers.values(name)])
        result: list[NameAddr] = value
        return result

    @property
    def max_forwards(self) -> int | None:
        value = self.headers.get("max-forwards")
        if value is None:
            return None
        # Max-Forwards = 1*DIGIT, "an integer in the range 0-255" (RFC 3261 §20.22).
        if not is_digits(value) or len(value) > 10 or int(value) > 255:
            raise SipParseError("Malformed Max-Forwards")
        return int(value)

    @property
    def expires(self) -> int | None:
        value = self.headers.get("expires")
        if value is None:
            return None
        if not is_digits(value) or len(value) > 10:
            raise SipParseError("Malformed Expires")
        return int(value)

    @property
    def content_type(self) -> str | None:
        """The media type, lower-cased, without parameters (`application/sdp`)."""
        value = self.headers.get("content-type")
        return None if value is None else value.split(";", 1)[0].strip().lower()

    # -- serialization ---------------------------------------------------------------------
    def _start_line(self) -> str:
        raise NotImplementedError

    def _key(self) -> tuple[object, ...]:
        """What, besides the headers, the serialized bytes depend on."""
        raise NotImplementedError

    def __bytes__(self) -> bytes:
        raw = self._raw
        key = self._key()
        headers = self.headers
        if raw is not None and not headers.dirty and self._raw_key == key:
            return raw
        body = self.body
        length = str(len(body))
        written = headers.get("content-length")
        if written is None:  # a message we built: append it (digits: nothing to check)
            headers._fields.append(("content-length", "Content-Length", length, None))
            headers._changed("content-length")
        elif written != length:
            headers.set("Content-Length", length)
        lines = [self._start_line(), *headers._lines(), "", ""]
        raw = "\r\n".join(lines).encode(_ENC, _ERR) + body
        self._raw = raw
        self._raw_key = key
        headers.dirty = False
        return raw

    def mark_changed(self) -> None:
        """Force a rebuild at the next serialization (changes are also noticed without it)."""
        self.headers.dirty = True


class Request(Message):
    __slots__ = ("_uri", "_uri_text", "method", "version")

    def __init__(
        self,
        method: str,
        request_uri: Uri | str,
        headers: Headers | Iterable[tuple[str, str]] | None = None,
        body: bytes = b"",
        version: str = SIP_VERSION,
    ) -> None:
        super().__init__(headers, body)
        self.method = method
        self.version = version
        if isinstance(request_uri, str):
            self._uri_text = request_uri
            self._uri: Uri | None = None
        else:
            self._uri = request_uri
            self._uri_text = str(request_uri)

    @classmethod
    def _parsed(cls, method: str, uri_text: str, version: str, headers: Headers) -> Request:
        req = cls.__new__(cls)
        req.headers = headers
        req.body = b""
        req._raw = None
        req._raw_key = None
        req.source = None
        req.method = method
        req.version = version
        req._uri_text = uri_text
        req._uri = None
        return req

    @property
    def request_uri(self) -> Uri:
        """The Request-URI, parsed on first use."""
        if self._uri is None:
            self._uri = parse_uri(self._uri_text)
        return self._uri

    @request_uri.setter
    def request_uri(self, uri: Uri) -> None:
        self._uri = uri
        self._uri_text = str(uri)

    @property
    def request_uri_text(self) -> str:
        return self._uri_text

    def _start_line(self) -> str:
        return f"{self.method} {self._uri_text} {self.version}"

    def _key(self) -> tuple[object, ...]:
        return (self.method, self._uri_text, self.version, self.body)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self._uri_text}>"


def _clean_reason(reason: str) -> str:
    """A reason phrase we write: on one line, not huge."""
    if reason in _CLEAN_REASONS:  # ours (REASONS): nothing to clean
        return reason
    if _CONTROL.search(reason):
        reason = _CONTROL.sub(" ", reason)
    return reason[:MAX_REASON_PHRASE]


_CLEAN_REASONS = frozenset(REASONS.values())


class Response(Message):
    __slots__ = ("reason", "status", "version")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Headers | Iterable[tuple[str, str]] | None = None,
        body: bytes = b"",
        version: str = SIP_VERSION,
    ) -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = REASONS.get(status, "Unknown") if reason is None else _clean_reason(reason)
        self.version = version

    @classmethod
    def _parsed(cls, status: int, reason: str, version: str, headers: Headers) -> Response:
        resp = cls.__new__(cls)
        resp.headers = headers
        resp.body = b""
        resp._raw = None
        resp._raw_key = None
        resp.source = None
        resp.status = status
        resp.reason = reason
        resp.version = version
        return resp

    def _start_line(self) -> str:
        return f"{self.version} {self.status} {_clean_reason(self.reason)}"

    def _key(self) -> tuple[object, ...]:
        return (self.status, self.reason, self.version, self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


class BadExtension(SipParseError):
    """A request that requires option tags we do not support: answer 420 with them in
    `Unsupported` (RFC 3261 §8.2.2.3)."""

    def __init__(self, request: Request, unsupported: list[str]) -> None:
        super().__init__("Bad Extension", status=420)
        self.unsupported = unsupported
        self.headers = (("Unsupported", ", ".join(unsupported)),)
        self.partial = request


class VersionNotSupported(SipParseError):
    """A request with another SIP-Version: answer 505 (the request itself is kept)."""

    def __init__(self, request: Request) -> None:
        super().__init__("Version Not Supported", status=505)
        self.request = request
        self.partial = request


# -- parsing --------------------------------------------------------------------------------


def split_head(data: bytes) -> int:
    """Index just after the CRLFCRLF that ends the header section, or -1."""
    end = data.find(b"\r\n\r\n")
    return -1 if end < 0 else end + 4


def parse_message(data: bytes, *, stream: bool = False) -> Request | Response:
    """Parse one whole message (a datagram, or a message framed from a stream).

    On a datagram, Content-Length may be absent (the body is the rest of the datagram); bytes
    beyond Content-Length are discarded (RFC 3261 §18.3). A Content-Length larger than what
    arrived is an error. On a stream (`stream=True`) a missing Content-Length means no body.
    """
    try:
        return _parse(data, stream)
    except SipParseError as exc:
        if exc.partial is None:
            exc.partial = _salvage_request(data)
        raise


def _parse(data: bytes, stream: bool) -> Request | Response:
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipParseError("Message too large", status=513)
    # RFC 3261 §7.5: "implementations processing SIP messages over stream-oriented transports
    # MUST ignore any CRLF appearing before the start-line".
    if data[:2] == b"\r\n":
        offset = 0
        while data.startswith(b"\r\n", offset):
            offset += 2
        data = data[offset:]
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise SipParseError("No end of headers (CRLF CRLF)")
    head_end = end + 4
    if head_end > MAX_HEADER_BYTES:
        raise SipParseError("Header section too large", status=513)
    if end > MAX_LINE_BYTES:  # only then can a header line be too long
        if max(map(len, data[:end].split(b"\r\n")[1:]), default=0) > MAX_LINE_BYTES:
            raise SipParseError("Header line too long", status=513)
    # Decode the start line and the header lines, each followed by its CRLF.
    head = data[: end + 2].decode(_ENC, _ERR)
    first = head.find("\r\n")
    start = head[:first]
    fields = _parse_fields(head, first)
    headers = Headers._from_parsed(fields)
    msg: Request | Response
    line = _START_LINES.get(start)
    if line is not None:  # a start line seen before (and found sound then)
        if line[0]:
            msg = Request._parsed(line[1], line[2], line[3], headers)
        else:
            msg = Response._parsed(line[1], line[2], line[3], headers)
    elif start[:4].upper() == "SIP/":
        msg = _parse_status_line(start, headers)
        _remember_start(start, (False, msg.status, msg.reason, msg.version))
    else:
        msg = _parse_request_line(start, headers)
        _remember_start(start, (True, msg.method, msg._uri_text, msg.version))
    try:
        msg.body, consumed = _frame_body(data, head_end, headers, stream)
    except SipParseError as exc:
        # The head is sound: keep it so that a request can still get its answer.
        exc.partial = msg
        raise
    # Leading CRLFs and bytes after Content-Length are not part of the message's own bytes.
    msg._raw = data if consumed == len(data) else data[:consumed]
    msg._raw_key = msg._key()
    return msg


# Start lines found sound, by their text: (is a request, method or status, Request-URI or
# reason, version). A few texts make most of them ("SIP/2.0 180 Ringing", "SIP/2.0 200 OK",
# "BYE sip:...": a dialog's requests share their target). Bounded as the parse caches are.
_START_LINES: dict[str, tuple[bool, Any, str, str]] = {}
_START_LINES_SIZE = PARSED_CACHE_SIZE


def _remember_start(start: str, line: tuple[bool, Any, str, str]) -> None:
    if len(_START_LINES) >= _START_LINES_SIZE:
        _START_LINES.clear()
    _START_LINES[start] = line


def clear_caches() -> None:
    """Forget every parsed text: the start lines and the header views (b2bua.sip.headers)."""
    _START_LINES.clear()
    clear_header_caches()


def _parse_fields(head: str, first: int) -> list[Field]:
    """The header fields of `head` (start line, then lines each ending in CRLF) after `first`."""
    lines = _HEADER_LINE.findall(head, first)
    if len(lines) != head.count("\r\n", first) - 1:
        return _parse_fields_slowly(head[first + 2 : -2].split("\r\n"))
    if len(lines) > MAX_HEADERS:
        raise SipParseError("Too many headers", status=513)
    keys = _KEYS
    return [(keys.get(name) or header_key(name), name, value, line) for line, name, value in lines]


def _parse_fields_slowly(lines: list[str]) -> list[Field]:
    """Header lines one by one: unfolds continuation lines, and names what is wrong."""
    fields: list[Field] = []
    for line in lines:
        if "\r" in line or "\n" in line:
            raise SipParseError("Bare CR or LF in a header line")
        if line[:1] in (" ", "\t"):
            # "A header field can be extended over multiple lines by preceding each extra line
            # with at least one SP or horizontal tab" (RFC 3261 §7.3.1); it means one SP.
            if not fields:
                raise SipParseError("Continuation line before any header")
            key, name, value, raw = fields[-1]
            more = line.strip(" \t")
            value = f"{value} {more}" if value and more else value or more
            if len(name) + 2 + len(value) > MAX_LINE_BYTES:
                # Unfolded, it is one line: what we write from it must stay readable.
                raise SipParseError("Header line too long", status=513)
            fields[-1] = (key, name, value, f"{raw}\r\n{line}")
            continue
        m = _NAME_COLON.match(line)
        if m is None:
            if ":" not in line:
                raise SipParseError("Malformed header line (no colon)")
            raise SipParseError("Malformed header name")
        if len(fields) >= MAX_HEADERS:
            raise SipParseError("Too many headers", status=513)
        name = m.group(1)
        fields.append((header_key(name), name, line[m.end() :].strip(" \t"), line))
    return fields


def _parse_request_line(line: str, headers: Headers) -> Request:
    # Request-Line = Method SP Request-URI SP SIP-Version CRLF
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError("Malformed Request-Line")
    method, uri_text, version = parts
    if method not in _METHODS and not is_token(method):
        raise SipParseError("Malformed method")
    if len(line) > MAX_LINE_BYTES:
        raise SipParseError("Request-URI Too Long", status=414)
    if _CONTROL.search(uri_text):
        raise SipParseError("Malformed Request-URI")
    req = Request._parsed(method, uri_text, version, headers)
    if version != SIP_VERSION and version.upper() != SIP_VERSION:
        if _VERSION_SHAPE.fullmatch(version) is None:
            raise SipParseError("Malformed SIP-Version")
        raise VersionNotSupported(req)
    return req


def _parse_status_line(line: str, headers: Headers) -> Response:
    # Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF (the last SP and an empty
    # reason are both tolerated: "SIP/2.0 200" parses).
    parts = line.split(" ", 2)
    if len(parts) < 2:
        raise SipParseError("Malformed Status-Line")
    if len(line) > MAX_LINE_BYTES:
        raise SipParseError("Status-Line too long", status=513)
    version, code = parts[0], parts[1]
    reason = parts[2] if len(parts) == 3 else ""
    if version.upper() != SIP_VERSION:
        raise SipParseError("Unsupported SIP version in response", status=505)
    if len(code) != 3 or not is_digits(code) or not 100 <= int(code) <= 699:
        raise SipParseError("Malformed status code")
    if _CONTROL.search(reason):
        raise SipParseError("Malformed Reason-Phrase")
    return Response._parsed(int(code), reason, version, headers)


def parse_content_length(values: list[str]) -> int | None:
    """The Content-Length given by these header values (None when there is none)."""
    if not values:
        return None
    text = values[0]
    if len(values) > 1 and any(v != text for v in values):
        raise SipParseError("Conflicting Content-Length headers")
    if not is_digits(text) or len(text) > 9:
        raise SipParseError("Malformed Content-Length")
    return int(text)


def _frame_body(data: bytes, head_end: int, headers: Headers, stream: bool) -> tuple[bytes, int]:
    length = parse_content_length(headers.get_all("content-length"))
    if length is None:
        if stream:
            return b"", head_end
        return data[head_end:], len(data)
    if length > MAX_BODY_BYTES:
        raise SipParseError("Body too large", status=413)
    if length > len(data) - head_end:
        raise SipParseError("Content-Length larger than the message body")
    return data[head_end : head_end + length], head_end + length


def _salvage_request(data: bytes) -> Request | None:
    """What can be read of a request that failed to parse: enough headers to answer it.

    Lines that are not headers are skipped; the caps still apply. None for a response or
    anything that does not start like a request.
    """
    head = data[:MAX_HEADER_BYTES].lstrip(b"\r\n")
    end = head.find(b"\r\n\r\n")
    lines = (head if end < 0 else head[:end]).decode(_ENC, _ERR).split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) < 2 or not is_token(parts[0]):
        return None
    fields: list[Field] = []
    folding = False  # whether a continuation line extends the last field kept
    for line in lines[1:]:
        if len(fields) >= MAX_HEADERS:
            break
        if len(line) > MAX_LINE_BYTES or "\r" in line or "\n" in line:
            folding = False
            continue
        if line[:1] in (" ", "\t"):
            if folding:
                key, name, value, _ = fields[-1]
                more = line.strip(" \t")
                value = f"{value} {more}".strip()
                if len(name) + 2 + len(value) > MAX_LINE_BYTES:
                    fields.pop()  # unfolded, too long a line to write back: not kept
                    folding = False
                else:
                    fields[-1] = (key, name, value, None)
            continue
        m = _NAME_COLON.match(line)
        folding = m is not None
        if m is not None:
            name = m.group(1)
            fields.append((header_key(name), name, line[m.end() :].strip(" \t"), None))
    return Request._parsed(parts[0], parts[1], SIP_VERSION, Headers._from_parsed(fields))


# -- validation of requests we are going to handle -------------------------------------------


def validate_request(req: Request) -> None:
    """Check what RFC 3261 §8.2 needs before a request enters a transaction.

    Raises `SipParseError` with the status and reason of the stateless answer (and the request
    in `partial`).
    """
    try:
        _validate(req)
    except SipParseError as exc:
        exc.partial = req
        raise


def _validate(req: Request) -> None:
    # "A valid SIP request formulated by a UAC MUST, at a minimum, contain the following header
    # fields: To, From, CSeq, Call-ID, Max-Forwards, and Via" (RFC 3261 §8.1.1); a missing
    # Max-Forwards is tolerated, as a proxy would (§16.6 step 3 adds one).
    for name in ("via", "from", "to", "call-id", "cseq"):
        values = req.headers.get_all(name)
        if not values:
            raise SipParseError(f"Missing {canonical_name(name)} header")
        if name != "via" and len(values) > 1:
            raise SipParseError(f"Conflicting {canonical_name(name)} headers")
    req.vias  # noqa: B018 - parse to validate
    req.from_.uri  # noqa: B018
    req.to.uri  # noqa: B018
    cseq = req.cseq
    # CSeq: "The method MUST match that of the request" (RFC 3261 §8.1.1.5).
    if cseq.method != req.method:
        raise SipParseError("CSeq method does not match the request method")
    call_id = req.call_id
    # callid = word [ "@" word ]: printable ASCII, no white space (RFC 3261 §25.1). It keys
    # transactions, dialogs and call records, so it is checked here rather than trusted.
    if " " in call_id or "\t" in call_id or not (call_id.isascii() and call_id.isprintable()):
        raise SipParseError("Malformed Call-ID")
    req.max_forwards  # noqa: B018
    req.expires  # noqa: B018
    for contact in req.contacts:
        contact.uri  # noqa: B018
    if req.headers.get("route") is not None:
        for route in req.name_addrs("route"):
            route.uri  # noqa: B018
    uri = req.request_uri
    if uri.scheme not in ("sip", "sips"):
        raise SipParseError(f"Unsupported URI scheme {uri.scheme!r}", status=416)


def is_utf8(text: str) -> bool:
    """Whether header text decoded from the wire was valid UTF-8 (the parser keeps other bytes
    as surrogate escapes, so that a message can be relayed byte for byte). Text that is stored
    or shown must pass this: RFC 3261 §25.1 writes TEXT-UTF8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def unsupported_extensions(
    req: Request, supported: Iterable[str] = SUPPORTED_OPTION_TAGS
) -> list[str]:
    """The option tags of `req`'s Require that are not in `supported` (compared without case),
    in the order the request lists them; empty for CANCEL and ACK, whose Require "MUST be
    ignored" (RFC 3261 §8.2.2.3)."""
    if req.method in ("CANCEL", "ACK"):
        return []
    values = req.headers.values("require")
    if not values:
        return []
    known = {tag.lower() for tag in supported}
    return [tag for tag in values if tag.lower() not in known]


def check_extensions(req: Request, supported: Iterable[str] = SUPPORTED_OPTION_TAGS) -> None:
    """Raise `BadExtension` when `req` requires an extension we do not support: "If a UAS does
    not understand an option tag listed in a Require header field, it MUST respond by
    generating a response with status code 420 (Bad Extension). The UAS MUST add an
    Unsupported header field, and list in it those options it does not understand amongst
    those in the Require header field of the request" (RFC 3261 §8.2.2.3)."""
    unsupported = unsupported_extensions(req, supported)
    if unsupported:
        raise BadExtension(req, unsupported)


def can_respond(req: Request) -> bool:
    """Whether a response can be sent back at all: it needs a parsable top Via (where to send
    it) and a CSeq (how the client matches it, RFC 3261 §17.1.3). Other missing headers are no
    obstacle: a request without Call-ID still deserves its 400.

    A request of another SIP version (to be answered 505) usually carries that version in its
    Via too, as RFC 4475 §3.4.1 does (`Via: SIP/7.0/UDP ...`): its sent-by is read all the same."""
    try:
        vias = req.headers.values("via")
        if not vias:
            return False
        top = vias[0]
        if req.version.upper() != SIP_VERSION:
            top = _OTHER_VERSION_VIA.sub("SIP/2.0/", top, count=1)
        parse_via(top)
    except SipParseError:
        return False
    return req.headers.get("cseq") is not None


# -- building responses -----------------------------------------------------------------------


def make_response(
    req: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """A response to `req` as RFC 3261 §8.2.6.2 builds it: Via, From, To, Call-ID and CSeq copied
    (raw, so even an odd request can be answered), a To tag added when given and missing.

    The copied fields are taken as they are: a header value of a message never holds CR or LF
    (the parser unfolds, `Headers` refuses), so only what is added is checked again."""
    fields: list[Field] = []
    first: dict[str, str] = {}
    for f in req.headers._fields:
        key = f[0]
        if key == "via":
            fields.append(("via", "Via", f[2], None))
        elif key in _COPIED and key not in first:
            first[key] = f[2]
    to_value = first.get("to")
    to_field: Field | None = None
    if to_value is not None:
        to_field = ("to", "To", to_value, None)
        if to_tag is not None and status > 100:
            try:
                has_tag = req.to.tag is not None
            except SipParseError:
                has_tag = True
            if not has_tag:
                to_field = _new_field("To", f"{to_value};tag={to_tag}")
    # Only what the request has: a header missing there stays missing here.
    for key, name in _COPIED.items():
        if key == "to":
            if to_field is not None:
                fields.append(to_field)
        elif (value := first.get(key)) is not None:
            fields.append((key, name, value, None))
    if status == 100:
        timestamp = req.headers.get("timestamp")
        if timestamp is not None:
            fields.append(("timestamp", "Timestamp", timestamp, None))
    out = Headers._from_parsed(fields)
    out.dirty = True
    for name, value in headers:
        out.add(name, value)  # checked: CR, LF, a name that is a token
    return Response(status, reason, out, body)


# What a response copies from its request besides the Vias, in the order it writes them.
_COPIED: Final = {"from": "From", "to": "To", "call-id": "Call-ID", "cseq": "CSeq"}
