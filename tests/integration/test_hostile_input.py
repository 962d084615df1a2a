"""Hostile input over real sockets against `b2bua run`: malformed credentials, other SIP
versions, unknown required extensions. Every request that can be answered gets its answer."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from b2bua.registrar.digest import answer_challenge
from b2bua.sip.message import SUPPORTED_OPTION_TAGS, Response, parse_message
from b2bua.testing.server import RunningServer, running_server

_n = itertools.count(1)


@pytest.fixture
def attacker() -> Iterator[socket.socket]:
    """A UDP socket on its own loopback address, so its lockout touches no one else."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.3", 0))
        s.settimeout(3.0)
        yield s


def request(sock: socket.socket, method: str, ruri: str, *, to: str, extra: str = "",
            version: str = "SIP/2.0") -> str:
    n = next(_n)
    host, port = sock.getsockname()
    return (
        f"{method} {ruri} {version}\r\n"
        f"Via: {version}/UDP {host}:{port};branch=z9hG4bK-hostile-{n}\r\n"
        f"From: <sip:1001@pbx.test>;tag=h{n}\r\n"
        f"To: <{to}>\r\n"
        f"Call-ID: hostile-{n}\r\n"
        f"CSeq: {n} {method}\r\n"
        "Max-Forwards: 70\r\n"
        f"Contact: <sip:1001@{host}:{port}>\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    )


def exchange(sock: socket.socket, text: str, target: tuple[str, int]) -> Response:
    """Send a request and return its final response (provisional ones skipped)."""
    sock.sendto(text.encode("utf-8", "surrogateescape"), target)
    while True:
        data, _ = sock.recvfrom(65535)
        msg = parse_message(data)
        assert isinstance(msg, Response)
        if msg.status >= 200:
            return msg


def register(sock: socket.socket, server: RunningServer, extra: str = "") -> Response:
    return exchange(sock, request(sock, "REGISTER", "sip:pbx.test", to="sip:1001@pbx.test",
                                  extra=extra), server.sip)


def invite(sock: socket.socket, server: RunningServer, extra: str = "") -> Response:
    return exchange(sock, request(sock, "INVITE", "sip:1002@pbx.test", to="sip:1002@pbx.test",
                                  extra=extra), server.sip)


def test_non_ascii_opaque_is_answered_and_locks_the_source_out(
    server: RunningServer, attacker: socket.socket
) -> None:
    """The original report: `opaque="café"` made REGISTER go unanswered, INVITE get only
    100 Trying, and was never counted towards lockout."""
    challenge = register(attacker, server).headers.get("WWW-Authenticate") or ""
    creds = answer_challenge(challenge, username="1001", password="wrong", method="REGISTER",
                             uri="sip:pbx.test", cnonce="c1").replace('opaque="', 'opaque="café')
    statuses = [register(attacker, server, f"Authorization: {creds}\r\n").status
                for _ in range(9)]
    assert statuses == [400] * 9
    invite_challenge = invite(attacker, server).headers.get("Proxy-Authenticate") or ""
    invite_creds = answer_challenge(
        invite_challenge, username="1001", password="secret1001", method="INVITE",
        uri="sip:1002@pbx.test", cnonce="c2").replace('opaque="', 'opaque="café')
    # The tenth failed authentication (the default lockout_failures) locks the address out.
    assert invite(attacker, server, f"Proxy-Authorization: {invite_creds}\r\n").status == 403
    right = answer_challenge(challenge, username="1001", password="secret1001",
                             method="REGISTER", uri="sip:pbx.test", cnonce="c3", nc=2)
    assert register(attacker, server, f"Authorization: {right}\r\n").status == 403
    assert "source 127.0.0.3 locked out" in server.log()
    assert "Traceback" not in server.log()


def test_rfc4475_badvers_gets_505(server: RunningServer, attacker: socket.socket) -> None:
    """RFC 4475 §3.4.1: "This request has version number 7.0. This version number must
    not be accepted ... an element MUST respond with a 505 Version Not Supported"; the vector
    writes SIP/7.0 in its Via too."""
    text = request(attacker, "OPTIONS", "sip:t.watson@127.0.0.1", to="sip:t.watson@127.0.0.1",
                   version="SIP/7.0")
    answer = exchange(attacker, text, server.sip)
    assert (answer.status, answer.reason) == (505, "Version Not Supported")


@pytest.mark.parametrize("method", ["OPTIONS", "INVITE", "REGISTER"])
def test_unknown_required_extension_gets_420(
    server: RunningServer, attacker: socket.socket, method: str
) -> None:
    ruri = "sip:pbx.test" if method == "REGISTER" else "sip:1002@pbx.test"
    text = request(attacker, method, ruri, to="sip:1002@pbx.test",
                   extra="Require: timer, x-nonsense\r\n")
    answer = exchange(attacker, text, server.sip)
    assert answer.status == 420
    assert answer.headers.get("Unsupported") == "x-nonsense"


def test_supported_lists_our_extensions(server: RunningServer, attacker: socket.socket) -> None:
    text = request(attacker, "OPTIONS", "sip:1002@pbx.test", to="sip:1002@pbx.test",
                   extra="Require: timer\r\n")
    answer = exchange(attacker, text, server.sip)
    assert answer.status == 200
    assert answer.headers.get("Supported") == ", ".join(SUPPORTED_OPTION_TAGS)
    assert "timer" in SUPPORTED_OPTION_TAGS


def _metrics(server: RunningServer) -> dict[str, float]:
    import urllib.request

    with urllib.request.urlopen(server.http_base + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        out[name] = float(value)
    return out


@pytest.mark.parametrize("action", ["drop", "reject"])
def test_a_flooding_source_is_blocked_and_others_are_served(
    tmp_path: Path, sipp_required: None, attacker: socket.socket, action: str
) -> None:
    from tests.integration.conftest import make_config

    config = make_config(tmp_path, extra=f'\n[overload]\nsource_rate = 20\naction = "{action}"\n')
    with running_server(config) as server:
        for _ in range(100):
            attacker.sendto(request(attacker, "OPTIONS", "sip:pbx.test", to="sip:pbx.test")
                            .encode(), server.sip)
        answers: list[Response] = []
        attacker.settimeout(1.0)
        try:
            while True:
                msg = parse_message(attacker.recvfrom(65535)[0])
                assert isinstance(msg, Response)
                answers.append(msg)
        except TimeoutError:
            pass
        statuses = sorted(a.status for a in answers)
        refused = 10 if action == "reject" else 0  # REJECTS_PER_WINDOW
        assert statuses == [200] * 20 + [503] * refused, statuses
        assert all(a.headers.get("Retry-After") for a in answers if a.status == 503)
        # Another source is served meanwhile.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
            other.bind(("127.0.0.1", 0))
            other.settimeout(3.0)
            ok = exchange(other, request(other, "OPTIONS", "sip:pbx.test", to="sip:pbx.test"),
                          server.sip)
            assert ok.status == 200
        metrics = _metrics(server)
        assert metrics["b2bua_sources_blocked_total"] == 1
        assert metrics["b2bua_requests_rejected_over_rate_total"] == refused
        assert metrics["b2bua_requests_dropped_over_rate_total"] == 80 - refused
    log = server.log()
    assert log.count("source 127.0.0.3 sent more than 20 requests in a second") == 1


def _everything(sock: socket.socket, seconds: float) -> list[str]:
    """The first line of every datagram that comes within `seconds`."""
    lines = []
    sock.settimeout(0.2)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data, _ = sock.recvfrom(65535)
        except TimeoutError:
            continue
        lines.append(data.split(b"\r\n", 1)[0].decode())
    return lines


def test_refusals_given_at_once_are_one_datagram_and_leave_no_transaction(
    server: RunningServer, attacker: socket.socket
) -> None:
    # A scanner (or a forged source address) sends requests and never ACKs: each gets one
    # answer, no 100 before an INVITE's challenge, nothing again while Timer G would run
    # (0.5, 1.5, 3.5 s), and the server keeps no transaction for any of them.
    before = _metrics(server)["b2bua_sip_stateless_replies_total"]
    for method, ruri in (("INVITE", "sip:1002@pbx.test"), ("REGISTER", "sip:pbx.test"),
                         ("OPTIONS", "sip:1002@pbx.test"), ("MESSAGE", "sip:1002@pbx.test")):
        attacker.sendto(request(attacker, method, ruri, to="sip:1002@pbx.test").encode(),
                        server.sip)
    lines = _everything(attacker, 4.0)
    assert sorted(lines) == sorted([
        "SIP/2.0 407 Proxy Authentication Required", "SIP/2.0 401 Unauthorized",
        "SIP/2.0 200 OK", "SIP/2.0 405 Method Not Allowed",
    ])
    m = _metrics(server)
    assert m["b2bua_sip_stateless_replies_total"] == before + 4
    assert m["b2bua_sip_transactions"] == 0
