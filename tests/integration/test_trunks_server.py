"""The running server with two real carriers: Kamailio stand-ins that demand digest on REGISTER
and INVITE, with SIPp on their "public network" side.

- the server registers to both, refreshes its registrations, and unregisters when it stops;
- a device's outbound call leaves by carrier 1, whose 407 the server answers;
- carrier 1 answering 503, or down (its TCP connection refused), moves the call to carrier 2;
- a 2-line trunk: two calls in, the third is refused 486 through the carrier, a device dialling
  out gets 503, `b2bua trunks` shows the lines in use, and a line frees when a call ends;
- a call for a DID we do not have gets 404.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from b2bua.testing.kamailio import RunningKamailio, start_kamailio
from b2bua.testing.net import free_port
from b2bua.testing.server import RunningServer, start_server, write_config
from b2bua.testing.sipp import SippResult, finish, run_sipp, start_sipp
from tests.api.helpers import ADMIN_PASSWORD, signed_in
from tests.integration.flows import SCENARIOS, call_records, device, uac_auth_call, uac_expect

pytestmark = pytest.mark.integration

PUBLIC = "127.0.0.5"  # the public network: its callers and the numbers we call
USERNAME = "0442930600"
PASSWORD = "carrier-secret"


def uas() -> str:
    """A phone on the public network: it answers (copying the carrier's Record-Route, as a UAS
    must) and waits for the BYE."""
    xml = (SCENARIOS / "uas_answer.xml").read_text()
    return xml.replace("[last_CSeq:]\n      Contact:",
                       "[last_CSeq:]\n      [last_Record-Route:]\n      Contact:")


@dataclass
class Carrier:
    kamailio: RunningKamailio
    public_port: int  # where it relays our calls (a SIPp UAS when a test starts one)

    def registers(self) -> int:
        """REGISTERs it received from us."""
        return self.kamailio.log().count("in: REGISTER")

    def invites(self) -> int:
        return self.kamailio.log().count("in: INVITE")


def start_carrier(workdir: Path, host: str, refuse_calls: int | None = None) -> Carrier:
    public_port = free_port(host=PUBLIC)
    k = start_kamailio(workdir, public=(PUBLIC, public_port), host=host, username=USERNAME,
                       password=PASSWORD, realm="carrier.test", callers_from=PUBLIC,
                       refuse_calls=refuse_calls)
    return Carrier(k, public_port)


@pytest.fixture
def carriers(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Carrier, Carrier]]:
    """Two carriers; `@pytest.mark.parametrize("carriers", [503], indirect=True)` makes the
    first one refuse our calls with that status."""
    one = start_carrier(tmp_path / "carrier1", "127.0.0.2", getattr(request, "param", None))
    two: Carrier | None = None
    try:
        two = start_carrier(tmp_path / "carrier2", "127.0.0.3")
        yield one, two
    finally:
        one.kamailio.stop()
        if two is not None:
            two.kamailio.stop()


def config(tmp_path: Path, one: Carrier, two: Carrier, *, lines: int = 0,
           first_transport: str = "udp", expires: int = 600, ping: int = 0) -> Path:
    def trunk(name: str, carrier: Carrier, transport: str, extra: str = "") -> str:
        return f"""
[[trunks]]
name = "{name}"
address = "{carrier.kamailio.hostport}"
transport = "{transport}"
username = "{USERNAME}"
password = "{PASSWORD}"
register = true
register_expires = {expires}
did = {{ "0442930600" = "1001" }}
prefixes = ["0", "+"]
caller_id = "0442930600"
options_ping = {ping}
{extra}"""

    return write_config(tmp_path, f"""
[server]
domain = "pbx.test"
listen = ["udp:127.0.0.1:5060"]
data_dir = "var"
country_code = "33"
language = "en"
auth_algorithms = ["MD5"]

[registrar]
keepalive_interval = 0
{trunk("carrier1", one, first_transport, f"lines = {lines}")}
{trunk("carrier2", two, "udp")}

[[users]]
extension = "1001"
name = "Alice Martin"
secret = "secret1001"
no_answer = {{ kind = "busy" }}

  [[users.devices]]
  type = "sip"
  label = "Bureau"

[[users]]
extension = "1002"
name = "Bruno Petit"
secret = "secret1002"
""")


def trunk_rows(server: RunningServer) -> dict[str, dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "b2bua", "trunks", "--config", str(server.config), "--json"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout
    return {row["name"]: row for row in json.loads(out)}


def wait_for(predicate: Any, timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or predicate}")


def registered(server: RunningServer, *names: str) -> bool:
    rows = trunk_rows(server)
    return all(rows.get(n, {}).get("registered") for n in names)


def public_call(carrier: Carrier, xml: str, workdir: Path, calls: int = 1,
                hold_ms: int = 300, service: str = USERNAME) -> subprocess.Popen[str]:
    """A caller on the public network calling `service` at the carrier."""
    return start_sipp(xml, workdir, carrier.kamailio.address, name="public",
                      local_port=free_port(host=PUBLIC), local_ip=PUBLIC, service=service,
                      calls=calls, rate=10, extra=("-d", str(hold_ms)), timeout_s=40)


def public_uas(carrier: Carrier, workdir: Path) -> subprocess.Popen[str]:
    return start_sipp(uas(), workdir, None, name="uas", local_port=carrier.public_port,
                      local_ip=PUBLIC, calls=1, extra=("-d", "200"), timeout_s=40)


def dial_out(server: RunningServer, workdir: Path, number: str = "0612345678",
             final: int = 200, ext: str = "1002") -> SippResult:
    return run_sipp(uac_auth_call(ext, final), workdir, server.sip, name="device",
                    local_port=free_port(), local_ip="127.0.0.1", service=number,
                    extra=("-au", ext, "-ap", f"secret{ext}", "-d", "300"), wait=60)


def done(proc: subprocess.Popen[str], workdir: Path) -> SippResult:
    result = finish(proc, workdir, timeout=45)
    assert result.ok, result.describe()
    return result


# -- registration -------------------------------------------------------------------------------


def test_the_server_registers_refreshes_and_unregisters(
        tmp_path: Path, carriers: tuple[Carrier, Carrier], sipp_required: None) -> None:
    one, two = carriers
    server = start_server(config(tmp_path, one, two, expires=12, ping=2))
    try:
        wait_for(lambda: registered(server, "carrier1", "carrier2"), what="registrations")
        rows = trunk_rows(server)
        assert rows["carrier1"] == {"name": "carrier1", "registered": True, "up": True,
                                    "lines": 0, "lines_in_use": 0, "last_error": None}
        first = one.registers()
        assert first == 2, "one REGISTER, challenged, then one with credentials"
        # Refreshed half-way through the 12 s Kamailio granted (it keeps what we ask).
        wait_for(lambda: one.registers() >= 4, timeout=12, what="a refresh")
        assert trunk_rows(server)["carrier1"]["registered"] is True
        assert "in: OPTIONS" in one.kamailio.log()
        # The carrier sends a call to the Contact we registered: it reaches extension 1001.
        phone = device(server, "uas_answer", "1001", "secret1001", tmp_path / "phone")
        caller = public_call(one, (SCENARIOS / "uac_call.xml").read_text(), tmp_path / "in")
        done(caller, tmp_path / "in")
        assert phone.result().ok
    finally:
        server.stop()
    assert "trunk carrier1: registered" in server.log()
    # After the stop our binding is gone: the carrier has nowhere to send the call.
    result = run_sipp(uac_expect(404), tmp_path / "after", one.kamailio.address, name="public",
                      local_port=free_port(host=PUBLIC), local_ip=PUBLIC, service=USERNAME)
    assert result.ok, result.describe()
    assert trunk_rows(server)["carrier1"]["registered"] is False  # no server reports it


# -- outbound ----------------------------------------------------------------------------------


def test_an_outbound_call_answers_the_carriers_407(
        tmp_path: Path, carriers: tuple[Carrier, Carrier], sipp_required: None) -> None:
    one, two = carriers
    server = start_server(config(tmp_path, one, two))
    try:
        wait_for(lambda: registered(server, "carrier1"), what="registration")
        far = public_uas(one, tmp_path / "far")
        result = dial_out(server, tmp_path / "device")
        assert result.ok, result.describe()
        far_result = done(far, tmp_path / "far")
        messages = far_result.messages()
        assert "INVITE sip:+33612345678@" in messages
        assert "From: <sip:+33442930600@pbx.test>" in messages
        assert "P-Asserted-Identity: <sip:+33442930600@pbx.test>" in messages
        assert one.invites() == 2, "challenged once, then with credentials"
        assert two.invites() == 0
    finally:
        server.stop()


@pytest.mark.parametrize("carriers", [503], indirect=True)
def test_a_503_from_carrier_1_moves_the_call_to_carrier_2(
        tmp_path: Path, carriers: tuple[Carrier, Carrier], sipp_required: None) -> None:
    one, two = carriers
    server = start_server(config(tmp_path, one, two))
    try:
        wait_for(lambda: registered(server, "carrier1", "carrier2"), what="registrations")
        answers = public_uas(two, tmp_path / "far2")
        result = dial_out(server, tmp_path / "device")
        assert result.ok, result.describe()
        done(answers, tmp_path / "far2")
        assert one.invites() == 2 and two.invites() == 2, "each challenged once"
        (record, *_) = call_records(server)
        assert "trunk carrier1: 503 Service Unavailable, trying trunk carrier2" in \
            record["trace"], record
        assert record["outcome"] == "answered"
    finally:
        server.stop()


def test_carrier_1_down_moves_the_call_to_carrier_2(
        tmp_path: Path, carriers: tuple[Carrier, Carrier], sipp_required: None) -> None:
    one, two = carriers
    server = start_server(config(tmp_path, one, two, first_transport="tcp"))
    try:
        wait_for(lambda: registered(server, "carrier1", "carrier2"), what="registrations")
        one.kamailio.stop()  # registered a moment ago, down now: its connection is refused
        answers = public_uas(two, tmp_path / "far2")
        started = time.monotonic()
        result = dial_out(server, tmp_path / "device")
        assert result.ok, result.describe()
        assert time.monotonic() - started < 10, "a refused connection fails over at once"
        done(answers, tmp_path / "far2")
        (record, *_) = call_records(server)
        trace = " | ".join(record["trace"])  # type: ignore[arg-type]
        assert "trunk carrier1: transport failure, trying trunk carrier2" in trace, trace
    finally:
        server.stop()


# -- lines ---------------------------------------------------------------------------------------


def test_a_two_line_trunk_refuses_the_third_call_and_frees_a_line_when_a_call_ends(
        tmp_path: Path, carriers: tuple[Carrier, Carrier], sipp_required: None) -> None:
    one, two = carriers
    server = start_server(config(tmp_path, one, two, lines=2),
                          env={"B2BUA_ADMIN_PASSWORD": ADMIN_PASSWORD})
    try:
        wait_for(lambda: registered(server, "carrier1"), what="registration")
        phone = device(server, "uas_answer", "1001", "secret1001", tmp_path / "phone", calls=3)
        two_calls = public_call(one, (SCENARIOS / "uac_call.xml").read_text(),
                                tmp_path / "first-two", calls=2, hold_ms=6000)
        wait_for(lambda: trunk_rows(server)["carrier1"]["lines_in_use"] == 2, timeout=5,
                 what="two lines in use")
        dashboard = signed_in(server, "admin").get("/api/trunks").json()["trunks"]
        assert [(r["name"], r["lines"], r["lines_in_use"]) for r in dashboard] == [
            ("carrier1", 2, 2), ("carrier2", 0, 0)]
        third = public_call(one, uac_expect(486), tmp_path / "third")
        done(third, tmp_path / "third")
        (refused, *_) = call_records(server)
        assert refused["trace"][-1] == "no free line" and refused["outcome"] == "busy"
        assert trunk_rows(server)["carrier1"]["lines_in_use"] == 2
        done(two_calls, tmp_path / "first-two")
        wait_for(lambda: trunk_rows(server)["carrier1"]["lines_in_use"] == 0, timeout=5,
                 what="the lines back")
        fourth = public_call(one, (SCENARIOS / "uac_call.xml").read_text(), tmp_path / "fourth")
        done(fourth, tmp_path / "fourth")
        assert phone.result().ok
    finally:
        server.stop()


def test_a_device_dialling_out_with_no_free_line_gets_503(
        tmp_path: Path, carriers: tuple[Carrier, Carrier], sipp_required: None) -> None:
    one, two = carriers
    path = config(tmp_path, one, two, lines=1)
    text = path.read_text().replace('name = "carrier2"', 'name = "carrier2"\nlines = 1')
    path.write_text(text)
    server = start_server(path)
    try:
        wait_for(lambda: registered(server, "carrier1", "carrier2"), what="registrations")
        phone = device(server, "uas_answer", "1001", "secret1001", tmp_path / "phone", calls=2)
        calls = public_call(one, (SCENARIOS / "uac_call.xml").read_text(), tmp_path / "in1",
                            hold_ms=6000)
        calls2 = public_call(two, (SCENARIOS / "uac_call.xml").read_text(), tmp_path / "in2",
                             hold_ms=6000)
        wait_for(lambda: all(r["lines_in_use"] == 1 for r in trunk_rows(server).values()),
                 timeout=5, what="both trunks full")
        result = dial_out(server, tmp_path / "device", final=503)
        assert result.ok, result.describe()
        (refused, *_) = call_records(server)
        assert refused["trace"][-1] == "no free line"
        done(calls, tmp_path / "in1")
        done(calls2, tmp_path / "in2")
        assert phone.result().ok
    finally:
        server.stop()


def test_a_call_for_a_did_we_do_not_have_gets_404(
        tmp_path: Path, carriers: tuple[Carrier, Carrier], sipp_required: None) -> None:
    one, two = carriers
    server = start_server(config(tmp_path, one, two))
    try:
        wait_for(lambda: registered(server, "carrier1"), what="registration")
        # To our registered Contact, for a number (in To) that is none of our DIDs.
        xml = uac_expect(404).replace("To: <sip:[service]@[remote_ip]:[remote_port]>",
                                      "To: <sip:0442930699@[remote_ip]:[remote_port]>")
        caller = public_call(one, xml, tmp_path / "unknown")
        done(caller, tmp_path / "unknown")
    finally:
        server.stop()
