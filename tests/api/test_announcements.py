"""Announcements over real HTTP against `b2bua run`: an admin's upload, a user's own absence
message and voicemail greeting, the refusals (in French and in English, on their field, without
a server path), deleting while a rule uses one; and a real SIPp call that hears the user's own
message (its length tells it from the shipped one).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from b2bua.testing.server import RunningServer
from tests.api.helpers import multipart, signed_in, start, tone_wav

pytestmark = pytest.mark.integration


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    srv = start(tmp_path)
    try:
        yield srv
    finally:
        srv.stop()


def _put(api, path: str, filename: str, content: bytes, lang: str = "fr"):
    body, ctype = multipart({}, {"file": (filename, content)})
    return api.request("PUT", path, raw=body, content_type=ctype, headers={"Accept-Language": lang})


def _upload(api, fields: dict[str, str], filename: str, content: bytes, lang: str = "fr"):
    body, ctype = multipart(fields, {"file": (filename, content)})
    return api.request("POST", "/api/announcements", raw=body, content_type=ctype,
                       headers={"Accept-Language": lang})


def test_an_admin_uploads_an_announcement_that_every_user_may_choose(server):
    admin = signed_in(server, "admin")
    r = _upload(admin, {"name": "fermeture-ete", "label": "Fermeture estivale"}, "été.wav",
                tone_wav(1.5))
    assert r.status == 201, r
    assert r.json()["duration"] == pytest.approx(1.5, abs=0.1)
    user = signed_in(server, "1002")
    names = {a["name"]: a for a in user.get("/api/users/1002/announcements").json()["announcements"]}
    assert names["fermeture-ete"]["label"] == "Fermeture estivale"
    assert names["absence"]["kind"] == "shipped"
    audio = user.get("/api/users/1002/announcements/fermeture-ete/audio")
    assert audio.status == 200 and audio.body[:4] == b"RIFF"
    r = user.patch("/api/users/1002", {"schedule": {"enabled": True, "closed": {
        "kind": "announcement", "message": "fermeture-ete"}}})
    assert r.status == 200, r
    # In use: not deleted, in the language asked for.
    r = admin.delete("/api/announcements/fermeture-ete", headers={"Accept-Language": "en"})
    assert r.status == 409 and "1002" in r.json()["message"], r
    assert r.json()["error"] == "in_use" and r.json()["issues"][0]["code"] == "in_use"
    listed = admin.get("/api/announcements").json()["announcements"]
    assert next(a for a in listed if a["name"] == "fermeture-ete")["used_by"] == ["1002"]
    # Once no rule names it, it goes, file and all.
    assert user.patch("/api/users/1002", {"schedule": {"enabled": True}}).status == 200
    assert admin.delete("/api/announcements/fermeture-ete").status == 200
    assert not list((server.config.parent / "var" / "uploads" / "announcements").glob("fermeture-ete*"))
    assert user.get("/api/users/1002/announcements/fermeture-ete/audio").status == 404
    # A user may not upload shared announcements.
    assert _upload(user, {"name": "x", "label": "X"}, "a.wav", tone_wav(0.5)).status == 403


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_bad_uploads_are_refused_on_their_field_in_the_request_language(server, lang):
    admin = signed_in(server, "admin")
    r = _upload(admin, {"name": "mauvais nom", "label": ""}, "a.wav", tone_wav(0.5), lang)
    assert r.status == 422, r
    issues = {i["field"]: i for i in r.json()["issues"]}
    assert set(issues) == {"name", "label"}
    assert issues["label"]["message"] == {"fr": "Donnez un nom affiché à l'annonce.",
                                          "en": "Give the announcement a display name."}[lang]
    r = _upload(admin, {"name": "closed", "label": "Fermé"}, "a.wav", tone_wav(0.5), lang)
    assert r.status == 409 and r.json()["issues"][0]["field"] == "name", r
    r = _upload(admin, {"name": "bruit", "label": "Bruit"}, "notes.mp3", b"not audio " * 100, lang)
    assert r.status == 422, r
    issue = r.json()["issues"][0]
    assert issue["field"] == "file" and issue["code"] == "not_audio"
    assert "/" not in r.text and str(server.config.parent) not in r.text
    user = signed_in(server, "1001")
    r = _put(user, "/api/users/1001/messages/greeting", "vide.wav", b"", lang)
    assert r.status == 422 and r.json()["issues"][0]["field"] == "file", r
    r = _put(user, "/api/users/1001/messages/elsewhere", "a.wav", tone_wav(0.5), lang)
    assert r.status == 404, r
    # Nothing was kept.
    assert not [a for a in admin.get("/api/announcements").json()["announcements"]
                if a["kind"] != "shipped"]


def test_a_user_records_a_greeting_and_an_absence_message(server):
    user = signed_in(server, "1001")
    r = _put(user, "/api/users/1001/messages/greeting", "accueil.wav", tone_wav(1.2))
    assert r.status == 200, r
    greeting = server.config.parent / "var" / "greetings" / "1001.wav"
    import wave

    with wave.open(str(greeting)) as w:  # what voicemail plays: 8 kHz mono 16-bit
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
    r = _put(user, "/api/users/1001/messages/absence", "absent.wav", tone_wav(2.0))
    assert r.status == 200 and r.json()["own"]["absence"]["name"] == "absence.1001", r
    own = user.get("/api/users/1001/messages/absence/audio")
    assert own.status == 200 and own.body[:4] == b"RIFF"
    # Another user neither sees it among their choices nor hears it.
    other = signed_in(server, "1002")
    names = [a["name"] for a in other.get("/api/users/1002/announcements").json()["announcements"]]
    assert "absence.1001" not in names
    assert other.get("/api/users/1002/announcements/absence.1001/audio").status == 404
    assert other.get("/api/users/1001/messages/absence/audio").status == 403
    # Used by a period: kept; unused: deleted, and the greeting too.
    period = {"name": "Vacances", "dates": ["2026-01-07"],
              "destination": {"kind": "announcement", "message": "absence.1001"}}
    r = user.patch("/api/users/1001", {"schedule": {"enabled": True, "exceptional": [period]}})
    assert r.status == 200, r
    r = user.delete("/api/users/1001/messages/absence")
    assert r.status == 409 and r.json()["error"] == "in_use", r
    assert user.patch("/api/users/1001", {"schedule": {"enabled": True}}).status == 200
    assert user.delete("/api/users/1001/messages/absence").status == 200
    assert user.delete("/api/users/1001/messages/greeting").status == 200
    assert not greeting.exists()
    assert user.get("/api/users/1001/announcements").json()["own"] == {"absence": None,
                                                                        "greeting": None}


def test_a_real_call_hears_the_users_own_absence_message(server, tmp_path):
    import shutil

    from tests.integration.conftest import SCENARIOS

    if shutil.which("sipp") is None:
        pytest.fail("sipp is missing: scripts/test installs Debian's sip-tester")
    from tests.integration.flows import call, call_records

    user = signed_in(server, "1001")
    # 8 s: the shipped "absence" prompt lasts under 5 s, so the call's length tells them apart.
    assert _put(user, "/api/users/1001/messages/absence", "absent.wav", tone_wav(8.0)).status == 200
    period = {"name": "Congés", "dates": ["2026-01-07"],  # the tests' pinned day
              "destination": {"kind": "announcement", "message": "absence.1001"}}
    r = user.patch("/api/users/1001", {"schedule": {"enabled": True, "hours": [
        {"start": "08:00", "end": "18:00", "days": ["mon", "tue", "wed", "thu", "fri"]}],
        "exceptional": [period]}})
    assert r.status == 200, r
    xml = (SCENARIOS / "uac_call_then_bye_in.xml").read_text().replace(
        "sip:0611223344@", "sip:0499887766@")
    t0 = time.monotonic()
    result = call(server, xml, tmp_path / "caller", service="0442930600", wait=60)
    assert result.ok, result.describe()
    assert time.monotonic() - t0 > 7.5  # our 8 s message played, then our BYE
    record = call_records(server)[0]
    assert {"code": "to_announcement", "params": {"message": "absence.1001"}} in record["steps"]


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_a_users_own_message_is_chosen_by_them_and_admins_only(server, lang):
    owner = signed_in(server, "1001")
    assert _put(owner, "/api/users/1001/messages/absence", "absent.wav", tone_wav(0.5)).status == 200
    mine = {"kind": "announcement", "message": "absence.1001"}
    assert owner.patch("/api/users/1001", {"no_answer": mine}).status == 200
    other = signed_in(server, "1002")
    assert "absence.1001" not in other.get("/api/options").json()["announcements"]
    r = other.patch("/api/users/1002", {"no_answer": {"kind": "voicemail"},
                                        "exceptions": [{"callers": "06*", "destination": mine}]},
                    headers={"Accept-Language": lang})
    assert r.status == 422, r
    [issue] = r.json()["issues"]
    assert issue["code"] == "not_own_message"
    assert issue["field"] == "exceptions[1].destination.message"
    assert issue["message"] == {
        "fr": "« absence.1001 » est le message personnel du poste 1001 : choisissez votre propre"
              " message d'absence ou une annonce commune",
        "en": "“absence.1001” is the personal message of extension 1001: choose your own absence"
              " message or a shared announcement"}[lang]
    assert r.json()["message"].startswith("exceptions[1].destination.message")
    assert "absence.1001" not in str(other.get("/api/users/1002").json()["settings"])
    # An admin may choose it for another user, whose later saves keep it; once it is gone
    # from their rules, they cannot bring it back themselves.
    admin = signed_in(server, "admin")
    assert "absence.1001" in admin.get("/api/options").json()["announcements"]
    assert admin.patch("/api/users/1002", {"no_answer": mine}).status == 200
    assert other.patch("/api/users/1002", {"ring_timeout": 25, "no_answer": mine}).status == 200
    assert other.patch("/api/users/1002", {"no_answer": {"kind": "voicemail"}}).status == 200
    r = other.patch("/api/users/1002", {"forward": mine})
    assert r.status == 422 and r.json()["issues"][0]["field"] == "forward.message", r
