"""The one error contract for remote input.

Only `SipParseError` (and subclasses) escapes the SIP parser. `status` is the response a request
that fails this way deserves (400 by default; 505, 416, 413... where the RFC says so); the
`reason` becomes the reason phrase, so a peer learns what was wrong with its message.
"""

from __future__ import annotations


class SipParseError(ValueError):
    """Remote input that cannot be accepted; `status` and `reason` form the stateless answer."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        # The message as far as it could be parsed (start line and headers), when the error
        # came later (e.g. a bad Content-Length): enough to answer a request statelessly.
        self.partial: object | None = None

    def __repr__(self) -> str:
        return f"SipParseError({self.reason!r}, status={self.status})"
