"""Transfer with real phones over loopback.

baresip: a caller (1003) calls 1001, whose softphone answers and presses Transfer (`/transfer`,
a REFER) to 1002; 1002's softphone answers. After the transfer the caller and 1002 hear each
other through our relay (the tone each sends is the tone the other receives), 1001's call is
gone, and the call record tells the transfer. A trunk caller transferred to an external number
reaches the carrier. SIPp sends the bad REFERs.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from b2bua.testing.audio import dominant_frequency, make_tone
from b2bua.testing.baresip import Baresip, start_baresip
from b2bua.testing.net import free_port
from b2bua.testing.server import RunningServer, start_server
from tests.integration.conftest import SCENARIOS, make_config
from tests.integration.flows import call, call_records, carrier

UAC_CALL = (SCENARIOS / "uac_call.xml").read_text()

THIRD = """
[[users]]
extension = "1003"
name = "Chloé Caller"
secret = "secret1003"

  [[users.devices]]
  type = "softphone"
  label = "Portable"
"""


def registered(server: RunningServer, *extensions: str, timeout: float = 10) -> None:
    """Wait until every extension has a registered device."""
    import subprocess
    import sys

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(
            [sys.executable, "-m", "b2bua", "devices", "--config", str(server.config), "--json"],
            capture_output=True, text=True,
        ).stdout
        if all(f'"{ext}"' in out and "baresip" in out for ext in extensions) and \
                out.count("baresip") >= len(extensions):
            return
        time.sleep(0.3)
    pytest.fail(f"not registered: {extensions}")


def active_calls(server: RunningServer) -> int:
    import json
    import urllib.request

    with urllib.request.urlopen(server.http_base + "/health", timeout=5) as answer:
        return int(json.loads(answer.read())["active_calls"])


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def recording(phone: Baresip, kind: str) -> Path:
    """What a baresip dumped: `dec` (what it heard) or `enc` (what it sent)."""
    found = [p for p in phone.recordings() if p.name.endswith(f"-{kind}.wav")]
    assert found, f"no {kind} recording in {phone.directory}: {list(phone.directory.iterdir())}"
    return max(found, key=lambda p: p.stat().st_size)


def test_blind_transfer_from_a_softphone_bridges_the_caller_to_the_target(
    tmp_path: Path, sipp_required: None
) -> None:
    server = start_server(make_config(tmp_path, extra=THIRD))
    phones: list[Baresip] = []
    try:
        tones = {}
        for ext, hz in (("1001", 600), ("1002", 880), ("1003", 440)):
            tones[ext] = tmp_path / f"tone{hz}.wav"
            make_tone(tones[ext], 30, hz)
        transferor = start_baresip(tmp_path / "t1001", "1001", "secret1001", server.sip,
                                   domain="pbx.test", seconds=40, audio=tones["1001"],
                                   control=True, rtp_ports=(30100, 30199))
        target = start_baresip(tmp_path / "t1002", "1002", "secret1002", server.sip,
                               domain="pbx.test", seconds=40, audio=tones["1002"],
                               rtp_ports=(30200, 30299))
        phones += [transferor, target]
        registered(server, "1001", "1002")
        caller = start_baresip(tmp_path / "c1003", "1003", "secret1003", server.sip,
                               domain="pbx.test", seconds=18, audio=tones["1003"], answer=False,
                               dial=f"sip:1001@127.0.0.1:{server.sip_port}",
                               rtp_ports=(30300, 30399))
        phones.append(caller)
        wait_for(lambda: active_calls(server) == 1, 10, "the caller's call to 1001")
        time.sleep(2)  # the caller and 1001 talk
        reply = transferor.command("transfer", "sip:1002@pbx.test")
        assert reply.get("ok") is not False, reply
        out = caller.wait(40)  # the caller talks to 1002 until its -t runs out
        seconds, hz = dominant_frequency(recording(caller, "dec"), last=4)
        assert seconds > 2 and abs(hz - 880) < 20, (seconds, hz, out[-2000:])
        seconds, hz = dominant_frequency(recording(target, "dec"), last=4)
        assert seconds > 2 and abs(hz - 440) < 20, (seconds, hz)
        time.sleep(1)
        record = next(r for r in call_records(server, 5) if r["callee"] == "1001")
        assert any("transferred by 1001 to 1002" in line for line in record["trace"]), record
        assert any("transfer answered by" in line for line in record["trace"]), record
        assert record["outcome"] == "answered"
    finally:
        for phone in phones:
            phone.stop()
        server.stop()


def test_a_trunk_caller_is_transferred_to_an_external_number(
    tmp_path: Path, sipp_required: None
) -> None:
    trunk_port = free_port(host="127.0.0.2")
    server = start_server(make_config(tmp_path, trunk_port=trunk_port))
    transferor: Baresip | None = None
    try:
        tone = tmp_path / "tone.wav"
        make_tone(tone, 30, 600)
        transferor = start_baresip(tmp_path / "t1001", "1001", "secret1001", server.sip,
                                   domain="pbx.test", seconds=30, audio=tone, control=True)
        registered(server, "1001")
        # The carrier's side of the external number answers and stays 3 s.
        far = carrier(tmp_path / "carrier", trunk_port,
                      check_regexp=r"INVITE sip:\+33612345678@127\.0\.0\.2")
        result_holder: dict[str, object] = {}

        import threading

        def place_call() -> None:
            result_holder["result"] = call(server, UAC_CALL, tmp_path / "caller",
                                           service="0442930600", pause_ms=9000)

        thread = threading.Thread(target=place_call)
        thread.start()
        time.sleep(3)
        transferor.command("transfer", "sip:0612345678@pbx.test")
        thread.join(40)
        r = far.result()
        assert r.ok, r.describe()
        record = next(r for r in call_records(server, 5) if r["callee"] == "1001")
        assert any("transferred by 1001 to 0612345678" in line for line in record["trace"])
    finally:
        if transferor is not None:
            transferor.stop()
        server.stop()


def test_bad_refers_over_the_wire_get_clear_answers_and_the_call_stays(
    tmp_path: Path, sipp_required: None
) -> None:
    from tests.integration.flows import device

    server = start_server(make_config(tmp_path))
    try:
        callee = device(server, "uas_answer", "1001", "secret1001", tmp_path / "callee")
        result = call(server, (SCENARIOS / "uac_refer_errors.xml").read_text(),
                      tmp_path / "caller", service="0442930600")
        assert result.ok, result.describe()
        r = callee.result()
        assert r.ok, r.describe()  # the callee's call ended with the caller's BYE
    finally:
        server.stop()


@pytest.mark.parametrize("scenario", ["blind", "attended"])
def test_pjsua2_transfers_bridge_the_caller_to_the_target(
    tmp_path: Path, scenario: str
) -> None:
    """pjsua2 phones: `xfer` (blind) and `xferReplaces` (attended, after a consultation call
    with the caller on hold). The caller (440 Hz) and the target (880 Hz) hear each other."""
    import json
    import subprocess
    import sys

    pytest.importorskip("pjsua2")
    server = start_server(make_config(tmp_path, extra=THIRD))
    try:
        work = tmp_path / "pjsua"
        work.mkdir()
        for ext, hz in (("1001", 600), ("1002", 880), ("1003", 440)):
            make_tone(work / f"tone-{ext}.wav", 30, hz)
        done = subprocess.run(
            [sys.executable, "-m", "b2bua.testing.pjsua", scenario, str(server.sip_port),
             str(work)], capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["registered"], result

        def made(path: Path) -> int:  # heard-EXT-CALL-N.wav: N counts the recorders made
            return int(path.stem.rsplit("-", 1)[1])

        heard_by_caller = sorted(work.glob("heard-1003-*.wav"), key=made)
        heard_by_target = sorted(work.glob("heard-1002-*.wav"), key=made)
        assert heard_by_caller and heard_by_target, result
        seconds, hz = dominant_frequency(heard_by_caller[-1], last=3)
        assert seconds > 1.5 and abs(hz - 880) < 20, (seconds, hz, result)
        seconds, hz = dominant_frequency(heard_by_target[-1], last=3)
        assert seconds > 1.5 and abs(hz - 440) < 20, (seconds, hz, result)
        time.sleep(1)
        records = call_records(server, 5)
        first = next(r for r in records if r["callee"] == "1001" and r["caller"] == "1003")
        assert any("transfer" in line for line in first["trace"]), first
        assert all(s == "DISCONNECTED" for s in result["states"]["1001"]), result
    finally:
        server.stop()
