"""Announcements declared in the configuration file (`[[announcements]] name, file`): imported
into the sound library when `b2bua run` starts (decoded once by ffmpeg), heard by a real SIPp
caller routed to them (the RTP the caller receives is the file's tone, not the shipped prompt of
the same name), a file that cannot be read is logged by name and does not stop the server,
`b2bua check` names it with FILE:LINE, and an announcement removed from the file stops hiding the
shipped prompt at the next start.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from b2bua.testing.audio import dominant_frequency, make_tone
from b2bua.testing.server import RunningServer
from media.g711 import PCMU
from media.rtp import RtpPacket
from tests.api.helpers import multipart, signed_in, start, tone_wav
from tests.integration.conftest import SCENARIOS
from tests.integration.flows import call, call_records

pytestmark = pytest.mark.integration

ANNOUNCEMENTS = """
[[users]]
extension = "1005"
name = "Eve Absent"
secret = "secret1005"

  [users.schedule]
  enabled = true

  [[users.schedule.hours]]
  start = "00:00"
  end = "24:00"
  days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

  [[users.exceptions]]
  callers = "0499*"
  destination = {{ kind = "announcement", message = "absence" }}

  [[users.exceptions]]
  callers = "0488*"
  destination = {{ kind = "announcement", message = "soldes-hiver" }}

[[announcements]]
name = "absence"
file = "sounds/absence-retour-lundi.wav"

[[announcements]]
name = "soldes-hiver"
file = "sounds/soldes.mp3"
{more}
"""
BROKEN = """
[[announcements]]
name = "panne"
file = "sounds/introuvable.wav"
"""

ABSENCE_HZ, SOLDES_HZ = 700, 1300


@pytest.fixture(scope="module")
def sounds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The configuration's folder with its sounds: a 700 Hz WAV and a 1300 Hz MP3."""
    for tool, package in (("sipp", "sip-tester"), ("ffmpeg", "ffmpeg")):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: scripts/test installs Debian's {package}")
    directory = tmp_path_factory.mktemp("configured")
    (directory / "sounds").mkdir()
    make_tone(directory / "sounds" / "absence-retour-lundi.wav", 3.0, ABSENCE_HZ)
    make_tone(directory / "soldes.wav", 3.0, SOLDES_HZ)
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(directory / "soldes.wav"),
                    str(directory / "sounds" / "soldes.mp3")], check=True, timeout=60)
    return directory


@contextmanager
def rtp_sink() -> Iterator[tuple[int, list[bytes]]]:
    """A plain UDP socket on 127.0.0.1 keeping every RTP packet it receives."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    packets: list[bytes] = []
    stop = threading.Event()

    def receive() -> None:
        while not stop.is_set():
            try:
                packets.append(sock.recv(2048))
            except TimeoutError:
                continue

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1], packets
    finally:
        stop.set()
        thread.join()
        sock.close()


def hear(server: RunningServer, caller: str, workdir: Path) -> tuple[float, float]:
    """Call 1005 from the carrier as `caller`; (seconds heard, frequency heard) of the RTP
    that reached the caller's media address before the B2BUA hung up."""
    with rtp_sink() as (port, packets):
        xml = (SCENARIOS / "uac_call_then_bye_in.xml").read_text()
        xml = xml.replace("sip:0611223344@", f"sip:{caller}@")
        xml = xml.replace("c=IN IP4 [media_ip]", "c=IN IP4 127.0.0.1")
        xml = xml.replace("m=audio [media_port]", f"m=audio {port}")
        result = call(server, xml, workdir, service="1005", wait=60)
        assert result.ok, result.describe() + server.log()[-3000:]
        time.sleep(0.3)
    assert len(packets) > 50, f"only {len(packets)} RTP packets reached the caller"
    pcm = bytes(PCMU.decode(b"".join(RtpPacket.parse(p).payload for p in packets)))
    wav = workdir / "heard.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm)
    return dominant_frequency(wav)


def b2bua(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "b2bua", *args], capture_output=True, text=True,
                          timeout=60)


def test_a_caller_hears_the_configuration_files_announcements(sounds: Path) -> None:
    server = start(sounds, ANNOUNCEMENTS.format(more=BROKEN))
    try:
        log = server.log()
        assert "announcement 'absence' ready" in log and "announcement 'soldes-hiver' ready" in log
        # A file that cannot be read: logged with its name, the server runs on.
        assert "announcement 'panne': cannot use" in log and "introuvable.wav" in log
        assert "Traceback" not in log
        # "absence" hides the shipped prompt of that name: the caller hears the file's tone.
        seconds, hz = hear(server, "0499887766", sounds / "call-absence")
        assert seconds > 2.5 and abs(hz - ABSENCE_HZ) < 0.03 * ABSENCE_HZ, (seconds, hz)
        # A new name, from an MP3.
        seconds, hz = hear(server, "0488776655", sounds / "call-soldes")
        assert seconds > 2.5 and abs(hz - SOLDES_HZ) < 0.03 * SOLDES_HZ, (seconds, hz)
        steps = [r["steps"] for r in call_records(server)[:2]]
        assert {"code": "to_announcement", "params": {"message": "soldes-hiver"}} in steps[0]
        assert {"code": "to_announcement", "params": {"message": "absence"}} in steps[1]
        # The dashboard lists and plays them (the file's sound, not the shipped one).
        admin = signed_in(server, "admin")
        listed = {a["name"]: a for a in admin.get("/api/announcements").json()["announcements"]}
        assert listed["soldes-hiver"]["kind"] == "configured"
        assert listed["soldes-hiver"]["used_by"] == ["1005"]
        audio = admin.get("/api/users/1005/announcements/soldes-hiver/audio")
        assert audio.status == 200 and audio.body[:4] == b"RIFF"
        # An announcement uploaded from the dashboard, whose file then goes missing.
        body, ctype = multipart({"name": "fermeture", "label": "Fermeture"},
                                {"file": ("f.wav", tone_wav(0.5))})
        assert admin.request("POST", "/api/announcements", raw=body,
                             content_type=ctype).status == 201
    finally:
        server.stop()
    for wav in (sounds / "var" / "uploads" / "announcements").glob("fermeture-*.wav"):
        wav.unlink()
    # `b2bua check` names each missing file where it can be fixed.
    check = b2bua("check", "--config", str(server.config))
    lines = server.config.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "introuvable.wav" in text)
    assert f"{server.config}:{line}: announcements[2].file: file not found" in check.stdout, check
    database = sounds / "var" / "b2bua.sqlite"
    assert f"{database}: announcement 'fermeture': file: file not found" in check.stdout, check


def test_the_import_is_done_once_and_undone_when_the_file_drops_it(sounds: Path) -> None:
    server = start(sounds, ANNOUNCEMENTS.format(more=""))
    stored = sounds / "var" / "prompts" / "any"
    try:
        manifest = stored / "absence" / "manifest.json"
        assert json.loads(manifest.read_text())["origin"] == "config"
        before = manifest.stat().st_mtime_ns
    finally:
        server.stop()
    # Started again with the same files: nothing decoded again.
    server = start(sounds, ANNOUNCEMENTS.format(more=""))
    try:
        assert manifest.stat().st_mtime_ns == before
        assert "announcement 'absence' ready" in server.log()
    finally:
        server.stop()
    # The file no longer declares "soldes-hiver" nor "absence": their sounds go, and a caller
    # routed to "absence" hears the shipped prompt again (speech, not the 700 Hz tone).
    config = ANNOUNCEMENTS.format(more="").split("[[announcements]]")[0].replace(
        'message = "soldes-hiver"', 'message = "absence"')
    server = start(sounds, config)
    try:
        assert not (stored / "absence").exists() and not (stored / "soldes-hiver").exists()
        assert "announcement 'absence' is no longer in the configuration" in server.log()
        seconds, hz = hear(server, "0499887766", sounds / "call-shipped")
        assert seconds > 1.0 and abs(hz - ABSENCE_HZ) > 0.1 * ABSENCE_HZ, (seconds, hz)
    finally:
        server.stop()
