"""The REST API over real HTTP against `b2bua run`: each dashboard feature, its validation, and
that a change is stored and followed by the next routing decision without a restart."""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from b2bua.settings import add_voicemail, voicemail_dir
from tests.api.helpers import (
    ADMIN_PASSWORD,
    SCHEDULE,
    Api,
    multipart,
    signed_in,
    start,
    tone_wav,
)


def _db(server) -> sqlite3.Connection:
    return sqlite3.connect(server.config.parent / "var" / "b2bua.sqlite", isolation_level=None)


def test_sign_in_with_the_sip_secret_and_see_own_session(server):
    api = Api(server.http_base)
    r = api.login("1001", "secret1001")
    assert r.status == 200, r
    body = r.json()
    assert body["role"] == "user" and body["extension"] == "1001" and body["csrf_token"]
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    s = api.get("/api/session").json()
    assert s["login"] == "1001" and s["csrf_token"] == body["csrf_token"]
    assert api.get("/api/users").json()["users"] == [
        {"extension": "1001", "name": "Alice Martin", "devices": 2, "stored": False,
         "created": False}
    ]


def test_wrong_password_is_refused_and_logout_ends_the_session(server):
    api = Api(server.http_base)
    assert api.login("1002", "nope").status == 401
    assert api.get("/api/session").status == 401
    api = signed_in(server, "1002")
    assert api.post("/api/logout").status == 200
    assert api.get("/api/session").status == 401


def test_admin_signs_in_and_lists_every_user(server):
    api = signed_in(server, "admin")
    assert api.get("/api/session").json()["role"] == "admin"
    exts = [u["extension"] for u in api.get("/api/users").json()["users"]]
    assert exts == ["1001", "1002", "1003"]


def test_admin_sees_the_trunks_and_their_lines(server):
    rows = signed_in(server, "admin").get("/api/trunks").json()["trunks"]
    assert rows == [{"name": "carrier", "registered": None, "up": True, "lines": 0,
                     "lines_in_use": 0, "last_error": None}]
    assert signed_in(server, "1002").get("/api/trunks").status == 403


def test_a_change_is_validated_stored_and_followed_by_the_next_decision(server):
    api = signed_in(server, "1002")
    before = api.get("/api/users/1002/trace?caller=0611223344&at=2026-01-07T10:00").json()
    assert before["rule"] == "schedule_disabled"
    # Caller-ID exceptions are part of the schedule: they apply once it is enabled.
    r = api.patch("/api/users/1002", {"schedule": SCHEDULE, "exceptions": [
        {"callers": "0611223344", "destination": {"kind": "busy"}}]})
    assert r.status == 200, r
    assert r.json()["stored"] == ["exceptions", "schedule"]
    after = api.get("/api/users/1002/trace?caller=%2B33%206%2011%2022%2033%2044&at=2026-01-07T10:00").json()
    assert after["destination"] == {"kind": "busy"}
    assert after["rule"] == "exception" and after["rule_name"] == "0611223344"
    # Explained in the user's language (fr) unless the request asks for another.
    assert any(line.startswith("exception n° 1 ") for line in after["trace"])
    english = api.get(
        "/api/users/1002/trace?caller=%2B33%206%2011%2022%2033%2044&at=2026-01-07T10:00&lang=en")
    assert any(line.startswith("exception #1 ") for line in english.json()["trace"])
    assert english.json()["steps"] == after["steps"]
    with _db(server) as db:
        row = db.execute("SELECT json FROM user_settings WHERE extension = '1002'").fetchone()
    assert json.loads(row[0])["exceptions"] == [
        {"callers": "0611223344", "destination": {"kind": "busy"}}]


def test_a_refused_change_names_the_field_and_leaves_the_settings_untouched(server):
    api = signed_in(server, "1001")
    before = api.get("/api/users/1001").json()["settings"]
    r = api.patch("/api/users/1001", {"schedule": {
        "enabled": True, "hours": [{"start": "25:00", "end": "18:00", "days": ["mon"]}]}})
    assert r.status == 422
    issues = r.json()["issues"]
    assert {"code": "hour_out_of_range", "field": "schedule.hours[1].start",
            "message": "« 25:00 » : l'heure 25 n'existe pas (00 à 23)",
            "reason": "« 25:00 » : l'heure 25 n'existe pas (00 à 23)"} in issues
    # Several problems are reported at once, each with its field.
    r = api.patch("/api/users/1001", {
        "mobile": "not a number",
        "exceptions": [{"callers": "06,07", "destination": {"kind": "teleport"}}],
    })
    assert r.status == 422
    fields = {i["field"] for i in r.json()["issues"]}
    assert {"mobile", "exceptions[1].callers", "exceptions[1].destination"} <= fields
    # Cross-field checks too: removing the mobile number an exception needs.
    ok = api.patch("/api/users/1001", {"exceptions": [
        {"callers": "07*", "destination": {"kind": "mobile", "bounce": True}}]})
    assert ok.status == 200, ok
    r = api.patch("/api/users/1001", {"mobile": None})
    assert r.status == 422
    assert r.json()["issues"][0]["field"] == "exceptions[1].destination.kind"
    after = api.get("/api/users/1001").json()["settings"]
    assert after["mobile"] == before["mobile"] == "0600000001"
    assert after["schedule"] == before["schedule"]


def test_at_most_fifteen_exceptions(server):
    api = signed_in(server, "1003")
    rules = [{"callers": f"06{i:08d}", "destination": {"kind": "busy"}} for i in range(16)]
    r = api.patch("/api/users/1003", {"exceptions": rules})
    assert r.status == 422
    assert r.json()["issues"][0]["field"] == "exceptions[16]"  # the sixteenth, counted from 1
    assert r.json()["issues"][0]["code"] == "too_many_exceptions"
    assert api.patch("/api/users/1003", {"exceptions": rules[:15]}).status == 200
    assert api.patch("/api/users/1003", {"exceptions": []}).status == 200


def test_a_user_cannot_change_admin_only_keys_nor_unknown_ones(server):
    api = signed_in(server, "1003")
    r = api.patch("/api/users/1003", {"secret": "mine-now-123"})
    assert r.status == 403 and r.json()["issues"] == [
        {"code": "admin_only", "field": "secret",
         "message": "seul un administrateur peut le changer",
         "reason": "seul un administrateur peut le changer"}]
    r = api.patch("/api/users/1003", {"ring_timout": 3})
    assert r.status == 422 and r.json()["issues"][0]["field"] == "ring_timout"


def test_office_hours_exceptional_period_and_closed_destination(server):
    api = signed_in(server, "1003")
    schedule = {
        "enabled": True,
        "closed": {"kind": "extension", "extension": "1002", "voicemail": True},
        "hours": [{"start": "09:00", "end": "12:00", "days": ["mon", "wed"], "months": [1, 2]},
                  {"start": "22:00", "end": "02:00", "days": ["fri"], "months": "all"}],
        "exceptional": [{"name": "Fermé", "dates": ["2026-01-07"], "start": "11:00", "end": "12:00",
                         "destination": {"kind": "announcement", "message": "closed"}}],
    }
    r = api.patch("/api/users/1003", {"schedule": schedule})
    assert r.status == 200, r
    trace = lambda at: api.get(f"/api/users/1003/trace?caller=0499&at={at}").json()  # noqa: E731
    assert trace("2026-01-07T10:00")["rule"] == "office_hours"
    assert trace("2026-01-07T11:30")["destination"] == {"kind": "announcement", "message": "closed"}
    assert trace("2026-01-07T13:00")["destination"] == {
        "kind": "extension", "extension": "1002", "voicemail": True}
    assert trace("2026-01-10T01:00")["rule"] == "office_hours"  # Friday 22:00-02:00
    week = api.get("/api/users/1003/week?start=2026-01-05").json()
    assert len(week["days"]) == 7 and all(len(row) == 48 for row in week["cells"])
    kinds = {o["destination"]["kind"] for o in week["outcomes"]}
    assert {"devices", "extension", "announcement"} <= kinds
    wednesday = week["cells"][2]
    assert week["outcomes"][wednesday[23]]["destination"]["kind"] == "announcement"  # 11:30
    svg = api.get("/api/users/1003/week.svg?start=2026-01-05")
    assert svg.status == 200 and svg.text.startswith("<svg")


def test_exceptional_periods_round_trip_through_icalendar(server):
    api = signed_in(server, "1001")
    api.patch("/api/users/1001", {"schedule": {
        "enabled": True, "hours": [{"start": "08:00", "end": "18:00",
                                    "days": ["mon", "tue", "wed", "thu", "fri"]}],
        "exceptional": [{"name": "Noël", "dates": ["12-24..01-02"],
                         "destination": {"kind": "voicemail"}}]}})
    r = api.get("/api/users/1001/exceptional.ics")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/calendar")
    ics = r.body
    assert b"BEGIN:VEVENT" in ics and "Noël".encode() in ics
    # Replace with the same file: the same periods come back.
    r = api.post("/api/users/1001/exceptional.ics?mode=replace", raw=ics,
                 content_type="text/calendar")
    assert r.status == 200, r
    periods = r.json()["user"]["settings"]["schedule"]["exceptional"]
    assert [(p["name"], p["dates"], p["destination"]) for p in periods] == [
        ("Noël", ["12-24..01-02"], {"kind": "voicemail"})]
    # A foreign calendar gets the closed destination; appended.
    foreign = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:x@y\r\nSUMMARY:Pont\r\n"
        "DTSTART;VALUE=DATE:20260515\r\nDTEND;VALUE=DATE:20260516\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    r = api.post("/api/users/1001/exceptional.ics", raw=foreign.encode(),
                 content_type="text/calendar")
    assert r.status == 200 and r.json()["added"] == 1
    periods = r.json()["user"]["settings"]["schedule"]["exceptional"]
    assert periods[-1] == {"name": "Pont", "dates": ["2026-05-15"], "destination": {"kind": "voicemail"}}
    bad = api.post("/api/users/1001/exceptional.ics", raw=b"hello", content_type="text/calendar")
    assert bad.status == 422 and bad.json()["issues"][0]["field"] == "file"


def test_manual_forward_applies_in_office_hours_only(server):
    api = signed_in(server, "1001")
    api.patch("/api/users/1001", {"exceptions": [], "schedule": {
        "enabled": True, "hours": [{"start": "08:00", "end": "18:00",
                                    "days": ["mon", "tue", "wed", "thu", "fri"]}]}})
    r = api.patch("/api/users/1001", {"forward": {"kind": "external", "number": "0611111111"}})
    assert r.status == 200, r
    inside = api.get("/api/users/1001/trace?caller=0499&at=2026-01-07T10:00").json()
    assert inside["rule"] == "forward" and inside["destination"]["number"] == "0611111111"
    outside = api.get("/api/users/1001/trace?caller=0499&at=2026-01-07T20:00").json()
    assert outside["rule"] == "closed"
    assert api.patch("/api/users/1001", {"forward": None}).status == 200
    assert "forward" not in api.get("/api/users/1001").json()["settings"]


def test_devices_add_rename_remove_and_live_state(server, tmp_path):
    api = signed_in(server, "1002")
    r = api.post("/api/users/1002/devices", {"type": "teams", "label": "Teams"})
    assert r.status == 201, r
    devices = r.json()["devices"]
    assert [(d["device"], d["type"], d["label"], d["state"]) for d in devices] == [
        (1, "sip", "Bureau", "offline"), (2, "teams", "Teams", "offline")]
    r = api.patch("/api/users/1002/devices/2", {"label": "Réunion", "type": "other"})
    assert r.json()["devices"][1]["label"] == "Réunion"
    assert api.patch("/api/users/1002/devices/9", {"label": "x"}).status == 404
    assert api.post("/api/users/1002/devices", {"type": "fax", "label": "x"}).status == 422
    # A user may not point a device at an arbitrary SIP address.
    r = api.post("/api/users/1002/devices", {"type": "other", "label": "x",
                                             "contact": "sip:1002@198.51.100.7"})
    assert r.status == 403
    assert api.delete("/api/users/1002/devices/2").status == 200
    # Register device 1 with SIPp: the API shows where from, which user agent, until when.
    if shutil.which("sipp") is None:
        pytest.fail("sipp is missing: scripts/test installs Debian's sip-tester")
    from tests.integration.flows import register

    port = __import__("b2bua.testing.net", fromlist=["free_port"]).free_port()
    reg = register(server, "1002", "secret1002", port, tmp_path / "reg", expires=600)
    assert reg.ok, reg.describe()
    row = api.get("/api/users/1002/devices").json()["devices"][0]
    assert row["state"] == "registered"
    assert row["source"].endswith(f"127.0.0.1:{port}")
    assert 500 < row["expires_in"] <= 600 and row["expires_at"]


def test_qr_code_is_a_one_time_provisioning_link(server, tmp_path):
    api = signed_in(server, "1001")
    r = api.post("/api/users/1001/devices/2/qr")
    assert r.status == 200, r
    body = r.json()
    png = tmp_path / "qr.png"
    png.write_bytes(base64.b64decode(body["png"].split(",", 1)[1]))
    if shutil.which("zbarimg") is None:
        pytest.fail("zbarimg is missing: scripts/test installs Debian's zbar-tools")
    decoded = subprocess.run(["zbarimg", "--raw", "-q", str(png)], capture_output=True, text=True)
    assert decoded.stdout.strip() == body["url"]
    path = body["url"].split(str(server.http_port), 1)[1]
    first = Api(server.http_base).get(path + ".json")
    assert first.status == 200
    assert first.json()["username"] == "1001" and first.json()["password"] == "secret1001"
    assert Api(server.http_base).get(path).status == 410  # once only


def test_call_history_carries_each_decision_trace(server, tmp_path):
    if shutil.which("sipp") is None:
        pytest.fail("sipp is missing: scripts/test installs Debian's sip-tester")
    from tests.integration.flows import call, uac_expect

    api = signed_in(server, "1003")
    assert api.patch("/api/users/1003", {"schedule": SCHEDULE, "exceptions": [
        {"callers": "0699*", "destination": {"kind": "busy"}}]}).status == 200
    result = call(server, uac_expect(486, caller="0699000000"), tmp_path / "c", service="1003")
    assert result.ok, result.describe()
    calls = api.get("/api/users/1003/calls").json()["calls"]
    assert calls and calls[0]["caller"] == "0699000000" and calls[0]["outcome"] == "busy"
    assert calls[0]["rule"] == "exception"
    assert any(line.startswith("exception n° 1 ") for line in calls[0]["trace"])
    assert calls[0]["steps"][0]["code"] == "call"
    assert "decision" in [s["code"] for s in calls[0]["steps"]], calls[0]["steps"]
    english = api.get("/api/users/1003/calls?lang=en").json()["calls"]
    assert any(line.startswith("exception #1 ") for line in english[0]["trace"])
    assert api.patch("/api/users/1003", {"exceptions": []}).status == 200


def test_voicemail_list_play_download_mark_and_delete(server):
    data_dir = server.config.parent / "var"
    folder = voicemail_dir(data_dir, "1002")
    folder.mkdir(parents=True, exist_ok=True)
    wav = tone_wav(0.5, 8000)
    (folder / "m1.wav").write_bytes(wav)
    (folder / "m2.wav").write_bytes(wav)
    with _db(server) as db:
        first = add_voicemail(db, "1002", "0611223344", 1767776400.0, 12.5, "m1.wav")
        second = add_voicemail(db, "1002", "0755555555", 1767780000.0, 3.0, "m2.wav")
    api = signed_in(server, "1002")
    box = api.get("/api/users/1002/voicemail").json()
    assert box["unread"] == 2
    assert [m["id"] for m in box["messages"]] == [second, first]
    assert box["messages"][1]["caller"] == "0611223344" and box["messages"][1]["duration"] == 12.5
    audio = api.get(f"/api/users/1002/voicemail/{first}/audio")
    assert audio.status == 200 and audio.body == wav
    assert audio.headers["Content-Type"] == "audio/wav"
    download = api.get(f"/api/users/1002/voicemail/{first}/audio?download=1")
    assert 'attachment; filename="voicemail-' in download.headers["Content-Disposition"]
    assert api.patch(f"/api/users/1002/voicemail/{first}", {"read": True}).status == 200
    assert api.get("/api/users/1002/voicemail").json()["unread"] == 1
    assert api.delete(f"/api/users/1002/voicemail/{second}").status == 200
    assert not (folder / "m2.wav").exists()
    assert [m["id"] for m in api.get("/api/users/1002/voicemail").json()["messages"]] == [first]
    assert api.get(f"/api/users/1002/voicemail/{second}/audio").status == 404


def test_admin_uploads_music_users_choose_it_and_listen(server):
    admin = signed_in(server, "admin")
    body, ctype = multipart({"name": "promo"}, {"file": ("Jingle été.wav", tone_wav(1.5))})
    r = admin.post("/api/music", raw=body, content_type=ctype)
    assert r.status == 201, r
    assert r.json()["duration"] == pytest.approx(1.5, abs=0.05)
    stored = server.config.parent / "var" / "uploads" / "music" / "promo"
    assert [p.name for p in stored.iterdir()] == ["Jingle_t.wav"]
    assert (server.config.parent / "var" / "music" / "promo").is_dir()  # converted G.711
    user = signed_in(server, "1002")
    names = [c["name"] for c in user.get("/api/music").json()["classes"]]
    assert names == ["default", "promo"]
    assert user.patch("/api/users/1002", {"hold_music": "promo"}).status == 200
    assert user.patch("/api/users/1002", {"hold_music": "nope"}).status == 422
    audio = user.get("/api/music/promo/audio")
    assert audio.status == 200 and audio.body[:4] == b"RIFF"
    shipped = user.get("/api/music/default/audio")
    assert shipped.status == 200 and len(shipped.body) > 100_000
    # A class still chosen cannot be deleted; the refusal says by whom.
    r = admin.delete("/api/music/promo")
    assert r.status == 409 and "hold_music" in json.dumps(r.json()["issues"])
    assert user.patch("/api/users/1002", {"hold_music": "default"}).status == 200
    assert admin.delete("/api/music/promo").status == 200
    assert not stored.exists()
    assert [c["name"] for c in user.get("/api/music").json()["classes"]] == ["default"]


def test_bad_uploads_are_refused_with_the_reason_and_leave_nothing(server):
    admin = signed_in(server, "admin")
    body, ctype = multipart({"name": "junk"}, {"file": ("notes.mp3", b"this is not audio" * 100)})
    r = admin.post("/api/music", raw=body, content_type=ctype)
    assert r.status == 422 and r.json()["issues"][0]["field"] == "file"
    assert r.json()["issues"][0]["code"] == "not_audio"
    assert str(server.config.parent) not in r.text and "/tmp" not in r.text
    body, ctype = multipart({"name": "empty"}, {"file": ("e.wav", b"")})
    assert admin.post("/api/music", raw=body, content_type=ctype).status == 422
    body, ctype = multipart({"name": "default"}, {"file": ("a.wav", tone_wav(0.2))})
    r = admin.post("/api/music", raw=body, content_type=ctype)
    assert r.status == 422 and r.json()["issues"][0]["field"] == "name"
    uploads = server.config.parent / "var" / "uploads" / "music"
    leftovers = [p.name for p in uploads.iterdir() if p.name != ".incoming"]
    assert leftovers == []
    assert list((uploads / ".incoming").iterdir()) == []


def test_admin_creates_edits_and_deletes_a_user(server):
    admin = signed_in(server, "admin")
    r = admin.post("/api/users", {"extension": "1010", "name": "Damien Roux",
                                  "secret": "secret-1010"})
    assert r.status == 201, r
    assert admin.post("/api/users", {"extension": "1010", "name": "X",
                                     "secret": "secret-1010"}).status == 409
    new = Api(server.http_base)
    assert new.login("1010", "secret-1010").status == 200
    assert admin.patch("/api/users/1010", {"name": "Damien R."}).status == 200
    # A colleague destination to him is accepted while he exists...
    assert admin.patch("/api/users/1003", {"forward": {"kind": "extension",
                                                       "extension": "1010"}}).status == 200
    # ...so deleting him is refused, naming the setting that refers to him.
    r = admin.delete("/api/users/1010")
    assert r.status == 422 and "1010" in r.json()["message"]
    assert admin.patch("/api/users/1003", {"forward": None}).status == 200
    assert admin.delete("/api/users/1010").status == 200
    assert new.get("/api/session").status == 401
    assert admin.get("/api/users/1010").status == 404


def test_passwords_change_and_are_stored_hashed(server):
    api = signed_in(server, "1003")
    assert api.post("/api/password", {"current": "wrong", "new": "new-password-1"}).status == 403
    assert api.post("/api/password", {"current": "secret1003", "new": "short"}).status == 422
    assert api.post("/api/password", {"current": "secret1003", "new": "new-password-1"}).status == 200
    assert Api(server.http_base).login("1003", "secret1003").status == 401
    assert Api(server.http_base).login("1003", "new-password-1").status == 200
    with _db(server) as db:
        encoded = db.execute(
            "SELECT password_hash FROM dashboard_accounts WHERE login = '1003'").fetchone()[0]
    assert encoded.startswith("$pbkdf2-sha256$600000$") and "new-password" not in encoded
    # An admin puts the user back on the SIP secret.
    admin = signed_in(server, "admin")
    assert admin.put("/api/users/1003/password", {"password": None}).status == 200
    assert Api(server.http_base).login("1003", "secret1003").status == 200


def test_openapi_documents_every_api_route(server):
    doc = Api(server.http_base).get("/api/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    from b2bua.api.openapi import ROUTES

    for route in ROUTES:
        assert route.method.lower() in doc["paths"][route.path], route.path
    assert "UserPatch" in doc["components"]["schemas"]


def test_the_dashboard_page_and_assets_are_served_with_a_strict_policy(server):
    api = Api(server.http_base)
    page = api.get("/")
    assert page.status == 200 and b"/static/app.js" in page.body
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert api.get("/static/app.js").status == 200
    assert api.get("/static/../settings.py").status in (403, 404)


def test_stored_settings_survive_a_restart_and_export_import(tmp_path):
    srv = start(tmp_path)
    try:
        api = signed_in(srv, "1002")
        assert api.patch("/api/users/1002", {"schedule": SCHEDULE, "exceptions": [
            {"callers": "0611*", "destination": {"kind": "busy"}}]}).status == 200
    finally:
        srv.stop()
    # `b2bua export` prints the TOML plus the stored settings.
    done = subprocess.run([sys.executable, "-m", "b2bua", "export", "--config", str(srv.config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert 'callers = "0611*"' in done.stdout
    exported = tmp_path / "exported.toml"
    exported.write_text(done.stdout)
    srv = start(tmp_path, rewrite=False)
    try:
        api = signed_in(srv, "1002")
        trace = api.get("/api/users/1002/trace?caller=0611000000&at=2026-01-07T10:00").json()
        assert trace["destination"] == {"kind": "busy"}
        # `b2bua import` of an edited export is applied live by the running server.
        edited = exported.read_text().replace('callers = "0611*"', 'callers = "0622*"')
        exported.write_text(edited)
        done = subprocess.run([sys.executable, "-m", "b2bua", "import", "--config",
                               str(srv.config), str(exported)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            trace = api.get("/api/users/1002/trace?caller=0622000000&at=2026-01-07T10:00").json()
            if trace["destination"] == {"kind": "busy"}:
                break
            time.sleep(0.2)
        assert trace["destination"] == {"kind": "busy"}
    finally:
        srv.stop()


def test_a_stored_override_that_no_longer_validates_falls_back_to_the_file(tmp_path):
    srv = start(tmp_path)
    try:
        api = signed_in(srv, "1003")
        assert api.patch("/api/users/1003", {"forward": {"kind": "extension",
                                                         "extension": "1002"}}).status == 200
    finally:
        srv.stop()
    # The file changes under the stored setting: 1002 no longer exists.
    config = srv.config.read_text()
    start_1002 = config.index('[[users]]\nextension = "1002"')
    end_1002 = config.index('[[users]]\nextension = "1003"')
    config = config[:start_1002] + config[end_1002:]
    config = config.replace('"0442930601" = "1002", ', "")
    srv.config.write_text(config.replace('members = ["1001", "1002"]', 'members = ["1001"]'))
    srv2 = start(tmp_path, rewrite=False)
    try:
        assert "stored settings of 1003 no longer validate" in srv2.log()
        api = signed_in(srv2, "1003")
        assert "forward" not in api.get("/api/users/1003").json()["settings"]
    finally:
        srv2.stop()


def test_the_admin_password_is_generated_and_logged_once(tmp_path):
    srv = start(tmp_path, env={"B2BUA_ADMIN_PASSWORD": ""})
    marker = "login 'admin', password '"
    try:
        deadline = time.monotonic() + 10
        while marker not in srv.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        log = srv.log()
        assert marker in log
        password = log.split(marker, 1)[1].split("'", 1)[0]
        assert len(password) >= 12
        assert Api(srv.http_base).login("admin", password).status == 200
        assert Api(srv.http_base).login("admin", ADMIN_PASSWORD).status == 401
    finally:
        srv.stop()
    srv = start(tmp_path, env={"B2BUA_ADMIN_PASSWORD": ""}, rewrite=False)
    try:
        assert Api(srv.http_base).login("admin", password).status == 200
        assert "login 'admin', password" not in srv.log()
    finally:
        srv.stop()


def test_export_of_a_server_that_never_ran_is_the_file(tmp_path):
    from tests.api.helpers import make_config

    config = make_config(tmp_path)
    done = subprocess.run([sys.executable, "-m", "b2bua", "export", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    from b2bua.config import config_from_text, load_config

    assert config_from_text(done.stdout).model_dump() == load_config(config).model_dump()
    assert not Path(tmp_path / "var" / "b2bua.sqlite").exists()
