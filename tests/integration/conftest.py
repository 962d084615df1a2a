"""Integration fixtures: a real `b2bua run` process and SIPp peers, all on loopback."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from b2bua.testing.server import RunningServer, start_server, write_config

SCENARIOS = Path(__file__).parent / "scenarios"

BASE_CONFIG = """
[server]
domain = "pbx.test"
listen = ["udp:127.0.0.1:5060"]
data_dir = "var"
timezone = "Europe/Paris"
country_code = "33"
auth_algorithms = {auth}

[registrar]
keepalive_interval = 0

[[trunks]]
name = "carrier"
address = "127.0.0.2:{trunk_port}"
inbound_from = ["127.0.0.2/32"]
did = {{ "0442930600" = "1001", "0442930699" = "800" }}

[[system_extensions]]
extension = "800"
name = "Accueil"
members = ["1001", "1002"]

[[users]]
extension = "1001"
name = "Alice Martin"
secret = "secret1001"
mobile = "0600000001"
ring_timeout = {ring_timeout}
decline = "{decline}"

  [[users.devices]]
  type = "sip"
  label = "Bureau"

  [[users.devices]]
  type = "softphone"
  label = "Mobile"

  [[users.devices]]
  type = "other"
  label = "Salle"

[[users]]
extension = "1002"
name = "Bruno Petit"
secret = "secret1002"

  [[users.devices]]
  type = "sip"
  label = "Bureau"
"""


def make_config(
    tmp_path: Path,
    *,
    auth: str = '["MD5"]',
    ring_timeout: int = 20,
    decline: str = "all",
    trunk_port: int = 5080,
    extra: str = "",
) -> Path:
    body = BASE_CONFIG.format(
        auth=auth, ring_timeout=ring_timeout, decline=decline, trunk_port=trunk_port
    )
    return write_config(tmp_path, body + extra)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def sipp_required() -> None:
    if shutil.which("sipp") is None:
        pytest.fail("sipp is missing: scripts/test installs Debian's sip-tester")


@pytest.fixture
def server(tmp_path: Path, sipp_required: None) -> Iterator[RunningServer]:
    srv = start_server(make_config(tmp_path))
    try:
        yield srv
    finally:
        srv.stop()
