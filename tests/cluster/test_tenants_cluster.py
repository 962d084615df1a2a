"""Two companies, each with an extension 1001, on two `b2bua run` nodes over one real PostgreSQL:
a device registered in one company on node A is rung by a carrier call to that company's DID
arriving on node B, and the other company's 1001 hears nothing; a setting saved for one
company through node A's API decides node B's next call to that company only."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from b2bua.testing.net import free_port
from b2bua.testing.server import RunningServer, start_server, write_config
from tests.api.helpers import Api
from tests.cluster.test_two_nodes import ADMIN, UAC_CALL, wait_until
from tests.integration.flows import call, uac_expect
from tests.integration.tenant_flows import Listener, device_in, register_in

CONFIG = """
[server]
domain = "pbx.test"
listen = ["udp:127.0.0.1:5060"]
data_dir = "shared"
timezone = "Europe/Paris"
auth_algorithms = ["MD5"]

[registrar]
keepalive_interval = 0

[store]
url = "{url}"

[[tenants]]
domain = "acme.example"
name = "ACME SARL"

  [[tenants.trunks]]
  name = "carrier"
  address = "127.0.0.2:5080"
  inbound_from = ["127.0.0.2/32"]
  did = {{ "0442000001" = "1001" }}

  [[tenants.users]]
  extension = "1001"
  name = "Alice ACME"
  secret = "acme1001"
  ring_timeout = 20

    [[tenants.users.devices]]
    type = "sip"
    label = "Bureau"

[[tenants]]
domain = "beta.example"
name = "Beta SAS"

  [[tenants.trunks]]
  name = "carrier"
  address = "127.0.0.2:5080"
  inbound_from = ["127.0.0.2/32"]
  did = {{ "0442000002" = "1001" }}

  [[tenants.users]]
  extension = "1001"
  name = "Bruno Beta"
  secret = "beta1001"
  ring_timeout = 20

    [[tenants.users.devices]]
    type = "sip"
    label = "Bureau"
"""


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


def test_each_companys_1001_registered_on_a_is_rung_through_b(nodes: list[RunningServer],
                                                               tmp_path: Path) -> None:
    a, b = nodes
    port = free_port()
    reg = register_in(a, "beta.example", "1001", "beta1001", port, tmp_path / "beta")
    assert reg.ok, reg.describe()
    beta = Listener(port)
    try:
        acme = device_in(a, "acme.example", "1001", "acme1001", tmp_path / "acme", pause_ms=300)
        time.sleep(0.5)  # the notice and read-back take milliseconds; be generous
        result = call(b, UAC_CALL, tmp_path / "carrier", service="0442000001")
        assert result.ok, result.describe() + "\n--- node b ---\n" + b.log()[-4000:]
        assert acme.result().ok
        time.sleep(0.3)
        assert not [m for m in beta.received() if m.startswith(b"INVITE")]
    finally:
        beta.close()


def test_a_companys_setting_saved_on_a_decides_bs_next_call_to_it_only(
        nodes: list[RunningServer], tmp_path: Path) -> None:
    a, b = nodes
    api = Api(a.http_base)
    assert api.login("admin", ADMIN).status == 200
    r = api.patch("/api/users/1001?tenant=beta.example", {"forward": {"kind": "busy"}})
    assert r.status == 200, r
    took = wait_until(lambda: "of beta.example applied (stored by another node)" in b.log(),
                      timeout=2.0)
    print(f"\nbeta.example's setting saved through node A, applied on node B {took * 1000:.0f} "
          f"ms after A's answer")
    assert "of acme.example applied (stored by another node)" not in b.log()
    busy = call(b, uac_expect(486), tmp_path / "beta", service="0442000002")
    assert busy.ok, busy.describe() + "\n--- node b ---\n" + b.log()[-3000:]
    # ACME's 1001 (no device registered) still goes to its voicemail, answered
    answered = call(b, UAC_CALL, tmp_path / "acme", service="0442000001")
    assert answered.ok, answered.describe() + "\n--- node b ---\n" + b.log()[-3000:]
