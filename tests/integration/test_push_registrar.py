"""A real `b2bua run` with `[push]` and a scripted mobile softphone over TCP: it registers with
RFC 8599 parameters, is suspended (its connection drops), and comes back on a new connection;
its binding keeps its push data across all that and across a restart."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from b2bua.push import PushTarget
from b2bua.testing.push_keys import make_apns_key, make_service_account
from b2bua.testing.push_phone import PushPhone
from b2bua.testing.server import RunningServer, start_server, write_config

TOKEN = "0a1b2c3d4e5f6789" * 4
APNS = PushTarget("apns", TOKEN, "DEF123GHIJ.org.example.phone.voip")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    make_apns_key(tmp_path)
    make_service_account(tmp_path, "http://127.0.0.1:9/token")
    config = write_config(tmp_path, """
        [server]
        domain = "pbx.test"
        data_dir = "var"
        auth_algorithms = ["SHA-256"]

        [registrar]
        keepalive_interval = 0
        unreachable_grace = 2

        [push]
        wait = 10

        [push.apns]
        key_file = "AuthKey_ABC123DEFG.p8"
        key_id = "ABC123DEFG"
        team_id = "DEF123GHIJ"
        url = "http://127.0.0.1:9"

        [push.fcm]
        service_account = "fcm-service-account.json"
        url = "http://127.0.0.1:9"

        [[users]]
        extension = "1001"
        name = "Alice Martin"
        secret = "secret1001"

          [[users.devices]]
          type = "sip"
          label = "Bureau"

          [[users.devices]]
          type = "softphone"
          label = "Mobile"
    """)
    running = start_server(config)
    yield running
    running.stop()


def devices(server: RunningServer) -> list[dict[str, object]]:
    out = subprocess.run(
        [sys.executable, "-m", "b2bua", "devices", "--config", str(server.config), "--json"],
        capture_output=True, text=True, timeout=30, check=True,
    )
    [alice] = json.loads(out.stdout)
    rows: list[dict[str, object]] = alice["devices"]
    return [row for row in rows if row["state"] != "offline"]


def wait_for_state(server: RunningServer, state: str, timeout: float = 5.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = devices(server)
        if [r["state"] for r in rows] == [state] or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def phone(server: RunningServer, push: PushTarget | None = APNS) -> PushPhone:
    return PushPhone(server.sip, "1001", "secret1001", domain="pbx.test", push=push)


async def test_mobile_registers_sleeps_and_wakes_on_a_new_flow(server: RunningServer) -> None:
    mobile = phone(server)
    ok = await mobile.register(expires=600)
    assert ok.status == 200
    assert ok.headers.get("feature-caps") == '*;+sip.pns="apns,fcm"'
    [row] = wait_for_state(server, "registered")
    assert row["push"] == {"provider": "apns", "last_push_at": None, "last_push_result": None}
    assert row["instance"] == mobile.instance
    first_source = row["source"]

    await mobile.close()  # suspended: the connection drops
    [row] = wait_for_state(server, "unreachable")
    assert row["push"] is not None
    time.sleep(2.5)  # past unreachable_grace: an ordinary binding would be gone by now
    [row] = devices(server)
    assert row["state"] == "unreachable"

    woken = await mobile.wake()
    assert woken.status == 200
    assert len(woken.headers.values("contact")) == 1  # replaced, not added
    [row] = wait_for_state(server, "registered")
    assert row["source"] != first_source
    await mobile.close()


async def test_unsupported_service_gets_555(server: RunningServer) -> None:
    web = phone(server, PushTarget("webpush", "https://push.example/abc", ""))
    refused = await web.register()
    assert (refused.status, refused.reason) == (555, "Push Notification Service Not Supported")
    assert refused.headers.get("feature-caps") == '*;+sip.pns="apns,fcm"'
    await web.close()
    assert devices(server) == []


async def test_push_binding_survives_a_restart(server: RunningServer) -> None:
    mobile = phone(server, PushTarget("fcm", "fcm-registration-token", "b2bua-test"))
    assert (await mobile.register(expires=600)).status == 200
    await mobile.close()
    server.stop()
    again = start_server(server.config)
    try:
        [row] = devices(again)
        assert row["state"] == "unreachable"
        assert row["push"] == {"provider": "fcm", "last_push_at": None, "last_push_result": None}
        mobile.server = again.sip
        assert (await mobile.register(expires=600)).status == 200
        [row] = wait_for_state(again, "registered")
        assert row["push"] is not None
    finally:
        again.stop()
