"""Framing SIP messages out of a byte stream (TCP, TLS), RFC 3261 §18.3 and RFC 5626 §4.4.1.

Feed bytes as they arrive with `feed()`, then drain `next_event()` until it returns None:
`bytes` is one whole message (parse it with `parse_message(..., stream=True)`), `KEEPALIVE_PING`
is a CRLFCRLF keep-alive that the server answers with one CRLF (the "pong"). On a stream,
Content-Length is what delimits the body; a missing one means an empty body.
A framing error (header section or body too large, bad Content-Length) raises `SipParseError`:
the stream is then out of sync and the connection must be closed.
"""

from __future__ import annotations

from typing import Final

from b2bua.sip.errors import SipParseError
from b2bua.sip.grammar import is_digits
from b2bua.sip.message import MAX_BODY_BYTES, MAX_HEADER_BYTES

KEEPALIVE_PING: Final = "ping"


class StreamFramer:
    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_event(self) -> bytes | str | None:
        buf = self._buf
        # Between messages: CRLFCRLF is a keep-alive ping; a lone CRLF is a pong or padding.
        while buf.startswith(b"\r\n"):
            if buf.startswith(b"\r\n\r\n"):
                del buf[:4]
                return KEEPALIVE_PING
            if len(buf) < 4 and b"\r\n\r\n".startswith(bytes(buf)):
                return None  # may become a ping
            del buf[:2]
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEADER_BYTES:
                raise SipParseError("Header section too large", status=513)
            return None
        head_end = end + 4
        if head_end > MAX_HEADER_BYTES:
            raise SipParseError("Header section too large", status=513)
        length = _content_length(bytes(buf[:end]))
        if length > MAX_BODY_BYTES:
            raise SipParseError("Body too large", status=413)
        total = head_end + length
        if len(buf) < total:
            return None
        message = bytes(buf[:total])
        del buf[:total]
        return message


def _content_length(head: bytes) -> int:
    found: int | None = None
    for line in head.split(b"\r\n")[1:]:
        colon = line.find(b":")
        if colon <= 0:
            continue
        name = line[:colon].strip().lower()
        if name in (b"content-length", b"l"):
            text = line[colon + 1 :].strip().decode("ascii", "replace")
            if not is_digits(text) or len(text) > 9:
                raise SipParseError("Malformed Content-Length")
            value = int(text)
            if found is not None and found != value:
                raise SipParseError("Conflicting Content-Length headers")
            found = value
    return found or 0
