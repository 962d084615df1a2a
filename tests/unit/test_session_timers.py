"""Session timers (RFC 4028) on each leg, on the fake-clock triangle: negotiated per leg,
refreshed by us when we are the refresher, and the call ended with BYE on both legs when the
other side's refresh does not come or ours is not answered."""

from __future__ import annotations

from b2bua.sip.message import Request
from b2bua.testing.memory import caller_invite
from tests.unit.test_call_flows import CALLER, Triangle


def timed_invite(seconds: int | None, supported: bool = True) -> Request:
    invite = caller_invite("100", CALLER)
    if supported:
        invite.headers.add("Supported", "timer")
    if seconds is not None:
        invite.headers.add("Session-Expires", str(seconds))
    return invite


def connect(t: Triangle, invite: Request) -> None:
    t.invite = invite
    t.caller.sent.append(invite)
    t.caller.send(invite)
    t.pump()
    t.phones[0].respond(200)
    t.pump()
    t.caller_acks()


def test_an_interval_below_min_se_gets_422_with_our_min_se() -> None:
    t = Triangle()
    t.invite = timed_invite(60)
    t.caller.sent.append(t.invite)
    t.caller.send(t.invite)
    t.pump()
    (refused,) = [r for r in t.caller.responses() if r.status >= 200]
    assert refused.status == 422 and refused.headers.get("min-se") == "90"
    assert not t.phones[0].invites
    t.assert_quiet()


def test_the_callee_is_offered_our_interval_not_the_callers() -> None:
    t = Triangle()
    connect(t, timed_invite(600))
    (b_invite,) = t.phones[0].invites
    assert b_invite.headers.get("session-expires") == "1800"
    assert b_invite.headers.get("min-se") == "90"
    assert "timer" in ",".join(b_invite.headers.get_all("supported"))


def test_a_caller_that_never_refreshes_is_hung_up_on_both_legs() -> None:
    t = Triangle()
    connect(t, timed_invite(600))
    ok = t.ok()
    assert ok.headers.get("session-expires") == "600;refresher=uac"
    assert ok.headers.get("require") == "timer"
    t.advance(567)  # §10: the interval less min(32, interval/3) = 568 s
    assert not t.caller.requests("BYE")
    t.advance(2)
    assert t.caller.requests("BYE") and t.phones[0].requests("BYE")
    assert "session expired on leg a" in t.record()["trace"]
    t.assert_quiet()


def test_the_callers_refresh_crosses_and_keeps_the_call() -> None:
    t = Triangle()
    connect(t, timed_invite(600))
    ok = t.ok()
    assert t.invite is not None
    host, port = CALLER
    for n, at in enumerate((300, 300), start=2):
        t.advance(at)
        t.caller.send(Request("UPDATE", ok.contacts[0].uri, [
            ("Via", f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK-refresh-{n}"),
            ("Max-Forwards", "70"), ("From", t.invite.headers.get("from") or ""),
            ("To", ok.headers.get("to") or ""), ("Call-ID", t.invite.call_id),
            ("CSeq", f"{n} UPDATE"), ("Session-Expires", "600;refresher=uac"),
        ]))
        t.pump()
    assert [r.status for r in t.caller.responses() if r.cseq.method == "UPDATE"] == [200, 200]
    (relayed, _) = t.phones[0].requests("UPDATE")
    assert relayed.headers.get("session-expires", "").startswith("1800")  # leg b's own
    assert not t.caller.requests("BYE")  # 600 s later: still up
    t.caller.send(Request("BYE", ok.contacts[0].uri, [
        ("Via", f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK-bye-9"), ("Max-Forwards", "70"),
        ("From", t.invite.headers.get("from") or ""), ("To", ok.headers.get("to") or ""),
        ("Call-ID", t.invite.call_id), ("CSeq", "9 BYE"),
    ]))
    t.pump()
    assert t.phones[0].requests("BYE")
    t.assert_quiet()


def test_we_refresh_a_callee_that_knows_no_session_timer_and_end_the_call_when_it_is_gone() -> None:
    t = Triangle()
    connect(t, timed_invite(None, supported=False))
    assert t.ok().headers.get("session-expires") is None  # §9: the caller does not support it
    phone = t.phones[0]
    t.advance(899)
    assert not [r for r in phone.requests("INVITE") if r.to.tag]
    t.advance(2)  # half of our 1800 s: the refresh, with the SDP it had, unchanged
    (refresh,) = [r for r in phone.requests("INVITE") if r.to.tag]
    assert refresh.body == phone.invites[0].body
    assert phone.requests("ACK")[-1].cseq.number == refresh.cseq.number
    assert not t.caller.requests("BYE")
    phone.answer_in_dialog = False  # the callee's phone is gone
    t.caller.answer_in_dialog = True
    t.advance(900 + 33)  # the next refresh is not answered: 64*T1 later, BYE to both
    assert t.caller.requests("BYE") and phone.requests("BYE")
    t.assert_quiet()
