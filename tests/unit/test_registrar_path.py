"""Bindings registered through an edge proxy (RFC 3327 Path): where requests to them go, and
who keeps them alive."""

from __future__ import annotations

from b2bua.registrar.location import path_hop
from b2bua.sip.flow import Flow
from tests.unit.test_registrar import T0, Phone, make_registrar

EDGE = Flow("udp", "192.0.2.50", 5060, None, "198.51.100.1", 5060)
PATH = "<sip:192.0.2.50;lr;received=sip:203.0.113.7:40001>"


def test_a_pathed_binding_is_reached_through_its_first_path_hop() -> None:
    reg = make_registrar(keepalive_interval=30)
    phone = Phone(reg, flow=EDGE, contact="sip:1001@10.0.0.7:5062")
    assert phone.register(T0, extra=[("Path", PATH), ("Supported", "path")]).status == 200
    (b,) = reg.bindings("1001")
    assert b.path == (PATH,)
    uri, flow = reg.target_for(b)
    assert str(uri) == "sip:1001@10.0.0.7:5062"
    assert flow == EDGE  # the same hop: the REGISTER's own flow (socket) is reused
    # The edge keeps the device's flow alive: no OPTIONS from us.
    assert reg.keepalive_due(T0 + 1000) == []


def test_another_node_sends_to_the_path_hop_from_its_own_socket() -> None:
    # A binding read back from the shared store: another node's flow, without its socket.
    other = Flow("udp", "192.0.2.50", 5060)
    assert path_hop((PATH,), other) == other
    # An edge that names another address (or transport) in its Path than it sent from.
    hop = path_hop(("<sip:edge.example:5070;lr;transport=tcp>",), EDGE)
    assert hop == Flow("tcp", "edge.example", 5070)
    assert path_hop(("<sips:192.0.2.60;lr>",), EDGE) == Flow("tls", "192.0.2.60", 5061)


def test_an_unusable_path_keeps_the_register_flow() -> None:
    assert path_hop(("not a uri",), EDGE) == EDGE
    assert path_hop(("<tel:+33123>",), EDGE) == EDGE


def test_the_200_echoes_the_path_when_supported() -> None:
    reg = make_registrar()
    phone = Phone(reg, flow=EDGE, contact="sip:1001@10.0.0.7:5062")
    resp = phone.register(T0, extra=[("Path", PATH), ("Supported", "path")])
    assert resp.headers.get_all("path") == [PATH]
