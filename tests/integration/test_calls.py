"""Simultaneous ring over real sockets: SIPp devices register, a SIPp trunk calls 1001."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from b2bua.testing.net import free_port
from b2bua.testing.server import start_server
from tests.integration.conftest import make_config
from tests.integration.flows import (
    call,
    call_records,
    device,
    register,
    uac_cancel,
    uac_expect,
    uac_reinvite,
)

SCENARIOS = Path(__file__).parent / "scenarios"
UAC_CALL = (SCENARIOS / "uac_call.xml").read_text()


@pytest.fixture
def srv(tmp_path: Path, sipp_required: None, request: pytest.FixtureRequest):
    opts = getattr(request, "param", {})
    server = start_server(make_config(tmp_path, **opts))
    yield server
    server.stop()


def test_first_answer_wins_and_the_others_are_cancelled_as_completed_elsewhere(srv, tmp_path):
    winner = device(srv, "uas_answer", "1001", "secret1001", tmp_path / "d0", pause_ms=500)
    losers = [device(srv, "uas_cancel_elsewhere", "1001", "secret1001", tmp_path / f"d{i}") for i in (1, 2)]
    result = call(srv, UAC_CALL, tmp_path / "caller")
    assert result.ok, result.describe()
    for dev in [winner, *losers]:
        r = dev.result()
        assert r.ok, r.describe()


def test_caller_hangs_up_while_ringing_every_branch_cancelled_without_completed_elsewhere(srv, tmp_path):
    devs = [device(srv, "uas_cancel_missed", "1001", "secret1001", tmp_path / f"d{i}") for i in range(3)]
    result = call(srv, uac_cancel(), tmp_path / "caller")
    assert result.ok, result.describe()
    for dev in devs:
        r = dev.result()
        assert r.ok, r.describe()


def test_all_devices_busy_gives_486(srv, tmp_path):
    devs = [device(srv, "uas_busy", "1001", "secret1001", tmp_path / f"d{i}") for i in range(2)]
    result = call(srv, uac_expect(486), tmp_path / "caller")
    assert result.ok, result.describe()
    for dev in devs:
        assert dev.result().ok


def test_decline_on_one_device_stops_all_by_default(srv, tmp_path):
    decliner = device(srv, "uas_decline", "1001", "secret1001", tmp_path / "d0", pause_ms=300)
    other = device(srv, "uas_cancel_busy_everywhere", "1001", "secret1001", tmp_path / "d1")
    # no_answer is voicemail: the B2BUA answers the caller itself.
    result = call(srv, UAC_CALL, tmp_path / "caller", pause_ms=1500)
    assert result.ok, result.describe()
    assert decliner.result().ok
    r = other.result()
    assert r.ok, r.describe()


@pytest.mark.parametrize("srv", [{"decline": "device"}], indirect=True)
def test_decline_device_policy_keeps_the_others_ringing(srv, tmp_path):
    decliner = device(srv, "uas_decline", "1001", "secret1001", tmp_path / "d0", pause_ms=200)
    answerer = device(srv, "uas_answer", "1001", "secret1001", tmp_path / "d1", pause_ms=1200)
    result = call(srv, UAC_CALL, tmp_path / "caller")
    assert result.ok, result.describe()
    assert decliner.result().ok
    r = answerer.result()
    assert r.ok, r.describe()


def test_two_answers_in_the_same_millisecond_the_loser_gets_ack_then_bye(srv, tmp_path):
    devs = [device(srv, "uas_answer_now", "1001", "secret1001", tmp_path / f"d{i}") for i in range(2)]
    result = call(srv, UAC_CALL, tmp_path / "caller")
    assert result.ok, result.describe()
    for dev in devs:
        r = dev.result()
        assert r.ok, r.describe()


def test_a_dead_device_does_not_delay_the_others(srv, tmp_path):
    dead_port = free_port()
    reg = register(srv, "1001", "secret1001", dead_port, tmp_path / "dead")
    assert reg.ok, reg.describe()
    answerer = device(srv, "uas_answer", "1001", "secret1001", tmp_path / "d1", pause_ms=200)
    t0 = time.monotonic()
    result = call(srv, UAC_CALL, tmp_path / "caller")
    assert result.ok, result.describe()
    assert time.monotonic() - t0 < 10
    assert answerer.result().ok


def test_static_contact_rings_with_registered_devices(tmp_path, sipp_required):
    teams_port = free_port()
    extra = f"""
[[users]]
extension = "1003"
name = "Chloé Durand"
secret = "secret1003"

  [[users.devices]]
  type = "sip"
  label = "Bureau"

  [[users.devices]]
  type = "teams"
  label = "Teams"
  contact = "sip:1003@127.0.0.1:{teams_port}"
"""
    server = start_server(make_config(tmp_path, extra=extra))
    try:
        desk = device(server, "uas_answer", "1003", "secret1003", tmp_path / "desk", pause_ms=500)
        teams = device(server, "uas_cancel_elsewhere", "1003", "secret1003", tmp_path / "teams",
                       register_first=False)
        teams.proc.kill()  # started on a random port: restart it on the configured one
        from b2bua.testing.sipp import start_sipp
        from tests.integration.flows import Device

        proc = start_sipp((SCENARIOS / "uas_cancel_elsewhere.xml").read_text(), tmp_path / "teams2",
                          None, name="teams", local_port=teams_port, calls=1, timeout_s=40)
        teams = Device(teams_port, proc, tmp_path / "teams2")
        result = call(server, UAC_CALL, tmp_path / "caller", service="1003")
        assert result.ok, result.describe()
        assert desk.result().ok
        r = teams.result()
        assert r.ok, r.describe()
    finally:
        server.stop()


@pytest.mark.parametrize("srv", [{"ring_timeout": 2}], indirect=True)
def test_ring_timeout_cancels_every_branch(srv, tmp_path):
    devs = [device(srv, "uas_cancel_any", "1001", "secret1001", tmp_path / f"d{i}") for i in range(2)]
    t0 = time.monotonic()
    # After 2 s of ringing the call goes to no_answer (voicemail), which answers it.
    result = call(srv, UAC_CALL, tmp_path / "caller", pause_ms=500)
    assert result.ok, result.describe()
    assert 2 < time.monotonic() - t0 < 10
    for dev in devs:
        assert dev.result().ok


def test_bye_from_the_callee_reaches_the_caller(srv, tmp_path):
    dev = device(srv, "uas_answer_then_bye", "1001", "secret1001", tmp_path / "d0", pause_ms=300)
    result = call(srv, (SCENARIOS / "uac_call_then_bye_in.xml").read_text(), tmp_path / "caller")
    assert result.ok, result.describe()
    r = dev.result()
    assert r.ok, r.describe()


def test_reinvite_is_relayed(srv, tmp_path):
    dev = device(srv, "uas_answer_reinvite", "1001", "secret1001", tmp_path / "d0")
    result = call(srv, uac_reinvite(), tmp_path / "caller")
    assert result.ok, result.describe()
    r = dev.result()
    assert r.ok, r.describe()


def test_ring_group_rings_every_member(srv, tmp_path):
    alice = device(srv, "uas_answer", "1001", "secret1001", tmp_path / "a", pause_ms=300)
    bruno = device(srv, "uas_cancel_elsewhere", "1002", "secret1002", tmp_path / "b")
    result = call(srv, UAC_CALL, tmp_path / "caller", service="0442930699")
    assert result.ok, result.describe()
    assert alice.result().ok
    assert bruno.result().ok


def test_every_call_writes_a_record(srv, tmp_path):
    dev = device(srv, "uas_busy", "1001", "secret1001", tmp_path / "d0")
    assert call(srv, uac_expect(486), tmp_path / "caller").ok
    assert dev.result().ok
    records = call_records(srv, 5)
    assert records[0]["callee"] == "1001"
    assert records[0]["outcome"] == "busy"
    assert records[0]["caller"] == "0611223344"
    assert records[0]["did"] == "0442930600"
    assert records[0]["rule"] is not None and records[0]["trace"]


def test_the_record_names_the_device_that_answered(srv, tmp_path):
    dev = device(srv, "uas_answer", "1001", "secret1001", tmp_path / "d0", pause_ms=100)
    assert call(srv, UAC_CALL, tmp_path / "caller").ok
    assert dev.result().ok
    (record,) = call_records(srv, 1)
    assert record["outcome"] == "answered"
    # The first configured device of 1001 is its desk phone "Bureau" (type sip).
    assert record["answered_by"] == "Bureau (sip)", record


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_a_real_softphone_answers_one_branch(srv, tmp_path, transport):
    """baresip (auto-answer, registered over UDP or over a TCP connection it keeps) and a SIPp
    desk phone ring together; baresip wins."""
    import json as _json

    from b2bua.testing.baresip import start_baresip

    phone = start_baresip(tmp_path / "baresip", "1001", "secret1001", srv.sip, domain="pbx.test",
                          seconds=15, transport=transport)
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            out = subprocess.run(
                [sys.executable, "-m", "b2bua", "devices", "--config", str(srv.config), "--json"],
                capture_output=True, text=True,
            ).stdout
            if "baresip" in out:
                break
            time.sleep(0.3)
        else:
            pytest.fail("baresip did not register:\n" + phone.stop())
        del _json
        desk = device(srv, "uas_cancel_elsewhere", "1001", "secret1001", tmp_path / "desk")
        result = call(srv, UAC_CALL, tmp_path / "caller", pause_ms=1000)
        assert result.ok, result.describe() + "\n--- baresip ---\n" + phone.stop()
        r = desk.result()
        assert r.ok, r.describe()
    finally:
        phone.stop()
