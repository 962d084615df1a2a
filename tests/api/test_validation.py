"""Validation a person can act on, over real HTTP: every refusal has a stable code, names the
field as the person sees it (rows counted from 1) and explains itself in French or in English
(Accept-Language, ?lang=, else the user's language), with no library wording and no server
path. Every successful save answers warnings, in the same shape."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b2bua.testing.server import RunningServer
from tests.api.helpers import SCHEDULE, Api, multipart, signed_in, start, tone_wav

LIBRARY = ("Input should", "String should", "Value error", "pydantic", "Traceback",
           "validation error", "Field required", "type=")  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start(tmp_path_factory.mktemp("validation"))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def sessions(server: RunningServer) -> dict[str, Api]:
    return {login: signed_in(server, login) for login in ("admin", "1001", "1002")}


def hours(*rows: dict[str, Any]) -> dict[str, Any]:
    return {"schedule": {"enabled": True, "hours": list(rows)}}


def h(start: str = "08:00", end: str = "17:00", **kw: Any) -> dict[str, Any]:
    return {"start": start, "end": end, "days": ["mon", "tue"], **kw}


def period(**kw: Any) -> dict[str, Any]:
    base = {"name": "Vacances", "dates": ["12-20..01-05"], "destination": {"kind": "voicemail"}}
    return {"schedule": {"enabled": True, "hours": [h()], "exceptional": [{**base, **kw}]}}


def exc(callers: str, **dest: Any) -> dict[str, Any]:
    return {"callers": callers, "destination": dest or {"kind": "busy"}}


U1, U2 = "/api/users/1001", "/api/users/1002"

# (who, method, path, JSON body, status, error, code of the first issue, its field)
CASES: list[tuple[str, str, str, Any, int, str, str, str]] = [
    # Office hours: the fifth row is the fifth row.
    ("1001", "PATCH", U1, hours(h(), h(), h(), h(), h(end="8h")), 422, "validation",
     "invalid_time", "schedule.hours[5].end"),
    ("1001", "PATCH", U1, hours(h(end="25:00")), 422, "validation", "hour_out_of_range",
     "schedule.hours[1].end"),
    ("1001", "PATCH", U1, hours(h(start="08:61")), 422, "validation", "minute_out_of_range",
     "schedule.hours[1].start"),
    ("1001", "PATCH", U1, hours(h(), h(days=["tues"])), 422, "validation", "unknown_weekday",
     "schedule.hours[2].days"),
    ("1001", "PATCH", U1, hours(h(days="mon")), 422, "validation", "days_not_list",
     "schedule.hours[1].days"),
    ("1001", "PATCH", U1, hours(h(months=[13])), 422, "validation", "month_out_of_range",
     "schedule.hours[1].months"),
    ("1001", "PATCH", U1, hours(h(months=["jan"])), 422, "validation", "month_not_number",
     "schedule.hours[1].months"),
    ("1001", "PATCH", U1, hours(h(months="some")), 422, "validation", "months_not_list",
     "schedule.hours[1].months"),
    ("1001", "PATCH", U1, hours(h(end="08:00")), 422, "validation", "hours_equal",
     "schedule.hours[1].end"),
    ("1001", "PATCH", U1, hours({"start": "08:00", "days": ["mon"]}), 422, "validation",
     "required", "schedule.hours[1].end"),
    ("1001", "PATCH", U1, hours(h(until="18:00")), 422, "validation", "unknown_key",
     "schedule.hours[1].until"),
    ("1001", "PATCH", U1, {"schedule": {"enabled": "yes"}}, 422, "validation",
     "expected_boolean", "schedule.enabled"),
    ("1001", "PATCH", U1, {"schedule": {"hours": "08-17"}}, 422, "validation",
     "expected_list", "schedule.hours"),
    # Exceptional periods, French dates included.
    ("1001", "PATCH", U1, period(dates=["30/02/2026"]), 422, "validation", "day_out_of_range",
     "schedule.exceptional[1].dates[1]"),
    ("1001", "PATCH", U1, period(dates=["2026-01-01", "05/01/2026..01/01/2026"]), 422,
     "validation", "date_range_reversed", "schedule.exceptional[1].dates[2]"),
    ("1001", "PATCH", U1, period(dates=["20/12..2026-01-05"]), 422, "validation",
     "date_range_mixed", "schedule.exceptional[1].dates[1]"),
    ("1001", "PATCH", U1, period(dates=["13/13/2026"]), 422, "validation",
     "month_out_of_range", "schedule.exceptional[1].dates[1]"),
    ("1001", "PATCH", U1, period(dates=["demain"]), 422, "validation", "invalid_date",
     "schedule.exceptional[1].dates[1]"),
    ("1001", "PATCH", U1, period(dates=[]), 422, "validation", "too_few",
     "schedule.exceptional[1].dates"),
    ("1001", "PATCH", U1, period(name=""), 422, "validation", "empty",
     "schedule.exceptional[1].name"),
    ("1001", "PATCH", U1, period(start="08:00"), 422, "validation", "window_incomplete",
     "schedule.exceptional[1].end"),
    ("1001", "PATCH", U1, period(start="08:00", end="08:00"), 422, "validation",
     "window_equal", "schedule.exceptional[1].end"),
    ("1001", "PATCH", U1, period(destination={"kind": "teleport"}), 422, "validation",
     "unknown_destination_kind", "schedule.exceptional[1].destination"),
    ("1001", "PATCH", U1, period(destination={"extension": "1002"}), 422, "validation",
     "destination_kind_missing", "schedule.exceptional[1].destination"),
    ("1001", "PATCH", U1, period(destination={"kind": "announcement", "message": "nope"}), 422,
     "validation", "unknown_announcement", "schedule.exceptional[1].destination.message"),
    # Caller-ID exceptions.
    ("1001", "PATCH", U1, {"exceptions": [exc("06*"), exc("06,07")]}, 422, "validation",
     "callers_separator", "exceptions[2].callers"),
    ("1001", "PATCH", U1, {"exceptions": [exc("0*6")]}, 422, "validation",
     "callers_star_position", "exceptions[1].callers"),
    ("1001", "PATCH", U1, {"exceptions": [exc("abc")]}, 422, "validation", "callers_invalid",
     "exceptions[1].callers"),
    ("1001", "PATCH", U1, {"exceptions": [exc("  ")]}, 422, "validation", "callers_empty",
     "exceptions[1].callers"),
    ("1001", "PATCH", U1, {"exceptions": [exc(f"06{i:08d}") for i in range(16)]}, 422,
     "validation", "too_many_exceptions", "exceptions[16]"),
    # Destinations that lead nowhere.
    ("1001", "PATCH", U1, {"forward": {"kind": "extension", "extension": "1001"}}, 422,
     "validation", "own_extension", "forward.extension"),
    ("1001", "PATCH", U1, {"forward": {"kind": "extension", "extension": "4242"}}, 422,
     "validation", "unknown_colleague", "forward.extension"),
    ("1001", "PATCH", U1, {"forward": {"kind": "extension", "extension": "800"}}, 422,
     "validation", "extension_is_system", "forward.extension"),
    ("1001", "PATCH", U1, {"forward": {"kind": "system", "extension": "1002"}}, 422,
     "validation", "unknown_system_extension", "forward.extension"),
    ("1001", "PATCH", U1, {"forward": {"kind": "voicemail", "extension": "800"}}, 422,
     "validation", "voicemail_unknown_user", "forward.extension"),
    ("1001", "PATCH", U1, {"forward": {"kind": "external", "number": "abc"}}, 422,
     "validation", "invalid_phone_number", "forward.number"),
    ("1002", "PATCH", U2, {"forward": {"kind": "mobile"}}, 422, "validation", "mobile_not_set",
     "forward.kind"),
    ("1001", "PATCH", U1, {"no_answer": {"kind": "devices"}}, 422, "validation",
     "no_answer_devices", "no_answer.kind"),
    ("1001", "PATCH", U1, {"forward": {"kind": "busy", "bounce": True}}, 422, "validation",
     "unknown_key", "forward.bounce"),
    # Single values.
    ("1001", "PATCH", U1, {"hold_music": "nope"}, 422, "validation", "unknown_music",
     "hold_music"),
    ("1001", "PATCH", U1, {"ring_timeout": 0}, 422, "validation", "too_small", "ring_timeout"),
    ("1001", "PATCH", U1, {"ring_timeout": 601}, 422, "validation", "too_large", "ring_timeout"),
    ("1001", "PATCH", U1, {"ring_timeout": "20"}, 422, "validation", "expected_integer",
     "ring_timeout"),
    ("1001", "PATCH", U1, {"decline": "some"}, 422, "validation", "not_one_of", "decline"),
    ("1001", "PATCH", U1, {"language": "de"}, 422, "validation", "not_one_of", "language"),
    ("1001", "PATCH", U1, {"mobile": "abc"}, 422, "validation", "invalid_phone_number", "mobile"),
    ("1001", "PATCH", U1, {"hold_music": 3}, 422, "validation", "expected_text", "hold_music"),
    ("1001", "PATCH", U1, {"devices": [{"type": "sip", "label": "A"}, {"type": "sip",
                                                                      "label": " "}]},
     422, "validation", "empty", "devices[2].label"),
    ("1001", "PATCH", U1, {"devices": [{"type": "fax", "label": "A"}]}, 422, "validation",
     "not_one_of", "devices[1].type"),
    ("admin", "PATCH", U1, {"timezone": "Mars/Olympus"}, 422, "validation", "invalid_timezone",
     "timezone"),
    ("admin", "PATCH", U1, {"name": ""}, 422, "validation", "empty", "name"),
    # Keys.
    ("1001", "PATCH", U1, {"ring_timout": 3}, 422, "validation", "not_a_setting", "ring_timout"),
    ("1001", "PATCH", U1, {"secret": "mine-now-123"}, 403, "forbidden", "admin_only", "secret"),
    ("1001", "PATCH", U1, [], 422, "validation", "body_not_object", "(body)"),
    ("1001", "PATCH", U1,
     {"devices": [{"type": "sip", "label": "A", "contact": "sip:x@127.0.0.1"}]},
     403, "forbidden", "device_admin_fields", "devices[1]"),
    # Creating users (admin).
    ("admin", "POST", "/api/users", {"extension": "a b", "name": "X", "secret": "secret-123"},
     422, "validation", "invalid_extension", "extension"),
    ("admin", "POST", "/api/users", {"extension": "1020", "name": "X", "secret": "short"}, 422,
     "validation", "text_too_short", "secret"),
    ("admin", "POST", "/api/users", {"extension": "1020", "name": "", "secret": "secret-123"},
     422, "validation", "empty", "name"),
    ("admin", "POST", "/api/users", {"extension": "1020", "secret": "secret-123"}, 422,
     "validation", "required", "name"),
    ("admin", "POST", "/api/users", {"extension": "1001", "name": "X", "secret": "secret-123"},
     409, "exists", "extension_exists", "extension"),
    # Devices.
    ("1001", "POST", U1 + "/devices", {"type": "fax", "label": "Fax"}, 422, "validation",
     "not_one_of", "type"),
    ("1001", "POST", U1 + "/devices", {"type": "sip", "label": ""}, 422, "validation", "empty",
     "label"),
    ("1001", "PATCH", U1 + "/devices/1", {"label": ""}, 422, "validation", "empty", "label"),
    # Passwords and signing in.
    ("1001", "POST", "/api/password", {"current": "secret1001", "new": "short"}, 422,
     "validation", "text_too_short", "new"),
    ("1001", "POST", "/api/password", {"current": "wrong-password", "new": "long-enough-1"},
     403, "bad_credentials", "wrong_current_password", "current"),
    ("admin", "PUT", "/api/users/1002/password", {"password": "short"}, 422, "validation",
     "text_too_short", "password"),
]  # fmt: skip

# Query parameters and uploads: (who, method, path, raw body, content type, status, error,
# code, field)
RAW_CASES: list[tuple[str, str, str, bytes | None, str | None, int, str, str, str]] = [
    ("1001", "GET", U1 + "/trace?at=demain", None, None, 422, "validation", "invalid_datetime",
     "at"),
    ("1001", "GET", U1 + "/trace?caller=n%27importe%20quoi", None, None, 422, "validation",
     "invalid_caller", "caller"),
    ("1001", "GET", U1 + "/trace?caller=" + "1" * 65, None, None, 422, "validation",
     "caller_too_long", "caller"),
    ("1001", "GET", U1 + "/week?start=31/02/2026", None, None, 422, "validation", "invalid_day",
     "start"),
    ("1001", "GET", U1 + "/week?caller=abc", None, None, 422, "validation", "invalid_caller",
     "caller"),
    ("1001", "POST", U1 + "/exceptional.ics?mode=merge", b"BEGIN:VCALENDAR", "text/calendar",
     422, "validation", "invalid_mode", "mode"),
    ("1001", "POST", U1 + "/exceptional.ics", b"\xff\xfe\x00", "text/calendar", 422,
     "validation", "not_utf8", "file"),
    ("1001", "POST", U1 + "/exceptional.ics", b"hello", "text/calendar", 422, "validation",
     "not_icalendar", "file"),
    ("1001", "POST", U1 + "/exceptional.ics?destination=%7Bnope", b"BEGIN:VCALENDAR\r\n",
     "text/calendar", 422, "validation", "destination_not_json", "destination"),
    ("1001", "POST", U1 + "/exceptional.ics",
     b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:Rien\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
     "text/calendar", 422, "validation", "no_usable_event", "file"),
    ("1001", "PATCH", U1, b"{not json", "application/json", 400, "bad_json", "", ""),
    ("1001", "PATCH", U1, b"ring_timeout=3", "application/x-www-form-urlencoded", 415,
     "unsupported_media_type", "", ""),
]  # fmt: skip


def _request(api: Api, method: str, path: str, lang: str, **kw: Any) -> Any:
    return api.request(method, path, headers={"Accept-Language": lang}, **kw)


def _check(r: Any, status: int, error: str, code: str, field: str, server: RunningServer) -> Any:
    assert r.status == status, r
    body = r.json()
    assert body["error"] == error, body
    assert body["message"], body
    assert not any(word in r.text for word in LIBRARY), body
    assert str(server.config.parent) not in r.text and "/tmp/" not in r.text, body
    if code:
        first = body["issues"][0]
        assert (first["code"], first["field"]) == (code, field), body
        assert first["message"] == first["reason"] and first["message"], first
        for issue in body["issues"]:
            assert set(issue) == {"code", "field", "message", "reason"}, issue
            assert not re.search(r"\[0\]", issue["field"]), issue  # rows count from 1
    return body


@pytest.mark.parametrize(("who", "method", "path", "body", "status", "error", "code", "field"),
                         CASES, ids=[f"{c[6]}:{c[7]}" for c in CASES])  # fmt: skip
def test_refusals_name_the_field_from_1_in_both_languages(
    server: RunningServer, sessions: dict[str, Api], who: str, method: str, path: str,
    body: Any, status: int, error: str, code: str, field: str,
) -> None:
    api = sessions[who]
    before = api.get(path).json() if method == "PATCH" and path.startswith(U1[:-5]) else None
    fr = _check(_request(api, method, path, "fr-FR,fr;q=0.9", body=body), status, error, code,
                field, server)
    en = _check(_request(api, method, path, "en-GB,en;q=0.8", body=body), status, error, code,
                field, server)
    assert [i["code"] for i in fr["issues"]] == [i["code"] for i in en["issues"]]
    assert [i["field"] for i in fr["issues"]] == [i["field"] for i in en["issues"]]
    assert fr["issues"][0]["message"] != en["issues"][0]["message"]
    assert fr["message"].startswith(f"{field} : ") or error != "validation"
    assert en["message"].startswith(f"{field}: ") or error != "validation"
    if before is not None and "settings" in before:
        assert api.get(path).json()["settings"] == before["settings"]  # nothing stored


@pytest.mark.parametrize(
    ("who", "method", "path", "raw", "ctype", "status", "error", "code", "field"),
    RAW_CASES, ids=[f"{c[7] or c[6]}:{c[8]}" for c in RAW_CASES],
)  # fmt: skip
def test_query_and_upload_refusals_in_both_languages(
    server: RunningServer, sessions: dict[str, Api], who: str, method: str, path: str,
    raw: bytes | None, ctype: str | None, status: int, error: str, code: str, field: str,
) -> None:
    api = sessions[who]
    kw: dict[str, Any] = {"raw": raw, "content_type": ctype} if raw is not None else {}
    fr = _check(_request(api, method, path, "fr", **kw), status, error, code, field, server)
    en = _check(_request(api, method, path, "en", **kw), status, error, code, field, server)
    assert fr["message"] != en["message"]


def test_music_upload_refusals_in_both_languages(
    server: RunningServer, sessions: dict[str, Api]
) -> None:
    admin = sessions["admin"]
    cases = [
        ({}, {"file": ("a.wav", tone_wav(0.2))}, "name_required", "name"),
        ({"name": "bad name!"}, {"file": ("a.wav", tone_wav(0.2))}, "invalid_name", "name"),
        ({"name": "default"}, {"file": ("a.wav", tone_wav(0.2))}, "name_shipped", "name"),
        ({"name": "promo"}, {}, "file_required", "file"),
        ({"name": "promo"}, {"file": ("e.wav", b"")}, "empty_file", "file"),
        ({"name": "promo"}, {"file": ("notes.mp3", b"this is not audio" * 100)}, "not_audio",
         "file"),
    ]  # fmt: skip
    for fields, files, code, field in cases:
        messages = set()
        for lang in ("fr", "en"):
            body, ctype = multipart(fields, files)
            r = admin.request("POST", "/api/music", raw=body, content_type=ctype,
                              headers={"Accept-Language": lang})
            error = "bad_audio" if code == "not_audio" else "validation"
            data = _check(r, 422, error, code, field, server)
            messages.add(data["issues"][0]["message"])
        assert len(messages) == 2, messages


def test_language_follows_lang_then_accept_language_then_the_user(
    sessions: dict[str, Api],
) -> None:
    api = sessions["1001"]
    bad = {"ring_timeout": 0}
    assert api.patch(U1, bad).json()["issues"][0]["message"] == "au moins 1 (reçu : 0)"
    english = api.patch(U1, bad, headers={"Accept-Language": "en"}).json()
    assert english["issues"][0]["message"] == "expected greater than or equal to 1 (got 0)"
    forced = api.patch(U1 + "?lang=fr", bad, headers={"Accept-Language": "en"}).json()
    assert forced["issues"][0]["message"] == "au moins 1 (reçu : 0)"
    # The user chose English: without a header, the answers are English.
    assert api.patch(U1, {"language": "en"}).status == 200
    try:
        assert api.patch(U1, bad).json()["issues"][0]["message"].startswith("expected")
        assert api.get("/api/session").json()["language"] == "en"
    finally:
        assert api.patch(U1, {"language": None}).status == 200
    assert api.get("/api/session").json()["language"] == "fr"


def test_every_save_answers_warnings_next_to_the_row(
    server: RunningServer, sessions: dict[str, Api]
) -> None:
    api = sessions["1001"]
    r = api.patch(U1, {
        "schedule": {"enabled": True, "hours": [h(), h(start="09:00", end="08:00"),
                                                h(days=[]), h(months=[])],
                     "exceptional": [{"name": "Soirée", "dates": ["12-31"], "start": "20:00",
                                      "end": "02:00", "destination": {"kind": "voicemail"}}]},
        "exceptions": [exc("*"), exc("06*")],
    }, headers={"Accept-Language": "fr"})  # fmt: skip
    assert r.status == 200, r
    warnings = {(w["code"], w["field"]): w["message"] for w in r.json()["warnings"]}
    assert warnings[("hours_over_midnight", "schedule.hours[2].end")] == (
        "Cette plage passe minuit (09:00 -> 08:00 le lendemain) : est-ce voulu ?"
    )
    assert warnings[("exception_unreachable", "exceptions[2].callers")] == (
        "Cette exception ne s'appliquera jamais : l'exception n° 1 (« * ») prend tous les "
        "appels avant elle"
    )
    assert ("hours_no_days", "schedule.hours[3].days") in warnings
    assert ("hours_no_months", "schedule.hours[4].months") in warnings
    assert ("window_over_midnight", "schedule.exceptional[1].end") in warnings
    english = api.get(U1, headers={"Accept-Language": "en"}).json()["warnings"]
    assert {(w["code"], w["field"]) for w in english} == set(warnings)
    assert all(set(w) == {"code", "field", "message", "reason"} for w in english)
    # Writes with nothing to warn about answer an empty list; so do other writes.
    clean = api.patch(U1, {"schedule": SCHEDULE, "exceptions": []})
    assert clean.status == 200 and clean.json()["warnings"] == []
    device = api.post(U1 + "/devices", {"type": "softphone", "label": "Tablette"})
    assert device.status == 201 and device.json()["warnings"] == []
    assert api.delete(U1 + "/devices/3").json()["warnings"] == []
    assert signed_in(server, "1001").post("/api/logout").json()["warnings"] == []


def test_french_dates_are_stored_the_configurations_way(sessions: dict[str, Api]) -> None:
    api = sessions["1002"]
    r = api.patch(U2, {"schedule": {**SCHEDULE, "exceptional": [
        {"name": "Congé", "dates": ["31/12/2026", "20/12..05/01", "01/08/2026..15/08/2026"],
         "destination": {"kind": "voicemail"}}]}})  # fmt: skip
    assert r.status == 200, r
    dates = r.json()["settings"]["schedule"]["exceptional"][0]["dates"]
    assert dates == ["2026-12-31", "12-20..01-05", "2026-08-01..2026-08-15"]
    trace = api.get(U2 + "/trace?at=31/12/2026%2010:00&caller=0611223344").json()
    assert (trace["rule"], trace["rule_name"]) == ("exceptional", "Congé")
    assert trace["at"] == "2026-12-31T10:00+01:00"
    week = api.get(U2 + "/week?start=28/12/2026").json()
    assert week["days"][0] == "2026-12-28"
    assert api.patch(U2, {"schedule": None}).status == 200


# ---- any body: a refusal is always a well-formed, translated answer ------------------------

values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 700), st.text(max_size=8),
              st.sampled_from(["25:00", "mon", "*", "06,07", "31/02/2026", "devices"])),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["kind", "start", "end", "days", "dates", "callers",
                                       "destination", "hours", "exceptional", "label", "type"]),
                      inner, max_size=3),
    max_leaves=8,
)  # fmt: skip


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["schedule", "exceptions", "forward", "no_answer",
                                        "ring_timeout", "devices", "mobile", "decline"]),
                       values, min_size=1, max_size=2))  # fmt: skip
def test_any_change_is_saved_or_refused_with_codes(
    server: RunningServer, sessions: dict[str, Api], changes: dict[str, Any]
) -> None:
    api = sessions["1002"]
    r = api.patch(U2, changes, headers={"Accept-Language": "fr"})
    assert r.status in (200, 403, 422), r
    body = r.json()
    if r.status == 200:
        assert isinstance(body["warnings"], list)
        assert api.delete("/api/users/1002/settings").status in (200, 403, 409)
        sessions["admin"].delete("/api/users/1002/settings")
        return
    assert body["issues"] and all(i["code"] != "invalid" for i in body["issues"]), body
    assert not any(word in json.dumps(body) for word in LIBRARY), body


def test_the_week_speaks_the_requests_language(sessions: dict[str, Api]) -> None:
    api = sessions["1001"]
    fr = api.get(U1 + "/week?start=05/01/2026", headers={"Accept-Language": "fr"}).json()
    en = api.get(U1 + "/week?start=2026-01-05", headers={"Accept-Language": "en"}).json()
    assert fr["cells"] == en["cells"] and fr["days"][0] == "2026-01-05"
    assert [o["destination"] for o in fr["outcomes"]] == [o["destination"] for o in en["outcomes"]]
    described = {o["rule"]: (o["description"]) for o in fr["outcomes"]}
    assert described["office_hours"] == "tous les appareils sonnent"
    assert {o["rule"]: o["description"] for o in en["outcomes"]}["office_hours"] == (
        "ring all devices"
    )
    svg = api.get(U1 + "/week.svg?start=2026-01-05&lang=fr").text
    assert "Semaine du 05/01/2026" in svg and "heures d&#x27;ouverture" in svg
