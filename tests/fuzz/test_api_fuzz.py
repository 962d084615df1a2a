"""Fuzzing the REST API from its own OpenAPI document, against a real `b2bua run`.

Schemathesis reads the document the server serves (`GET /api/openapi.json`) and generates, for
every operation, requests that fit the schemas (positive) and requests that break them
(negative: wrong types, missing or extra fields, odd path and query values). Each operation is
driven signed in as the administrator and as a user (1002), with the session cookie and the
CSRF token; path parameters are sometimes steered to objects that exist (users 1002 and 1003,
device 1, the shipped hold music, the absence slot) so that the handlers get past their lookups.

Every answer must be clean:
- no 5xx;
- under /api/ every refusal (4xx) is JSON `{error, message[, issues]}` with a non-empty
  message; a 422 lists its issues, each naming the field it is about and why;
- a JSON answer parses.

Afterwards nothing stored is corrupted: every user still reads back, and after a restart of
the server on the same data directory the users, their settings and devices read back exactly
as before the restart (what the API had stored was whole), and the log holds no traceback.

The number of examples per operation is bounded (`EXAMPLES`, `B2BUA_API_FUZZ_EXAMPLES`) so the
whole run takes about a minute.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from b2bua.api.auth import CSRF_HEADER
from b2bua.api.openapi import build_openapi
from b2bua.testing.server import RunningServer
from tests.api.helpers import ADMIN_PASSWORD, Api, start

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("B2BUA_API_FUZZ_EXAMPLES", "40"))
# Operations left out: signing out would end the session the fuzz runs in.
SKIPPED = {("POST", "/api/logout")}
# Values of path parameters that name something that exists.
# The administrator's fuzz may delete 1003 but leaves 1001 (checked untouched at the end) and
# 1002 (the user the second run signs in as) alone.
EXISTING = {
    "ext": ("1003",),
    "n": ("1", "2"),
    "id": ("1",),
    "name": ("default", "hello"),
    "slot": ("absence", "greeting"),
}
USER_EXT = "1002"
UNTOUCHED = "1001"
FIRST: dict[str, Any] = {}  # UNTOUCHED's settings before any fuzz


def _operations() -> list[Any]:
    schema = schemathesis.openapi.from_dict(build_openapi())
    return [result.ok() for result in schema.get_all_operations()]


OPERATIONS = _operations()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start(tmp_path_factory.mktemp("api-fuzz"))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def sessions(server: RunningServer) -> dict[str, Session]:
    """Both accounts signed in before any fuzz: the fuzz of POST /api/login gets the source
    address throttled for a while (429), which later sign-ins would meet."""
    out = {"admin": Session(server, "admin", ADMIN_PASSWORD),
           "user": Session(server, USER_EXT, f"secret{USER_EXT}")}
    FIRST.update(snapshot(out["admin"].api())[UNTOUCHED])
    return out


class Session:
    """A signed-in account for the fuzz: the cookie and the CSRF token, on a requests
    session (what schemathesis sends with)."""

    def __init__(self, server: RunningServer, login: str, password: str) -> None:
        api = Api(server.http_base)
        r = api.login(login, password)
        assert r.status == 200, r
        self.base = server.http_base
        self.login = login
        self.csrf = api.csrf or ""
        self.cookies = dict(api.cookies)
        self.http = requests.Session()
        for name, value in api.cookies.items():
            self.http.cookies.set(name, value)

    def api(self) -> Api:
        return Api(self.base, dict(self.cookies), self.csrf)

    def still_signed_in(self) -> bool:
        return self.http.get(self.base + "/api/session", timeout=30).status_code == 200


def _steer(case: Any, choose: Callable[[str], str | None]) -> Any:
    for name in list(case.path_parameters or {}):
        value = choose(name)
        if value is not None:
            case.path_parameters[name] = value
    return case


def _strategy(operation: Any, mode: GenerationMode, own_ext: str | None) -> st.SearchStrategy[Any]:
    base = operation.as_strategy(generation_mode=mode)
    if not operation.path_parameters:
        return base

    @st.composite
    def steered(draw: st.DrawFn) -> Any:
        case = draw(base)
        chosen: dict[str, str] = {}
        for name in case.path_parameters or {}:
            pool = EXISTING.get(name, ())
            if name == "ext" and own_ext is not None:
                pool = (own_ext,)
            if pool and draw(st.booleans()):
                chosen[name] = draw(st.sampled_from(pool))
        return _steer(case, chosen.get)

    return steered()


def check_answer(case: Any, response: Any) -> None:
    """The contract of every answer (docs/api.md, "Errors")."""
    where = f"{case.method} {case.formatted_path} -> {response.status_code}: {response.content[:400]!r}"
    assert response.status_code < 500, where
    ctype = (response.headers.get("content-type") or [""])[0]
    if response.status_code >= 400:
        assert ctype.startswith("application/json"), where
        body = response.json()
        assert isinstance(body, dict), where
        assert isinstance(body.get("error"), str) and body["error"], where
        assert isinstance(body.get("message"), str) and body["message"].strip(), where
        if response.status_code == 422:
            issues = body.get("issues")
            assert isinstance(issues, list) and issues, where
            for issue in issues:
                assert isinstance(issue.get("field"), str) and issue["field"], where
                assert isinstance(issue.get("message"), str) and issue["message"], where
                assert isinstance(issue.get("code"), str) and issue["code"], where
    elif ctype.startswith("application/json"):
        json.loads(response.content)


def fuzz(operation: Any, who: Session, mode: GenerationMode, own_ext: str | None,
         answers: dict[int, int]) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=_strategy(operation, mode, own_ext))
    def run(case: Any) -> None:
        # The generated cookies and headers stay, but the session's own are always right: the
        # fuzz is about what a signed-in account can send (test_security covers the rest).
        case.cookies = {**(case.cookies or {}), **who.cookies}
        case.headers = {**(case.headers or {}), CSRF_HEADER: who.csrf}
        response = case.call(base_url=who.base, session=who.http, timeout=60)
        answers[response.status_code] = answers.get(response.status_code, 0) + 1
        check_answer(case, response)

    run()


def test_a_multipart_header_that_does_not_parse_is_a_400(server: RunningServer,
                                                         sessions: dict[str, Session]) -> None:
    """Found by the fuzz: a body part whose header holds a control character made the
    multipart reader raise, answered 500."""
    boundary = "b0undary"
    raw = (f'--{boundary}\r\nContent-Disposition: form-data; name="\x1c\x10"\r\n\r\nx\r\n'
           f"--{boundary}--\r\n").encode()
    for path in ("/api/music", "/api/announcements"):
        r = sessions["admin"].api().request("POST", path, raw=raw,
                                            content_type=f"multipart/form-data; boundary={boundary}")
        assert r.status == 400, r
        assert r.json()["error"] == "bad_request" and r.json()["message"], r


def snapshot(api: Api) -> dict[str, Any]:
    """What an administrator reads of every user: settings, devices, voicemail count."""
    out: dict[str, Any] = {}
    users = api.get("/api/users")
    assert users.status == 200, users
    for user in users.json()["users"]:
        ext = user["extension"]
        one = api.get(f"/api/users/{ext}")
        assert one.status == 200, (ext, one)
        devices = api.get(f"/api/users/{ext}/devices")
        assert devices.status == 200, (ext, devices)
        data = one.json()
        out[ext] = {
            "user": data.get("user", data),
            "stored": data.get("stored"),
            "devices": [{k: d.get(k) for k in ("label", "type")}
                        for d in devices.json().get("devices", [])],
        }
    return out


@pytest.mark.parametrize("role", ["admin", "user"])
def test_every_operation_answers_cleanly(server: RunningServer, sessions: dict[str, Session],
                                        role: str) -> None:
    who = sessions[role]
    own_ext = USER_EXT if role == "user" else None
    answers: dict[int, int] = {}
    done = []
    for operation in OPERATIONS:
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, who, mode, own_ext, answers)
        done.append(f"{operation.method.upper()} {operation.path}")
        if operation.path != "/api/login":
            assert who.still_signed_in(), f"signed out after {done[-1]}"
    print(f"\n[api fuzz] {role}: {len(done)} operations, answers by status "
          f"{dict(sorted(answers.items()))}")
    assert len(done) >= 35
    assert any(200 <= s < 300 for s in answers), answers  # some requests got through
    assert any(s == 422 for s in answers), answers  # and some were refused on a field
    assert "Traceback" not in server.log(), server.log()[-4000:]


def test_nothing_stored_is_corrupted(server: RunningServer, sessions: dict[str, Session]) -> None:
    """After both fuzz runs (this test comes after them in the module): every user reads back,
    and the same after a restart on the same data."""
    before = snapshot(sessions["admin"].api())
    assert {UNTOUCHED, USER_EXT} <= set(before)
    assert FIRST and before[UNTOUCHED] == FIRST, "a user nobody may change was left alone"
    log_before = server.log()
    server.stop()
    assert "Traceback" not in log_before, log_before[-4000:]
    again = start(server.config.parent, rewrite=False)
    try:
        admin = Api(again.http_base)
        assert admin.login("admin", ADMIN_PASSWORD).status == 200
        assert snapshot(admin) == before
        assert "Traceback" not in again.log(), again.log()[-4000:]
    finally:
        again.stop()
