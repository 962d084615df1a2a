"""SIP messages: model, parser and serializer (RFC 3261 §7, §20, §25).

Theory of operation
-------------------
`parse_message(data)` does the minimum on the hot path: it frames the start line and the header
lines (unfolding continuation lines), and keeps every header *raw* as (name, value, original
bytes). Typed views (`via`, `from_`, `to`, `cseq`, `contact`...) are parsed on first access and
cached. A message that nobody changed serializes to the very bytes it was parsed from; a changed
one is rebuilt line by line, reusing the original bytes of every untouched header and writing a
Content-Length that matches the body.

Header text is decoded as UTF-8 with `surrogateescape`, so any byte sequence survives a round trip.
Only `SipParseError` leaves this module for remote input.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from b2bua.sip.errors import SipParseError
from b2bua.sip.grammar import is_digits, is_token, split_list
from b2bua.sip.headers import (
    SINGLE_VALUE,
    CSeq,
    NameAddr,
    Via,
    canonical_name,
    header_key,
    parse_cseq,
    parse_name_addr,
    parse_name_addr_list,
    parse_via_list,
)
from b2bua.sip.uri import Uri, parse_uri

# Size caps on remote input.
MAX_MESSAGE_BYTES = 65_535
MAX_HEADER_BYTES = 16_384
MAX_HEADERS = 128
MAX_LINE_BYTES = 8_192
MAX_BODY_BYTES = MAX_MESSAGE_BYTES

SIP_VERSION = "SIP/2.0"
_ENC = "utf-8"
_ERR = "surrogateescape"

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


class HeaderField:
    """One header line: its name as written, its unfolded value, its original bytes if any."""

    __slots__ = ("key", "name", "raw", "value")

    def __init__(self, name: str, value: str, raw: bytes | None = None) -> None:
        self.name = name
        self.value = value
        self.key = header_key(name)
        self.raw = raw

    def __repr__(self) -> str:
        return f"HeaderField({self.name!r}, {self.value!r})"


class Headers:
    """Ordered, repeatable, case-insensitive header fields with typed, cached views."""

    __slots__ = ("_cache", "_fields", "dirty")

    def __init__(self, fields: Iterable[tuple[str, str]] | None = None) -> None:
        self._fields: list[HeaderField] = []
        self._cache: dict[str, Any] = {}
        self.dirty = True
        if fields is not None:
            for name, value in fields:
                self._fields.append(HeaderField(canonical_name(name), value))

    @classmethod
    def _from_parsed(cls, fields: list[HeaderField]) -> Headers:
        h = cls.__new__(cls)
        h._fields = fields
        h._cache = {}
        h.dirty = False
        return h

    # -- reading ---------------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((f.name, f.value) for f in self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = header_key(name)
        return any(f.key == key for f in self._fields)

    def get(self, name: str, default: str | None = None) -> str | None:
        """Value of the first header of that name."""
        key = header_key(name)
        for f in self._fields:
            if f.key == key:
                return f.value
        return default

    def get_all(self, name: str) -> list[str]:
        """Values of every header of that name, each as written (not split at commas)."""
        key = header_key(name)
        return [f.value for f in self._fields if f.key == key]

    def values(self, name: str) -> list[str]:
        """Every element of a list header, across repeated headers and comma-separated values."""
        key = header_key(name)
        if key in SINGLE_VALUE:
            return self.get_all(key)
        out: list[str] = []
        for f in self._fields:
            if f.key == key:
                out.extend(split_list(f.value))
        return out

    def cached(self, key: str) -> Any:
        return self._cache.get(key)

    def store(self, key: str, value: Any) -> Any:
        self._cache[key] = value
        return value

    # -- changing --------------------------------------------------------------------------
    def _changed(self, key: str) -> None:
        self.dirty = True
        self._cache.pop(key, None)

    def set(self, name: str, value: str) -> None:
        """Replace every header of that name by one (in place of the first, else at the end)."""
        key = header_key(name)
        new = HeaderField(canonical_name(name), value)
        for i, f in enumerate(self._fields):
            if f.key == key:
                self._fields[i] = new
                self._fields[i + 1 :] = [g for g in self._fields[i + 1 :] if g.key != key]
                break
        else:
            self._fields.append(new)
        self._changed(key)

    def add(self, name: str, value: str) -> None:
        self._fields.append(HeaderField(canonical_name(name), value))
        self._changed(header_key(name))

    def add_first(self, name: str, value: str) -> None:
        """Insert before the first header of that name (or at the top): how Via is pushed."""
        key = header_key(name)
        new = HeaderField(canonical_name(name), value)
        for i, f in enumerate(self._fields):
            if f.key == key:
                self._fields.insert(i, new)
                break
        else:
            self._fields.insert(0, new)
        self._changed(key)

    def remove(self, name: str) -> None:
        key = header_key(name)
        self._fields = [f for f in self._fields if f.key != key]
        self._changed(key)

    def pop_first(self, name: str) -> str | None:
        """Remove the first element of a list header (e.g. the top Via or Route)."""
        key = header_key(name)
        for i, f in enumerate(self._fields):
            if f.key == key:
                parts = split_list(f.value)
                if len(parts) <= 1:
                    del self._fields[i]
                else:
                    self._fields[i] = HeaderField(f.name, ", ".join(parts[1:]))
                self._changed(key)
                return parts[0] if parts else None
        return None

    def copy(self) -> Headers:
        h = Headers._from_parsed([HeaderField(f.name, f.value, f.raw) for f in self._fields])
        h.dirty = self.dirty
        return h

    def _write(self, out: list[bytes]) -> None:
        for f in self._fields:
            if f.raw is not None:
                out.append(f.raw)
            else:
                out.append(f"{f.name}: {f.value}\r\n".encode(_ENC, _ERR))


class Message:
    """What requests and responses share: headers, body, typed views."""

    __slots__ = ("_raw", "body", "headers", "source")

    headers: Headers
    body: bytes
    _raw: bytes | None
    source: Any

    def __init__(self, headers: Headers | Iterable[tuple[str, str]] | None, body: bytes) -> None:
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.body = body
        self._raw = None
        self.source = None

    # -- typed views (parsed lazily, cached until the header changes) -----------------------
    def _typed(self, key: str, parse: Any) -> Any:
        value = self.headers.cached(key)
        if value is None:
            raw = self.headers.get(key)
            if raw is None:
                raise SipParseError(f"Missing {canonical_name(key)} header")
            value = self.headers.store(key, parse(raw))
        return value

    @property
    def call_id(self) -> str:
        value = self.headers.get("call-id")
        if not value:
            raise SipParseError("Missing Call-ID header")
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
        value = self.headers.cached("via")
        if value is None:
            values = self.headers.values("via")
            if not values:
                raise SipParseError("Missing Via header")
            value = self.headers.store("via", parse_via_list(", ".join(values)))
        result: list[Via] = value
        return result

    @property
    def via(self) -> Via:
        """The top Via."""
        return self.vias[0]

    @property
    def contacts(self) -> list[NameAddr]:
        """Contact header values; a `Contact: *` gives an empty list (see `contact_star`)."""
        value = self.headers.cached("contact")
        if value is None:
            values = self.headers.values("contact")
            if self.contact_star:
                value = []
            else:
                value = [parse_name_addr(v) for v in values]
            self.headers.store("contact", value)
        result: list[NameAddr] = value
        return result

    @property
    def contact_star(self) -> bool:
        values = self.headers.values("contact")
        return len(values) == 1 and values[0] == "*"

    def name_addrs(self, name: str) -> list[NameAddr]:
        """Route, Record-Route, Path...: every element, parsed."""
        key = header_key(name)
        value = self.headers.cached(key)
        if value is None:
            value = self.headers.store(key, parse_name_addr_list(", ".join(self.headers.values(key))))
        result: list[NameAddr] = value
        return result

    @property
    def max_forwards(self) -> int | None:
        value = self.headers.get("max-forwards")
        if value is None:
            return None
        value = value.strip()
        if not is_digits(value) or len(value) > 3 or int(value) > 255:
            raise SipParseError("Malformed Max-Forwards")
        return int(value)

    @property
    def expires(self) -> int | None:
        value = self.headers.get("expires")
        if value is None:
            return None
        value = value.strip()
        if not is_digits(value) or len(value) > 10:
            raise SipParseError("Malformed Expires")
        return int(value)

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("content-type")
        return None if value is None else value.split(";", 1)[0].strip().lower()

    # -- serialization ---------------------------------------------------------------------
    def _start_line(self) -> str:
        raise NotImplementedError

    def __bytes__(self) -> bytes:
        raw = self._raw
        if raw is not None and not self.headers.dirty:
            return raw
        length = str(len(self.body))
        if self.headers.get("content-length") != length:
            self.headers.set("Content-Length", length)
        out: list[bytes] = [self._start_line().encode(_ENC, _ERR), b"\r\n"]
        self.headers._write(out)
        out.append(b"\r\n")
        out.append(self.body)
        raw = b"".join(out)
        self._raw = raw
        self.headers.dirty = False
        return raw

    def mark_changed(self) -> None:
        """Call after changing the start line or the body in place."""
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

    @property
    def request_uri(self) -> Uri:
        if self._uri is None:
            self._uri = parse_uri(self._uri_text)
        return self._uri

    @request_uri.setter
    def request_uri(self, uri: Uri) -> None:
        self._uri = uri
        self._uri_text = str(uri)
        self.headers.dirty = True

    @property
    def request_uri_text(self) -> str:
        return self._uri_text

    def _start_line(self) -> str:
        return f"{self.method} {self._uri_text} {self.version}"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self._uri_text}>"


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
        self.reason = REASONS.get(status, "Unknown") if reason is None else reason
        self.version = version

    def _start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


# -- parsing --------------------------------------------------------------------------------


def split_head(data: bytes) -> int:
    """Index just after the CRLFCRLF that ends the header section, or -1."""
    end = data.find(b"\r\n\r\n")
    return -1 if end < 0 else end + 4


def parse_message(data: bytes, *, stream: bool = False) -> Request | Response:
    """Parse one whole message (a datagram, or a message framed from a stream).

    On a datagram, Content-Length may be absent (the body is the rest of the datagram); bytes
    beyond Content-Length are discarded (RFC 3261 §18.3). A Content-Length larger than what
    arrived is an error.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipParseError("Message too large", status=513)
    # RFC 3261 §7.5: implementations SHOULD ignore CRLFs preceding the start-line.
    offset = 0
    while data.startswith(b"\r\n", offset):
        offset += 2
    if offset:
        data = data[offset:]
    head_end = split_head(data)
    if head_end < 0:
        raise SipParseError("No end of headers (CRLF CRLF)")
    if head_end > MAX_HEADER_BYTES:
        raise SipParseError("Header section too large", status=513)
    head = data[: head_end - 4]
    lines = head.split(b"\r\n")
    start = lines[0].decode(_ENC, _ERR)
    fields = _parse_header_lines(lines)
    headers = Headers._from_parsed(fields)
    msg: Request | Response
    if start.startswith(("SIP/", "sip/", "Sip/")) or start[:4].upper() == "SIP/":
        msg = _parse_status_line(start, headers)
    else:
        msg = _parse_request_line(start, headers)
    try:
        body, consumed = _frame_body(data, head_end, headers, stream)
    except SipParseError as exc:
        # The head is sound: keep it so the request can still get its 400 (see `partial`).
        exc.partial = msg
        raise
    msg.body = body
    # Leading CRLFs and bytes after Content-Length are not part of the message's own bytes.
    msg._raw = data[:consumed]
    return msg


def _parse_header_lines(lines: list[bytes]) -> list[HeaderField]:
    fields: list[HeaderField] = []
    current_name: str | None = None
    current_value: list[str] = []
    current_raw: list[bytes] = []

    def flush() -> None:
        if current_name is not None:
            raw = b"".join(current_raw)
            value = " ".join(v for v in current_value if v) if len(current_value) > 1 else current_value[0]
            fields.append(HeaderField(current_name, value, raw))

    for line in lines[1:]:
        if len(line) > MAX_LINE_BYTES:
            raise SipParseError("Header line too long", status=513)
        if line[:1] in (b" ", b"\t"):
            # Folded line (LWS continuation), RFC 3261 §7.3.1.
            if current_name is None:
                raise SipParseError("Continuation line before any header")
            current_value.append(line.strip(b" \t").decode(_ENC, _ERR))
            current_raw.append(line + b"\r\n")
            continue
        flush()
        colon = line.find(b":")
        if colon <= 0:
            raise SipParseError(f"Malformed header line {line[:40]!r}")
        name = line[:colon].rstrip(b" \t").decode(_ENC, _ERR)
        if not is_token(name):
            raise SipParseError(f"Malformed header name {name[:40]!r}")
        current_name = name
        current_value = [line[colon + 1 :].strip(b" \t").decode(_ENC, _ERR)]
        current_raw = [line + b"\r\n"]
        if len(fields) >= MAX_HEADERS:
            raise SipParseError("Too many headers", status=513)
    flush()
    return fields


def _parse_request_line(line: str, headers: Headers) -> Request:
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError("Malformed Request-Line")
    method, uri_text, version = parts
    if not is_token(method):
        raise SipParseError("Malformed method")
    req = Request(method, uri_text, headers, b"", version)
    if version.upper() != SIP_VERSION:
        req.version = version
        raise VersionNotSupported(req)
    req.version = version
    return req


class VersionNotSupported(SipParseError):
    """A request with another SIP-Version: answer 505 (the request itself is kept)."""

    def __init__(self, request: Request) -> None:
        super().__init__("Version Not Supported", status=505)
        self.request = request


def _parse_status_line(line: str, headers: Headers) -> Response:
    parts = line.split(" ", 2)
    if len(parts) < 2:
        raise SipParseError("Malformed Status-Line")
    version, code = parts[0], parts[1]
    reason = parts[2] if len(parts) == 3 else ""
    if version.upper() != SIP_VERSION:
        raise SipParseError("Unsupported SIP version in response", status=505)
    if len(code) != 3 or not is_digits(code) or not 100 <= int(code) <= 699:
        raise SipParseError("Malformed status code")
    return Response(int(code), reason, headers, b"", version)


def _frame_body(data: bytes, head_end: int, headers: Headers, stream: bool) -> tuple[bytes, int]:
    lengths = headers.get_all("content-length")
    if not lengths:
        if stream:
            return b"", head_end
        return data[head_end:], len(data)
    if len(lengths) > 1 and len({v.strip() for v in lengths}) > 1:
        raise SipParseError("Conflicting Content-Length headers")
    text = lengths[0].strip()
    if not is_digits(text) or len(text) > 9:
        raise SipParseError("Malformed Content-Length")
    length = int(text)
    if length > MAX_BODY_BYTES:
        raise SipParseError("Body too large", status=413)
    available = len(data) - head_end
    if length > available:
        raise SipParseError("Content-Length larger than the message body")
    return data[head_end : head_end + length], head_end + length


# -- validation of requests we are going to handle -------------------------------------------


def validate_request(req: Request) -> None:
    """Check what RFC 3261 §8.2 needs before a request enters a transaction.

    Raises `SipParseError` with the status and reason of the stateless answer.
    """
    for name in ("via", "from", "to", "call-id", "cseq"):
        values = req.headers.get_all(name)
        if not values:
            raise SipParseError(f"Missing {canonical_name(name)} header")
        if name != "via" and len(values) > 1:
            raise SipParseError(f"Conflicting {canonical_name(name)} headers")
    req.vias  # noqa: B018 - parse to validate
    req.from_  # noqa: B018
    req.to  # noqa: B018
    cseq = req.cseq
    if cseq.method != req.method:
        raise SipParseError("CSeq method does not match the request method")
    if not req.call_id.strip() or any(c in " \t" for c in req.call_id.strip()):
        raise SipParseError("Malformed Call-ID")
    req.max_forwards  # noqa: B018
    uri = req.request_uri
    if uri.scheme not in ("sip", "sips"):
        raise SipParseError(f"Unsupported URI scheme {uri.scheme!r}", status=416)


def can_respond(req: Request) -> bool:
    """Whether a response can be built at all: a parsable top Via and the other copy headers."""
    try:
        req.via  # noqa: B018
    except SipParseError:
        return False
    return all(req.headers.get(n) is not None for n in ("from", "to", "call-id", "cseq"))


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
    (raw, so even an odd request can be answered), a To tag added when given and missing."""
    fields: list[tuple[str, str]] = []
    for value in req.headers.get_all("via"):
        fields.append(("Via", value))
    from_value = req.headers.get("from") or ""
    to_value = req.headers.get("to") or ""
    if to_tag is not None and status > 100:
        try:
            has_tag = req.to.tag is not None
        except SipParseError:
            has_tag = True
        if not has_tag:
            to_value = f"{to_value};tag={to_tag}"
    fields.append(("From", from_value))
    fields.append(("To", to_value))
    fields.append(("Call-ID", req.headers.get("call-id") or ""))
    fields.append(("CSeq", req.headers.get("cseq") or ""))
    if status == 100 and "timestamp" in req.headers:
        fields.append(("Timestamp", req.headers.get("timestamp") or ""))
    fields.extend(headers)
    return Response(status, reason, fields, body)
