"""Two companies on one server, over real sockets: each has an extension 1001, its own domain
and realm, its own carrier DID; a call of one never rings, picks up or reaches the other."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from b2bua.testing.net import free_port
from b2bua.testing.server import RunningServer, start_server, write_config
from tests.integration.flows import call, uac_expect
from tests.integration.tenant_flows import Listener, RawPhone, call_from, device_in, register_in

SCENARIOS = Path(__file__).parent / "scenarios"
UAC_CALL = (SCENARIOS / "uac_call.xml").read_text()
BYE_IN = (SCENARIOS / "uac_call_then_bye_in.xml").read_text()
ACME, BETA = "acme.example", "beta.example"

CONFIG = """
[server]
domain = "pbx.test"
data_dir = "var"
timezone = "Europe/Paris"
country_code = "33"
auth_algorithms = ["MD5"]

[registrar]
keepalive_interval = 0

[[tenants]]
domain = "acme.example"
name = "ACME SARL"
limits = {{ calls = {acme_calls}, devices = 4 }}

  [[tenants.trunks]]
  name = "carrier"
  address = "127.0.0.2:5080"
  inbound_from = ["127.0.0.2/32"]
  did = {{ "0442000001" = "1001" }}

  [[tenants.users]]
  extension = "1001"
  name = "Alice ACME"
  secret = "acme1001"
  no_answer = {{ kind = "busy" }}

    [[tenants.users.devices]]
    type = "sip"
    label = "Bureau ACME"

  [[tenants.users]]
  extension = "1002"
  name = "Arthur ACME"
  secret = "acme1002"

[[tenants]]
domain = "beta.example"
name = "Beta SAS"
limits = {{ devices = 2 }}

  [[tenants.trunks]]
  name = "carrier"
  address = "127.0.0.2:5080"
  inbound_from = ["127.0.0.2/32"]
  did = {{ "0442000002" = "1001" }}

  [[tenants.users]]
  extension = "1001"
  name = "Bruno Beta"
  secret = "beta1001"
  no_answer = {{ kind = "busy" }}

    [[tenants.users.devices]]
    type = "sip"
    label = "Bureau Beta"

  [[tenants.users]]
  extension = "1002"
  name = "Berthe Beta"
  secret = "beta1002"
"""


@pytest.fixture
def srv(tmp_path: Path, sipp_required: None, request: pytest.FixtureRequest):
    opts = {"acme_calls": 0, **getattr(request, "param", {})}
    server = start_server(write_config(tmp_path, CONFIG.format(**opts)), transports=("udp",))
    yield server
    server.stop()


def silent_device(server: RunningServer, domain: str, ext: str, secret: str,
                  workdir: Path) -> Listener:
    """A registered device of `ext@domain` that answers nothing: what reaches it is kept."""
    port = free_port()
    reg = register_in(server, domain, ext, secret, port, workdir)
    assert reg.ok, reg.describe()
    return Listener(port)


def invites(listener: Listener) -> list[bytes]:
    return [m for m in listener.received() if m.startswith(b"INVITE")]


def test_each_tenant_challenges_in_its_own_realm(srv: RunningServer) -> None:
    for domain, secret in ((ACME, "acme1001"), (BETA, "beta1001")):
        phone = RawPhone(srv, domain, "1001", secret)
        try:
            answer = phone.register()
            assert answer.realm == domain
            assert answer.status == 200
        finally:
            phone.close()
    # another tenant's secret for the same extension is refused
    thief = RawPhone(srv, BETA, "1001", "acme1001")
    try:
        assert thief.register().status == 401
    finally:
        thief.close()
    top = RawPhone(srv, "pbx.test", "1001", "acme1001")
    try:
        answer = top.register()
        # no such user at the top: refused like a wrong password (no user enumeration)
        assert answer.realm == "pbx.test" and answer.status == 401
    finally:
        top.close()


@pytest.mark.parametrize("caller_domain,other_domain", [(ACME, BETA), (BETA, ACME)])
def test_a_call_to_1001_rings_its_own_companys_1001_only(
        srv: RunningServer, tmp_path: Path, caller_domain: str, other_domain: str) -> None:
    prefix = caller_domain.split(".")[0]
    other_prefix = other_domain.split(".")[0]
    other = silent_device(srv, other_domain, "1001", f"{other_prefix}1001", tmp_path / "other")
    try:
        mine = device_in(srv, caller_domain, "1001", f"{prefix}1001", tmp_path / "mine")
        result = call_from(srv, caller_domain, "1002", f"{prefix}1002", "1001",
                           tmp_path / "caller")
        assert result.ok, result.describe() + "\n" + srv.log()[-3000:]
        assert mine.result().ok
        time.sleep(0.3)
        assert invites(other) == []
    finally:
        other.close()


def test_a_carrier_call_reaches_the_did_owners_1001(srv: RunningServer, tmp_path: Path) -> None:
    beta = silent_device(srv, BETA, "1001", "beta1001", tmp_path / "beta")
    try:
        acme = device_in(srv, ACME, "1001", "acme1001", tmp_path / "acme")
        result = call(srv, UAC_CALL, tmp_path / "carrier", service="+33442000001")
        assert result.ok, result.describe() + "\n" + srv.log()[-3000:]
        assert acme.result().ok
        time.sleep(0.3)
        assert invites(beta) == []
    finally:
        beta.close()
    acme_silent = silent_device(srv, ACME, "1001", "acme1001", tmp_path / "acme2")
    try:
        beta_dev = device_in(srv, BETA, "1001", "beta1001", tmp_path / "beta2")
        result = call(srv, UAC_CALL, tmp_path / "carrier2", service="0442000002")
        assert result.ok, result.describe()
        assert beta_dev.result().ok
        time.sleep(0.3)
        assert invites(acme_silent) == []
    finally:
        acme_silent.close()


def test_a_number_nobody_owns_is_404(srv: RunningServer, tmp_path: Path) -> None:
    result = call(srv, uac_expect(404), tmp_path / "carrier", service="0442000099")
    assert result.ok, result.describe()


def test_calling_into_another_tenants_domain_is_refused(srv: RunningServer,
                                                        tmp_path: Path) -> None:
    result = call_from(srv, ACME, "1002", "acme1002", "1001", tmp_path / "caller", final=403,
                       request_host=BETA)
    assert result.ok, result.describe()
    assert "Another Tenant's Domain" in result.messages()


def test_pickup_takes_a_call_of_ones_own_company_only(srv: RunningServer,
                                                       tmp_path: Path) -> None:
    import threading

    beta = silent_device(srv, BETA, "1001", "beta1001", tmp_path / "beta")
    results = {}

    def carrier() -> None:  # rings beta's 1001, which never answers
        results["carrier"] = call(srv, BYE_IN, tmp_path / "carrier", service="0442000002",
                                  pause_ms=0)

    thread = threading.Thread(target=carrier)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not invites(beta) and time.monotonic() < deadline:
            time.sleep(0.05)
        stranger = call_from(srv, ACME, "1002", "acme1002", "**1001", tmp_path / "stranger",
                             final=480)
        assert stranger.ok, stranger.describe()
        colleague = call_from(srv, BETA, "1002", "beta1002", "**1001", tmp_path / "colleague")
        assert colleague.ok, colleague.describe() + "\n" + srv.log()[-3000:]
        thread.join(60)
        assert results["carrier"].ok, results["carrier"].describe()
    finally:
        beta.close()


def test_device_limit_is_refused_with_a_reason(srv: RunningServer) -> None:
    phones = [RawPhone(srv, BETA, "1001", "beta1001") for _ in range(3)]
    try:
        assert [p.register().status for p in phones[:2]] == [200, 200]
        answer = phones[2].register()
        assert (answer.status, answer.reason) == (403, "Device Limit Reached")
        assert phones[0].register().status == 200  # a refresh is no new device
        assert phones[0].register(expires=0).status == 200
        assert phones[2].register().status == 200
    finally:
        for phone in phones:
            phone.close()


@pytest.mark.parametrize("srv", [{"acme_calls": 1}], indirect=True)
def test_call_limit_is_a_503_with_a_reason(srv: RunningServer, tmp_path: Path) -> None:
    import threading

    acme = device_in(srv, ACME, "1001", "acme1001", tmp_path / "acme", pause_ms=200)
    results = {}

    def long_call() -> None:
        results["first"] = call(srv, UAC_CALL, tmp_path / "first", service="0442000001",
                                pause_ms=3000)

    thread = threading.Thread(target=long_call)
    thread.start()
    time.sleep(1.2)  # the first call is answered and in progress
    second = call_from(srv, ACME, "1002", "acme1002", "1001", tmp_path / "second", final=503)
    thread.join(60)
    assert second.ok, second.describe()
    assert "Tenant Call Limit Reached" in second.messages()
    assert results["first"].ok, results["first"].describe()
    assert acme.result().ok
    # the limit counts calls in progress: once the first is over, a new one goes through
    again = call(srv, uac_expect(486), tmp_path / "third", service="0442000001")
    assert again.ok, again.describe()



def _registered(srv: RunningServer, domain: str, timeout: float = 10) -> bool:
    """Whether `b2bua devices --tenant DOMAIN` shows a baresip registration of that company."""
    import subprocess
    import sys

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(
            [sys.executable, "-m", "b2bua", "devices", "--config", str(srv.config), "--json",
             "--tenant", domain], capture_output=True, text=True, check=False).stdout
        if "baresip" in out:
            return True
        time.sleep(0.3)
    return False


def test_two_real_softphones_1001_each_ring_in_their_own_company(srv: RunningServer,
                                                                  tmp_path: Path) -> None:
    """baresip registers as 1001 in both companies (each in its realm, through the same server
    address); a call from ACME's 1002 to 1001 is answered by ACME's softphone, and Beta's never
    hears of it; then the same from Beta's side."""
    from b2bua.testing.baresip import start_baresip

    acme = start_baresip(tmp_path / "acme", "1001", "acme1001", srv.sip, domain=ACME, seconds=25,
                         rtp_ports=(30100, 30149))
    beta = start_baresip(tmp_path / "beta", "1001", "beta1001", srv.sip, domain=BETA, seconds=25,
                         rtp_ports=(30150, 30199))
    try:
        assert _registered(srv, ACME), acme.stop()
        assert _registered(srv, BETA), beta.stop()
        first = call_from(srv, ACME, "1002", "acme1002", "1001", tmp_path / "from-acme")
        assert first.ok, first.describe() + "\n" + srv.log()[-3000:]
        second = call_from(srv, BETA, "1002", "beta1002", "1001", tmp_path / "from-beta")
        assert second.ok, second.describe() + "\n" + srv.log()[-3000:]
    finally:
        acme_out, beta_out = acme.stop(), beta.stop()
    # each softphone took exactly one call: its own company's
    assert acme_out.count("answering call") == 1, acme_out
    assert beta_out.count("answering call") == 1, beta_out
    assert "answering call on line 1 from sip:1002@acme.example" in acme_out, acme_out
    assert "answering call on line 1 from sip:1002@beta.example" in beta_out, beta_out
