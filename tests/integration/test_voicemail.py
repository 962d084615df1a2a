"""Voicemail with real audio: baresip calls a user nobody answers for, talks a tone, hangs up;
the recording holds that tone, at about the right length, and is indexed; the user's phone,
subscribed to its voicebox, gets a message-waiting NOTIFY."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from b2bua.testing.audio import dominant_frequency, make_tone
from b2bua.testing.baresip import start_baresip
from b2bua.testing.net import free_port
from b2bua.testing.server import start_server
from b2bua.testing.sipp import finish, start_sipp
from tests.integration.conftest import SCENARIOS, make_config
from tests.integration.flows import call_records

TONE_HZ = 440
TONE_SECONDS = 12


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
