"""The one error contract for remote input.

Only `SipParseError` (and subclasses) escapes the SIP parser. `status` is the response a request
that fails this way deserves (400 by default; 505, 416, 413, 513 where the RFC says so); the
`reason` becomes the reason phrase, so a peer learns what was wrong with its message.

A reason is often built from remote text and is written back on the wire, so it is always passed
through `safe_reason()`: only characters the Reason-Phrase grammar allows unescaped (RFC 3261
§25.1: reserved, unreserved, SP), never CR or LF, at most `MAX_REASON_CHARS`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from b2bua.sip.message import Request, Response

MAX_REASON_CHARS: Final = 120

# Reason-Phrase = *(reserved / unreserved / escaped / UTF8-NONASCII / UTF8-CONT / SP / HTAB);
# we write ASCII only, and nothing that would need an escape.
_UNSAFE = re.compile(r"[^A-Za-z0-9\-_.!~*'();/?:@&=+$, ]")
_LOOKALIKE = str.maketrans(
    {
        '"': "'",
        "<": "(",
        "[": "(",
        "{": "(",
        ">": ")",
        "]": ")",
        "}": ")",
        "\r": " ",
        "\n": " ",
        "\t": " ",
    }
)


def safe_reason(text: str, default: str = "Bad Request", limit: int = MAX_REASON_CHARS) -> str:
    """`text` fit to be a reason phrase: line breaks become spaces, brackets and quotes
    look-alikes the grammar allows, any other disallowed character '?'; at most `limit`
    characters, never empty."""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    text = _UNSAFE.sub("?", text.translate(_LOOKALIKE)).strip()
    return text or default


class SipParseError(ValueError):
    """Remote input that cannot be accepted; `status` and `reason` form the stateless answer.

    `partial` is the message as far as it could be read (start line and headers) when the error
    came from a request: what a server needs to answer it (see `message.can_respond`).
    """

    partial: Request | Response | None
    # Header fields the stateless answer carries besides the copied ones (420's Unsupported).
    headers: tuple[tuple[str, str], ...] = ()

    def __init__(self, reason: str, status: int = 400) -> None:
        reason = safe_reason(reason)
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.partial = None

    def __repr__(self) -> str:
        return f"SipParseError({self.reason!r}, status={self.status})"
