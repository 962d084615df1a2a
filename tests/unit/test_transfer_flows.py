"""Transfer and pickup on the fake-clock triangle: blind transfer (RFC 3515), attended
transfer (REFER with Replaces, RFC 3891), an INVITE with Replaces, directed and group pickup,
and the bad inputs. The whole stack runs over the in-memory network with a scripted media
port; the clock moves only when a test says so."""

from __future__ import annotations

from b2bua.commands import AppKind, MediaLocalOffer, MediaPlay
from b2bua.sip.message import Request
from b2bua.testing.memory import Phone, caller_invite
from tests.unit.test_call_flows import CALLER, ELSEWHERE, Triangle, config

DAVE = ("127.0.0.1", 5081)
SIPFRAG = "message/sipfrag;version=2.0"


class Transfer(Triangle):
    """The triangle, with Dave (extension 103) and a caller connected to phone 0 of 100."""

    def __init__(self, text: str | None = None) -> None:
        super().__init__(text or config())
        self.dave = Phone(self.network, DAVE)

    def connected(self) -> Request:
        invite = self.call("100")
        self.phones[0].respond(200)
        self.pump()
        self.caller_acks()
        return invite

    def refer(self, target: str, by: Phone | None = None, cseq: int | None = None,
              extra: list[tuple[str, str]] | None = None) -> Request:
        """Phone 0 (or `by`, on its own call) sends REFER in its dialog with us."""
        phone = by or self.phones[0]
        refer = phone.in_dialog("REFER", headers=[("Refer-To", target), *(extra or [])],
                                cseq=cseq)
        self.pump()
        return refer

    def refer_answer(self, phone: Phone | None = None) -> int:
        (response,) = [r for r in (phone or self.phones[0]).responses()
                       if r.cseq.method == "REFER"]
        return response.status

    def notifies(self, phone: Phone | None = None) -> list[tuple[bytes, str]]:
        return [(n.body, n.headers.get("subscription-state") or "")
                for n in (phone or self.phones[0]).requests("NOTIFY")]


def test_blind_transfer_rings_the_target_and_bridges_the_caller_to_it() -> None:
    t = Transfer()
    t.connected()
    t.refer("<sip:103@pbx.test>")
    assert t.refer_answer() == 202
    (trying,) = t.phones[0].requests("NOTIFY")
    assert trying.body == b"SIP/2.0 100 Trying\r\n"
    assert trying.headers.get("event") == "refer;id=1"
    assert trying.headers.get("content-type") == SIPFRAG
    assert trying.headers.get("subscription-state", "").startswith("active")
    # The caller hears music; the target is offered our own SDP for that side.
    (music,) = [c for c in t.media.commands if isinstance(c, MediaPlay)]
    assert music.leg == "a" and music.music
    assert any(isinstance(c, MediaLocalOffer) and c.leg == "b" for c in t.media.commands)
    (invite,) = t.dave.invites
    assert "0611223344" in (invite.headers.get("from") or "")  # the transferee is shown
    assert "100@pbx.test" in (invite.headers.get("referred-by") or "")
    assert b"10.9.9.99" in invite.body
    t.dave.respond(180)
    t.pump()
    assert t.notifies()[-1] == (b"SIP/2.0 180 Ringing\r\n", "active;expires=60")
    t.dave.respond(200)
    t.pump()
    assert t.dave.requests("ACK")
    assert t.media.resumed[-1].leg == "a"
    body, state = t.notifies()[-1]
    assert body == b"SIP/2.0 200 OK\r\n" and state.startswith("terminated")
    assert not t.phones[0].requests("BYE")  # the transferor may end its dialog itself...
    t.advance(2.1)
    assert len(t.phones[0].requests("BYE")) == 1  # ...else we do (RFC 5589)
    t.caller_hangs_up()
    assert t.dave.requests("BYE")
    assert "transferred by 100 to 103" in t.record()["trace"]
    t.assert_quiet()


def test_the_transferor_hangs_up_at_once_and_the_transfer_goes_on() -> None:
    t = Transfer()
    t.connected()
    t.refer("<sip:103@pbx.test>")
    t.phones[0].hang_up()
    t.pump()
    assert [r.status for r in t.phones[0].responses() if r.cseq.method == "BYE"] == [200]
    assert not t.caller.requests("BYE"), "the caller stays"
    t.dave.respond(200)
    t.advance(3)
    assert not t.phones[0].requests("BYE")  # nothing more to the transferor
    t.caller_hangs_up()
    assert t.dave.requests("BYE")
    t.assert_quiet()


def test_a_target_that_does_not_answer_sends_the_caller_to_its_voicemail() -> None:
    t = Transfer()
    t.connected()
    t.refer("<sip:103@pbx.test>")
    t.dave.respond(180)
    t.advance(10.1)
    assert [c.headers.get("reason") for c in t.dave.requests("CANCEL")] == [None]
    app = t.media.app()
    assert app.app is AppKind.VOICEMAIL and app.extension == "103" and app.leg == "a"
    assert t.notifies()[-1][0] == b"SIP/2.0 200 OK\r\n"
    t.media.finish(app.call, "voicemail")
    t.pump()
    assert t.caller.requests("BYE")
    assert t.record()["outcome"] == "voicemail"
    t.assert_quiet()


def test_a_busy_target_without_voicemail_gives_the_call_back_to_the_transferor() -> None:
    t = Transfer(config(dave_no_answer='{ kind = "busy" }'))
    t.connected()
    t.refer("<sip:103@pbx.test>")
    t.dave.respond(486)
    t.pump()
    body, state = t.notifies()[-1]
    assert body == b"SIP/2.0 486 Busy Here\r\n" and state.startswith("terminated")
    assert t.media.resumed[-1].leg == "a"
    assert len(t.b2bua.engine.calls) == 1
    t.caller_hangs_up()
    assert t.phones[0].requests("BYE"), "the transferor is bridged again"
    t.assert_quiet()


def test_the_transferee_hears_unavailable_when_the_transferor_is_gone_too() -> None:
    t = Transfer(config(dave_no_answer='{ kind = "busy" }'))
    t.connected()
    t.refer("<sip:103@pbx.test>")
    t.phones[0].hang_up()
    t.pump()
    t.dave.respond(486)
    t.pump()
    app = t.media.app()
    assert app.app is AppKind.GOODBYE and app.leg == "a"
    t.media.finish(app.call)
    t.pump()
    assert t.caller.requests("BYE")
    t.assert_quiet()


def test_an_unknown_target_gets_404_in_the_notify_and_the_call_goes_on() -> None:
    t = Transfer()
    t.connected()
    t.refer("<sip:nobody@pbx.test>")
    assert t.refer_answer() == 202
    assert t.notifies()[-1] == (b"SIP/2.0 404 Not Found\r\n", "terminated;reason=noresource")
    t.caller_hangs_up()
    assert t.phones[0].requests("BYE")
    t.assert_quiet()


def test_bad_refers_get_clear_answers_and_the_call_stays() -> None:
    t = Transfer()
    t.connected()
    t.refer("not a uri at all <<<", cseq=2)
    t.refer("<sip:103@pbx.test?Replaces=nosuchcall%3Bto-tag%3Da%3Bfrom-tag%3Db>", cseq=3)
    statuses = [(r.cseq.number, r.status) for r in t.phones[0].responses()
                if r.cseq.method == "REFER"]
    assert statuses == [(2, 400), (3, 400)]
    t.refer("<sip:103@pbx.test>", cseq=4)
    t.refer("<sip:102@pbx.test>", cseq=5)  # while the first is pending
    assert [r.status for r in t.phones[0].responses() if r.cseq.number == 5] == [491]
    t.dave.respond(200)
    t.pump()
    t.caller_hangs_up()
    t.assert_quiet()


def test_the_caller_can_transfer_the_callee_too() -> None:
    t = Transfer()
    invite = t.connected()
    ok = t.ok()
    host, port = CALLER
    t.caller.send(Request("REFER", ok.contacts[0].uri, [
        ("Via", f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK-refer-a"), ("Max-Forwards", "70"),
        ("From", invite.headers.get("from") or ""), ("To", ok.headers.get("to") or ""),
        ("Call-ID", invite.call_id), ("CSeq", "2 REFER"),
        ("Contact", f"<sip:caller@{host}:{port}>"), ("Refer-To", "<sip:103@pbx.test>"),
    ]))
    t.pump()
    assert [r.status for r in t.caller.responses() if r.cseq.method == "REFER"] == [202]
    (music,) = [c for c in t.media.commands if isinstance(c, MediaPlay)]
    assert music.leg == "b"  # phone 0 waits
    (dave_invite,) = t.dave.invites
    assert "100@" in (dave_invite.headers.get("from") or "")  # the transferee: extension 100
    t.dave.respond(200)
    t.pump()
    assert t.media.resumed[-1].leg == "b"
    t.phones[0].hang_up()
    t.pump()
    assert t.dave.requests("BYE")
    t.assert_quiet()


def test_attended_transfer_joins_the_two_other_parties() -> None:
    """Phone 0 takes a first call, then a second; it transfers the first caller to the
    second with a REFER whose Replaces names its dialog of the second call."""
    t = Transfer()
    first = t.connected()
    second_caller = Phone(t.network, ("127.0.0.2", 5091))
    second = caller_invite("100", second_caller.address, caller="0655555555")
    second_caller.sent.append(second)
    second_caller.send(second)
    t.pump()
    phone = t.phones[0]
    phone.respond(200, invite=phone.invites[-1])
    t.pump()
    second_caller.ack_2xx(second)
    t.pump()
    inner = phone.invites[-1]  # our INVITE to phone 0 for the second call
    replaces = f"{inner.call_id}%3Bto-tag%3D{inner.from_.tag}%3Bfrom-tag%3D{phone.tag}"
    phone.in_dialog("REFER", invite=phone.invites[0], headers=[
        ("Refer-To", f"<sip:0655555555@pbx.test?Replaces={replaces}>")])
    t.pump()
    assert [r.status for r in phone.responses() if r.cseq.method == "REFER"] == [202]
    # The second caller is re-INVITEd with our offer for phone 0's side of the first call.
    (reinvite,) = [r for r in second_caller.requests("INVITE") if r.to.tag]
    assert b"10.9.9.99" in reinvite.body
    assert t.caller.requests("INVITE") == []  # the first caller's media never moves
    t.pump()
    assert second_caller.requests("ACK")
    assert t.notifies()[-1][0] == b"SIP/2.0 200 OK\r\n"
    assert any(b.call_id == inner.call_id for b in phone.requests("BYE"))
    t.advance(2.1)
    assert {b.call_id for b in phone.requests("BYE")} == {inner.call_id, phone.invites[0].call_id}
    # The two callers are together: a BYE from one reaches the other.
    t.caller_hangs_up()
    assert second_caller.requests("BYE")
    assert first.call_id != second.call_id
    # Each call's record names people by number: the first, whom it was handed to; the
    # second, whom its caller was put through to.
    traces = [record["trace"] for record in t.records()]
    assert sum("attended transfer to 0655555555" in trace for trace in traces) == 1, traces
    assert sum("transferred by 100: connected to 0611223344" in trace
               for trace in traces) == 1, traces
    t.assert_quiet()


def test_an_invite_with_replaces_takes_the_named_partys_place() -> None:
    t = Transfer()
    t.connected()
    phone = t.phones[0]
    b_invite = phone.invites[-1]
    replaces = f"{b_invite.call_id};to-tag={b_invite.from_.tag};from-tag={phone.tag}"
    invite = t.dave.call("100", "103", "s103", headers=[("Replaces", replaces),
                                                        ("Require", "replaces")])
    assert [r.status for r in t.dave.responses()
            if r.call_id == invite.call_id and r.status >= 200] == [407, 200]
    t.dave.ack_2xx(invite)
    (bye,) = phone.requests("BYE")
    assert bye.headers.get("reason") == ELSEWHERE
    t.caller_hangs_up()
    assert t.dave.requests("BYE")
    t.assert_quiet()


def test_an_invite_replacing_no_dialog_of_ours_gets_481() -> None:
    t = Transfer()
    t.connected()
    invite = t.dave.call("100", "103", "s103",
                         headers=[("Replaces", "nosuchcall;to-tag=a;from-tag=b")])
    assert [r.status for r in t.dave.responses()
            if r.call_id == invite.call_id and r.status >= 200] == [407, 481]
    t.caller_hangs_up()
    t.assert_quiet()


def test_directed_pickup_takes_the_ringing_call() -> None:
    t = Transfer()
    t.call("100")
    for phone in t.phones:
        phone.respond(180)
    t.pump()
    invite = t.dave.call("**100", "103", "s103")
    assert [r.status for r in t.dave.responses()
            if r.call_id == invite.call_id and r.status >= 200] == [407, 200]
    assert [[c.headers.get("reason") for c in p.requests("CANCEL")] for p in t.phones] == \
        [[ELSEWHERE]] * 3
    assert t.caller_finals() == [200]
    t.dave.ack_2xx(invite)
    t.caller_hangs_up()
    assert t.dave.requests("BYE")
    assert "picked up by 103" in t.record()["trace"]
    t.assert_quiet()


def test_group_pickup_and_nothing_to_pick_up() -> None:
    t = Transfer()
    nothing = t.dave.call("*8", "103", "s103")
    assert [r.status for r in t.dave.responses()
            if r.call_id == nothing.call_id and r.status >= 200] == [407, 480]
    t.call("100")  # 100 is in ring group 800 with Dave
    t.phones[0].respond(180)
    t.pump()
    invite = t.dave.call("*8", "103", "s103")
    assert [r.status for r in t.dave.responses()
            if r.call_id == invite.call_id and r.status >= 200] == [407, 200]
    assert t.caller_finals() == [200]
    t.dave.ack_2xx(invite)
    t.caller_hangs_up()
    t.assert_quiet()


def test_a_refer_outside_a_dialog_is_403() -> None:
    t = Transfer()
    host, port = DAVE
    t.dave.send(Request("REFER", "sip:100@127.0.0.1:5060", [
        ("Via", f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK-refer-out"), ("Max-Forwards", "70"),
        ("From", "<sip:103@pbx.test>;tag=x"), ("To", "<sip:100@pbx.test>"),
        ("Call-ID", "refer-out"), ("CSeq", "1 REFER"), ("Refer-To", "<sip:102@pbx.test>"),
    ]))
    t.pump()
    (answer,) = t.dave.responses()
    assert answer.status == 403 and answer.reason == "REFER outside a dialog"


def test_a_transferee_put_on_hold_first_is_taken_off_hold_once_transferred() -> None:
    """Desk phones hold the call before they transfer it: the caller's last SDP from us says
    sendonly. Once the target answers, the caller is re-INVITEd with our own offer."""
    from b2bua.testing.memory import SDP

    t = Transfer()
    t.connected()
    hold = SDP.replace(b"a=sendrecv", b"a=sendonly")
    t.phones[0].in_dialog("INVITE", headers=[("Content-Type", "application/sdp")], body=hold)
    t.pump()
    (relayed,) = [r for r in t.caller.requests("INVITE") if r.to.tag]
    assert b"a=sendonly" in relayed.body
    t.refer("<sip:103@pbx.test>")
    t.dave.respond(200)
    t.pump()
    unhold = [r for r in t.caller.requests("INVITE") if r.to.tag][-1]
    assert unhold is not relayed and b"10.9.9.99" in unhold.body and b"sendonly" not in unhold.body
    assert [a for a in t.caller.requests("ACK") if a.cseq.number == unhold.cseq.number]
    t.caller_hangs_up()
    assert t.dave.requests("BYE")
    t.assert_quiet()
