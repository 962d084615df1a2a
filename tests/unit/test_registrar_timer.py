"""The registrar's deadlines on the stack's timer: a binding expires, and a NATed device is
probed, at their own instants (wall-clock times converted to the stack's clock), on a fake
clock, through the whole stack."""

from __future__ import annotations

from b2bua.config import config_from_text
from b2bua.sip.message import Request
from b2bua.testing.clock import FakeClock
from b2bua.testing.memory import MemoryNetwork, Phone, build_b2bua

CONFIG = (
    '[server]\ndomain = "pbx.test"\nlisten = ["udp:127.0.0.1:5060"]\nauth_algorithms = ["MD5"]\n'
    '[registrar]\nkeepalive_interval = 25\nmin_expires = 60\n'
    '[[users]]\nextension = "100"\nname = "A"\nsecret = "s"\n'
    '[[users.devices]]\ntype = "sip"\nlabel = "d"\n'
)


def test_a_binding_expires_and_a_natted_device_is_probed_at_their_own_times() -> None:
    from b2bua.trunks.digest import Credentials, authorization, choose_challenges

    network = MemoryNetwork()
    clock = FakeClock(500.0)
    wall = FakeClock(1_780_000_000.0)

    class Walls:
        """The wall clock moves with the stack's clock."""

        def __call__(self) -> float:
            return wall.now() + (clock.now() - 500.0)

    b2bua = build_b2bua(config_from_text(CONFIG), network, wall_clock=Walls(), clock=clock)
    phone = Phone(network, ("198.51.100.7", 40000))  # behind a NAT: its Contact is private

    def register(cseq: int, extra: list[tuple[str, str]]) -> Request:
        return Request("REGISTER", "sip:pbx.test", [
            ("Via", f"SIP/2.0/UDP 198.51.100.7:40000;branch=z9hG4bK-reg{cseq};rport"),
            ("Max-Forwards", "70"), ("From", f"<sip:100@pbx.test>;tag={phone.tag}"),
            ("To", "<sip:100@pbx.test>"), ("Call-ID", "reg-1"), ("CSeq", f"{cseq} REGISTER"),
            ("Contact", "<sip:100@192.168.1.20:5060>"), ("Expires", "120"), *extra,
        ])

    phone.send(register(1, []))
    network.pump()
    challenge = next(r for r in phone.responses() if r.status == 401)
    (chosen,) = choose_challenges(challenge.headers.get_all("www-authenticate"), [])
    phone.send(register(2, [authorization(chosen, Credentials("100", "s"), "REGISTER",
                                          "sip:pbx.test", "c1")]))
    network.pump()
    assert [r.status for r in phone.responses()] == [401, 200]
    assert len(b2bua.registrar) == 1
    b2bua.advance(24.9)
    assert not phone.requests("OPTIONS")
    b2bua.advance(0.2)  # the keep-alive interval: an OPTIONS through the NAT's pinhole
    (probe,) = phone.requests("OPTIONS")
    assert probe.request_uri_text.startswith("sip:100@192.168.1.20")
    b2bua.advance(96)  # 121 s after the REGISTER: the binding is gone, with no poll
    assert len(b2bua.registrar) == 0
    assert len(phone.requests("OPTIONS")) == 4  # at 25, 50, 75 and 100 s: while it was there
