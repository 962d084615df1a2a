"""Framing SIP messages out of a byte stream (TCP, TLS), RFC 3261 §18.3 and RFC 5626 §4.4.1.

Feed bytes as they arrive with `feed()`, then drain `next_event()` until it returns None:
`bytes` is one whole message (parse it with `parse_message(..., stream=True)`), `KEEPALIVE_PING`
is a CRLFCRLF keep-alive that the server answers with one CRLF (the "pong"). On a stream,
Content-Length is what delimits the body; a missing one means an empty body.
A framing error (header section or body too large, bad Content-Length) raises `SipParseError`:
the stream is then out of sync and the connection must be closed.
"""

from __future__ import annotations

import re
from typing import Final

from b2bua.sip.errors import SipParseError
from b2bua.sip.message import (
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    MAX_MESSAGE_BYTES,
    parse_content_length,
)

KEEPALIVE_PING: Final = "ping"

# A Content-Length header line (long or compact name, any case), with its continuation lines.
_CONTENT_LENGTH = re.compile(
    rb"\r\n(?:content-length|l)[ \t]*:((?:[^\r\n]|\r\n[ \t])*)", re.IGNORECASE
)


class StreamFramer:
    """Splits a byte stream into whole messages and keep-alive pings."""

    __slots__ = ("_buf", "_scanned")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._scanned = 0  # bytes of the buffer known to hold no CRLFCRLF

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_event(self) -> bytes | str | None:
        """The next whole message (bytes), KEEPALIVE_PING, or None until more bytes come."""
        buf = self._buf
        # Between messages: CRLFCRLF is a keep-alive ping; a lone CRLF is a pong or padding.
        while buf.startswith(b"\r\n"):
            if buf.startswith(b"\r\n\r\n"):
                del buf[:4]
                self._scanned = 0
                return KEEPALIVE_PING
            if len(buf) < 4 and b"\r\n\r\n".startswith(bytes(buf)):
                return None  # may become a ping
            del buf[:2]
            self._scanned = 0
        end = buf.find(b"\r\n\r\n", max(0, self._scanned - 3))
        if end < 0:
            self._scanned = len(buf)
            if len(buf) > MAX_HEADER_BYTES:
                raise SipParseError("Header section too large", status=513)
            return None
        head_end = end + 4
        if head_end > MAX_HEADER_BYTES:
            raise SipParseError("Header section too large", status=513)
        # The start line is not a header: search from its CRLF (one stays in front of each line).
        head = bytes(buf[buf.find(b"\r\n") : end + 2])
        values = [_unfold(v) for v in _CONTENT_LENGTH.findall(head)]
        length = parse_content_length(values) or 0
        if length > MAX_BODY_BYTES:
            raise SipParseError("Body too large", status=413)
        total = head_end + length
        if total > MAX_MESSAGE_BYTES:
            raise SipParseError("Message too large", status=513)
        if len(buf) < total:
            self._scanned = end  # the head is complete: no need to search it again
            return None
        message = bytes(buf[:total])
        del buf[:total]
        self._scanned = 0
        return message


def _unfold(value: bytes) -> str:
    return " ".join(value.decode("ascii", "replace").split())
