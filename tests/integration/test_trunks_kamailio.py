"""The carrier stand-in (Kamailio with digest auth) on its own, then the sans-IO trunk layer
registering to it over real UDP: digest MD5 and SHA-256, 403 on a wrong password, and a call
from the public network reaching us through the Contact we registered."""

from __future__ import annotations

import itertools
import logging
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from b2bua.sip.message import Request, Response, parse_message
from b2bua.sip.uri import SipUri
from b2bua.testing.kamailio import RunningKamailio, start_kamailio
from b2bua.testing.net import free_port
from b2bua.testing.sipp import run_sipp
from b2bua.trunks import RegistrationState, Trunks, TrunkSpec

pytestmark = pytest.mark.integration

SCENARIOS = Path(__file__).parent / "scenarios"
PUBLIC = ("127.0.0.1", 0)  # replaced by a free port per test


@pytest.fixture
def public_port() -> int:
    return free_port()


@pytest.fixture
def carrier(tmp_path: Path, public_port: int, request: pytest.FixtureRequest) -> Iterator[
        RunningKamailio]:
    algorithm = getattr(request, "param", "MD5")
    k = start_kamailio(tmp_path / "kamailio", public=("127.0.0.1", public_port),
                       algorithm=algorithm)
    try:
        yield k
    finally:
        k.stop()


def sipp_register(carrier: RunningKamailio, tmp_path: Path, password: str) -> tuple[bool, str]:
    port = free_port()
    inf = tmp_path / "users.csv"
    inf.write_text(f"SEQUENTIAL\n{carrier.username};127.0.0.1;{port}\n")
    result = run_sipp(
        (SCENARIOS / "register.xml").read_text(), tmp_path / f"sipp-{password}", carrier.address,
        name="register", local_port=port, timeout_s=10,
        extra=("-inf", str(inf), "-key", "expires", "60", "-au", carrier.username,
               "-ap", password),
    )
    return result.ok, result.messages()


def test_sipp_registers_to_the_carrier_with_digest(carrier: RunningKamailio,
                                                   tmp_path: Path) -> None:
    ok, messages = sipp_register(carrier, tmp_path, carrier.password)
    assert ok, messages
    assert "SIP/2.0 401 Unauthorized" in messages and "SIP/2.0 200 OK" in messages
    ok, messages = sipp_register(carrier, tmp_path, "wrong")
    assert not ok and "SIP/2.0 403 Forbidden" in messages


class UdpShell:
    """The smallest asyncio-free shell around `Trunks`: one UDP socket, our own Via, blocking
    receive with a timeout. Enough to exercise the sans-IO layer against a real registrar."""

    def __init__(self, trunks: Trunks, sock: socket.socket) -> None:
        self.trunks = trunks
        self.sock = sock
        self.port = sock.getsockname()[1]
        self.sent: dict[str, tuple[str, str]] = {}  # Call-ID + CSeq -> (trunk, purpose)
        self.requests: list[Request] = []  # requests the carrier sent us

    def flush(self) -> None:
        for out in self.trunks.take_requests():
            request = out.request
            branch = "z9hG4bK" + secrets.token_hex(6)
            request.headers.add_first("Via", f"SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport")
            spec = self.trunks.specs[out.trunk]
            self.sent[f"{request.call_id} {request.cseq.number}"] = (out.trunk, out.purpose)
            self.sock.sendto(bytes(request), (spec.host, spec.target_port))

    def pump(self, until: float) -> None:
        """Send, receive and feed until `until` (monotonic)."""
        self.flush()
        while (left := until - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                break
            message = parse_message(data)
            if isinstance(message, Response):
                key = f"{message.call_id} {message.cseq.number}"
                trunk, purpose = self.sent[key]
                self.trunks.handle_response(trunk, purpose, message, time.monotonic())  # type: ignore[arg-type]
            else:
                self.requests.append(message)
            self.flush()


def make_trunks(carrier: RunningKamailio, password: str) -> tuple[Trunks, socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    spec = TrunkSpec("carrier", carrier.host, carrier.port, username=carrier.username,
                     password=password, register=True, register_expires=60, options_ping=5)
    counter = itertools.count()
    trunks = Trunks([spec], contact_for=lambda s: f"sip:{s.username}@127.0.0.1:{port}",
                    from_uri="sip:pbx@127.0.0.1", random_token=lambda: f"{secrets.token_hex(4)}{next(counter)}")
    return trunks, sock


@pytest.mark.parametrize("carrier", ["MD5", "SHA-256"], indirect=True)
def test_trunk_registers_and_receives_calls_through_its_contact(
    carrier: RunningKamailio, public_port: int
) -> None:
    trunks, sock = make_trunks(carrier, carrier.password)
    with sock:
        shell = UdpShell(trunks, sock)
        trunks.start(time.monotonic())
        shell.pump(time.monotonic() + 2)
        registration = trunks.registrations["carrier"]
        assert registration.state is RegistrationState.REGISTERED, registration.last_error
        assert 0 < registration.next_deadline() - time.monotonic() <= 60  # type: ignore[operator]
        assert [r.to_json() for r in trunks.status()] == [{
            "name": "carrier", "registered": True, "up": True, "lines": 0, "lines_in_use": 0,
            "last_error": None}]
        # The public network calls our number: Kamailio sends it to the Contact we registered.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as public:
            public.bind(("127.0.0.1", public_port))
            invite = (
                f"INVITE sip:{carrier.username}@{carrier.hostport} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{public_port};branch=z9hG4bKpub1;rport\r\n"
                "From: <sip:0611111111@public.example>;tag=p1\r\n"
                f"To: <sip:{carrier.username}@{carrier.hostport}>\r\n"
                "Call-ID: inbound-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
                f"Contact: <sip:0611111111@127.0.0.1:{public_port}>\r\nContent-Length: 0\r\n\r\n"
            )
            public.sendto(invite.encode(), carrier.address)
            shell.pump(time.monotonic() + 2)
        invites = [r for r in shell.requests if r.method == "INVITE"]
        assert invites, "the carrier did not send the call to our Contact"
        inbound = invites[0]  # (and its retransmissions: nobody answers it here)
        uri = inbound.request_uri
        assert isinstance(uri, SipUri)
        assert trunks.by_request_uri(uri.user, uri.params) is trunks.specs["carrier"]


def test_wrong_password_gets_one_warning_and_no_storm(carrier: RunningKamailio) -> None:
    trunks, sock = make_trunks(carrier, "not-the-password")
    with sock:
        shell = UdpShell(trunks, sock)
        trunks.start(time.monotonic())
        shell.pump(time.monotonic() + 2)
        registration = trunks.registrations["carrier"]
        assert registration.state is RegistrationState.REJECTED
        assert registration.last_error == "403 Forbidden: the carrier refused our credentials"
        warnings = [e for e in trunks.take_events() if e.level >= logging.WARNING]
        assert len(warnings) == 1
        # Two REGISTERs (unauthenticated, then with the wrong credentials), then nothing for
        # the longest back-off.
        assert sum(1 for p in shell.sent.values() if p[1] == "register") == 2
        assert registration.next_deadline() - time.monotonic() > 1700  # type: ignore[operator]
        assert trunks.status()[0].to_json()["registered"] is False
