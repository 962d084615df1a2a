"""Refusals given at once keep no transaction (RFC 3261 §8.2.7): the whole stack on a fake clock
over the in-memory network. A challenge to a request without credentials, a 200 to OPTIONS, 404,
405, 481 and 501, a locked-out source's 403 leave nothing behind and are sent once; a failed
authentication (counted towards lockout) and a REGISTER that changes bindings stay stateful, so
their retransmissions are absorbed and counted once."""

from __future__ import annotations

import secrets
import time

from b2bua.config import config_from_text
from b2bua.sip.message import Request, Response
from b2bua.sip.transaction import make_ack
from b2bua.testing.clock import FakeClock
from b2bua.testing.media import ScriptedMedia
from b2bua.testing.memory import B2BUA, MemoryNetwork, Phone, build_b2bua
from b2bua.trunks.digest import Credentials, authorization, choose_challenges

PHONE = ("127.0.0.1", 5071)  # not a trunk: what it sends must authenticate
CONFIG = (
    '[server]\ndomain = "pbx.test"\nlisten = ["udp:127.0.0.1:5060"]\n'
    '[[trunks]]\nname = "t"\naddress = "127.0.0.2:5080"\ninbound_from = ["127.0.0.2/32"]\n'
    '[[users]]\nextension = "100"\nname = "Alice"\nsecret = "s100"\n'
)


class Rig:
    def __init__(self) -> None:
        self.network = MemoryNetwork()
        self.clock = FakeClock(1000.0)
        self.b2bua = build_b2bua(config_from_text(CONFIG), self.network, media=ScriptedMedia(),
                                 clock=self.clock, seed=b"stateless")
        self.layer = self.b2bua.stack.layer
        self.phone = Phone(self.network, PHONE)

    def send(self, request: Request) -> None:
        self.phone.send(request)
        self.network.pump()

    def statuses(self, call_id: str) -> list[int]:
        return [r.status for r in self.phone.responses() if r.call_id == call_id]

    def request(self, method: str, *, to_tag: str | None = None, cseq: int = 1,
                call_id: str | None = None, branch: str | None = None,
                extra: list[tuple[str, str]] | None = None) -> Request:
        host, port = PHONE
        uri = f"sip:100@{B2BUA[0]}:{B2BUA[1]}" if method != "REGISTER" else "sip:pbx.test"
        return Request(method, uri, [
            ("Via", f"SIP/2.0/UDP {host}:{port};branch={branch or 'z9hG4bK' + secrets.token_hex(6)}"),
            ("Max-Forwards", "70"),
            ("From", "<sip:100@pbx.test>;tag=ph1"),
            ("To", "<sip:100@pbx.test>" + (f";tag={to_tag}" if to_tag else "")),
            ("Call-ID", call_id or secrets.token_hex(8)),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", f"<sip:100@{host}:{port}>"),
            *(extra or []),
        ])


def test_options_405_481_501_keep_nothing_and_are_sent_once() -> None:
    rig = Rig()
    before = rig.layer.answered_statelessly
    sent = [
        rig.request("OPTIONS"),  # 200
        rig.request("FOO"),  # 501
        rig.request("MESSAGE"),  # 405
        rig.request("BYE"),  # 481: no dialog
        rig.request("NOTIFY", to_tag="nope"),  # 481 inside no dialog of ours (the core)
        rig.request("BYE", to_tag="gone"),  # 481: the engine knows no such dialog
        rig.request("CANCEL"),  # 481: no INVITE to cancel
    ]
    for request in sent:
        rig.send(request)
    assert [rig.statuses(r.call_id) for r in sent] == [[200], [501], [405], [481], [481],
                                                       [481], [481]]
    assert rig.layer.answered_statelessly == before + 7
    assert rig.layer.transaction_count == 0 and rig.layer.waiting_count == 0
    rig.b2bua.advance(40)
    assert [len(rig.statuses(r.call_id)) for r in sent] == [1] * 7  # nothing sent again
    rig.send(sent[0])  # the same OPTIONS again: served again
    assert rig.statuses(sent[0].call_id) == [200, 200]


def test_an_invite_without_credentials_gets_one_407_and_no_100() -> None:
    rig = Rig()
    invite = rig.request("INVITE")
    rig.send(invite)
    assert rig.statuses(invite.call_id) == [407]
    assert rig.layer.transaction_count == 0
    challenge = rig.phone.responses()[-1]
    rig.send(make_ack(invite, challenge))  # an ACK for no transaction: absorbed, no answer
    rig.b2bua.advance(40)
    rig.network.pump()
    assert rig.statuses(invite.call_id) == [407]  # no Timer G: one datagram per request
    rig.send(invite)  # sent again (its 407 lost): challenged again
    assert rig.statuses(invite.call_id) == [407, 407]
    assert rig.b2bua.registrar.counters["auth_failed"] == 0


def _credentials(rig: Rig, challenge: Response, header: str, method: str, uri: str,
                 password: str) -> tuple[str, str]:
    (chosen,) = choose_challenges([], challenge.headers.get_all(header))
    _, value = authorization(chosen, Credentials("100", password), method, uri, "c0ffee")
    return ("Authorization" if header == "www-authenticate" else "Proxy-Authorization"), value


def test_a_failed_authentication_stays_stateful_and_is_counted_once() -> None:
    rig = Rig()
    invite = rig.request("INVITE")
    rig.send(invite)
    challenge = rig.phone.responses()[-1]
    name, value = _credentials(rig, challenge, "proxy-authenticate", "INVITE",
                               invite.request_uri_text, "wrong")
    second = rig.request("INVITE", cseq=2, call_id=invite.call_id, extra=[(name, value)])
    rig.send(second)
    rig.send(second)  # a retransmission (the phone ACKed the 403): the transaction takes it
    assert rig.statuses(invite.call_id) == [407, 100, 403]
    assert rig.b2bua.registrar.counters["auth_failed"] == 1  # counted once
    assert rig.layer.transaction_count == 1  # CONFIRMED until Timer I


def test_a_register_challenge_is_stateless_and_its_success_is_not() -> None:
    rig = Rig()
    register = rig.request("REGISTER", extra=[("Expires", "300")])
    rig.send(register)
    assert rig.statuses(register.call_id) == [401] and rig.layer.transaction_count == 0
    challenge = rig.phone.responses()[-1]
    name, value = _credentials(rig, challenge, "www-authenticate", "REGISTER", "sip:pbx.test",
                               "s100")
    second = rig.request("REGISTER", cseq=2, call_id=register.call_id,
                         extra=[("Expires", "300"), (name, value)])
    rig.send(second)
    rig.send(second)  # a retransmission: the transaction answers it, the registrar sees one
    assert rig.statuses(register.call_id) == [401, 200, 200]
    assert rig.layer.transaction_count == 1 and rig.layer.retransmissions_absorbed >= 1


def _lock_out(rig: Rig) -> None:
    """Ten REGISTERs with a wrong password: the phone's address is locked out."""
    register = rig.request("REGISTER", extra=[("Expires", "300")])
    rig.send(register)
    challenge = rig.phone.responses()[-1]
    name, value = _credentials(rig, challenge, "www-authenticate", "REGISTER", "sip:pbx.test",
                               "wrong")
    for cseq in range(2, 12):
        rig.send(rig.request("REGISTER", cseq=cseq, call_id=register.call_id,
                             extra=[("Expires", "300"), (name, value)]))
    counters = rig.b2bua.registrar.counters
    assert counters["lockouts"] == 1 and counters["auth_failed"] == 10
    assert rig.b2bua.registrar.is_locked_out(PHONE[0], time.time())
    rig.b2bua.advance(40)  # the failures' transactions end
    assert rig.layer.transaction_count == 0


def test_a_locked_out_source_is_refused_statelessly_and_nothing_is_counted() -> None:
    # svcrack goes on guessing once locked out: each guess gets its 403 and nothing is kept.
    rig = Rig()
    _lock_out(rig)
    counters = rig.b2bua.registrar.counters
    failed, before = counters["auth_failed"], rig.layer.answered_statelessly
    register = rig.request("REGISTER", extra=[
        ("Expires", "300"),
        ("Authorization", 'Digest username="100", realm="pbx.test", nonce="x", '
                          'uri="sip:pbx.test", response="0123456789abcdef0123456789abcdef"'),
    ])
    invite = rig.request("INVITE", extra=[
        ("Proxy-Authorization", 'Digest username="100", realm="pbx.test", nonce="x", '
                                'uri="sip:100@pbx.test", response="0123456789abcdef"'),
    ])
    subscribe = rig.request("SUBSCRIBE", extra=[("Event", "message-summary")])
    for request in (register, invite, subscribe, register):  # the REGISTER sent again
        rig.send(request)
    assert rig.statuses(register.call_id) == [403, 403]
    assert rig.statuses(invite.call_id) == [403]  # no 100 either
    assert rig.statuses(subscribe.call_id) == [403]
    assert rig.layer.transaction_count == 0
    # Three answers made; the REGISTER sent again got the first one's bytes again.
    assert rig.layer.answered_statelessly == before + 3
    first, again = (bytes(r) for r in rig.phone.responses() if r.call_id == register.call_id)
    assert first == again
    assert counters["auth_failed"] == failed  # refused, not counted again
    rig.b2bua.advance(40)
    rig.network.pump()
    assert rig.statuses(invite.call_id) == [403]  # nothing retransmitted (no Timer G)


def test_a_subscribe_challenge_or_refusal_is_stateless() -> None:
    rig = Rig()
    subscribe = rig.request("SUBSCRIBE", extra=[("Event", "message-summary")])
    presence = rig.request("SUBSCRIBE", extra=[("Event", "presence")])
    for request in (subscribe, subscribe, presence):  # the first sent again
        rig.send(request)
    assert rig.statuses(subscribe.call_id) == [407, 407]
    assert rig.statuses(presence.call_id) == [489]
    assert rig.layer.transaction_count == 0


def test_a_register_with_credentials_for_another_realm_is_challenged_statelessly() -> None:
    # What a scanner sends: credentials for a realm of its own guess. They are not ours, so
    # this is a challenge like any other (no failure counted) and nothing needs remembering.
    rig = Rig()
    register = rig.request("REGISTER", extra=[
        ("Expires", "300"),
        ("Authorization", 'Digest username="100", realm="127.0.0.1", nonce="made-up", '
                          'uri="sip:pbx.test", response="0123456789abcdef0123456789abcdef"'),
    ])
    rig.send(register)
    rig.send(register)
    assert rig.statuses(register.call_id) == [401, 401]
    assert rig.layer.transaction_count == 0
    assert rig.b2bua.registrar.failures == 0
    # The retransmission gets the very same challenge (same nonce, same To tag): SIPp, which
    # has moved on to its authenticated REGISTER by then, would abort on another one.
    first, again = (bytes(r) for r in rig.phone.responses())
    assert first == again
