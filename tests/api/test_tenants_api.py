"""Tenants through the dashboard API, over real HTTP and real SIP: `/api/tenants` for the
platform administrator, sign-in as `admin@DOMAIN` and `EXT@DOMAIN`, each board seeing its own
company only, per-tenant limits, and a tenant created live that registers at once."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from b2bua.testing.server import RunningServer
from tests.api.helpers import (
    ADMIN_PASSWORD,
    SCHEDULE,
    Api,
    multipart,
    signed_in,
    start,
    tone_wav,
)
from tests.integration.tenant_flows import RawPhone

TENANTS = """
[[tenants]]
domain = "acme.example"
name = "ACME SARL"
limits = { users = 3 }

  [[tenants.users]]
  extension = "1001"
  name = "Alice ACME"
  secret = "acme-secret-1001"

  [[tenants.users]]
  extension = "1002"
  name = "Arthur ACME"
  secret = "acme-secret-1002"

[[tenants]]
domain = "beta.example"
name = "Beta SAS"

  [[tenants.users]]
  extension = "1001"
  name = "Bruno Beta"
  secret = "beta-secret-1001"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start(tmp_path_factory.mktemp("tenants-api"), TENANTS)
    try:
        yield srv
    finally:
        srv.stop()


def admin(server: RunningServer) -> Api:
    return signed_in(server, "admin", ADMIN_PASSWORD)


def login(server: RunningServer, name: str, password: str) -> Api:
    api = Api(server.http_base)
    r = api.login(name, password)
    assert r.status == 200, r
    return api


def names(api: Api, query: str = "") -> set[str]:
    r = api.get("/api/users" + query)
    assert r.status == 200, r
    return {u["name"] for u in r.json()["users"]}


def test_a_tenant_user_signs_in_as_ext_at_domain_and_sees_their_company_only(
        server: RunningServer) -> None:
    alice = login(server, "1001@acme.example", "acme-secret-1001")
    session = alice.get("/api/session").json()
    assert (session["tenant"], session["extension"], session["name"]) == (
        "acme.example", "1001", "Alice ACME")
    assert session["platform_admin"] is False
    assert alice.get("/api/users/1001").json()["settings"]["name"] == "Alice ACME"
    assert alice.get("/api/users/1002").status == 403
    # the top-level 1001 (Alice Martin) and beta's 1001 keep their own passwords
    assert Api(server.http_base).login("1001", "acme-secret-1001").status == 401
    assert Api(server.http_base).login("1001@beta.example", "acme-secret-1001").status == 401
    assert Api(server.http_base).login("1001@nowhere.example", "acme-secret-1001").status == 401
    top = login(server, "1001@pbx.test", "secret1001")  # one's own domain is the top level
    assert top.get("/api/session").json()["name"] == "Alice Martin"


def test_tenant_admin_is_set_by_the_platform_admin_and_sees_their_tenant_only(
        server: RunningServer) -> None:
    boss = admin(server)
    assert Api(server.http_base).login("admin@acme.example", "acme-admin-pw").status == 401
    r = boss.patch("/api/tenants/acme.example", {"admin_password": "acme-admin-pw"})
    assert r.status == 200, r
    acme = login(server, "admin@acme.example", "acme-admin-pw")
    assert names(acme) == {"Alice ACME", "Arthur ACME"}
    assert acme.get("/api/session").json()["platform_admin"] is False
    # a tenant's administrator neither manages tenants nor reaches another company
    assert acme.get("/api/tenants").status == 403
    assert acme.post("/api/tenants", {"domain": "x.example", "name": "X"}).status == 403
    assert names(acme, "?tenant=beta.example") == {"Alice ACME", "Arthur ACME"}
    # the platform administrator reaches any company with ?tenant=
    assert names(boss) == {"Alice Martin", "Bruno Petit", "Chloé Durand"}
    assert names(boss, "?tenant=beta.example") == {"Bruno Beta"}
    assert boss.get("/api/users?tenant=nowhere.example").status == 404


def test_the_tenant_list(server: RunningServer) -> None:
    listed = admin(server).get("/api/tenants").json()["tenants"]
    by_domain = {t["domain"]: t for t in listed}
    assert set(by_domain) >= {"pbx.test", "acme.example", "beta.example"}
    assert by_domain["pbx.test"]["default"] is True
    acme = by_domain["acme.example"]
    assert (acme["name"], acme["origin"], acme["users"]) == ("ACME SARL", "file", 2)
    assert acme["limits"] == {"users": 3, "devices": 0, "calls": 0}


def test_a_change_in_one_tenant_recompiles_that_tenant_only(server: RunningServer) -> None:
    acme = admin(server)
    before = server.log()
    r = acme.patch("/api/users/1002?tenant=acme.example", {"name": "Arthur Dupont"})
    assert r.status == 200, r
    new = server.log()[len(before):]
    assert "configuration of acme.example applied live" in new
    assert "configuration of beta.example" not in new
    assert "configuration of pbx.test" not in new
    assert names(acme, "?tenant=acme.example") == {"Alice ACME", "Arthur Dupont"}
    assert names(acme, "?tenant=beta.example") == {"Bruno Beta"}


def test_the_user_limit_is_answered_on_the_field(server: RunningServer) -> None:
    boss = admin(server)
    new = {"extension": "1003", "name": "Anne ACME", "secret": "acme-secret-1003"}
    assert boss.post("/api/users?tenant=acme.example", new).status == 201
    r = boss.post("/api/users?tenant=acme.example",
                  {"extension": "1004", "name": "Too Many", "secret": "acme-secret-1004"})
    assert r.status == 403, r
    body = r.json()
    assert body["error"] == "tenant_user_limit"
    assert body["issues"][0]["field"] == "extension"
    # beta has no limit; lowering acme's limit under its count is refused on the field
    r = boss.patch("/api/tenants/acme.example", {"limits": {"users": 2}})
    assert r.status == 422 and r.json()["issues"][0]["field"] == "limits.users", r


def test_a_tenant_created_live_registers_and_signs_in_at_once(server: RunningServer) -> None:
    boss = admin(server)
    bad = boss.post("/api/tenants", {"domain": "not a domain", "name": "X"})
    assert bad.status == 422 and bad.json()["issues"][0]["field"] == "domain", bad
    assert boss.post("/api/tenants", {"domain": "acme.example", "name": "X"}).status == 409
    assert boss.post("/api/tenants", {"domain": "pbx.test", "name": "X"}).status == 409
    r = boss.post("/api/tenants", {"domain": "gamma.example", "name": "Gamma",
                                   "limits": {"devices": 1}, "admin_password": "gamma-admin-pw"})
    assert r.status == 201, r
    assert r.json()["origin"] == "api"
    gamma = login(server, "admin@gamma.example", "gamma-admin-pw")
    r = gamma.post("/api/users", {"extension": "1001", "name": "Gaston Gamma",
                                  "secret": "gamma-secret-1001"})
    assert r.status == 201, r
    assert names(gamma) == {"Gaston Gamma"}
    phone = RawPhone(server, "gamma.example", "1001", "gamma-secret-1001")
    second = RawPhone(server, "gamma.example", "1001", "gamma-secret-1001")
    try:
        answer = phone.register()
        assert (answer.status, answer.realm) == (200, "gamma.example")
        refused = second.register()
        assert (refused.status, refused.reason) == (403, "Device Limit Reached")
        listed = {t["domain"]: t for t in boss.get("/api/tenants").json()["tenants"]}
        assert listed["gamma.example"]["devices"] == 1
        # deleted: its administrator and its phones are refused from then on
        assert boss.delete("/api/tenants/gamma.example").status == 200
        assert Api(server.http_base).login("admin@gamma.example", "gamma-admin-pw").status == 401
        assert gamma.get("/api/users").status == 401
        assert phone.register().status in (401, 403, 404)
    finally:
        phone.close()
        second.close()
    assert boss.get("/api/tenants/gamma.example").status == 404
    # a tenant of the file is deleted in the file only
    r = boss.delete("/api/tenants/beta.example")
    assert r.status == 409 and re.search("file|fichier", r.json()["message"]), r


def test_single_company_sign_in_is_unchanged(tmp_path: Path) -> None:
    srv = start(tmp_path)
    try:
        api = login(srv, "1001", "secret1001")
        session = api.get("/api/session").json()
        assert (session["login"], session["tenant"]) == ("1001", None)
        boss = admin(srv)
        assert [t["domain"] for t in boss.get("/api/tenants").json()["tenants"]] == ["pbx.test"]
    finally:
        srv.stop()


def test_voicemail_is_left_and_read_in_the_callers_company(server: RunningServer,
                                                           tmp_path: Path) -> None:
    """baresip, as ACME's 1002, calls 1001 (no device registered: voicemail) and talks a tone;
    the message is ACME's 1001's, in ACME's directory, and nobody else's 1001 sees it."""
    from b2bua.testing.audio import make_tone
    from b2bua.testing.baresip import start_baresip

    tone = tmp_path / "tone.wav"
    make_tone(tone, 9, 440)
    phone = start_baresip(tmp_path / "caller", "1002", "acme-secret-1002", server.sip,
                          domain="acme.example", seconds=19, audio=tone, answer=False,
                          dial="sip:1001@acme.example")
    out = phone.wait(30)
    alice = login(server, "1001@acme.example", "acme-secret-1001")
    deadline = time.monotonic() + 10
    messages: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not messages:
        messages = alice.get("/api/users/1001/voicemail").json()["messages"]
        time.sleep(0.3)
    assert len(messages) == 1, out[-3000:] + "\n" + server.log()[-3000:]
    assert messages[0]["caller"] == "1002", messages
    audio = alice.get(f"/api/users/1001/voicemail/{messages[0]['id']}/audio")
    assert audio.status == 200 and audio.body[:4] == b"RIFF", audio
    boxes = Path(server.config).parent / "var" / "tenants" / "acme.example" / "voicemail"
    assert [p.name for p in boxes.iterdir()] == ["1001"]
    history = alice.get("/api/users/1001/calls").json()["calls"]
    assert [c["caller"] for c in history] == ["1002"], history
    # the other companies' 1001 have no message nor call, and cannot reach ACME's message
    for other in (login(server, "1001", "secret1001"),
                  login(server, "1001@beta.example", "beta-secret-1001")):
        assert other.get("/api/users/1001/voicemail").json()["messages"] == []
        r = other.get(f"/api/users/1001/voicemail/{messages[0]['id']}/audio")
        assert r.status == 404, r
        assert other.get("/api/users/1001/calls").json()["calls"] == []


def test_music_uploaded_in_a_company_is_that_companys(server: RunningServer) -> None:
    boss = admin(server)
    raw, ctype = multipart({"name": "acme-jingle"}, {"file": ("jingle.wav", tone_wav(2.0))})
    r = boss.request("POST", "/api/music?tenant=acme.example", raw=raw, content_type=ctype)
    assert r.status in (200, 201), r

    def classes(query: str) -> set[str]:
        r = boss.get("/api/music" + query)
        assert r.status == 200, r
        return {c["name"] for c in r.json()["classes"]}

    assert "acme-jingle" in classes("?tenant=acme.example")
    assert "acme-jingle" not in classes("?tenant=beta.example")
    assert "acme-jingle" not in classes("")
    assert boss.get("/api/music/acme-jingle/audio?tenant=acme.example").status == 200
    assert boss.get("/api/music/acme-jingle/audio?tenant=beta.example").status == 404
    uploads = Path(server.config).parent / "var" / "tenants" / "acme.example"
    assert any(uploads.rglob("*")), "the upload is in the company's directory"


def test_a_softphone_provisioned_in_a_company_gets_that_companys_account(
        server: RunningServer) -> None:
    boss = admin(server)
    r = boss.post("/api/users/1001/devices/1/qr?tenant=beta.example")
    assert r.status == 200, r
    token = r.json()["url"].rsplit("/", 1)[1]
    settings = Api(server.http_base).get(f"/provision/{token}.json").json()
    assert (settings["domain"], settings["username"], settings["password"]) == (
        "beta.example", "1001", "beta-secret-1001"), settings
    # the provisioned account registers in its company's realm
    phone = RawPhone(server, settings["domain"], settings["username"], settings["password"])
    try:
        answer = phone.register()
        assert (answer.status, answer.realm) == (200, "beta.example")
        assert phone.register(expires=0).status == 200  # gone again, for the tests after
    finally:
        phone.close()
    # the command line makes one for a company's device as well
    png = Path(server.config).parent / "qr.png"
    done = cli(server, "qr", "1001", "--tenant", "acme.example", "--out", str(png))
    assert done.returncode == 0, done.stderr
    token = done.stdout.split("/provision/", 1)[1].split()[0]
    settings = Api(server.http_base).get(f"/provision/{token}.json").json()
    assert (settings["domain"], settings["password"]) == ("acme.example", "acme-secret-1001")
    # the top-level company's provisioning is as before
    r = boss.post("/api/users/1001/devices/2/qr")
    assert r.status == 200, r
    token = r.json()["url"].rsplit("/", 1)[1]
    settings = Api(server.http_base).get(f"/provision/{token}.json").json()
    assert (settings["domain"], settings["password"]) == ("pbx.test", "secret1001"), settings


def cli(server: RunningServer, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "b2bua", *argv, "--config", str(server.config)],
                          capture_output=True, text=True, timeout=60, check=False)


def trace(server: RunningServer, *tenant: str) -> dict[str, Any]:
    done = cli(server, "trace", "--to", "1001", "--from", "0611111111", "--at",
               "2026-01-07T10:00", "--json", *tenant)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def test_the_command_line_acts_on_the_tenant_it_is_given(server: RunningServer) -> None:
    boss = admin(server)
    leave = {"name": "Congé", "dates": ["2026-01-05..2026-01-09"],
             "destination": {"kind": "extension", "extension": "1002"}}
    r = boss.patch("/api/users/1001?tenant=acme.example",
                   {"schedule": {**SCHEDULE, "exceptional": [leave]}})
    assert r.status == 200, r
    assert trace(server, "--tenant", "acme.example")["rule"] == "exceptional"
    assert trace(server, "--tenant", "beta.example")["rule"] != "exceptional"
    assert trace(server)["rule"] == "office_hours"  # the top-level 1001, as before tenants
    assert trace(server, "--tenant", "pbx.test")["rule"] == "office_hours"

    phone = RawPhone(server, "acme.example", "1001", "acme-secret-1001")
    try:
        assert phone.register().status == 200
        done = cli(server, "devices", "--json", "--tenant", "acme.example")
        assert done.returncode == 0, done.stderr
        acme = {e["extension"]: e for e in json.loads(done.stdout)}
        assert acme["1001"]["name"] == "Alice ACME"
        assert "RawPhone" in done.stdout  # its registration, by its user agent
        done = cli(server, "devices", "--json", "--tenant", "beta.example")
        assert done.returncode == 0 and "RawPhone" not in done.stdout, done
        done = cli(server, "devices", "--json")
        assert done.returncode == 0 and "RawPhone" not in done.stdout, done
    finally:
        phone.close()

    done = cli(server, "export", "--tenant", "beta.example")
    assert done.returncode == 0, done.stderr
    assert "Bruno Beta" in done.stdout and "ACME" not in done.stdout
    assert "Alice Martin" not in done.stdout
    done = cli(server, "calls", "--json", "--tenant", "acme.example")
    assert done.returncode == 0, done.stderr
    done = cli(server, "check", "--tenant", "acme.example")
    assert done.returncode == 0, done.stderr
    done = cli(server, "check", "--tenant", "nowhere.example")
    assert done.returncode == 1
    assert "no tenant 'nowhere.example'" in done.stderr and "acme.example" in done.stderr


def test_export_out_carries_the_companys_own_greetings(server: RunningServer,
                                                        tmp_path: Path) -> None:
    alice = login(server, "1001@acme.example", "acme-secret-1001")
    raw, ctype = multipart({}, {"file": ("hello.wav", tone_wav(1.5))})
    r = alice.request("PUT", "/api/users/1001/messages/greeting", raw=raw, content_type=ctype)
    assert r.status == 200, r
    outs = {}
    for name, tenant in (("acme", ("--tenant", "acme.example")),
                         ("beta", ("--tenant", "beta.example")), ("top", ())):
        out = tmp_path / f"{name}.toml"
        done = cli(server, "export", "--out", str(out), *tenant)
        assert done.returncode == 0, done.stderr
        outs[name] = json.loads((tmp_path / f"{name}.audio" / "manifest.json").read_text())
    assert outs["acme"]["greetings"] == {"1001": "greetings/1001.wav"}
    assert (tmp_path / "acme.audio" / "greetings" / "1001.wav").is_file()
    assert outs["beta"]["greetings"] == {} and outs["top"]["greetings"] == {}
