"""Security of the dashboard API: one user cannot read or change another's settings on any
endpoint, admin-only endpoints refuse users, CSRF is enforced, uploads and voicemail files stay
inside the data directory, sessions expire, wrong logins are throttled."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from b2bua.api.auth import AuthPolicy
from b2bua.api.openapi import ROUTES
from b2bua.settings import add_voicemail, voicemail_dir
from tests.api.helpers import Api, make_config, multipart, signed_in, tone_wav

# A plausible body per route, so a refusal is about access, not about the body.
BODIES: dict[tuple[str, str], Any] = {
    ("PATCH", "/api/users/{ext}"): {"exceptions": [{"callers": "*", "destination": {"kind": "busy"}}]},
    ("PUT", "/api/users/{ext}/password"): {"password": "stolen-password"},
    ("POST", "/api/users/{ext}/devices"): {"type": "sip", "label": "Evil"},
    ("PATCH", "/api/users/{ext}/devices/{n}"): {"label": "Evil"},
    ("PATCH", "/api/users/{ext}/voicemail/{id}"): {"read": True},
    ("POST", "/api/users"): {"extension": "1666", "name": "Evil", "secret": "evil-secret"},
}


def _db(server) -> sqlite3.Connection:
    return sqlite3.connect(server.config.parent / "var" / "b2bua.sqlite", isolation_level=None)


def _victim_voicemail(server) -> int:
    folder = voicemail_dir(server.config.parent / "var", "1001")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "private.wav").write_bytes(tone_wav(0.2, 8000))
    with _db(server) as db:
        return add_voicemail(db, "1001", "0611223344", 1767776400.0, 1.0, "private.wav")


def _call(api: Api, route: Any, vm_id: int) -> Any:
    path = (route.path.replace("{ext}", "1001").replace("{n}", "1")
            .replace("{id}", str(vm_id)).replace("{name}", "default")
            .replace("{slot}", "absence").replace("{domain}", "pbx.test"))
    body = BODIES.get((route.method, route.path))
    if route.body == "text/calendar":
        return api.request(route.method, path, raw=b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
                           content_type="text/calendar")
    if route.body == "multipart/form-data":
        raw, ctype = multipart({"name": "evil"}, {"file": ("a.wav", tone_wav(0.2))})
        return api.request(route.method, path, raw=raw, content_type=ctype)
    return api.request(route.method, path, body)


def test_a_user_can_neither_read_nor_change_another_users_anything(server):
    vm_id = _victim_voicemail(server)
    victim = signed_in(server, "1001")
    before = victim.get("/api/users/1001").json()
    other = signed_in(server, "1002")
    routes = [r for r in ROUTES if "{ext}" in r.path]
    assert len(routes) >= 20
    for route in routes:
        r = _call(other, route, vm_id)
        assert r.status == 403, (route.method, route.path, r)
        assert b"Alice" not in r.body and b"0600000001" not in r.body
    assert victim.get("/api/users/1001").json() == before
    assert victim.get("/api/users/1001/voicemail").json()["messages"][0]["id"] == vm_id
    assert Api(server.http_base).login("1001", "stolen-password").status == 401


def test_admin_only_endpoints_refuse_users(server):
    user = signed_in(server, "1002")
    admin_routes = [r for r in ROUTES if r.access == "admin"]
    assert {(r.method, r.path) for r in admin_routes} >= {
        ("POST", "/api/music"), ("POST", "/api/users"), ("DELETE", "/api/users/{ext}")}
    for route in admin_routes:
        path = route.path.replace("{ext}", "1002").replace("{name}", "default").replace(
            "{domain}", "pbx.test")
        if route.body == "multipart/form-data":
            raw, ctype = multipart({"name": "evil"}, {"file": ("a.wav", tone_wav(0.2))})
            r = user.request(route.method, path, raw=raw, content_type=ctype)
        else:
            r = user.request(route.method, path, BODIES.get((route.method, route.path)))
        assert r.status == 403, (route.method, route.path, r)
    assert user.get("/api/users/1002").status == 200


def test_every_endpoint_but_sign_in_needs_a_session(server):
    anonymous = Api(server.http_base)
    for route in ROUTES:
        if route.access == "public":
            continue
        r = _call(anonymous, route, 1)
        assert r.status == 401, (route.method, route.path, r)


def test_csrf_token_is_required_on_every_change(server):
    api = signed_in(server, "1002")
    change = {"ring_timeout": 30}
    assert api.patch("/api/users/1002", change, csrf=False).status == 403
    r = api.patch("/api/users/1002", change, headers={"X-CSRF-Token": "forged"})
    assert r.status == 403 and r.json()["error"] == "csrf"
    someone_else = signed_in(server, "1003")
    r = api.patch("/api/users/1002", change, headers={"X-CSRF-Token": someone_else.csrf})
    assert r.status == 403
    # A cross-site page cannot post even with a token (Origin is checked too).
    r = api.patch("/api/users/1002", change, headers={"Origin": "http://evil.example"})
    assert r.status == 403
    # Sign-in takes JSON only: an HTML form from another site cannot log a victim in.
    r = api.post("/api/login", raw=b"login=1002&password=secret1002",
                 content_type="application/x-www-form-urlencoded")
    assert r.status == 415
    assert api.post("/api/logout", csrf=False).status == 403
    assert api.patch("/api/users/1002", change).status == 200


def test_uploads_cannot_escape_the_data_directory(server):
    admin = signed_in(server, "admin")
    root = server.config.parent
    for name in ("../../escape", "..", "a/b", ".hidden", "x" * 65):
        raw, ctype = multipart({"name": name}, {"file": ("a.wav", tone_wav(0.2))})
        r = admin.post("/api/music", raw=raw, content_type=ctype)
        assert r.status == 422 and r.json()["issues"][0]["field"] == "name", (name, r)
    for filename in ("../../../../escape.wav", "..\\..\\escape.wav", "/etc/escape.wav"):
        raw, ctype = multipart({"name": "safe"}, {"file": (filename, tone_wav(0.2))})
        r = admin.post("/api/music", raw=raw, content_type=ctype)
        assert r.status == 201, r
        stored = list((root / "var" / "uploads" / "music" / "safe").iterdir())
        assert [p.name for p in stored] == ["escape.wav"]
    assert not list(root.parent.glob("escape*")) and not list(root.glob("escape*"))
    assert not Path("/etc/escape.wav").exists()
    assert admin.delete("/api/music/safe").status == 200
    assert admin.delete("/api/music/..").status in (404, 403)


def test_voicemail_files_outside_the_extensions_folder_are_never_served(server):
    data_dir = server.config.parent / "var"
    secret = data_dir / "b2bua.sqlite"
    with pytest.raises(ValueError):
        with _db(server) as db:
            add_voicemail(db, "1002", "x", 0.0, 1.0, "../../b2bua.sqlite")
    with _db(server) as db:  # a row written by something else, bypassing the checks
        db.execute("INSERT INTO voicemail (extension, caller, received_at, duration, path, read)"
                   " VALUES ('1002', 'x', 0, 1, '../../b2bua.sqlite', 0)")
        vm_id = db.execute("SELECT max(id) FROM voicemail").fetchone()[0]
    api = signed_in(server, "1002")
    r = api.get(f"/api/users/1002/voicemail/{vm_id}/audio")
    assert r.status == 410 and secret.read_bytes()[:16] not in r.body
    assert api.delete(f"/api/users/1002/voicemail/{vm_id}").status == 200
    assert secret.exists()


def test_static_files_do_not_leak_the_source(server):
    api = Api(server.http_base)
    for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py"):
        r = api.get(path)
        assert r.status in (403, 404) and b"build_app" not in r.body, path


# ---- in-process server with a controllable clock ----------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def inproc(tmp_path: Path) -> AsyncIterator[tuple[str, Clock]]:
    """A started `Server` (real SIP socket, real SQLite) and its dashboard app on a real HTTP
    port, with the session clock under the test's control."""
    from b2bua.config import load_config
    from b2bua.server import Server
    from b2bua.testing.net import free_port
    from b2bua.transport.base import ListenSpec

    config = load_config(make_config(tmp_path))
    server = Server(config, [ListenSpec("udp", "127.0.0.1", free_port())], None)
    await server.start()
    clock = Clock()
    from b2bua.api.app import build_app

    app = build_app(server, clock=clock, policy=AuthPolicy(idle=600, lifetime=3600,
                                                          max_failures=3, lockout=60))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}", clock
    finally:
        await runner.cleanup()
        await server.stop()


async def _login(session: aiohttp.ClientSession, base: str, login: str, password: str) -> Any:
    async with session.post(f"{base}/api/login", json={"login": login, "password": password}) as r:
        return r.status, await r.json()


async def test_a_session_expires_when_idle_and_after_its_lifetime(inproc):
    base, clock = inproc
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        status, body = await _login(s, base, "1001", "secret1001")
        assert status == 200
        for _ in range(5):  # activity keeps it alive...
            clock.now += 500
            async with s.get(f"{base}/api/session") as r:
                assert r.status == 200
        clock.now += 601  # ...idleness ends it
        async with s.get(f"{base}/api/session") as r:
            assert r.status == 401
        status, body = await _login(s, base, "1001", "secret1001")
        for _ in range(9):  # active all along: still over after the lifetime
            clock.now += 450
            async with s.get(f"{base}/api/users/1001") as r:
                last = r.status
        assert last == 401
        async with s.patch(f"{base}/api/users/1001", json={"ring_timeout": 9},
                           headers={"X-CSRF-Token": body["csrf_token"]}) as r:
            assert r.status == 401


async def test_wrong_logins_are_throttled_even_with_the_right_password_then_released(inproc):
    base, clock = inproc
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        for _ in range(3):
            status, _ = await _login(s, base, "1002", "guess")
            assert status == 401
        async with s.post(f"{base}/api/login",
                          json={"login": "1002", "password": "secret1002"}) as r:
            assert r.status == 429
            assert int(r.headers["Retry-After"]) == 60
        # Another login from the same address is not locked by these three.
        status, _ = await _login(s, base, "1003", "secret1003")
        assert status == 200
        clock.now += 61
        # Guessing on after the lockout doubles the next one.
        for _ in range(3):
            status, _ = await _login(s, base, "1002", "guess")
            assert status == 401
        async with s.post(f"{base}/api/login", json={"login": "1002", "password": "x"}) as r:
            assert r.status == 429 and int(r.headers["Retry-After"]) == 120
        clock.now += 121
        status, _ = await _login(s, base, "1002", "secret1002")
        assert status == 200


async def test_changing_the_password_ends_the_other_sessions(inproc):
    base, _ = inproc
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as a, aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as b:
        _, body = await _login(a, base, "1001", "secret1001")
        await _login(b, base, "1001", "secret1001")
        async with a.post(f"{base}/api/password", json={"current": "secret1001",
                                                        "new": "brand-new-pass"},
                          headers={"X-CSRF-Token": body["csrf_token"]}) as r:
            assert r.status == 200
        async with a.get(f"{base}/api/session") as r:
            assert r.status == 200
        async with b.get(f"{base}/api/session") as r:
            assert r.status == 401


def test_session_tokens_are_stored_hashed(server):
    api = signed_in(server, "1003")
    token = api.cookies["b2bua_session"]
    with _db(server) as db:
        rows = [r[0] for r in db.execute("SELECT token_hash FROM dashboard_sessions")]
    assert token not in rows and all(len(r) == 64 for r in rows)
