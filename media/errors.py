"""The error the media layer raises to its callers."""

from __future__ import annotations

__all__ = ["MediaError"]


class MediaError(Exception):
    """A media operation that cannot be done; `reason` says why in words a user can act on.
    `status` is the SIP response the call engine should answer with when the error is about a
    remote offer (488 for an SDP we cannot accept), None when it is not the far end's fault."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
