"""The front door: RFC 3581 `received` and `rport` on the top Via of what comes in."""

from __future__ import annotations

from b2bua.sip.flow import Flow
from b2bua.transport.ingress import add_received
from tests.unit.test_transaction import _with_vias


def test_add_received_fills_rport_and_received_on_the_top_via_only() -> None:
    req = _with_vias(
        "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKtop;rport , SIP/2.0/UDP  p1.example.com;branch=z9hG4bKp1",
        "SIP/2.0/TCP [2001:db8::7]:5070;branch=z9hG4bKp2;received=2001:db8::7",
    )
    assert add_received(req, Flow("udp", "203.0.113.9", 40000))
    assert req.headers.values("via") == [
        "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKtop;rport=40000;received=203.0.113.9",
        "SIP/2.0/UDP  p1.example.com;branch=z9hG4bKp1",
        "SIP/2.0/TCP [2001:db8::7]:5070;branch=z9hG4bKp2;received=2001:db8::7",
    ]
    assert req.via.rport == 40000 and req.via.received == "203.0.113.9"


def test_add_received_with_rport_adds_received_even_when_identical() -> None:
    req = _with_vias("SIP/2.0/UDP 203.0.113.9:5060;rport;branch=z9hG4bKx")
    assert add_received(req, Flow("udp", "203.0.113.9", 5060))
    assert req.headers.values("via") == [
        "SIP/2.0/UDP 203.0.113.9:5060;rport=5060;branch=z9hG4bKx;received=203.0.113.9"
    ]


def test_add_received_leaves_a_matching_via_untouched() -> None:
    req = _with_vias("SIP/2.0/UDP 203.0.113.9:5060;branch=z9hG4bKx")
    before = bytes(req)
    assert not add_received(req, Flow("udp", "203.0.113.9", 5060))
    assert bytes(req) == before
    v6 = _with_vias("SIP/2.0/UDP [2001:DB8::1];branch=z9hG4bKx")
    assert not add_received(v6, Flow("udp", "2001:db8::1", 5060))


def test_add_received_for_a_domain_name() -> None:
    req = _with_vias("SIP/2.0/TLS phone.example.com;branch=z9hG4bKx")
    assert add_received(req, Flow("tls", "198.51.100.2", 50123))
    assert req.headers.get("via") == (
        "SIP/2.0/TLS phone.example.com;branch=z9hG4bKx;received=198.51.100.2"
    )
