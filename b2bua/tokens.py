"""Random identifiers for SIP (tags, branches, Call-IDs): unique and unguessable enough, cheap.

RFC 3261 asks for globally unique Call-IDs and at least 32 random bits in tags (§19.3). A
generator seeded from the OS once gives that without a system call per token (`secrets` costs
one `getrandom` each: measurable at thousands of messages per second). The server makes one
`TokenSource` at start and passes it to every layer that needs tokens; tests pass a seeded one.

With several worker processes (`[server] workers`), every token a worker makes starts with a
letter that names it (`g` for worker 0, `h` for 1...): never a hex digit, so it cannot be
mistaken for one. A response carries our branch and an in-dialog request our tag, so any
worker can tell from them which worker owns the transaction or dialog (`worker_of`).
"""

from __future__ import annotations

import os
import random


class TokenSource:
    """Random tokens for one process. `prefix` is the worker's letter (see `worker_prefix`),
    put before every `token` and `tag`; a seed makes the sequence repeatable (tests)."""

    __slots__ = ("_bits", "prefix")

    def __init__(self, seed: bytes | None = None, prefix: str = "") -> None:
        rng = random.Random(seed if seed is not None else os.urandom(32))
        self._bits = rng.getrandbits
        self.prefix = prefix

    def hex(self, nbytes: int = 8) -> str:
        """`2 * nbytes` hex digits."""
        return f"{self._bits(nbytes * 8):0{nbytes * 2}x}"

    def token(self, nbytes: int = 8) -> str:
        """A random token, after the worker's letter if any (Call-IDs, branches)."""
        return self.prefix + f"{self._bits(nbytes * 8):0{nbytes * 2}x}"

    def tag(self) -> str:
        """A From/To tag (RFC 3261 §19.3: at least 32 random bits; we use 40)."""
        return self.prefix + f"{self._bits(40):010x}"


def worker_prefix(index: int | None) -> str:
    """The letter every token of worker `index` starts with ("" for a single process)."""
    if index is None:
        return ""
    if not 0 <= index < MAX_WORKERS:
        raise ValueError(f"worker index {index} out of 0..{MAX_WORKERS - 1}")
    return chr(_FIRST + index)


_FIRST = ord("g")
MAX_WORKERS = 16  # letters g..v


def worker_of(text: str | None) -> int | None:
    """The worker whose mark `text` (a tag, or a token after the branch's magic cookie)
    starts with; None when it has none."""
    if not text:
        return None
    index = ord(text[0]) - _FIRST
    return index if 0 <= index < MAX_WORKERS else None
