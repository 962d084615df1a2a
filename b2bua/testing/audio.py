"""Test audio: tones written as 8 kHz WAV files, and what a recording holds."""

from __future__ import annotations

import itertools
import math
import struct
import wave
from pathlib import Path


def make_tone(path: Path, seconds: float, hz: int) -> None:
    """A sine tone of `hz` for `seconds`, 8 kHz mono 16-bit (what baresip's aufile reads)."""
    rate = 8000
    frames = b"".join(
        struct.pack("<h", int(12000 * math.sin(2 * math.pi * hz * n / rate)))
        for n in range(int(seconds * rate))
    )
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)


def dominant_frequency(path: Path, last: float | None = None) -> tuple[float, float]:
    """(seconds of audio above a noise floor, zero-crossing frequency of that audio); `last`:
    only the last that many seconds of the file."""
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        data = w.readframes(w.getnframes())
    samples = struct.unpack(f"<{len(data) // 2}h", data)
    if last is not None:
        samples = samples[-int(last * rate):]
    voiced = [samples[i:i + 160] for i in range(0, len(samples), 160)]
    voiced = [f for f in voiced if max(abs(x) for x in f) > 2000]
    flat = [x for f in voiced for x in f]
    crossings = sum(1 for a, b in itertools.pairwise(flat) if (a < 0) != (b < 0))
    seconds = len(flat) / rate
    return seconds, (crossings / 2 / seconds if seconds else 0.0)
