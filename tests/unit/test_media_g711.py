"""G.711: the table implementation is bit-exact with audioop, and the codec interface."""

from __future__ import annotations

import struct
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.g711 import (
    PCMA,
    PCMU,
    alaw_to_ulaw,
    codec_by_name,
    ulaw_to_alaw,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    audioop = pytest.importorskip("audioop")

ALL_SAMPLES = struct.pack("<65536h", *range(-32768, 32768))
ALL_BYTES = bytes(range(256))


def test_ulaw_tables_match_audioop_for_every_sample() -> None:
    assert PCMU.without_audioop().encode(ALL_SAMPLES) == audioop.lin2ulaw(ALL_SAMPLES, 2)
    assert PCMU.without_audioop().decode(ALL_BYTES) == audioop.ulaw2lin(ALL_BYTES, 2)


def test_alaw_tables_match_audioop_for_every_sample() -> None:
    assert PCMA.without_audioop().encode(ALL_SAMPLES) == audioop.lin2alaw(ALL_SAMPLES, 2)
    assert PCMA.without_audioop().decode(ALL_BYTES) == audioop.alaw2lin(ALL_BYTES, 2)


@given(st.lists(st.integers(-32768, 32767), max_size=400))
def test_both_implementations_agree(samples: list[int]) -> None:
    pcm = struct.pack(f"<{len(samples)}h", *samples)
    for codec in (PCMU, PCMA):
        slow = codec.without_audioop()
        assert slow.encode(pcm) == codec.encode(pcm)
        encoded = codec.encode(pcm)
        assert slow.decode(encoded) == codec.decode(encoded)


@given(st.lists(st.integers(-32768, 32767), min_size=1, max_size=200))
def test_round_trip_error_is_bounded(samples: list[int]) -> None:
    pcm = struct.pack(f"<{len(samples)}h", *samples)
    for codec in (PCMU, PCMA):
        back = struct.unpack(f"<{len(samples)}h", codec.decode(codec.encode(pcm)))
        for s, b in zip(samples, back, strict=True):
            # Logarithmic quantization: the error grows with the amplitude, ~1/16 of it at most.
            assert abs(s - b) <= max(16, abs(s) // 15)


def test_silence_byte() -> None:
    zero = b"\x00\x00" * 160
    assert PCMU.encode(zero) == bytes([PCMU.silence]) * 160
    assert PCMA.encode(zero) == bytes([PCMA.silence]) * 160


def test_interface_and_lookup() -> None:
    assert (PCMU.payload_type, PCMA.payload_type) == (0, 8)
    assert codec_by_name("pcma") is PCMA
    with pytest.raises(KeyError):
        codec_by_name("G722")
    with pytest.raises(ValueError):
        PCMU.without_audioop().encode(b"\x00")
    with pytest.raises(ValueError):
        PCMU.encode(b"\x00")


def test_transcoding_matches_decode_then_encode() -> None:
    assert ulaw_to_alaw(ALL_BYTES) == PCMA.encode(PCMU.decode(ALL_BYTES))
    assert alaw_to_ulaw(ALL_BYTES) == PCMU.encode(PCMA.decode(ALL_BYTES))
