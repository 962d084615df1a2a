"""The error the media layer raises to its callers."""

from __future__ import annotations

__all__ = ["MediaError"]


class MediaError(Exception):
    """A media operation that cannot be done; `reason` says why in words a user can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
