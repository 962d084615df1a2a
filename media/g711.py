"""G.711 (PCMU / PCMA) codecs behind a small encoder/decoder interface.

Linear audio is signed 16-bit little-endian ("s16le"), 8 kHz mono. On Python 3.11 and 3.12 the
stdlib `audioop` does the work in C; from 3.13 the `audioop-lts` package provides the same module.
Where neither exists, lookup tables built here give bit-identical results (the tests compare every
one of the 65536 input samples with audioop): encoding is a 65536-entry table indexed by the
sample, decoding a 256-entry one.

The algorithm is the classic segment search of ITU-T G.711: mu-law works on the top 14 bits of
the sample with a bias of 33, A-law on the top 13 bits.
"""

from __future__ import annotations

import functools
import sys
import warnings
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Protocol

__all__ = [
    "CODECS",
    "PCMA",
    "PCMU",
    "Codec",
    "G711Codec",
    "alaw_to_ulaw",
    "codec_by_name",
    "ulaw_to_alaw",
]


def _load_audioop() -> ModuleType | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:
            return None
    return audioop


_audioop = _load_audioop()

_SEG_UEND = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_SEG_AEND = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for i, end in enumerate(ends):
        if value <= end:
            return i
    return len(ends)


def linear_to_ulaw(sample: int) -> int:
    """Encode one signed 16-bit sample to a mu-law byte."""
    pcm = sample >> 2
    if pcm < 0:
        pcm, mask = -pcm, 0x7F
    else:
        mask = 0xFF
    pcm = min(pcm, 8159) + 33
    seg = _segment(pcm, _SEG_UEND)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (seg + 1)) & 0x0F)) ^ mask


def ulaw_to_linear(byte: int) -> int:
    """Decode one mu-law byte to a signed 16-bit sample."""
    u = ~byte & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return 0x84 - t if u & 0x80 else t - 0x84


def linear_to_alaw(sample: int) -> int:
    """Encode one signed 16-bit sample to an A-law byte."""
    pcm = sample >> 3
    if pcm >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        pcm = -pcm - 1
    seg = _segment(pcm, _SEG_AEND)
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= (pcm >> 1 if seg < 2 else pcm >> seg) & 0x0F
    return aval ^ mask


def alaw_to_linear(byte: int) -> int:
    """Decode one A-law byte to a signed 16-bit sample."""
    a = byte ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


def _decode_table(fn: Callable[[int], int]) -> bytes:
    out = array("h", (fn(b) for b in range(256)))
    if sys.byteorder == "big":
        out.byteswap()
    return out.tobytes()


def _encode_table(fn: Callable[[int], int]) -> bytes:
    # Indexed by the sample's unsigned 16-bit value (two's complement).
    return bytes(fn(i - 0x10000 if i & 0x8000 else i) for i in range(0x10000))


@functools.cache
def _table(name: str) -> bytes:
    """A lookup table, built on first use (about 30 ms for each encode table)."""
    if name == "ulaw_dec":
        return _decode_table(ulaw_to_linear)
    if name == "alaw_dec":
        return _decode_table(alaw_to_linear)
    if name == "ulaw_enc":
        return _encode_table(linear_to_ulaw)
    if name == "alaw_enc":
        return _encode_table(linear_to_alaw)
    raise KeyError(name)


def _samples(pcm: bytes) -> array[int]:
    if len(pcm) % 2:
        raise ValueError("linear audio must be a whole number of 16-bit samples")
    samples = array("H")
    samples.frombytes(pcm)
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def _encode_py(pcm: bytes, table_name: str) -> bytes:
    table = _table(table_name)
    return bytes(map(table.__getitem__, _samples(pcm)))


def _decode_py(data: bytes, table_name: str) -> bytes:
    table = _table(table_name)
    return b"".join([table[2 * b : 2 * b + 2] for b in data])


class Codec(Protocol):
    """An audio codec: `encode` takes s16le 8 kHz mono, `decode` gives it back."""

    @property
    def name(self) -> str: ...
    @property
    def payload_type(self) -> int: ...
    @property
    def clock_rate(self) -> int: ...
    @property
    def silence(self) -> int:
        """The byte value of a silent sample."""
        ...

    def encode(self, pcm: bytes) -> bytes: ...
    def decode(self, data: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class G711Codec:
    """PCMU (mu-law, static payload type 0) or PCMA (A-law, static payload type 8)."""

    name: str
    payload_type: int
    silence: int
    use_audioop: bool = True
    clock_rate: int = 8000

    def encode(self, pcm: bytes) -> bytes:
        if self.use_audioop and _audioop is not None:
            if len(pcm) % 2:
                raise ValueError("linear audio must be a whole number of 16-bit samples")
            if self.name == "PCMU":
                return bytes(_audioop.lin2ulaw(pcm, 2))
            return bytes(_audioop.lin2alaw(pcm, 2))
        return _encode_py(pcm, "ulaw_enc" if self.name == "PCMU" else "alaw_enc")

    def decode(self, data: bytes) -> bytes:
        if self.use_audioop and _audioop is not None:
            if self.name == "PCMU":
                return bytes(_audioop.ulaw2lin(data, 2))
            return bytes(_audioop.alaw2lin(data, 2))
        return _decode_py(data, "ulaw_dec" if self.name == "PCMU" else "alaw_dec")

    def without_audioop(self) -> G711Codec:
        """The same codec computed with the lookup tables only (for tests and odd platforms)."""
        return G711Codec(self.name, self.payload_type, self.silence, use_audioop=False)


PCMU = G711Codec("PCMU", 0, 0xFF)
PCMA = G711Codec("PCMA", 8, 0xD5)
CODECS: dict[str, G711Codec] = {"PCMU": PCMU, "PCMA": PCMA}

_U2A = bytes(linear_to_alaw(ulaw_to_linear(b)) for b in range(256))
_A2U = bytes(linear_to_ulaw(alaw_to_linear(b)) for b in range(256))


def ulaw_to_alaw(data: bytes) -> bytes:
    """Transcode mu-law bytes to A-law (through linear; one `bytes.translate`)."""
    return data.translate(_U2A)


def alaw_to_ulaw(data: bytes) -> bytes:
    """Transcode A-law bytes to mu-law."""
    return data.translate(_A2U)


def codec_by_name(name: str) -> G711Codec:
    """The codec for an SDP encoding name ("PCMU", "pcma"...); KeyError if not G.711."""
    return CODECS[name.upper()]
