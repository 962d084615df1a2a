"""Voicemail with real audio: baresip calls a user nobody answers for, talks a tone, hangs up;
the recording holds that tone, at about the right length, and is indexed; the user's phone,
subscribed to its voicebox, gets a message-waiting NOTIFY."""

from __future__ import annotations

import itertools
import math
import sqlite3
import struct
import time
import wave
from pathlib import Path

from b2bua.testing.baresip import start_baresip
from b2bua.testing.net import free_port
from b2bua.testing.server import start_server
from b2bua.testing.sipp import finish, start_sipp
from tests.integration.conftest import SCENARIOS, make_config
from tests.integration.flows import call_records

TONE_HZ = 440
TONE_SECONDS = 12


def make_tone(path: Path, seconds: float, hz: int) -> None:
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


def dominant_frequency(path: Path) -> tuple[float, float]:
    """(seconds of audio above a noise floor, zero-crossing frequency of that audio)."""
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        data = w.readframes(w.getnframes())
    samples = struct.unpack(f"<{len(data) // 2}h", data)
    voiced = [samples[i:i + 160] for i in range(0, len(samples), 160)]
    voiced = [f for f in voiced if max(abs(x) for x in f) > 2000]
    flat = [x for f in voiced for x in f]
    crossings = sum(1 for a, b in itertools.pairwise(flat) if (a < 0) != (b < 0))
    seconds = len(flat) / rate
    return seconds, (crossings / 2 / seconds if seconds else 0.0)


def test_voicemail_records_what_the_caller_says(tmp_path: Path) -> None:
    server = start_server(make_config(tmp_path))
    tone = tmp_path / "tone.wav"
    make_tone(tone, TONE_SECONDS, TONE_HZ)
    subscriber = start_sipp((SCENARIOS / "mwi_subscribe.xml").read_text(), tmp_path / "mwi",
                            server.sip, name="mwi", local_port=free_port(), service="1002",
                            extra=("-au", "1002", "-ap", "secret1002"), timeout_s=60)
    try:
        phone = start_baresip(
            tmp_path / "caller", "1001", "secret1001", server.sip, domain="pbx.test",
            seconds=TONE_SECONDS + 10, audio=tone, answer=False,
            dial=f"sip:1002@127.0.0.1:{server.sip_port}",
        )
        out = phone.wait(TONE_SECONDS + 20)
        db_path = tmp_path / "var" / "b2bua.sqlite"
        deadline = time.monotonic() + 10
        rows: list[tuple[str, str, float, str]] = []
        while time.monotonic() < deadline and not rows:
            with sqlite3.connect(db_path) as db:
                try:
                    rows = db.execute(
                        "SELECT extension, caller, duration, path FROM voicemail").fetchall()
                except sqlite3.OperationalError:
                    rows = []
            time.sleep(0.3)
        assert rows, "no voicemail indexed\n" + out[-3000:] + "\n" + server.log()[-4000:]
        ext, caller, duration, name = rows[0]
        assert (ext, caller) == ("1002", "1001")
        wav = tmp_path / "var" / "voicemail" / "1002" / name
        assert wav.exists()
        # The caller talked for TONE_SECONDS; the greeting (~5 s) and the beep came first.
        assert 3.0 < duration < TONE_SECONDS
        seconds, freq = dominant_frequency(wav)
        assert seconds > 3.0
        assert abs(freq - TONE_HZ) < 15, freq
        assert call_records(server, 1)[0]["outcome"] == "voicemail"
        # The subscribed phone of 1002 was told: first "no", then "yes, 1 new".
        mwi = finish(subscriber, tmp_path / "mwi", timeout=30)
        assert mwi.ok, mwi.describe()
    finally:
        server.stop()
