"""Random identifiers for SIP (tags, branches, Call-IDs): unique and unguessable enough, cheap.

RFC 3261 asks for globally unique Call-IDs and at least 32 random bits in tags (§19.3). A
generator seeded from the OS once per process gives that without a system call per token
(`secrets` costs one `getrandom` each: measurable at thousands of messages per second).
"""

from __future__ import annotations

import os
import random


class TokenSource:
    __slots__ = ("_bits",)

    def __init__(self, seed: bytes | None = None) -> None:
        rng = random.Random(seed if seed is not None else os.urandom(32))
        self._bits = rng.getrandbits

    def hex(self, nbytes: int = 8) -> str:
        """`2 * nbytes` hex digits."""
        return f"{self._bits(nbytes * 8):0{nbytes * 2}x}"


_default = TokenSource()


def token(nbytes: int = 8) -> str:
    """A random hex token from the process-wide source."""
    return _default.hex(nbytes)


def tag() -> str:
    """A From/To tag (RFC 3261 §19.3: at least 32 random bits; we use 40)."""
    return _default.hex(5)


def reseed_after_fork() -> None:
    """A forked child must not repeat its parent's tokens."""
    global _default
    _default = TokenSource()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=reseed_after_fork)
