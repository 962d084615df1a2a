"""The SIP core over real sockets: SIPp and raw datagrams against `b2bua run`."""

from __future__ import annotations

import re
import socket
from pathlib import Path

from b2bua.testing.net import free_port, udp_exchange
from b2bua.testing.server import RunningServer
from b2bua.testing.sipp import run_sipp

SCENARIOS = Path(__file__).parent / "scenarios"


def _scenario(name: str) -> str:
    return (SCENARIOS / name).read_text()


def test_options_over_udp(server: RunningServer, tmp_path: Path) -> None:
    result = run_sipp(_scenario("options.xml"), tmp_path / "sipp", server.sip,
                      local_port=free_port(), calls=20, rate=50)
    assert result.ok, result.describe()


def test_options_over_tcp(server: RunningServer, tmp_path: Path) -> None:
    result = run_sipp(_scenario("options.xml"), tmp_path / "sipp", server.sip,
                      local_port=free_port(), calls=20, rate=50, transport="t1")
    assert result.ok, result.describe()


def test_options_with_packet_loss_are_retransmitted(server: RunningServer, tmp_path: Path) -> None:
    # SIPp drops 10% of what it sends and of what it receives; its retransmissions and our re-sent
    # responses recover. (An attempt fails with p = 1 - 0.9 * 0.9 = 0.19; with 10 retransmissions
    # a transaction is lost with p = 0.19 ** 11, about 1e-8. At 20% loss that was 1e-5 a
    # transaction: one run in a few thousand lost one.)
    result = run_sipp(_scenario("options.xml"), tmp_path / "sipp", server.sip,
                      local_port=free_port(), calls=60, rate=30,
                      extra=("-lost", "10", "-max_non_invite_retrans", "10"),
                      timeout_s=90, wait=120)
    assert result.ok, result.describe()
    # Loss happened and was recovered by retransmission (SIPp's screen: messages, retransmissions).
    sent = re.search(r"OPTIONS -+>\s+(\d+)\s+(\d+)", result.stdout)
    assert sent is not None, result.stdout
    assert int(sent[1]) == 60 and int(sent[2]) > 0, sent[0]


def test_invite_to_unknown_number_gets_404(server: RunningServer, tmp_path: Path) -> None:
    # From the carrier's address (a trunk call) to a number that is no DID and no extension.
    result = run_sipp(_scenario("invite_unknown.xml"), tmp_path / "sipp", server.sip,
                      local_port=free_port(host="127.0.0.2"), local_ip="127.0.0.2",
                      calls=3, rate=10, service="0499999999")
    assert result.ok, result.describe()


def _raw(server: RunningServer, text: str) -> str | None:
    reply = udp_exchange(text.replace("\n", "\r\n").encode(), server.sip)
    return None if reply is None else reply.decode(errors="replace")


HEAD = (
    "Via: SIP/2.0/UDP 127.0.0.1:9999;branch=z9hG4bKraw{n}\n"
    "From: <sip:raw@127.0.0.1>;tag=r{n}\n"
    "To: <sip:b2bua@127.0.0.1>\n"
    "Call-ID: raw-{n}\n"
)


def test_malformed_requests_get_a_400_with_a_reason(server: RunningServer) -> None:
    cases = {
        "CSeq method": "OPTIONS sip:x@127.0.0.1 SIP/2.0\n" + HEAD.format(n=1)
        + "CSeq: 1 INVITE\nMax-Forwards: 70\nContent-Length: 0\n\n",
        "Content-Length": "OPTIONS sip:x@127.0.0.1 SIP/2.0\n" + HEAD.format(n=2)
        + "CSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 500\n\n",
        "Call-ID": "OPTIONS sip:x@127.0.0.1 SIP/2.0\n"
        + HEAD.format(n=3).replace("Call-ID: raw-3\n", "")
        + "CSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n",
        "quoted": "OPTIONS sip:x@127.0.0.1 SIP/2.0\n"
        + HEAD.format(n=4).replace("From: <sip:raw", 'From: "unterminated <sip:raw')
        + "CSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n",
    }
    for fragment, text in cases.items():
        reply = _raw(server, text)
        assert reply is not None, fragment
        status_line = reply.split("\r\n", 1)[0]
        assert status_line.startswith("SIP/2.0 400 "), (fragment, status_line)
        assert fragment.lower() in status_line.lower(), (fragment, status_line)


def test_unsupported_version_and_scheme(server: RunningServer) -> None:
    reply = _raw(server, "OPTIONS sip:x@127.0.0.1 SIP/3.0\n" + HEAD.format(n=5)
                 + "CSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n")
    assert reply is not None and reply.startswith("SIP/2.0 505 ")
    reply = _raw(server, "OPTIONS mailto:x@example.com SIP/2.0\n" + HEAD.format(n=6)
                 + "CSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n")
    assert reply is not None and reply.startswith("SIP/2.0 416 ")


def test_unknown_and_unsupported_methods(server: RunningServer) -> None:
    reply = _raw(server, "FOOBAR sip:x@127.0.0.1 SIP/2.0\n" + HEAD.format(n=7)
                 + "CSeq: 1 FOOBAR\nMax-Forwards: 70\nContent-Length: 0\n\n")
    assert reply is not None and reply.startswith("SIP/2.0 501 ")
    reply = _raw(server, "PUBLISH sip:x@127.0.0.1 SIP/2.0\n" + HEAD.format(n=8)
                 + "CSeq: 1 PUBLISH\nMax-Forwards: 70\nContent-Length: 0\n\n")
    assert reply is not None and reply.startswith("SIP/2.0 405 ")
    assert "\r\nAllow: " in reply


def test_garbage_is_dropped_and_the_server_keeps_serving(server: RunningServer) -> None:
    for junk in (b"\x00\x01\x02garbage", b"INVITE\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n", b"x" * 70000):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.sendto(junk, server.sip)
            except OSError:
                pass  # too large for a datagram on this system: fine
    reply = _raw(server, "OPTIONS sip:x@127.0.0.1 SIP/2.0\n" + HEAD.format(n=9)
                 + "CSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n")
    assert reply is not None and reply.startswith("SIP/2.0 200 ")


def test_tcp_keepalive_ping_gets_pong(server: RunningServer) -> None:
    with socket.create_connection(server.sip, timeout=3) as s:
        s.sendall(b"\r\n\r\n")
        assert s.recv(16) == b"\r\n"
