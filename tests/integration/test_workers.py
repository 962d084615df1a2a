"""Two worker processes (`--workers 2`) over real sockets: calls spread over both, whichever
worker reads a device's datagrams; registrations, settings and restarts seen by all."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from b2bua.settings import add_voicemail, voicemail_dir
from b2bua.testing.baresip import start_baresip
from b2bua.testing.net import free_port
from b2bua.testing.server import RunningServer, start_server
from b2bua.testing.sipp import finish, start_sipp
from b2bua.workers import call_id_owner
from tests.api.helpers import Api, signed_in
from tests.integration.conftest import make_config
from tests.integration.flows import (
    TRUNK_IP,
    call,
    call_records,
    device,
    uac_cancel,
    uac_expect,
)

# The same call scenarios as with one process, here with two workers (this module's `srv`).
from tests.integration.test_calls import (  # noqa: F401
    test_a_real_softphone_answers_one_branch,
    test_every_call_writes_a_record,
    test_reinvite_is_relayed,
    test_two_answers_in_the_same_millisecond_the_loser_gets_ack_then_bye,
)
from tests.integration.test_registrar import (  # noqa: F401
    Setup,
    test_reregistration_from_a_new_port_with_the_same_instance_keeps_one_binding,
    test_wrong_password_is_refused_then_the_source_locked_out,
)

SCENARIOS = Path(__file__).parent / "scenarios"
UAC_CALL = (SCENARIOS / "uac_call.xml").read_text()
UAC_BYE_IN = (SCENARIOS / "uac_call_then_bye_in.xml").read_text()
CALLS = 12  # calls spread by Call-ID: both workers own some, with near certainty


@pytest.fixture
def srv(tmp_path: Path, sipp_required: None) -> Iterator[RunningServer]:
    server = start_server(make_config(tmp_path), extra_args=("--workers", "2"))
    yield server
    server.stop()


class TwoWorkers(Setup):
    def start(self) -> RunningServer:
        self.server = start_server(self.config, sip_port=self.sip_port, http_port=self.http_port,
                                   transports=("udp",), extra_args=("--workers", "2"))
        return self.server


@pytest.fixture
def setup(tmp_path: Path, sipp_required: None) -> Iterator[Setup]:
    """The registrar scenarios' server, with two workers: their REGISTERs (one Call-ID each)
    spread over both."""
    s = TwoWorkers(tmp_path)
    s.start()
    yield s
    s.stop()


def worker_stats(server: RunningServer) -> dict[int, tuple[int, int, int, int]]:
    """Per worker, from the stop log: (calls, datagrams handed over, frames taken from the
    others (datagrams and change notices), frames not delivered)."""
    found = re.findall(r"worker (\d): (\d+) calls; (\d+) datagrams handed to other workers, "
                       r"(\d+) taken from them, (\d+) not delivered", server.log())
    return {int(i): (int(c), int(f), int(r), int(d)) for i, c, f, r, d in found}


def worker_pids(server: RunningServer) -> dict[int, int]:
    """Each worker's latest PID, from the first worker's log (waiting for worker 1's)."""
    deadline = time.monotonic() + 10
    while True:
        found = re.findall(r"worker (\d) started \(pid (\d+)\)", server.log())
        if found or time.monotonic() > deadline:
            return {int(i): int(p) for i, p in found}
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_calls_spread_over_both_workers_and_every_device_rings(srv, tmp_path):
    winner = device(srv, "uas_answer", "1001", "secret1001", tmp_path / "d0", pause_ms=300,
                    calls=CALLS)
    losers = [device(srv, "uas_cancel_elsewhere", "1001", "secret1001", tmp_path / f"d{i}",
                     calls=CALLS) for i in (1, 2)]
    result = call(srv, UAC_CALL, tmp_path / "caller", calls=CALLS)
    assert result.ok, result.describe()
    for dev in [winner, *losers]:
        r = dev.result()
        assert r.ok, r.describe()
    # /metrics adds up both workers' counters (the other's come once a second)
    metrics = ""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and f'kind="calls"}} {CALLS}' not in metrics:
        time.sleep(0.2)
        metrics = Api(srv.http_base).get("/metrics").body.decode()
    assert f'b2bua_calls_total{{kind="calls"}} {CALLS}' in metrics, metrics
    assert f'b2bua_calls_total{{kind="answered"}} {CALLS}' in metrics, metrics
    pids = worker_pids(srv)
    assert srv.stop() == 0
    assert not alive(pids[1])
    stats = worker_stats(srv)
    assert set(stats) == {0, 1}, srv.log()[-3000:]
    assert stats[0][0] > 0 and stats[1][0] > 0  # both workers owned calls
    assert stats[0][0] + stats[1][0] == CALLS
    assert stats[0][1] + stats[1][1] > 0  # and datagrams crossed between them
    # every datagram handed over was taken (and the registrations' notices besides)
    assert stats[0][2] + stats[1][2] >= stats[0][1] + stats[1][1]
    assert stats[0][3] == stats[1][3] == 0


def test_caller_cancels_and_callee_hangs_up_across_workers(srv, tmp_path):
    devs = [device(srv, "uas_cancel_missed", "1001", "secret1001", tmp_path / f"d{i}",
                   calls=CALLS) for i in range(3)]
    result = call(srv, uac_cancel(), tmp_path / "caller", calls=CALLS)
    assert result.ok, result.describe()
    for dev in devs:
        r = dev.result()
        assert r.ok, r.describe()
    dev = device(srv, "uas_answer_then_bye", "1001", "secret1001", tmp_path / "bye",
                 pause_ms=300, calls=CALLS)
    result = call(srv, (SCENARIOS / "uac_call_then_bye_in.xml").read_text(),
                  tmp_path / "caller-bye", calls=CALLS)
    assert result.ok, result.describe()
    r = dev.result()
    assert r.ok, r.describe()


def test_a_settings_change_applies_in_every_worker(srv, tmp_path):
    api = signed_in(srv, "1001")
    change = {"forward": {"kind": "busy"}}
    assert api.patch("/api/users/1001", change).status == 200
    time.sleep(0.5)  # the other worker compiles the same rules
    result = call(srv, uac_expect(486), tmp_path / "caller", calls=CALLS)
    assert result.ok, result.describe()
    srv.stop()
    stats = worker_stats(srv)
    assert stats[0][0] > 0 and stats[1][0] > 0


def test_a_worker_that_dies_is_started_again(srv, tmp_path):
    first = worker_pids(srv)[1]
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(re.findall("worker 1 started", srv.log())) < 2:
        time.sleep(0.1)
    assert f"worker 1 (pid {first}) exited" in srv.log()
    second = worker_pids(srv)[1]
    assert second != first and alive(second)
    time.sleep(1.0)  # it loads the bindings and joins
    devs = [device(srv, "uas_busy", "1001", "secret1001", tmp_path / f"d{i}", calls=CALLS)
            for i in range(2)]
    result = call(srv, uac_expect(486), tmp_path / "caller", calls=CALLS)
    assert result.ok, result.describe()
    for dev in devs:
        r = dev.result()
        assert r.ok, r.describe()
    srv.stop()
    assert not alive(second)


def test_the_other_workers_stop_when_the_first_is_killed(srv):
    pid = worker_pids(srv)[1]
    srv.stop(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.1)
    assert not alive(pid)


def owned_by(index: int, prefix: str, count: int = 2) -> str:
    """A Call-ID that worker `index` owns (b2bua.workers.call_id_owner)."""
    n = 0
    while call_id_owner(f"{prefix}-{n}", count) != index:
        n += 1
    return f"{prefix}-{n}"


def journal_rows(server: RunningServer, kind: str) -> list[tuple[int, str]]:
    with sqlite3.connect(server.config.parent / "var" / "b2bua.sqlite") as db:
        try:
            return db.execute("SELECT worker, key FROM worker_journal WHERE kind = ?",
                              (kind,)).fetchall()
        except sqlite3.OperationalError:
            return []


def registered(server: RunningServer, ext: str) -> bool:
    """A binding of `ext` over TCP is stored."""
    with sqlite3.connect(server.config.parent / "var" / "b2bua.sqlite") as db:
        try:
            return bool(db.execute("SELECT 1 FROM registrar_bindings WHERE aor = ? AND transport = 'tcp'",
                                   (ext,)).fetchall())
        except sqlite3.OperationalError:
            return False


def wait_for(what: Callable[[], object], timeout: float = 10.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_a_restarted_worker_ends_its_calls_and_takes_its_subscriptions_back(srv, tmp_path):
    """Worker 1 holds an answered call and an MWI subscription; it is killed. Started again,
    it sends a BYE to both parties of the call (both SIPp scenarios wait for it), writes the
    call's record, and takes the subscription back: a NOTIFY with the message left meanwhile,
    and the phone's SUBSCRIBE in the same dialog answered 200 (not 481)."""
    worker_pids(srv)
    time.sleep(1.0)  # worker 1 is up and serving
    subscriber = start_sipp((SCENARIOS / "mwi_worker_restart.xml").read_text(),
                            tmp_path / "mwi", srv.sip, name="mwi", local_port=free_port(),
                            service="1002", timeout_s=60,
                            extra=("-au", "1002", "-ap", "secret1002",
                                   "-cid_str", owned_by(1, "mwi")))
    dev = device(srv, "uas_answer", "1001", "secret1001", tmp_path / "dev")
    call_id = owned_by(1, "call")
    caller = start_sipp(UAC_BYE_IN, tmp_path / "caller", srv.sip, name="caller",
                        local_port=free_port(host=TRUNK_IP), local_ip=TRUNK_IP,
                        service="0442930600", timeout_s=60, extra=("-cid_str", call_id))
    assert wait_for(lambda: journal_rows(srv, "mwi")), srv.log()[-3000:]
    assert wait_for(lambda: journal_rows(srv, "call")), srv.log()[-3000:]
    assert [w for w, _ in journal_rows(srv, "call")] == [1]
    # A message is left while worker 1 is down (indexed as voicemail recording does).
    folder = voicemail_dir(srv.config.parent / "var", "1002")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "left.wav").write_bytes(b"RIFF")
    first = worker_pids(srv)[1]
    os.kill(first, signal.SIGKILL)
    with sqlite3.connect(srv.config.parent / "var" / "b2bua.sqlite") as db:
        add_voicemail(db, "1002", "0611223344", time.time(), 1.0, "left.wav")
    assert wait_for(lambda: "worker 1: 1 calls of its previous life ended, 1 MWI "
                    "subscriptions taken back" in srv.log(), 15), srv.log()[-4000:]
    for name, proc in (("caller", caller), ("mwi", subscriber)):
        result = finish(proc, tmp_path / name, timeout=30)
        assert result.ok, (name, result.describe())
    r = dev.result()
    assert r.ok, r.describe()
    assert journal_rows(srv, "call") == []
    records = [r for r in call_records(srv) if r["call_id"] == call_id]
    assert len(records) == 1, call_records(srv)
    assert records[0]["outcome"] == "answered"
    assert any("worker restart" in line for line in records[0]["trace"]), records[0]


def test_a_binding_over_tcp_is_gone_in_every_worker_when_its_connection_closes(
        tmp_path, sipp_required):
    """A phone registered over TCP (baresip; the first worker holds the connection) dies.
    No worker keeps its binding pointing at the dead connection: a call that either worker
    owns finds no reachable device at once (and is answered by the no-device message), not
    after ringing into nothing."""
    server = start_server(make_config(tmp_path, ring_timeout=60), extra_args=("--workers", "2"))
    try:
        worker_pids(server)
        time.sleep(1.0)  # worker 1 is up and serving
        phone = start_baresip(tmp_path / "phone", "1001", "secret1001", server.sip,
                              domain="pbx.test", seconds=60, answer=False, transport="tcp")
        assert wait_for(lambda: registered(server, "1001"), 15), server.log()[-3000:]
        phone.proc.kill()
        phone.wait(5)
        assert wait_for(lambda: not registered(server, "1001"), 10), server.log()[-3000:]
        for index in (0, 1):
            result = call(server, UAC_CALL, tmp_path / f"caller{index}",
                          extra=("-cid_str", owned_by(index, "after-close")))
            assert result.ok, (index, result.describe())
            assert re.search(rf"engine\[{index}\]: call \S+: no reachable device for 1001",
                             server.log()), (index, server.log()[-3000:])
    finally:
        server.stop()
    assert "Traceback" not in server.log()


def test_a_connection_that_cannot_be_opened_fails_at_once_in_every_worker(
        tmp_path, sipp_required):
    """A device reached over TCP where nothing listens, rung by a call that worker 1 owns.
    Only the first worker opens connections: when the connect is refused it tells every
    worker, and worker 1's INVITE fails at once (the caller gets 480 within seconds), not at
    Timer B (32 s)."""
    closed = free_port()  # nothing listens there
    extra = (f'\n  [[users.devices]]\n  type = "other"\n  label = "Desk TCP"\n'
             f'  contact = "sip:1002@127.0.0.1:{closed};transport=tcp"\n')
    server = start_server(make_config(tmp_path, ring_timeout=60, extra=extra),
                          extra_args=("--workers", "2"))
    try:
        worker_pids(server)
        time.sleep(1.0)  # worker 1 is up and serving
        for index in (1, 0):
            started = time.monotonic()
            result = call(server, uac_expect(480), tmp_path / f"caller{index}",
                          service="0442930699", extra=("-cid_str", owned_by(index, "refused")))
            took = time.monotonic() - started
            assert result.ok, (index, result.describe())
            assert took < 15, (index, took, server.log()[-3000:])
            assert re.search(rf"engine\[{index}\]: call \S+: branch Desk TCP \(other\) "
                             "transport failed", server.log()), server.log()[-3000:]
    finally:
        server.stop()
    assert "Traceback" not in server.log()


def test_after_a_crash_of_every_worker_the_next_start_ends_their_calls(tmp_path, sipp_required):
    """`b2bua run --workers 2` is killed (SIGKILL: the other worker stops by itself) while the
    first worker holds an answered call. Started again on the same data, it ends the call of
    its previous life: a BYE to both parties, and a call record. (Worker 1's calls: the test
    above.)"""
    config = make_config(tmp_path)
    server = start_server(config, extra_args=("--workers", "2"))
    worker_pids(server)
    time.sleep(1.0)  # worker 1 is up and serving
    dev = device(server, "uas_answer", "1001", "secret1001", tmp_path / "dev")
    call_id = owned_by(0, "crash")
    caller = start_sipp(UAC_BYE_IN, tmp_path / "caller", server.sip, name="caller",
                        local_port=free_port(host=TRUNK_IP), local_ip=TRUNK_IP,
                        service="0442930600", timeout_s=60, extra=("-cid_str", call_id))
    assert wait_for(lambda: journal_rows(server, "call")), server.log()[-3000:]
    assert [w for w, _ in journal_rows(server, "call")] == [0]
    pid = worker_pids(server)[1]
    server.stop(signal.SIGKILL)
    assert wait_for(lambda: not alive(pid), 10)
    again = start_server(config, sip_port=server.sip_port, http_port=server.http_port,
                         extra_args=("--workers", "2"))
    try:
        result = finish(caller, tmp_path / "caller", timeout=30)
        assert result.ok, result.describe()
        r = dev.result()
        assert r.ok, r.describe()
        records = [r for r in call_records(again) if r["call_id"] == call_id]
        assert len(records) == 1, call_records(again)
        assert any("worker restart" in line for line in records[0]["trace"]), records[0]
        assert journal_rows(again, "call") == []
    finally:
        again.stop()
    assert "Traceback" not in again.log()


def test_a_softphone_keeps_its_mwi_subscription_across_a_crash_of_every_worker(
        tmp_path, sipp_required):
    """pjsua2 (1002) subscribes to its voicebox; whichever worker its Call-ID names holds the
    subscription. `b2bua run --workers 2` is killed with SIGKILL, a message is left, and the
    server started again on the same data: the worker that held the subscription takes it
    back and tells the phone at once ("yes 1/0"), without the phone subscribing again."""
    config = make_config(tmp_path)
    server = start_server(config, extra_args=("--workers", "2"))
    again: RunningServer | None = None
    log = tmp_path / "phone" / "mwi.log"
    log.parent.mkdir()
    phone = subprocess.Popen(
        [sys.executable, "-m", "b2bua.testing.pjsua_mwi", "1002", "secret1002",
         str(server.sip_port), str(log.parent), "40"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        worker_pids(server)
        assert wait_for(lambda: journal_rows(server, "mwi"), 20), server.log()[-3000:]
        assert wait_for(lambda: log.exists() and "no 0/0" in log.read_text(), 10)
        [(held_by, dialog)] = journal_rows(server, "mwi")
        pid = worker_pids(server)[1]
        server.stop(signal.SIGKILL)
        assert wait_for(lambda: not alive(pid), 10)
        folder = voicemail_dir(tmp_path / "var", "1002")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "left.wav").write_bytes(b"RIFF")
        with sqlite3.connect(tmp_path / "var" / "b2bua.sqlite") as db:
            add_voicemail(db, "1002", "0611223344", time.time(), 1.0, "left.wav")
        again = start_server(config, sip_port=server.sip_port, http_port=server.http_port,
                             extra_args=("--workers", "2"))
        assert wait_for(lambda: "yes 1/0" in log.read_text(), 15), (
            held_by, log.read_text(), again.log()[-3000:])
        assert f"worker {held_by}: 0 calls of its previous life ended, 1 MWI subscriptions " \
               "taken back" in again.log()
        # Taken back, not subscribed anew (the same dialog), and journaled again for the next
        # restart.
        assert wait_for(lambda: journal_rows(again, "mwi") == [(held_by, dialog)], 5), \
            journal_rows(again, "mwi")
    finally:
        phone.kill()
        phone.wait(10)
        if again is not None:
            again.stop()
    assert "Traceback" not in again.log()
