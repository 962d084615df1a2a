"""Restarting `b2bua run` (SIGTERM, then start) while calls come in: no registration, voicemail
or setting is lost, and calls placed after the restart succeed. A shutdown leaves no warning
behind (the dashboard's worker process is stopped and waited for)."""

from __future__ import annotations

import http.cookiejar
import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from b2bua.testing.audio import make_tone
from b2bua.testing.baresip import start_baresip
from b2bua.testing.load import CallerResult, start_caller
from b2bua.testing.net import free_port
from b2bua.testing.server import RunningServer, start_server
from tests.integration.conftest import make_config
from tests.integration.flows import device


class Api:
    def __init__(self, server: RunningServer) -> None:
        self.base = server.http_base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self.csrf = ""

    def call(self, method: str, path: str, body: object = None) -> dict[str, object]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              "X-CSRF-Token": self.csrf})
        with self.opener.open(req, timeout=10) as resp:
            out: dict[str, object] = json.loads(resp.read() or b"{}")
        return out

    def login(self, password: str) -> None:
        self.csrf = str(self.call("POST", "/api/login", {"login": "admin", "password": password})
                        ["csrf_token"])


def admin_password(server: RunningServer) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        m = re.search(r"password '([^']+)'", server.log())
        if m:
            return m.group(1)
        time.sleep(0.2)
    raise AssertionError("no administrator password in the log")


def bindings(server: RunningServer, extension: str) -> list[tuple[object, ...]]:
    """(device, state, contact, source) of each device of `extension`, as `b2bua devices`
    shows them."""
    out = subprocess.run([sys.executable, "-m", "b2bua", "devices", "--config", str(server.config),
                          "--json"], capture_output=True, text=True, check=True).stdout
    users = [u for u in json.loads(out) if u.get("extension") == extension]
    return [(d["device"], d["state"], d["contact"], d["source"])
            for u in users for d in u["devices"]]


def test_restart_under_load_loses_nothing(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    sip_port, http_port = free_port(), free_port()
    server = start_server(config, sip_port=sip_port, http_port=http_port)
    password = admin_password(server)
    phone = None
    try:
        # A voicemail for 1002 (nobody answers for it), recorded by this server.
        tone = tmp_path / "tone.wav"
        make_tone(tone, 12, 440)  # baresip hangs up when its audio file ends
        caller = start_baresip(tmp_path / "vm", "1001", "secret1001", server.sip,
                               domain="pbx.test", seconds=22, audio=tone, answer=False,
                               dial=f"sip:1002@127.0.0.1:{sip_port}")
        caller.wait(40)
        db = tmp_path / "var" / "b2bua.sqlite"
        deadline = time.monotonic() + 15
        voicemails: list[tuple[str]] = []
        while not voicemails and time.monotonic() < deadline:
            time.sleep(0.5)
            with sqlite3.connect(db) as conn:
                voicemails = conn.execute(
                    "SELECT path FROM voicemail WHERE extension = '1002'").fetchall()
        assert voicemails, server.log()[-2000:]
        # A setting changed from the dashboard, and a registered device that answers calls.
        api = Api(server)
        api.login(password)
        api.call("PATCH", "/api/users/1001", {"ring_timeout": 17})
        phone = device(server, "uas_answer", "1001", "secret1001", tmp_path / "phone",
                       pause_ms=100, calls=1000)
        before = bindings(server, "1001")
        assert any(state == "registered" for _, state, _, _ in before)
        # Calls are coming in when the server stops.
        load = start_caller(tmp_path / "during", server.sip, host="127.0.0.2",
                            port=free_port(host="127.0.0.2"), service="0442930600", rate=5,
                            calls=25, talk_ms=500, timeout_s=40)
        time.sleep(2.5)
        assert server.stop(signal.SIGTERM) == 0
        assert "leaked semaphore" not in server.log() and "Traceback" not in server.log()
        load.wait(60)
        server = start_server(config, sip_port=sip_port, http_port=http_port)
        # Nothing lost...
        assert bindings(server, "1001") == before
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT path FROM voicemail WHERE extension = '1002'")\
                .fetchall() == voicemails
        assert (tmp_path / "var" / "voicemail" / "1002" / voicemails[0][0]).stat().st_size > 0
        api = Api(server)
        api.login(password)
        user = api.call("GET", "/api/users/1001")
        assert user["settings"]["ring_timeout"] == 17 and "ring_timeout" in user["stored"]  # type: ignore[index,operator]
        # ...and calls after the restart succeed, to the device registered before it.
        after = start_caller(tmp_path / "after", server.sip, host="127.0.0.2",
                             port=free_port(host="127.0.0.2"), service="0442930600", rate=5,
                             calls=10, talk_ms=500, timeout_s=40)
        result = CallerResult.of(after, after.wait(60))
        assert (result.successful, result.failed) == (10, 0), after.errors()
    finally:
        if phone is not None:
            phone.proc.kill()
        server.stop()
