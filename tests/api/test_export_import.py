"""`b2bua export --out FILE.toml` and `b2bua import FILE.toml` carry an installation's sounds:
uploaded hold music and announcements (with their labels), a user's own absence message
(`absence.EXT`) and voicemail greeting, and the file's own announcements, into a fresh data_dir
on another configuration file; the imported installation validates, lists, plays and routes to
them; a running server hears a replaced announcement at once. A bundle with a file that does not
decode is refused whole, with nothing written.
"""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from b2bua.testing.audio import dominant_frequency, make_tone
from tests.api.helpers import multipart, signed_in, start

pytestmark = pytest.mark.integration

DECLARED = """
[[announcements]]
name = "accueil-ete"
file = "sounds/accueil.wav"
"""


def b2bua(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "b2bua", *args], capture_output=True, text=True,
                          timeout=120)


def tone(hz: int, seconds: float = 1.0) -> bytes:
    import math
    import struct

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"".join(struct.pack("<h", int(9000 * math.sin(2 * math.pi * hz * i / 16000)))
                               for i in range(int(seconds * 16000))))
    return buf.getvalue()


def frequency(wav: bytes, tmp: Path) -> float:
    path = tmp / "heard.wav"
    path.write_bytes(wav)
    return dominant_frequency(path)[1]


def upload(api, method: str, path: str, fields: dict[str, str], content: bytes):
    body, ctype = multipart(fields, {"file": ("sound.wav", content)})
    return api.request(method, path, raw=body, content_type=ctype)


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    """An installation changed from the dashboard, exported with --out."""
    old = tmp_path / "old"
    (old / "sounds").mkdir(parents=True)
    make_tone(old / "sounds" / "accueil.wav", 1.0, 400)
    srv = start(old, DECLARED)
    try:
        admin = signed_in(srv, "admin")
        assert upload(admin, "POST", "/api/music", {"name": "jazz"}, tone(500, 2)).status == 201
        assert upload(admin, "POST", "/api/announcements",
                      {"name": "fermeture-ete", "label": "Fermeture estivale"},
                      tone(600)).status == 201
        alice = signed_in(srv, "1001")
        assert upload(alice, "PUT", "/api/users/1001/messages/absence", {}, tone(700)).status == 200
        assert upload(alice, "PUT", "/api/users/1001/messages/greeting", {}, tone(800)).status == 200
        period = {"name": "Congés", "dates": ["2026-08-01..2026-08-20"],
                  "destination": {"kind": "announcement", "message": "absence.1001"}}
        r = alice.patch("/api/users/1001", {"hold_music": "jazz", "schedule": {
            "enabled": True, "exceptional": [period]}})
        assert r.status == 200, r
        bruno = signed_in(srv, "1002")
        r = bruno.patch("/api/users/1002", {"schedule": {"enabled": True, "closed": {
            "kind": "announcement", "message": "fermeture-ete"}}})
        assert r.status == 200, r
    finally:
        srv.stop()
    out = tmp_path / "export" / "backup.toml"
    done = b2bua("export", "--config", str(srv.config), "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


def test_an_export_carries_the_sounds_beside_the_file(exported: Path) -> None:
    folder = exported.with_name("backup.audio")
    text = exported.read_text()
    assert 'file = "backup.audio/announcements/absence.1001.wav"' in text
    assert 'file = "backup.audio/announcements/accueil-ete.wav"' in text
    assert '"backup.audio/music/jazz/01-' in text
    assert "/uploads/" not in text  # relative to the file, not in the old data_dir
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["announcements"]["fermeture-ete"] == {"label": "Fermeture estivale",
                                                          "owner": None}
    assert manifest["announcements"]["absence.1001"]["owner"] == "1001"
    assert manifest["greetings"] == {"1001": "greetings/1001.wav"}
    assert (folder / "greetings" / "1001.wav").is_file()
    check = b2bua("check", "--config", str(exported))
    assert check.returncode == 0 and "not found" not in check.stdout, check


def test_a_round_trip_into_a_fresh_data_dir(exported: Path, tmp_path: Path) -> None:
    # The pair is moved elsewhere together; the new installation has its own file.
    moved = tmp_path / "elsewhere"
    shutil.copytree(exported.parent, moved)
    new = tmp_path / "new"
    new.mkdir()
    from tests.api.helpers import make_config

    config = make_config(new)
    dry = b2bua("import", "--config", str(config), str(moved / "backup.toml"), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "1 music classes, 3 announcements and 1 voicemail greetings" in dry.stdout
    assert not (new / "var" / "greetings").exists()
    done = b2bua("import", "--config", str(config), str(moved / "backup.toml"))
    assert done.returncode == 0, done.stderr
    assert "absence.1001" not in done.stderr  # nothing refused
    shutil.rmtree(moved)  # everything was copied in
    check = b2bua("check", "--config", str(config))
    assert check.returncode == 0, check.stderr
    assert "not found" not in check.stdout, check.stdout

    srv = start(new, rewrite=False)
    try:
        alice = signed_in(srv, "1001")
        settings = alice.get("/api/users/1001").json()["settings"]
        assert settings["hold_music"] == "jazz"
        assert settings["schedule"]["exceptional"][0]["destination"]["message"] == "absence.1001"
        own = alice.get("/api/users/1001/announcements").json()["own"]
        assert own["absence"]["name"] == "absence.1001" and own["greeting"] is not None
        heard = {
            "absence": alice.get("/api/users/1001/messages/absence/audio").body,
            "greeting": alice.get("/api/users/1001/messages/greeting/audio").body,
            "own prompt": alice.get("/api/users/1001/announcements/absence.1001/audio").body,
            "shared": alice.get("/api/users/1001/announcements/fermeture-ete/audio").body,
            "declared": alice.get("/api/users/1001/announcements/accueil-ete/audio").body,
            "music": alice.get("/api/music/jazz/audio").body,
        }
        hz = {k: round(frequency(v, tmp_path)) for k, v in heard.items()}
        want = {"absence": 700, "greeting": 800, "own prompt": 700, "shared": 600,
                "declared": 400, "music": 500}
        assert all(abs(hz[k] - want[k]) < 0.03 * want[k] for k in want), hz
        admin = signed_in(srv, "admin")
        listed = {a["name"]: a for a in admin.get("/api/announcements").json()["announcements"]}
        assert listed["fermeture-ete"]["label"] == "Fermeture estivale"
        assert listed["fermeture-ete"]["used_by"] == ["1002"]
        assert listed["accueil-ete"]["kind"] == "uploaded"
        # Still 1001's own message: another user may not choose it.
        r = signed_in(srv, "1003").patch("/api/users/1003", {"forward": {
            "kind": "announcement", "message": "absence.1001"}})
        assert r.status == 422 and r.json()["issues"][0]["code"] == "not_own_message", r
    finally:
        srv.stop()


def test_a_sound_that_does_not_decode_refuses_the_whole_import(exported: Path,
                                                               tmp_path: Path) -> None:
    folder = exported.with_name("backup.audio")
    (folder / "announcements" / "fermeture-ete.wav").write_bytes(b"not audio at all " * 50)
    new = tmp_path / "new"
    new.mkdir()
    from tests.api.helpers import make_config

    config = make_config(new)
    srv = start(new, rewrite=False)  # a running server: its settings stay as they are
    try:
        before = signed_in(srv, "1001").get("/api/users/1001").json()["settings"]
    finally:
        srv.stop()
    done = b2bua("import", "--config", str(config), str(exported))
    assert done.returncode == 1
    assert "announcement 'fermeture-ete'" in done.stderr and "fermeture-ete.wav" in done.stderr
    assert "Traceback" not in done.stderr
    conn = sqlite3.connect(new / "var" / "b2bua.sqlite")
    try:
        assert conn.execute("SELECT count(*) FROM user_settings").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM music_uploads").fetchone()[0] == 0
    finally:
        conn.close()
    assert not (new / "var" / "uploads").exists() and not (new / "var" / "greetings").exists()
    srv = start(new, rewrite=False)
    try:
        assert signed_in(srv, "1001").get("/api/users/1001").json()["settings"] == before
    finally:
        srv.stop()


def test_a_running_server_hears_the_imported_sounds(exported: Path, tmp_path: Path) -> None:
    import time

    new = tmp_path / "new"
    new.mkdir()
    srv = start(new)
    try:
        admin = signed_in(srv, "admin")
        assert upload(admin, "POST", "/api/announcements",
                      {"name": "fermeture-ete", "label": "Ancienne"}, tone(900)).status == 201
        path = "/api/users/1002/announcements/fermeture-ete/audio"
        assert abs(frequency(admin.get(path).body, tmp_path) - 900) < 27  # now cached
        done = b2bua("import", "--config", str(srv.config), str(exported))
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if abs(frequency(admin.get(path).body, tmp_path) - 600) < 18:
                break
            time.sleep(0.3)
        else:
            pytest.fail("the running server still plays the replaced announcement")
        listed = {a["name"]: a for a in admin.get("/api/announcements").json()["announcements"]}
        assert listed["fermeture-ete"]["label"] == "Fermeture estivale"
        assert sorted((new / "var" / "uploads" / "announcements").glob("fermeture-ete-*.wav")) \
            == [new / "var" / listed_file(new, "fermeture-ete")]  # the replaced file is gone
    finally:
        srv.stop()


def listed_file(new: Path, name: str) -> str:
    conn = sqlite3.connect(new / "var" / "b2bua.sqlite")
    try:
        return str(conn.execute("SELECT file FROM announcement_uploads WHERE name = ?",
                                (name,)).fetchone()[0])
    finally:
        conn.close()


def test_import_into_a_shared_store_is_refused_clearly(exported: Path, tmp_path: Path) -> None:
    from tests.api.helpers import make_config

    (tmp_path / "shared").mkdir()
    config = make_config(tmp_path / "shared", '\n[store]\nurl = "postgresql://b2bua@127.0.0.1:1/b2bua"\n')
    done = b2bua("import", "--config", str(config), str(exported))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "through a node's API" in done.stderr
