"""Registrar over real sockets: `b2bua run` as a subprocess, SIPp and baresip registering,
`b2bua devices` and `b2bua qr` as a user runs them, zbarimg reading the QR code back.

SIPp's digest knows MD5 only, so these servers offer MD5 alone (as some older phones need).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from b2bua.testing.net import free_port
from b2bua.testing.server import RunningServer, start_server, write_config
from b2bua.testing.sipp import SippResult, run_sipp

pytestmark = pytest.mark.integration

PASSWORD = "secret1001"

CONFIG = """
[server]
domain = "pbx.test"
listen = ["udp:127.0.0.1:{sip_port}"]
http = "127.0.0.1:{http_port}"
data_dir = "var"
auth_algorithms = {auth}

[registrar]
keepalive_interval = 0
lockout_failures = 3
lockout_window = 60
lockout_seconds = 300

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

  [[users.devices]]
  type = "other"
  label = "Salle"

  [[users.devices]]
  type = "teams"
  label = "Teams"
  contact = "sip:1001@127.0.0.1:5090"

[[users]]
extension = "1002"
name = "Bruno Petit"
secret = "secret1002"

  [[users.devices]]
  type = "sip"
  label = "Bureau"
"""


class Setup:
    def __init__(self, directory: Path, auth: str = '["MD5"]') -> None:
        self.dir = directory
        self.sip_port = free_port()
        self.http_port = free_port()
        self.config = write_config(
            directory,
            CONFIG.format(sip_port=self.sip_port, http_port=self.http_port, auth=auth),
        )
        self.server: RunningServer | None = None

    def start(self) -> RunningServer:
        self.server = start_server(
            self.config, sip_port=self.sip_port, http_port=self.http_port, transports=("udp",)
        )
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "b2bua", *args, "--config", str(self.config)],
            capture_output=True, text=True, timeout=30, cwd=self.dir,
        )

    def devices(self) -> list[dict[str, Any]]:
        out = self.cli("devices", "--json")
        assert out.returncode == 0, out.stderr
        report: list[dict[str, Any]] = json.loads(out.stdout)
        return report

    def alice(self) -> list[dict[str, Any]]:
        devices: list[dict[str, Any]] = self.devices()[0]["devices"]
        return devices


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    if shutil.which("sipp") is None:
        pytest.fail("sipp is missing: scripts/test installs Debian's sip-tester")
    s = Setup(tmp_path)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _scenario(
    *, user: str, expires: int, contact_params: str, final: str, challenged: bool = True
) -> str:
    """REGISTER, answer the 401 with credentials (-au/-ap), expect `final` (without
    `challenged`: expect `final` straight away)."""
    register = f"""
  <send retrans="500">
    <![CDATA[

      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{user}@[remote_ip]:[remote_port]>;tag=[pid]R[call_number]
      To: <sip:{user}@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: {{cseq}} REGISTER
      Contact: <sip:{user}@[local_ip]:[local_port];transport=udp>{contact_params}
      {{auth}}
      Expires: {expires}
      Max-Forwards: 70
      User-Agent: SIPp registrar test
      Content-Length: 0

    ]]>
  </send>
"""
    head = (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<!DOCTYPE scenario SYSTEM "sipp.dtd">\n'
        '<scenario name="register">\n'
    )
    if not challenged:
        return head + register.format(cseq=1, auth="") + f'  <recv response="{final}"/>\n</scenario>\n'
    return (
        head
        + register.format(cseq=1, auth="")
        + '  <recv response="401" auth="true"/>\n'
        + register.format(cseq=2, auth="[authentication]")
        + f'  <recv response="{final}"/>\n'
        + "</scenario>\n"
    )


def sipp_register(
    s: Setup, name: str, *, port: int | None = None, user: str = "1001",
    password: str = PASSWORD, expires: int = 3600, instance: str | None = None,
    final: str = "200", source: str = "127.0.0.1", challenged: bool = True,
) -> SippResult:
    params = f';+sip.instance="<{instance}>"' if instance else ""
    xml = _scenario(user=user, expires=expires, contact_params=params, final=final,
                    challenged=challenged)
    assert s.server is not None
    result = run_sipp(
        xml, s.dir / name, s.server.sip, name="register", local_port=port or free_port(),
        local_ip=source, calls=1, timeout_s=10, extra=("-au", user, "-ap", password),
    )
    return result


def registered(devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in devices if d["state"] == "registered"]


# ---------------------------------------------------------------------------------------------


def test_three_devices_register_for_1001(setup: Setup) -> None:
    ports = [free_port() for _ in range(3)]
    for i, port in enumerate(ports):
        r = sipp_register(setup, f"dev{i}", port=port)
        assert r.ok, r.describe()
    devices = setup.alice()
    assert [(d["label"], d["state"]) for d in devices] == [
        ("Bureau", "registered"), ("Mobile", "registered"), ("Salle", "registered"),
        ("Teams", "static"),
    ]
    assert [d["source"] for d in devices[:3]] == [f"udp:127.0.0.1:{p}" for p in ports]
    assert all(d["user_agent"] == "SIPp registrar test" for d in devices[:3])
    assert all(3590 <= d["expires_in"] <= 3600 for d in devices[:3])


def test_wrong_password_is_refused_then_the_source_locked_out(setup: Setup) -> None:
    attacker = "127.0.0.3"
    for i in range(2):
        r = sipp_register(setup, f"bad{i}", password="guess", final="401", source=attacker)
        assert r.ok, r.describe()
    r = sipp_register(setup, "bad2", password="guess", final="403", source=attacker)
    assert r.ok, r.describe()
    # Locked: even the right password is refused from there; other sources are not affected.
    r = sipp_register(setup, "good-locked", final="403", source=attacker, challenged=False)
    assert r.ok, r.describe()
    assert registered(setup.alice()) == []
    r = sipp_register(setup, "good")
    assert r.ok, r.describe()
    assert len(registered(setup.alice())) == 1
    assert setup.server is not None
    assert "source 127.0.0.3 locked out" in setup.server.log()


def test_reregistration_from_a_new_port_with_the_same_instance_keeps_one_binding(
    setup: Setup,
) -> None:
    instance = "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"
    first, second = free_port(), free_port()
    assert sipp_register(setup, "a", port=first, instance=instance).ok
    r = sipp_register(setup, "b", port=second, instance=instance)
    assert r.ok, r.describe()
    devices = registered(setup.alice())
    assert len(devices) == 1
    (d,) = devices
    assert d["source"] == f"udp:127.0.0.1:{second}"
    assert d["instance"] == f"<{instance}>"
    assert d["label"] == "Bureau"
    # The 200 listed exactly one contact, the new one.
    ok = [m for m in r.messages().split("SIP/2.0 200 OK")[1:]]
    assert ok and ok[-1].count("Contact:") == 1 and f":{second};" in ok[-1]


def test_unregister(setup: Setup) -> None:
    port = free_port()
    assert sipp_register(setup, "reg", port=port).ok
    assert len(registered(setup.alice())) == 1
    r = sipp_register(setup, "unreg", port=port, expires=0)
    assert r.ok, r.describe()
    assert registered(setup.alice()) == []


def test_restart_keeps_bindings(setup: Setup) -> None:
    ports = [free_port(), free_port()]
    for i, port in enumerate(ports):
        assert sipp_register(setup, f"dev{i}", port=port).ok
    before = registered(setup.alice())
    assert setup.server is not None
    server = setup.server
    assert server.stop() == 0, server.log()[-2000:]  # SIGTERM: a clean stop, exit status 0
    assert "b2bua stopped" in server.log()
    setup.server = None
    server = setup.start()
    deadline = time.monotonic() + 10
    while "bindings loaded" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "2 bindings loaded" in server.log()
    after = registered(setup.alice())
    assert [(d["label"], d["contact"], d["source"]) for d in after] == [
        (d["label"], d["contact"], d["source"]) for d in before
    ]
    # The restarted registrar still knows them: unregistering one works and leaves one.
    r = sipp_register(setup, "unreg", port=ports[0], expires=0)
    assert r.ok, r.describe()
    assert len(registered(setup.alice())) == 1


def test_qr_code_decodes_to_a_url_that_provisions_once(setup: Setup) -> None:
    if shutil.which("zbarimg") is None:
        pytest.fail("zbarimg is missing: scripts/test installs Debian's zbar-tools")
    png = setup.dir / "qr.png"
    out = setup.cli("qr", "1001", "--device", "2", "--out", str(png))
    assert out.returncode == 0, out.stderr
    decoded = subprocess.run(["zbarimg", "--raw", "-q", str(png)], capture_output=True,
                             text=True, timeout=30)
    url = decoded.stdout.strip()
    assert url.startswith(f"http://127.0.0.1:{setup.http_port}/provision/"), decoded
    assert url in out.stdout
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = resp.read().decode()
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/xml")
    assert f"&lt;sip:127.0.0.1:{setup.sip_port};transport=udp&gt;" in body
    assert '<entry name="passwd" overwrite="true">secret1001</entry>' in body
    with pytest.raises(urllib.error.HTTPError) as gone:
        urllib.request.urlopen(url, timeout=10)
    assert gone.value.code == 410
    # The JSON form, with another code.
    out = setup.cli("qr", "1002", "--out", str(setup.dir / "qr2.png"))
    assert out.returncode == 0, out.stderr
    url2 = out.stdout.split(": ", 1)[1].split()[0]
    with urllib.request.urlopen(url2 + ".json", timeout=10) as resp:
        settings = json.loads(resp.read())
    assert settings == {
        "server": f"127.0.0.1:{setup.sip_port}",
        "proxy": f"sip:127.0.0.1:{setup.sip_port};transport=udp",
        "domain": "pbx.test",
        "username": "1002",
        "password": "secret1002",
        "transport": "udp",
        "display_name": "Bruno Petit",
        "extension": "1002",
        "push": [],  # no [push] provider configured
    }
    with pytest.raises(urllib.error.HTTPError) as gone:
        urllib.request.urlopen(url2 + ".json", timeout=10)
    assert gone.value.code == 410


# -- a real softphone ----------------------------------------------------------------------------


def _baresip(s: Setup, seconds: int) -> tuple[subprocess.Popen[str], Path]:
    if shutil.which("baresip") is None:
        pytest.fail("baresip is missing: scripts/test installs Debian's baresip")
    ua = s.dir / "baresip"
    ua.mkdir(exist_ok=True)
    port = free_port()
    (ua / "config").write_text(
        f"sip_listen 127.0.0.1:{port}\nnet_interface 127.0.0.1\nrtp_ports 30000-30099\n"
        "module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule_app account.so\n"
    )
    (ua / "accounts").write_text(
        f'<sip:1001@pbx.test>;auth_pass={PASSWORD};'
        f'outbound="sip:127.0.0.1:{s.sip_port};transport=udp";regint=60;audio_codecs=PCMU\n'
    )
    proc = subprocess.Popen(
        ["baresip", "-4", "-f", str(ua), "-t", str(seconds)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ua,
    )
    return proc, ua


def _wait_registered(s: Setup, agent: str, timeout: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for d in registered(s.alice()):
            if (d["user_agent"] or "").startswith(agent):
                return d
        time.sleep(0.3)
    return None


def test_baresip_registers_with_md5_and_unregisters_on_exit(setup: Setup) -> None:
    proc, _ = _baresip(setup, 6)
    try:
        device = _wait_registered(setup, "baresip", 5.0)
    finally:
        out, _ = proc.communicate(timeout=20)
    assert device is not None, out
    assert device["source"].startswith("udp:127.0.0.1:")
    assert "200 OK" in out
    assert not [d for d in registered(setup.alice()) if (d["user_agent"] or "").startswith("baresip")]


# Debian 12's baresip 1.0 aborts on any SHA-256 challenge ("Register: Function not
# implemented") instead of answering the MD5 one: the registrar offers it MD5 alone
# (the "md5-only agent" quirk, by User-Agent).
def test_baresip_registers_when_sha256_is_offered(tmp_path: Path) -> None:
    s = Setup(tmp_path, auth='["SHA-256", "MD5"]')
    s.start()
    try:
        proc, _ = _baresip(s, 4)
        try:
            device = _wait_registered(s, "baresip", 3.0)
        finally:
            proc.communicate(timeout=20)
        assert device is not None
    finally:
        s.stop()
