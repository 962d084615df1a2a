"""Call flows on the UAC - B2BUA - UAS triangle, on a fake clock: ring timeouts, no-answer
destinations, bounce, cancels, declines, late and extra answers. The whole stack runs (ingress,
transaction layer, core, call engine); the wire is in memory, the media port scripted, and time
moves only when a test says so: a 20-second ring timeout costs microseconds."""

from __future__ import annotations

from typing import Any

import pytest

from b2bua.calls.records import CallRecorder
from b2bua.commands import AppKind, MediaLocalOffer
from b2bua.config import config_from_text
from b2bua.sip.dialog import Dialog, DialogRegistry
from b2bua.sip.message import Request, Response
from b2bua.testing.clock import FakeClock
from b2bua.testing.media import ScriptedMedia
from b2bua.testing.memory import (
    B2bua,
    MemoryNetwork,
    Phone,
    ack_and_bye,
    build_b2bua,
    caller_invite,
)

CALLER = ("127.0.0.2", 5090)  # the carrier sends calls from here...
CARRIER = ("127.0.0.2", 5080)  # ...and takes our outbound calls here
ELSEWHERE = 'SIP;cause=200;text="Call completed elsewhere"'
BUSY_EVERYWHERE = 'SIP;cause=600;text="Busy Everywhere"'
WALL = 1_780_000_000.0  # a fixed wall clock: records and rules


def config(decline: str = "all", no_answer: str = '{ kind = "voicemail" }',
           dave_no_answer: str = '{ kind = "voicemail" }') -> str:
    devices = "".join(
        f'[[users.devices]]\ntype = "sip"\nlabel = "d{i}"\n'
        f'contact = "sip:100@127.0.0.1:{5071 + i}"\n' for i in range(3))
    return (
        '[server]\ndomain = "pbx.test"\nlisten = ["udp:127.0.0.1:5060"]\n'
        '[[trunks]]\nname = "t"\naddress = "127.0.0.2:5080"\ninbound_from = ["127.0.0.2/32"]\n'
        f'[[users]]\nextension = "100"\nname = "Alice"\nsecret = "s"\nring_timeout = 20\n'
        f'decline = "{decline}"\nmobile = "0611111111"\nno_answer = {no_answer}\n{devices}'
        '[[users]]\nextension = "101"\nname = "Bob"\nsecret = "s"\nring_timeout = 15\n'
        'mobile = "0622222222"\nforward = { kind = "mobile", bounce = true }\n'
        '[[users]]\nextension = "102"\nname = "Carol"\nsecret = "s"\n'
        'no_answer = { kind = "voicemail" }\n'
        '[[users]]\nextension = "103"\nname = "Dave"\nsecret = "s103"\nring_timeout = 10\n'
        f'no_answer = {dave_no_answer}\n'
        '[[users.devices]]\ntype = "sip"\nlabel = "desk"\ncontact = "sip:103@127.0.0.1:5081"\n'
        '[[system_extensions]]\nextension = "800"\nname = "Accueil"\nkind = "ring_group"\n'
        'members = ["100", "103"]\n'
    )


class Triangle:
    """A caller on the trunk, three phones of extension 100, the carrier for outbound calls."""

    def __init__(self, text: str | None = None, media: ScriptedMedia | None = None) -> None:
        self.network = MemoryNetwork()
        self.clock = FakeClock(1000.0)
        self.media = media if media is not None else ScriptedMedia()
        self.b2bua: B2bua = build_b2bua(config_from_text(text or config()), self.network,
                                        wall_clock=lambda: WALL, media=self.media,
                                        clock=self.clock, seed=b"triangle")
        self.phones = [Phone(self.network, ("127.0.0.1", 5071 + i)) for i in range(3)]
        self.caller = Phone(self.network, CALLER)
        self.carrier = Phone(self.network, CARRIER)
        self.invite: Request | None = None

    def call(self, to: str = "100") -> Request:
        self.invite = caller_invite(to, CALLER)
        self.caller.send(self.invite)
        self.pump()
        return self.invite

    def pump(self) -> None:
        self.network.pump()

    def advance(self, seconds: float) -> None:
        self.b2bua.advance(seconds)
        self.pump()

    def caller_finals(self) -> list[int]:
        return [r.status for r in self.caller.responses()
                if r.cseq.method == "INVITE" and r.status >= 200]

    def caller_statuses(self) -> list[int]:
        return [r.status for r in self.caller.responses()
                if r.cseq.method == "INVITE" and r.status > 100]

    def ok(self) -> Response:
        return next(r for r in self.caller.responses()
                    if r.status == 200 and r.cseq.method == "INVITE")

    def caller_hangs_up(self) -> None:
        assert self.invite is not None
        ack, bye = ack_and_bye(self.invite, self.ok(), CALLER)
        self.caller.send(ack)
        self.caller.send(bye)
        self.pump()

    def caller_acks(self) -> None:
        assert self.invite is not None
        ack, _ = ack_and_bye(self.invite, self.ok(), CALLER)
        self.caller.send(ack)
        self.pump()

    def caller_cancels(self, reason: str | None = None) -> None:
        invite = self.invite
        assert invite is not None
        headers = [
            ("Via", invite.headers.get("via") or ""), ("Max-Forwards", "70"),
            ("From", invite.headers.get("from") or ""), ("To", invite.headers.get("to") or ""),
            ("Call-ID", invite.call_id), ("CSeq", "1 CANCEL"),
        ]
        if reason:
            headers.append(("Reason", reason))
        self.caller.send(Request("CANCEL", invite.request_uri_text, headers))
        self.pump()

    def record(self) -> dict[str, Any]:
        (record,) = self.records()
        return record

    def records(self) -> list[dict[str, Any]]:
        recorder = self.b2bua.stack.recorder
        assert isinstance(recorder, CallRecorder)
        recorder.flush()
        return [{"outcome": r.outcome, "answered_by": r.answered_by, "trace": r.trace,
                 "ended_by": r.ended_by} for r in reversed(recorder.last(100))]

    def assert_quiet(self) -> None:
        """Nothing is left: no call, branch, relay, dialog or transaction, no phone in a call."""
        self.advance(300)  # every transaction's last timer runs out
        engine = self.b2bua.engine
        assert not engine.calls and not engine.branches and not engine.relays
        assert not engine.reacks and len(engine.dialogs) == 0
        assert self.b2bua.stack.layer.transaction_count == 0
        for phone in [*self.phones, self.caller, self.carrier]:
            assert not phone.open_dialogs(), f"{phone.address} still in a call"


def cancels(phone: Phone) -> list[str | None]:
    return [c.headers.get("reason") for c in phone.requests("CANCEL")]


# -- ringing, answering ------------------------------------------------------------------------


def test_first_answer_wins_and_the_others_are_cancelled_completed_elsewhere() -> None:
    t = Triangle()
    t.call()
    for phone in t.phones:
        phone.respond(180)
    t.pump()
    assert t.caller_statuses() == [180]  # one 180 is enough
    t.phones[1].respond(200)
    t.pump()
    assert t.caller_finals() == [200]
    assert cancels(t.phones[0]) == cancels(t.phones[2]) == [ELSEWHERE]
    assert not t.phones[1].requests("CANCEL") and t.phones[1].requests("ACK")
    t.caller_hangs_up()
    assert t.phones[1].requests("BYE")
    assert t.record()["outcome"] == "answered" and t.record()["answered_by"] == "d1 (sip)"
    t.assert_quiet()


def test_every_183_is_relayed_with_its_sdp_through_media() -> None:
    t = Triangle()
    t.call()
    t.phones[0].respond(183)
    t.phones[1].respond(183)
    t.pump()
    early = [r for r in t.caller.responses() if r.status == 183]
    assert len(early) == 2 and all(b"10.9.9." in r.body for r in early)


def test_no_answer_within_the_ring_timeout_cancels_without_reason_then_voicemail() -> None:
    t = Triangle()
    t.call()
    for phone in t.phones:
        phone.respond(180)
    t.advance(19.9)
    assert not any(p.requests("CANCEL") for p in t.phones)
    t.advance(0.2)
    for phone in t.phones:
        assert cancels(phone) == [None], "a missed call: no Reason"
    assert t.caller_finals() == [200]  # we answer: voicemail
    assert b"10.9.9.99" in t.ok().body
    app = t.media.app()
    assert app.app is AppKind.VOICEMAIL and app.extension == "100"
    t.caller_acks()
    t.media.finish(app.call, "voicemail")
    t.pump()
    assert t.caller.requests("BYE")
    record = t.record()
    assert record["outcome"] == "voicemail" and "ring timeout" in record["trace"]
    t.assert_quiet()


def test_no_device_registered_goes_to_the_no_answer_destination_at_once() -> None:
    t = Triangle()
    t.call("102")  # Carol has no device
    assert t.caller_finals() == [200]
    app = t.media.app()
    assert app.app is AppKind.VOICEMAIL and app.extension == "102"
    t.caller_acks()
    t.media.finish(app.call, "voicemail")
    t.pump()
    assert "no device registered" in t.record()["trace"]
    t.assert_quiet()


def test_busy_everywhere_gives_486() -> None:
    t = Triangle()
    t.call()
    for phone in t.phones:
        phone.respond(486)
    t.pump()
    assert t.caller_finals() == [486]
    assert t.record()["outcome"] == "busy"
    t.assert_quiet()


def test_a_decline_stops_every_device_busy_everywhere_then_no_answer() -> None:
    t = Triangle()
    t.call()
    for phone in t.phones:
        phone.respond(180)
    t.phones[0].respond(603)
    t.pump()
    assert cancels(t.phones[1]) == cancels(t.phones[2]) == [BUSY_EVERYWHERE]
    assert t.caller_finals() == [200]  # the no-answer destination: voicemail
    t.caller_acks()
    t.media.finish(t.media.app().call, "voicemail")
    t.pump()
    assert "declined by d0 (sip)" in t.record()["trace"]
    t.assert_quiet()


def test_decline_device_policy_keeps_the_others_ringing() -> None:
    t = Triangle(config(decline="device"))
    t.call()
    for phone in t.phones:
        phone.respond(180)
    t.phones[0].respond(603)
    t.pump()
    assert not t.phones[1].requests("CANCEL") and t.caller_finals() == []
    t.phones[2].respond(200)
    t.pump()
    assert t.caller_finals() == [200]
    assert cancels(t.phones[1]) == [ELSEWHERE]
    t.caller_hangs_up()
    t.assert_quiet()


def test_no_answer_busy_rule() -> None:
    t = Triangle(config(no_answer='{ kind = "busy" }'))
    t.call()
    t.advance(21)
    assert t.caller_finals() == [486]
    t.assert_quiet()


# -- cancels -----------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", [None, 'Q.850;cause=16'])
def test_the_callers_cancel_reaches_every_branch_with_its_own_reason(reason: str | None) -> None:
    t = Triangle()
    t.call()
    for phone in t.phones:
        phone.respond(180)
    t.caller_cancels(reason)
    assert [cancels(p) for p in t.phones] == [[reason]] * 3
    assert t.caller_finals() == [487]
    assert t.record()["outcome"] == "cancelled"
    t.assert_quiet()


def test_a_cancel_waits_for_the_first_provisional_of_a_silent_branch() -> None:
    """RFC 3261 §9.1: no CANCEL before a provisional response."""
    t = Triangle()
    t.call()
    t.phones[0].respond(180)
    t.phones[0].respond(200)
    t.pump()
    assert not t.phones[1].requests("CANCEL"), "phone 1 has said nothing yet"
    t.phones[1].respond(100)
    t.pump()
    assert cancels(t.phones[1]) == [ELSEWHERE]
    t.caller_hangs_up()
    t.assert_quiet()


def test_a_branch_that_never_answers_its_cancel_is_given_up_after_64_t1() -> None:
    t = Triangle()
    t.call()
    t.phones[0].respond(180)
    t.phones[1].respond(180)
    t.phones[1].receive = lambda message: t.phones[1].received.append(message)  # deaf now
    t.phones[0].respond(200)
    t.pump()
    assert cancels(t.phones[1]) == [ELSEWHERE]
    t.caller_hangs_up()
    t.advance(33)  # 64*T1 after the CANCEL: the INVITE transaction is abandoned
    engine = t.b2bua.engine
    assert not engine.branches or all(b.state.value == "FAILED" for b in engine.branches.values())
    t.phones[1].receive = Phone.receive.__get__(t.phones[1])
    t.phones[2].respond(487)
    t.assert_quiet()


# -- answers the call does not want -------------------------------------------------------------


def test_a_late_answer_is_acked_then_byed_completed_elsewhere() -> None:
    t = Triangle()
    t.call()
    for phone in t.phones:
        phone.respond(180)
    t.phones[0].respond(200)
    t.phones[1].respond(200)  # crossed our CANCEL
    t.pump()
    assert t.phones[1].requests("ACK")
    (bye,) = t.phones[1].requests("BYE")
    assert bye.headers.get("reason") == ELSEWHERE
    assert t.caller_finals() == [200]
    t.caller_hangs_up()
    t.assert_quiet()


def test_a_second_to_tag_on_the_winning_branch_is_acked_then_byed() -> None:
    """§13.2.2.4: a gateway forking downstream answers twice, from two dialogs: the call goes on
    with the first; the second is ACKed, then ended."""
    t = Triangle()
    t.call()
    t.phones[0].respond(200, tag="first")
    t.phones[0].respond(200, tag="second")
    t.pump()
    acks = t.phones[0].requests("ACK")
    assert {a.to.tag for a in acks} == {"first", "second"}
    (bye,) = t.phones[0].requests("BYE")
    assert bye.to.tag == "second"
    assert t.caller_finals() == [200]
    assert len(t.b2bua.engine.calls) == 1
    t.caller_hangs_up()
    assert {b.to.tag for b in t.phones[0].requests("BYE")} == {"first", "second"}
    t.assert_quiet()


def test_a_retransmitted_2xx_gets_the_same_ack_again() -> None:
    t = Triangle()
    t.call()
    ok = t.phones[0].respond(200)
    t.pump()
    t.phones[0].send(ok)
    t.pump()
    first, again = t.phones[0].requests("ACK")
    assert bytes(first) == bytes(again)
    t.caller_hangs_up()
    t.phones[0].send(ok)  # after the call: from the bytes kept for it
    t.pump()
    assert bytes(t.phones[0].requests("ACK")[-1]) == bytes(first)
    t.assert_quiet()


# -- bounce ------------------------------------------------------------------------------------


def test_a_bounce_answered_joins_the_caller_to_the_number() -> None:
    t = Triangle()
    t.call("101")
    assert t.caller_finals() == [200]  # we answer, the caller hears "please wait"
    (play,) = t.media.played
    assert play.prompt == "locate" and play.extension == "101"
    assert any(isinstance(c, MediaLocalOffer) for c in t.media.commands)
    (invite,) = t.carrier.invites
    assert invite.headers.get("privacy") == "id"
    assert "anonymous" in (invite.headers.get("from") or "").lower()
    assert b"10.9.9.99" in invite.body  # our own offer
    t.caller_acks()
    t.carrier.respond(180)
    t.carrier.respond(200)
    t.pump()
    assert t.carrier.requests("ACK") and t.media.resumed
    t.caller_hangs_up()
    assert t.carrier.requests("BYE")
    assert t.record()["outcome"] == "answered"
    t.assert_quiet()


@pytest.mark.parametrize("how", ["timeout", "busy"])
def test_a_bounce_not_answered_says_unavailable_then_voicemail(how: str) -> None:
    t = Triangle()
    t.call("101")
    t.caller_acks()
    t.carrier.respond(180)
    if how == "timeout":
        t.advance(15.1)
        assert cancels(t.carrier) == [None]
    else:
        t.carrier.respond(486)
        t.pump()
    app = t.media.app()
    assert app.app is AppKind.UNAVAILABLE and app.extension == "101"
    t.media.finish(app.call, "voicemail")
    t.pump()
    assert t.caller.requests("BYE")
    assert t.record()["outcome"] == "voicemail"
    t.assert_quiet()


def test_the_caller_hangs_up_while_the_bounce_rings() -> None:
    t = Triangle()
    t.call("101")
    t.caller_acks()
    t.carrier.respond(180)
    t.pump()
    assert t.invite is not None
    _, bye = ack_and_bye(t.invite, t.ok(), CALLER)
    t.caller.send(bye)
    t.pump()
    assert cancels(t.carrier) == [None]
    t.assert_quiet()


# -- failures after the answer ------------------------------------------------------------------


def test_a_caller_that_never_acks_is_hung_up_on_both_legs() -> None:
    t = Triangle()
    t.call()
    t.phones[0].respond(200)
    t.pump()
    assert t.caller_finals() == [200]
    t.advance(33)  # 64*T1 of 2xx retransmissions without an ACK
    assert t.phones[0].requests("BYE") and t.caller.requests("BYE")
    assert t.record()["outcome"] == "failed"
    t.assert_quiet()


def test_a_relayed_request_that_times_out_ends_the_call() -> None:
    t = Triangle()
    invite = t.call()
    t.phones[0].respond(200)
    t.pump()
    t.caller_acks()
    t.phones[0].answer_in_dialog = False  # the callee stops answering
    ok = t.ok()
    host, port = CALLER
    t.caller.send(Request("INFO", ok.contacts[0].uri, [
        ("Via", f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK-info-1"), ("Max-Forwards", "70"),
        ("From", invite.headers.get("from") or ""), ("To", ok.headers.get("to") or ""),
        ("Call-ID", invite.call_id), ("CSeq", "2 INFO"),
    ]))
    t.advance(33)
    assert [r.status for r in t.caller.responses() if r.cseq.method == "INFO"] == [408]
    assert t.caller.requests("BYE") and t.phones[0].requests("BYE")
    t.assert_quiet()


def test_a_device_that_never_answers_times_out_alone() -> None:
    t = Triangle(config(no_answer='{ kind = "busy" }'))
    t.call()
    t.phones[0].respond(180)
    t.phones[1].respond(180)
    t.advance(19)  # Timer B (32 s) is after the ring timeout: nothing failed yet
    assert t.caller_finals() == []
    t.phones[0].respond(200)
    t.pump()
    assert t.caller_finals() == [200]
    t.caller_hangs_up()
    t.assert_quiet()


def test_the_callee_hangs_up_and_the_bye_crosses_with_its_reason() -> None:
    t = Triangle()
    t.call()
    t.phones[2].respond(200)
    t.pump()
    t.caller_acks()
    phone = t.phones[2]
    invite = phone.invites[-1]
    host, port = phone.address
    phone.send(Request("BYE", invite.contacts[0].uri, [
        ("Via", f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK-bye-b"), ("Max-Forwards", "70"),
        ("From", f"{invite.headers.get('to')};tag={phone.tag}"),
        ("To", invite.headers.get("from") or ""), ("Call-ID", invite.call_id),
        ("CSeq", "1 BYE"), ("Reason", "Q.850;cause=16"),
    ]))
    phone.ended.add((invite.call_id, phone.tag))
    t.pump()
    (bye,) = t.caller.requests("BYE")
    assert bye.headers.get("reason") == "Q.850;cause=16"
    assert t.record()["ended_by"] == "b"
    t.assert_quiet()


def _bye_answers(phone: Phone) -> list[int]:
    return [r.status for r in phone.responses() if r.cseq.method == "BYE"]


def test_a_bye_sent_again_after_its_transaction_is_forgotten_gets_200_for_64_t1() -> None:
    # Under load the transaction layer keeps a bounded number of finished transactions: a BYE
    # whose 200 was lost, sent again after its transaction was let go of, still gets 200
    # (§17.1.2.2 retransmits it for 64*T1), not a 481 that would report a failed hang-up.
    t = Triangle()
    layer = t.b2bua.stack.layer
    layer.max_waiting = 1
    t.call()
    t.phones[0].respond(200)
    t.pump()
    invite = t.invite
    assert invite is not None
    ack, bye = ack_and_bye(invite, t.ok(), CALLER)
    t.caller.send(ack)
    t.caller.send(bye)
    t.pump()
    assert _bye_answers(t.caller) == [200]
    evicted = layer.evicted
    for phone in t.phones[1:]:  # two later transactions: the BYE's is no longer kept
        # (REGISTERs with wrong credentials: a failure is kept, to be counted once; refusals
        # such as OPTIONS' 200 or a stray BYE's 481 keep nothing)
        phone.send(Request("REGISTER", "sip:pbx.test", [
            ("Via", f"SIP/2.0/UDP {phone.address[0]}:{phone.address[1]};branch=z9hG4bK-o"),
            ("Max-Forwards", "70"), ("From", "<sip:100@pbx.test>;tag=o"),
            ("To", "<sip:100@pbx.test>"), ("Call-ID", f"reg-{phone.address[1]}"),
            ("CSeq", "1 REGISTER"), ("Contact", f"<sip:100@{phone.address[0]}>"),
            ("Authorization", 'Digest username="100", realm="pbx.test", nonce="x", '
             'uri="sip:pbx.test", response="0123456789abcdef0123456789abcdef"')]))
        t.pump()
    assert layer.evicted == evicted + 2
    t.advance(20)
    t.caller.send(bye)
    t.pump()
    assert _bye_answers(t.caller) == [200, 200]
    t.advance(13)  # 64*T1 after the dialog ended, a BYE on it is one for no dialog
    _, bye = ack_and_bye(invite, t.ok(), CALLER)  # (another branch: not absorbed)
    t.caller.send(bye)
    t.pump()
    assert _bye_answers(t.caller) == [200, 200, 481]
    t.assert_quiet()


def test_ended_dialogs_are_remembered_for_64_t1_and_at_most_max_ended() -> None:
    registry: DialogRegistry[None] = DialogRegistry(max_ended=2)

    def bye(invite: Request, ours: str, theirs: str | None = None) -> Request:
        return Request("BYE", "sip:100@pbx.test", [
            ("Via", "SIP/2.0/UDP 127.0.0.2:5090;branch=z9hG4bK-b"), ("Max-Forwards", "70"),
            ("From", f"<sip:x@pbx.test>;tag={theirs}" if theirs else
             invite.headers.get("from") or ""),
            ("To", f"<sip:100@pbx.test>;tag={ours}"), ("Call-ID", invite.call_id),
            ("CSeq", "2 BYE")])

    byes = []
    for i in range(3):
        invite = caller_invite("100", CALLER)
        dialog = Dialog.as_uas(invite, f"ours{i}")
        registry.add(dialog, None)
        registry.end(dialog, 100.0 + i)
        byes.append(bye(invite, f"ours{i}"))
    assert registry.ended_count == 2
    assert [registry.ended_recently(bye, 110.0) for bye in byes] == [False, True, True]
    assert [registry.ended_recently(bye, 133.5) for bye in byes] == [False, False, True]
    assert not registry.ended_recently(bye(invite, "ours2", "other"), 110.0)  # not its peer
    registry.end(Dialog.as_uas(caller_invite("100", CALLER), "late"), 140.0)  # never added
    assert registry.ended_count == 2
