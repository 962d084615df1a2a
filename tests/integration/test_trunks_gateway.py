"""A Teams-like gateway as a trunk: pjsua2 speaking SIP over TLS only, with SRTP (SDES)
mandatory, and a plain-RTP softphone (baresip) registered over UDP; the relay encrypts and
decrypts between them, each hears the other's tone.

- the gateway calls a DID: the server answers its SRTP offer with SRTP and rings the phone
  with plain RTP;
- the phone dials a number the gateway's trunk takes: the gateway gets an SRTP offer over TLS
  (it refuses anything else);
- our OPTIONS pings reach the gateway over the verified TLS connection; with a CA that does not
  verify its certificate the server never talks to it;
- an SRTP offer with a crypto suite we do not know gets 488, as does a plain offer from a trunk
  that demands SRTP.
"""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from b2bua.testing.baresip import Baresip, start_baresip
from b2bua.testing.net import free_port
from b2bua.testing.pjsua_gateway import start_gateway
from b2bua.testing.server import RunningServer, start_server, write_config
from b2bua.testing.sipp import run_sipp
from b2bua.transport.tls import make_self_signed
from media.testing import tone
from tests.integration.flows import call_records, uac_expect

pytestmark = pytest.mark.integration

GATEWAY_IP = "127.0.0.6"
CARRIER_IP = "127.0.0.2"
GATEWAY_TONE = 440.0
PHONE_TONE = 1000.0


def write_tone(path: Path, freq: float, seconds: float) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(tone(freq, seconds))
    return path


def power(samples: tuple[int, ...], rate: int, freq: float) -> float:
    """Goertzel: the power of `freq` in `samples`."""
    coeff = 2 * math.cos(2 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def heard(path: Path) -> dict[float, float]:
    """The power of both test tones in a recording (its first half second left out), and its
    RMS level."""
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2, path
        rate, channels = w.getframerate(), w.getnchannels()
        data = w.readframes(w.getnframes())
    samples = struct.unpack(f"<{len(data) // 2}h", data)[::channels][rate // 2:]
    rms = math.sqrt(sum(x * x for x in samples) / max(1, len(samples)))
    return {GATEWAY_TONE: power(samples, rate, GATEWAY_TONE),
            PHONE_TONE: power(samples, rate, PHONE_TONE), 0.0: rms}


def assert_hears(path: Path, freq: float, other: float) -> None:
    levels = heard(path)
    assert levels[0.0] > 500, f"{path.name}: silence ({levels})"
    assert levels[freq] > 20 * levels[other], f"{path.name}: {levels}"


class Setup:
    def __init__(self, tmp_path: Path, *, right_ca: bool = True) -> None:
        self.tmp = tmp_path
        (tmp_path / "ours").mkdir()
        (tmp_path / "gw").mkdir()
        self.cert, self.key = make_self_signed(tmp_path / "ours")
        self.gw_cert, self.gw_key = make_self_signed(tmp_path / "gw", "gateway.test",
                                                     (GATEWAY_IP,))
        self.gw_port = free_port(host=GATEWAY_IP)
        ca = self.gw_cert if right_ca else self.cert
        self.config = write_config(tmp_path, f"""
[server]
domain = "pbx.test"
listen = ["udp:127.0.0.1:5060"]
data_dir = "var"
language = "en"
auth_algorithms = ["MD5"]
tls_cert = "{self.cert}"
tls_key = "{self.key}"
tls_ca = "{ca}"

[registrar]
keepalive_interval = 0

[[trunks]]
name = "teams"
address = "{GATEWAY_IP}:{self.gw_port}"
transport = "tls"
inbound_from = ["{GATEWAY_IP}/32"]
did = {{ "0442930650" = "1001" }}
prefixes = ["8"]
options_ping = 1
media_encryption = "sdes"

[[trunks]]
name = "carrier"
address = "{CARRIER_IP}:5080"
inbound_from = ["{CARRIER_IP}/32"]
did = {{ "0442930600" = "1001" }}
prefixes = ["0"]

[[users]]
extension = "1001"
name = "Alice Martin"
secret = "secret1001"

  [[users.devices]]
  type = "softphone"
  label = "baresip"
""")
        self.server: RunningServer | None = None
        self.phone: Baresip | None = None
        self.tls_port = 0

    def start(self) -> RunningServer:
        self.tls_port = free_port()
        self.server = start_server(self.config,
                                   extra_args=("--listen", f"tls:127.0.0.1:{self.tls_port}"))
        return self.server

    def start_phone(self, dial: str | None = None, seconds: int = 25) -> Baresip:
        assert self.server is not None
        audio = write_tone(self.tmp / "phone-tone.wav", PHONE_TONE, 6.0)
        self.phone = start_baresip(self.tmp / "phone", "1001", "secret1001", self.server.sip,
                                   domain="pbx.test", seconds=seconds, audio=audio,
                                   dial=dial, rtp_ports=(31000, 31099))
        return self.phone

    def gateway(self, call: str | None = None, seconds: float = 25) -> Any:
        audio = write_tone(self.tmp / "gateway-tone.wav", GATEWAY_TONE, 2.0)
        return start_gateway(self.tmp / "gateway", host=GATEWAY_IP, port=self.gw_port,
                             cert=self.gw_cert, key=self.gw_key, ca=self.cert, play=audio,
                             call=call, hold=3.0, seconds=seconds, rtp_port=27100)

    def close(self) -> None:
        if self.phone is not None:
            self.phone.stop()
        if self.server is not None:
            self.server.stop()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    s = Setup(tmp_path)
    try:
        yield s
    finally:
        s.close()


def trunks(server: RunningServer) -> dict[str, dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "b2bua", "trunks", "--config", str(server.config), "--json"],
        capture_output=True, text=True, check=True, timeout=30).stdout
    return {row["name"]: row for row in json.loads(out)}


def registered_phone(server: RunningServer, phone: Baresip) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = subprocess.run(
            [sys.executable, "-m", "b2bua", "devices", "--config", str(server.config), "--json"],
            capture_output=True, text=True).stdout
        if "baresip" in out and "127.0.0.1" in out:
            return
        time.sleep(0.3)
    pytest.fail("baresip did not register:\n" + phone.stop())


def phone_heard(phone: Baresip) -> Path:
    dumps = [p for p in phone.recordings() if "dec" in p.name]
    assert dumps, f"no recording from baresip in {phone.directory}: {phone.recordings()}"
    return max(dumps, key=lambda p: p.stat().st_size)


def srtp(sdp: str) -> bool:
    return "RTP/SAVP" in sdp and "a=crypto:" in sdp


def test_the_gateway_calls_a_did_with_srtp_and_the_plain_phone_hears_it(setup: Setup) -> None:
    server = setup.start()
    phone = setup.start_phone()
    registered_phone(server, phone)
    gateway = setup.gateway(call=f"sip:0442930650@127.0.0.1:{setup.tls_port};transport=tls")
    report = gateway.result(timeout=40)
    (call,) = report["calls"]
    assert call["status"] == 200 and call["media"] and call["srtp"], report
    assert srtp(call["local_sdp"]), call
    phone.stop()
    assert_hears(gateway.recording, PHONE_TONE, GATEWAY_TONE)
    assert_hears(phone_heard(phone), GATEWAY_TONE, PHONE_TONE)
    # Our OPTIONS reached it over TLS, and it answered them: the trunk is up.
    log = gateway.log.read_text(errors="replace")
    assert "OPTIONS sip:" in log
    assert trunks(server)["teams"]["up"] is True


def test_a_phone_calls_through_the_gateway_with_an_srtp_offer_over_tls(setup: Setup) -> None:
    server = setup.start()
    gateway = setup.gateway(seconds=20)
    time.sleep(1.0)  # the gateway listens
    phone = setup.start_phone(dial="sip:8123@pbx.test", seconds=14)
    report = gateway.result(timeout=40)
    (call,) = report["calls"]
    assert call["status"] == 200 and call["media"] and call["srtp"], report
    assert srtp(call["remote_sdp"]), "the gateway got an SRTP offer"
    phone.wait(30)
    assert_hears(gateway.recording, PHONE_TONE, GATEWAY_TONE)
    assert_hears(phone_heard(phone), GATEWAY_TONE, PHONE_TONE)
    assert "INVITE sip:8123@" in gateway.log.read_text(errors="replace")
    (record, *_) = call_records(server)
    assert record["outcome"] == "answered" and record["answered_by"] == "trunk teams", record


def test_a_gateway_whose_certificate_does_not_verify_is_never_reached(tmp_path: Path) -> None:
    s = Setup(tmp_path, right_ca=False)
    try:
        server = s.start()
        gateway = s.gateway(seconds=6)
        deadline = time.monotonic() + 15
        row: dict[str, Any] = {}
        while time.monotonic() < deadline:
            row = trunks(server)["teams"]
            if not row["up"]:
                break
            time.sleep(0.5)
        assert row["up"] is False and "transport failure" in (row["last_error"] or ""), row
        gateway.result(timeout=20)
        assert "OPTIONS sip:" not in gateway.log.read_text(errors="replace")
        assert "certificate verify failed" in server.log()
    finally:
        s.close()


SAVP_OFFER = """m=audio [media_port] RTP/SAVP 0
      a=rtpmap:0 PCMU/8000
      a=crypto:1 {suite} inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"""


@pytest.mark.parametrize("source, suite, why", [
    (CARRIER_IP, "AES_256_CM_HMAC_SHA1_80", "unknown suite"),
    (GATEWAY_IP, None, "plain offer from an sdes trunk"),
])
def test_refused_offers_get_488(setup: Setup, source: str, suite: str | None, why: str,
                                sipp_required: None) -> None:
    server = setup.start()
    xml = uac_expect(488)
    if suite is not None:
        plain = "m=audio [media_port] RTP/AVP 0\n      a=rtpmap:0 PCMU/8000"
        assert plain in xml
        xml = xml.replace(plain, SAVP_OFFER.format(suite=suite))
    did = "0442930600" if source == CARRIER_IP else "0442930650"
    result = run_sipp(xml, setup.tmp / f"caller-{source}", server.sip, name="caller",
                      local_port=free_port(host=source), local_ip=source, service=did)
    assert result.ok, why + "\n" + result.describe()
