"""Two `b2bua run` nodes over one real PostgreSQL (no edge here: see test_edge.py): a binding
registered on one node rings on a call that arrives on the other; a setting saved through one
node's API decides the other's next call; a session opened on one node works on the other."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from b2bua.testing.net import free_port
from b2bua.testing.server import RunningServer, start_server, write_config
from tests.api.helpers import Api
from tests.integration.flows import SCENARIOS, call, device, register, uac_expect

ADMIN = "admin-secret"
CONFIG = """
[server]
domain = "pbx.test"
listen = ["udp:127.0.0.1:5060"]
data_dir = "shared"
timezone = "Europe/Paris"
auth_algorithms = ["MD5"]

[registrar]
keepalive_interval = 0
lockout_failures = 3

[store]
url = "{url}"

[[trunks]]
name = "carrier"
address = "127.0.0.2:5080"
inbound_from = ["127.0.0.2/32"]
did = {{ "0442930600" = "1001" }}

[[users]]
extension = "1001"
name = "Alice Martin"
secret = "secret1001"
ring_timeout = 20

  [[users.devices]]
  type = "sip"
  label = "Bureau"
"""
UAC_CALL = (SCENARIOS / "uac_call.xml").read_text()


@pytest.fixture
def nodes(pg_url: str, tmp_path: Path) -> Iterator[list[RunningServer]]:
    config = write_config(tmp_path, CONFIG.format(url=pg_url))
    started: list[RunningServer] = []
    try:
        for _ in range(2):
            started.append(start_server(config, transports=("udp",),
                                        env={"B2BUA_ADMIN_PASSWORD": ADMIN}))
        yield started
    finally:
        for node in started:
            node.stop()


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> float:
    """Seconds it took `check` to hold (fails the test after `timeout`)."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            pytest.fail("condition not met in time")
        time.sleep(0.02)
    return time.monotonic() - start


def test_registered_on_one_node_called_through_the_other(nodes: list[RunningServer],
                                                         tmp_path: Path) -> None:
    a, b = nodes
    phone = device(a, "uas_answer", "1001", "secret1001", tmp_path / "phone", pause_ms=500)
    time.sleep(0.5)  # the notice and read-back take milliseconds; be generous
    result = call(b, UAC_CALL, tmp_path / "carrier")
    assert result.ok, result.describe() + "\n--- node b ---\n" + b.log()[-4000:]
    assert phone.result().ok


def test_a_setting_saved_on_a_decides_the_next_call_on_b(nodes: list[RunningServer],
                                                          tmp_path: Path) -> None:
    a, b = nodes
    api = Api(a.http_base)
    assert api.login("admin", ADMIN).status == 200
    # No device registered: voicemail answers (the default no-answer destination).
    before = call(b, UAC_CALL, tmp_path / "before")
    assert before.ok, before.describe()
    saved = time.monotonic()
    r = api.patch("/api/users/1001", {"forward": {"kind": "busy"}})
    assert r.status == 200, r
    # B applies it within a second: its next call is refused busy.
    took = wait_until(lambda: "settings of revision" in b.log(), timeout=1.0)
    print(f"\nsetting saved through node A's API, applied on node B {took * 1000:.0f} ms after "
          f"A's answer")
    after = call(b, uac_expect(486), tmp_path / "after")
    assert after.ok, after.describe() + "\n--- node b ---\n" + b.log()[-3000:]
    assert took < 1.0 and time.monotonic() - saved < 10


def test_a_source_locked_out_on_one_node_is_locked_out_on_the_other(
        nodes: list[RunningServer], tmp_path: Path) -> None:
    a, b = nodes
    before = (metric(a, "b2bua_sip_stateless_replies_total"),
              metric(b, "b2bua_sip_stateless_replies_total"))
    for i in range(3):  # lockout_failures = 3, all on A
        assert not register(a, "1001", "wrong", free_port(), tmp_path / f"bad{i}").ok
    time.sleep(0.3)
    locked = register(b, "1001", "secret1001", free_port(), tmp_path / "good")
    assert not locked.ok and "403 Forbidden" in locked.messages(), locked.describe()
    # Each node's challenges, and B's 403 to a source locked out already, counted nothing:
    # they keep no transaction (RFC 3261 §8.2.7). A still holds its three counted failures
    # (32 s, so that a retransmission is not counted again); B holds nothing.
    assert metric(a, "b2bua_sip_transactions") == 3
    assert metric(b, "b2bua_sip_transactions") == 0
    assert metric(a, "b2bua_sip_stateless_replies_total") >= before[0] + 3
    assert metric(b, "b2bua_sip_stateless_replies_total") >= before[1] + 1


def metric(node: RunningServer, name: str) -> float:
    with urllib.request.urlopen(node.http_base + "/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def b2bua(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "b2bua", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_the_command_line_reads_the_shared_store(nodes: list[RunningServer],
                                                 tmp_path: Path) -> None:
    a, b = nodes
    config = str(a.config)
    phone = device(a, "uas_answer", "1001", "secret1001", tmp_path / "phone", pause_ms=300)
    assert call(b, UAC_CALL, tmp_path / "carrier").ok
    assert phone.result().ok
    api = Api(b.http_base)
    assert api.login("admin", ADMIN).status == 200
    assert api.patch("/api/users/1001", {"forward": {"kind": "busy"}}).status == 200
    devices = json.loads(b2bua("devices", "--config", config, "--json").stdout)
    (alice,) = [d for d in devices if d["extension"] == "1001"]
    assert [d["state"] for d in alice["devices"]] == ["registered"]
    def answered() -> list[str]:
        records = b2bua("calls", "--config", config, "--last", "5", "--json", "--lang", "en")
        assert records.returncode == 0, records.stderr
        return [r["answered_by"] for r in json.loads(records.stdout)]

    wait_until(lambda: answered() == ["Bureau (sip)"], timeout=3.0)  # written behind
    trace = b2bua("trace", "--config", config, "--to", "1001", "--from", "0611223344", "--json")
    assert json.loads(trace.stdout)["rule"] == "forward", trace.stdout + trace.stderr


def test_a_dashboard_session_opened_on_one_node_works_on_the_other(
        nodes: list[RunningServer]) -> None:
    a, b = nodes
    api = Api(a.http_base)
    assert api.login("admin", ADMIN).status == 200
    other = Api(b.http_base, cookies=dict(api.cookies), csrf=api.csrf)
    wait_until(lambda: other.get("/api/session").status == 200, timeout=2.0)
    assert other.get("/api/users/1001").status == 200


def test_a_node_runs_one_worker(pg_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, CONFIG.format(url=pg_url).replace(
        'auth_algorithms = ["MD5"]', 'auth_algorithms = ["MD5"]\nworkers = 2'))
    run = subprocess.run(
        [sys.executable, "-m", "b2bua", "run", "--config", str(config), "--listen",
         f"udp:127.0.0.1:{free_port()}", "--http", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 1
    assert "each node runs one worker" in run.stderr
