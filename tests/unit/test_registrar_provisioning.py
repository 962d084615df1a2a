"""Provisioning tokens (single use, expiry), the HTTP endpoints, and the `devices`/`qr` commands."""

from __future__ import annotations

import argparse
import json
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from b2bua.api.provisioning import add_provisioning_routes
from b2bua.cli.devices import cmd_devices, cmd_qr
from b2bua.config import load_config
from b2bua.registrar import MemoryLocationStore, Registrar, SqliteLocationStore
from b2bua.registrar.provisioning import (
    LINPHONE_NS,
    ProvisioningError,
    TokenState,
    consume_token,
    create_token,
    device_settings,
    linphone_xml,
    provisioning_url,
    token_hash,
)
from b2bua.registrar.report import device_report
from b2bua.registrar.sqlite_store import ensure_schema
from b2bua.sip.flow import Flow
from b2bua.store import open_database

T0 = 1_700_000_000.0

CONFIG = """\
[server]
domain = "pbx.local"
listen = ["udp:127.0.0.1:15060", "tcp:127.0.0.1:15060"]
http = "127.0.0.1:18080"
data_dir = "data"
auth_algorithms = ["MD5"]

[[users]]
extension = "1001"
name = "Alice Martin"
secret = "pw<1001>&"

  [[users.devices]]
  type = "sip"
  label = "Bureau"

  [[users.devices]]
  type = "softphone"
  label = "Mobile"
  username = "1001_2"

  [[users.devices]]
  type = "teams"
  label = "Teams"
  contact = "sip:1001@127.0.0.1:5090"

[[users]]
extension = "1002"
name = "Bruno Petit"
secret = "pw1002"

  [[users.devices]]
  type = "sip"
  label = "Desk"
"""


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "b2bua.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def config(config_path: Path) -> Any:
    return load_config(config_path)


def test_token_is_single_use(tmp_path: Path) -> None:
    conn = open_database(tmp_path)
    token = create_token(conn, "1001", 1, T0, ttl=3600)
    stored = conn.execute("SELECT token_hash FROM provisioning_tokens").fetchall()
    assert stored == [(token_hash(token),)]  # only the hash is kept
    state, grant = consume_token(conn, token, T0 + 1)
    assert state is TokenState.VALID and grant is not None
    assert (grant.extension, grant.device) == ("1001", 1)
    assert consume_token(conn, token, T0 + 2) == (TokenState.USED, None)
    assert consume_token(conn, "nope" * 8, T0) == (TokenState.UNKNOWN, None)


def test_token_expires(tmp_path: Path) -> None:
    conn = open_database(tmp_path)
    token = create_token(conn, "1001", 0, T0, ttl=60)
    assert consume_token(conn, token, T0 + 60) == (TokenState.EXPIRED, None)


def test_token_consumed_once_across_connections(tmp_path: Path) -> None:
    a = open_database(tmp_path)
    b = open_database(tmp_path)
    token = create_token(a, "1001", 0, T0)
    states = [consume_token(c, token, T0 + 1)[0] for c in (a, b, a)]
    assert states == [TokenState.VALID, TokenState.USED, TokenState.USED]


def test_device_settings(config: Any) -> None:
    s = device_settings(config, "1001", 1)
    assert (s.username, s.password, s.domain, s.server, s.transport) == (
        "1001_2", "pw<1001>&", "pbx.local", "127.0.0.1:15060", "udp"
    )
    assert device_settings(config, "1001", 0).username == "1001"
    with pytest.raises(ProvisioningError):
        device_settings(config, "1001", 2)  # static contact: nothing to provision
    with pytest.raises(ProvisioningError):
        device_settings(config, "1001", 7)
    with pytest.raises(ProvisioningError):
        device_settings(config, "4242", 0)
    assert provisioning_url(config, "tok") == "http://127.0.0.1:18080/provision/tok"


def test_linphone_xml(config: Any) -> None:
    root = ET.fromstring(linphone_xml(device_settings(config, "1001", 0)))
    assert root.tag == f"{{{LINPHONE_NS}}}config"
    sections = {
        s.get("name"): {e.get("name"): e.text for e in s}
        for s in root.findall(f"{{{LINPHONE_NS}}}section")
    }
    assert sections["proxy_0"]["reg_proxy"] == "<sip:127.0.0.1:15060;transport=udp>"
    assert sections["proxy_0"]["reg_identity"] == '"Alice Martin" <sip:1001@pbx.local>'
    assert sections["proxy_0"]["realm"] == "pbx.local"
    assert sections["proxy_0"]["transport"] == "udp"
    assert sections["auth_info_0"]["username"] == "1001"
    assert sections["auth_info_0"]["passwd"] == "pw<1001>&"
    assert sections["auth_info_0"]["realm"] == "pbx.local"


async def _client(app: web.Application) -> TestClient[Any, Any]:
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_http_endpoints_serve_once(tmp_path: Path, config: Any) -> None:
    conn = open_database(tmp_path)
    app = web.Application()
    add_provisioning_routes(app, conn, config)
    client = await _client(app)
    try:
        t_json = create_token(conn, "1001", 1, time.time())
        t_xml = create_token(conn, "1001", 0, time.time())
        expired = create_token(conn, "1002", 0, time.time() - 7200, ttl=3600)

        r = await client.get(f"/provision/{t_json}.json")
        assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
        body = await r.json()
        assert body["server"] == "127.0.0.1:15060"
        assert (body["domain"], body["username"], body["password"], body["transport"]) == (
            "pbx.local", "1001_2", "pw<1001>&", "udp"
        )
        r = await client.get(f"/provision/{t_json}.json")
        assert r.status == 410
        r = await client.get(f"/provision/{t_json}")  # the other format: same token, gone
        assert r.status == 410

        r = await client.get(f"/provision/{t_xml}")
        assert r.status == 200 and r.content_type == "application/xml"
        assert "<entry name=\"passwd\" overwrite=\"true\">pw&lt;1001&gt;&amp;</entry>" in await r.text()
        assert (await client.get(f"/provision/{t_xml}")).status == 410

        assert (await client.get(f"/provision/{expired}")).status == 410
        assert (await client.get("/provision/" + "x" * 32)).status == 404
    finally:
        await client.close()


async def test_routes_accept_a_data_dir(tmp_path: Path, config: Any) -> None:
    conn = open_database(tmp_path)
    token = create_token(conn, "1002", 0, time.time())
    app = web.Application()
    add_provisioning_routes(app, tmp_path, config)
    client = await _client(app)
    try:
        r = await client.get(f"/provision/{token}.json")
        assert r.status == 200 and (await r.json())["username"] == "1002"
    finally:
        await client.close()


# -- commands ------------------------------------------------------------------------------------


def test_cmd_qr_writes_a_png_and_a_token(
    config_path: Path, config: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "qr.png"
    args = argparse.Namespace(config=str(config_path), ext="1001", device=2, out=str(out))
    assert cmd_qr(args) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "http://127.0.0.1:18080/provision/" in printed
    conn = open_database(config.server.data_dir)
    rows = conn.execute("SELECT extension, device, expires_at - created_at FROM provisioning_tokens").fetchall()
    assert rows == [("1001", 1, 86400.0)]
    token = printed.split("/provision/")[1].split()[0]
    assert consume_token(conn, token, time.time())[0] is TokenState.VALID


def test_cmd_qr_refuses_a_static_device(config_path: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(config=str(config_path), ext="1001", device=3,
                              out=str(tmp_path / "x.png"))
    assert cmd_qr(args) == 1
    assert "static contact" in capsys.readouterr().err


def _register_some(config: Any) -> None:
    conn = open_database(config.server.data_dir)
    reg = Registrar.from_config(config, SqliteLocationStore(conn), nonce_key=b"k" * 32,
                                random_bytes=lambda n: b"\x01" * n)
    from b2bua.registrar.digest import answer_challenge
    from b2bua.sip.message import Request, parse_message

    now = time.time()

    def register(user: str, src: Flow, contact: str) -> None:
        def req(auth: str | None) -> Request:
            lines = [
                "REGISTER sip:pbx.local SIP/2.0",
                f"Via: SIP/2.0/UDP {src.host}:{src.port};branch=z9hG4bK{user}{auth is None}",
                f"From: <sip:{user}@pbx.local>;tag=1", f"To: <sip:{user}@pbx.local>",
                f"Call-ID: {user}@{src.host}", f"CSeq: {2 if auth else 1} REGISTER",
                f"Contact: <{contact}>", "User-Agent: Phone 1.0", "Expires: 600",
            ]
            if auth:
                lines.append(f"Authorization: {auth}")
            msg = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
            assert isinstance(msg, Request)
            return msg

        challenge = reg.handle_register(req(None), src, now).headers.get("WWW-Authenticate")
        assert challenge
        auth = answer_challenge(challenge, username=user, password="pw<1001>&",
                                method="REGISTER", uri="sip:pbx.local", cnonce="c")
        assert reg.handle_register(req(auth), src, now).status == 200

    register("1001_2", Flow("udp", "203.0.113.9", 40000), "sip:1001_2@10.0.0.9:5060")
    conn.close()


def test_device_report(config: Any) -> None:
    _register_some(config)
    conn = open_database(config.server.data_dir)
    from b2bua.registrar.sqlite_store import read_bindings

    report = device_report(config, read_bindings(conn), time.time())
    alice = report[0]
    assert alice["extension"] == "1001"
    states = [(d["device"], d["type"], d["label"], d["state"]) for d in alice["devices"]]
    assert states == [
        (1, "sip", "Bureau", "offline"),
        (2, "softphone", "Mobile", "registered"),
        (3, "teams", "Teams", "static"),
    ]
    mobile = alice["devices"][1]
    assert mobile["contact"] == "sip:1001_2@10.0.0.9:5060"
    assert mobile["source"] == "udp:203.0.113.9:40000"
    assert mobile["user_agent"] == "Phone 1.0"
    assert 598 <= mobile["expires_in"] <= 600
    assert report[1]["devices"][0]["state"] == "offline"


def test_cmd_devices_text_and_json(config_path: Path, config: Any,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    # Before the server ever ran: everything offline (or static), no database needed.
    assert cmd_devices(argparse.Namespace(config=str(config_path), json=False)) == 0
    text = capsys.readouterr().out
    assert "1001  Alice Martin" in text and "offline" in text and "static" in text
    _register_some(config)
    assert cmd_devices(argparse.Namespace(config=str(config_path), json=True)) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[0]["devices"][1]["state"] == "registered"
    assert cmd_devices(argparse.Namespace(config=str(config_path), json=False)) == 0
    text = capsys.readouterr().out
    assert "registered" in text and "udp:203.0.113.9:40000" in text


def test_cmd_devices_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(textwrap.dedent("""\
        [server]
        domain = 5
    """))
    assert cmd_devices(argparse.Namespace(config=str(bad), json=False)) == 1
    assert "bad.toml:2" in capsys.readouterr().err


def test_registrar_schema_is_idempotent(tmp_path: Path) -> None:
    conn = open_database(tmp_path)
    ensure_schema(conn)
    ensure_schema(conn)
    assert isinstance(MemoryLocationStore().load_all(), list)


@pytest.mark.filterwarnings("ignore:It is recommended to use web.AppKey")  # as b2bua/api/app.py
async def test_served_addresses_win_over_the_file(tmp_path: Path, config: Any) -> None:
    class Listen:
        transport, host, port = "udp", "127.0.0.1", 47000

    class Server:
        listen = [Listen()]

    conn = open_database(tmp_path)
    app = web.Application()
    app["server"] = Server()
    add_provisioning_routes(app, conn, config)
    client = await _client(app)
    try:
        token = create_token(conn, "1002", 0, time.time())
        r = await client.get(f"/provision/{token}.json")
        assert (await r.json())["server"] == "127.0.0.1:47000"
    finally:
        await client.close()
