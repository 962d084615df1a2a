"""Call flows through the real stack and engine over an in-memory network (no sockets)."""

from __future__ import annotations

import pytest

from b2bua.config import config_from_text
from b2bua.sip.message import Request, Response
from b2bua.testing.memory import (
    Agent,
    MemoryNetwork,
    ack_and_bye,
    build_b2bua,
    caller_invite,
    start_media,
)

TRUNK = ("127.0.0.2", 5090)


def config(devices: int, decline: str = "all") -> str:
    lines = [
        '[server]\ndomain = "pbx.test"\nlisten = ["udp:127.0.0.1:5060"]\n',
        '[[trunks]]\nname = "t"\naddress = "127.0.0.2:5080"\ninbound_from = ["127.0.0.2/32"]\n',
        f'[[users]]\nextension = "100"\nname = "Bench"\nsecret = "s"\ndecline = "{decline}"\n'
        'no_answer = { kind = "busy" }\n',
    ]
    for i in range(devices):
        lines.append(
            f'[[users.devices]]\ntype = "sip"\nlabel = "d{i}"\ncontact = "sip:100@127.0.0.1:{5071 + i}"\n'
        )
    return "\n".join(lines)


async def setup(devices: int, behaviours: list[str], decline: str = "all"):
    network = MemoryNetwork()
    engine = build_b2bua(config_from_text(config(devices, decline)), network)
    agents = [Agent(network, ("127.0.0.1", 5071 + i), b) for i, b in enumerate(behaviours)]
    caller = Agent(network, TRUNK, "caller")
    return network, engine, agents, caller


def finals(agent: Agent) -> list[int]:
    return [r.status for r in agent.responses() if r.status >= 200 and r.cseq.method == "INVITE"]


async def test_first_answer_wins_losers_cancelled_completed_elsewhere() -> None:
    network, engine, (winner, *losers), caller = await setup(3, ["answer", "lose", "lose"])
    invite = caller_invite("100", TRUNK)
    caller.send(invite)
    await network.settle()
    assert finals(caller) == [200]
    for loser in losers:
        (cancel,) = loser.requests("CANCEL")
        assert cancel.headers.get("reason") == 'SIP;cause=200;text="Call completed elsewhere"'
        assert loser.requests("ACK")  # the ACK of the 487, from the transaction layer
    assert len(winner.requests("ACK")) == 1
    ok = next(r for r in caller.responses() if r.status == 200)
    ack, bye = ack_and_bye(invite, ok, TRUNK)
    caller.send(ack)
    caller.send(bye)
    await network.settle()
    assert winner.requests("BYE")
    assert any(r.status == 200 and r.cseq.method == "BYE" for r in caller.responses())
    assert not engine.active


async def test_a_2xx_retransmitted_after_the_call_is_over_gets_the_same_ack_again() -> None:
    """RFC 6026: the winner's INVITE transaction passes 2xx retransmissions up for 64*T1 more.
    Once the call is over, the engine keeps only the ACK's bytes for them: the call itself is
    freed at once, not half a minute later."""
    import gc
    import weakref

    from b2bua.sip.message import parse_message

    network, engine, (winner, *_), caller = await setup(3, ["answer", "lose", "lose"])
    from_winner: list[bytes] = []
    deliver = network.deliver

    def capture(data: bytes, source: tuple[str, int]) -> None:
        if source == winner.address:
            from_winner.append(data)
        deliver(data, source)

    network.deliver = capture  # type: ignore[method-assign]
    invite = caller_invite("100", TRUNK)
    caller.send(invite)
    await network.settle()
    (call,) = engine.active.values()
    call_ref = weakref.ref(call)
    del call
    ok = next(r for r in caller.responses() if r.status == 200)
    ack, bye = ack_and_bye(invite, ok, TRUNK)
    caller.send(ack)
    caller.send(bye)
    await network.settle()
    assert not engine.active and winner.requests("BYE")
    gc.collect()
    assert call_ref() is None, "an ended call is held until its transactions end"
    two_hundred = next(
        d for d in from_winner
        if (m := parse_message(d)) and isinstance(m, Response) and m.status == 200
        and m.cseq.method == "INVITE"
    )
    first_ack = bytes(winner.requests("ACK")[0])
    network.deliver(two_hundred, winner.address)  # retransmitted
    await network.settle()
    acks = winner.requests("ACK")
    assert len(acks) == 2 and bytes(acks[1]) == first_ack
    assert engine.engine.reacks  # until the transaction ends (Timer M)


async def test_b_legs_are_new_dialogs_without_the_callers_topology() -> None:
    network, _, (dev,), caller = await setup(1, ["answer"])
    invite = caller_invite("100", TRUNK)
    caller.send(invite)
    await network.settle()
    (b_invite,) = dev.requests("INVITE")
    assert b_invite.call_id != invite.call_id
    assert b_invite.from_.tag != invite.from_.tag
    assert "127.0.0.2" not in (b_invite.headers.get("via") or "")
    assert "caller@" not in (b_invite.headers.get("contact") or "")
    assert b_invite.body == invite.body


async def test_all_busy_gives_486_and_decline_stops_everyone() -> None:
    network, _, _, caller = await setup(2, ["busy", "busy"])
    caller.send(caller_invite("100", TRUNK))
    await network.settle()
    assert finals(caller) == [486]

    network, _, (_decliner, other), caller = await setup(2, ["decline", "lose"])
    caller.send(caller_invite("100", TRUNK))
    await network.settle()
    (cancel,) = other.requests("CANCEL")
    assert cancel.headers.get("reason") == 'SIP;cause=600;text="Busy Everywhere"'
    assert finals(caller) == [486]  # no_answer = busy in this configuration


async def test_decline_device_policy_keeps_others_ringing() -> None:
    network, engine, (_decliner, other), caller = await setup(2, ["decline", "lose"], decline="device")
    caller.send(caller_invite("100", TRUNK))
    await network.settle()
    assert not other.requests("CANCEL")
    assert finals(caller) == []
    assert len(engine.active) == 1


@pytest.mark.parametrize("count", [1, 2, 3])
async def test_caller_cancel_reaches_every_branch_without_reason(count: int) -> None:
    network, engine, agents, caller = await setup(count, ["lose"] * count)
    invite = caller_invite("100", TRUNK)
    caller.send(invite)
    await network.settle()
    cancel = invite.headers.copy()
    from b2bua.sip.message import Request

    req = Request("CANCEL", invite.request_uri_text, [
        ("Via", invite.headers.get("via") or ""), ("Max-Forwards", "70"),
        ("From", invite.headers.get("from") or ""), ("To", invite.headers.get("to") or ""),
        ("Call-ID", invite.call_id), ("CSeq", "1 CANCEL"),
    ])
    del cancel
    caller.send(req)
    await network.settle()
    for agent in agents:
        (c,) = agent.requests("CANCEL")
        assert c.headers.get("reason") is None
    statuses = [r.status for r in caller.responses() if isinstance(r, Response)]
    assert 487 in statuses
    assert not engine.active


def in_dialog(invite, ok, method: str, cseq: int, body: bytes = b"", ctype: str | None = None):
    from b2bua.sip.message import Request

    target = ok.contacts[0].uri
    headers = [
        ("Via", f"SIP/2.0/UDP {TRUNK[0]}:{TRUNK[1]};branch=z9hG4bK-{method}-{cseq}"),
        ("Max-Forwards", "70"),
        ("From", invite.headers.get("from") or ""),
        ("To", ok.headers.get("to") or ""),
        ("Call-ID", invite.call_id),
        ("CSeq", f"{cseq} {method}"),
        ("Contact", f"<sip:caller@{TRUNK[0]}:{TRUNK[1]}>"),
    ]
    if ctype:
        headers.append(("Content-Type", ctype))
    return Request(method, target, headers, body)


@pytest.mark.parametrize("method", ["INFO", "UPDATE", "OPTIONS"])
async def test_in_dialog_requests_cross_to_the_other_leg(method: str) -> None:
    network, _, (dev,), caller = await setup(1, ["answer"])
    invite = caller_invite("100", TRUNK)
    caller.send(invite)
    await network.settle()
    ok = next(r for r in caller.responses() if r.status == 200)
    ack, _ = ack_and_bye(invite, ok, TRUNK)
    caller.send(ack)
    body = b"Signal=5\r\nDuration=160\r\n" if method == "INFO" else b""
    caller.send(in_dialog(invite, ok, method, 2, body, "application/dtmf-relay" if body else None))
    await network.settle()
    (relayed,) = dev.requests(method)
    assert relayed.body == body
    assert relayed.call_id != invite.call_id  # on the B leg's own dialog
    assert any(r.status == 200 and r.cseq.method == method for r in caller.responses())


async def test_a_second_reinvite_before_the_first_is_answered_gets_500_with_retry_after() -> None:
    """RFC 3261 §14.2: "A UAS that receives a second INVITE before it sends the final response
    to a first INVITE with a lower CSeq sequence number on the same dialog MUST return a 500
    (Server Internal Error) response and MUST include a Retry-After header field"."""
    network, engine, (dev,), caller = await setup(1, ["answer"])
    invite = caller_invite("100", TRUNK)
    caller.send(invite)
    await network.settle()
    ok = next(r for r in caller.responses() if r.status == 200)
    ack, _ = ack_and_bye(invite, ok, TRUNK)
    caller.send(ack)
    await network.settle()
    dev.receive = lambda message: dev.received.append(message)  # swallow: no answer
    caller.send(in_dialog(invite, ok, "INVITE", 2, invite.body, "application/sdp"))
    await network.settle()
    caller.send(in_dialog(invite, ok, "INVITE", 3, invite.body, "application/sdp"))
    await network.settle()
    (refused,) = [r for r in caller.responses() if r.cseq.number == 3 and r.status >= 200]
    assert refused.status == 500 and refused.headers.get("retry-after")
    assert len(engine.active) == 1


async def test_reinvite_glare_gets_491() -> None:
    """§14.2: "A UAS that receives an INVITE on a dialog while an INVITE it had sent on that
    dialog is in progress MUST return a 491 (Request Pending) response": the callee's re-INVITE
    meets the caller's, relayed to it and not answered yet."""
    network, engine, (dev,), caller = await setup(1, ["answer"])
    invite = caller_invite("100", TRUNK)
    caller.send(invite)
    await network.settle()
    ok = next(r for r in caller.responses() if r.status == 200)
    ack, _ = ack_and_bye(invite, ok, TRUNK)
    caller.send(ack)
    await network.settle()
    dev.receive = lambda message: dev.received.append(message)  # swallow: no answer
    caller.send(in_dialog(invite, ok, "INVITE", 2, invite.body, "application/sdp"))
    await network.settle()
    (relayed,) = [m for m in dev.requests("INVITE") if m.to.tag]
    (b_invite,) = [m for m in dev.requests("INVITE") if not m.to.tag]
    glare = Request("INVITE", b_invite.contacts[0].uri, [
        ("Via", f"SIP/2.0/UDP {dev.address[0]}:{dev.address[1]};branch=z9hG4bK-glare"),
        ("Max-Forwards", "70"),
        ("From", relayed.headers.get("to") or ""),
        ("To", relayed.headers.get("from") or ""),
        ("Call-ID", relayed.call_id),
        ("CSeq", "7 INVITE"),
        ("Contact", f"<sip:ua@{dev.address[0]}:{dev.address[1]}>"),
        ("Content-Type", "application/sdp"),
    ], invite.body)
    dev.send(glare)
    await network.settle()
    (answer,) = [m for m in dev.received
                 if isinstance(m, Response) and m.cseq.number == 7 and m.status >= 200]
    assert answer.status == 491
    assert len(engine.active) == 1


async def test_a_refer_without_anchored_media_is_refused_and_a_stray_refer_is_481() -> None:
    network, engine, _agents, caller = await setup(1, ["answer"])
    invite = caller_invite("100", TRUNK)
    caller.send(invite)
    await network.settle()
    ok = next(r for r in caller.responses() if r.status == 200)
    ack, _ = ack_and_bye(invite, ok, TRUNK)
    caller.send(ack)
    refer = in_dialog(invite, ok, "REFER", 2)
    refer.headers.add("Refer-To", "<sip:200@pbx.test>")
    caller.send(refer)
    await network.settle()
    (refused,) = [r for r in caller.responses() if r.cseq.method == "REFER"]
    assert refused.status == 403 and refused.reason == "Transfer needs anchored media"
    assert len(engine.active) == 1  # the call goes on
    stray = in_dialog(invite, ok, "REFER", 3)
    stray.headers.set("Call-ID", "no-such-call")
    caller.send(stray)
    await network.settle()
    assert any(r.status == 481 and r.cseq.number == 3 for r in caller.responses())


def _cancel_of(invite):  # type: ignore[no-untyped-def]
    from b2bua.sip.message import Request

    return Request("CANCEL", invite.request_uri_text, [
        ("Via", invite.headers.get("via") or ""), ("Max-Forwards", "70"),
        ("From", invite.headers.get("from") or ""), ("To", invite.headers.get("to") or ""),
        ("Call-ID", invite.call_id), ("CSeq", "1 CANCEL"),
    ])


@pytest.mark.parametrize("flow", ["answered", "anchored", "relayed", "busy", "declined",
                                  "cancelled"])
async def test_a_call_that_is_over_leaves_no_reference_cycle(flow: str) -> None:
    """`b2bua run` turns the cyclic collector off: a call, its branches, transactions and
    media session must be freed by reference counting once everything about it is over."""
    import asyncio
    import gc

    behaviours = {"busy": ["busy", "busy"], "declined": ["decline", "lose"],
                  "cancelled": ["lose", "lose", "lose"]}.get(flow, ["answer", "lose", "lose"])
    network = MemoryNetwork()
    engine = build_b2bua(config_from_text(config(len(behaviours))), network,
                         media=flow == "anchored")
    if flow == "anchored":
        await start_media(engine)
    for i, b in enumerate(behaviours):
        Agent(network, ("127.0.0.1", 5071 + i), b)
    caller = Agent(network, TRUNK, "caller")
    gc.collect()
    gc.disable()
    try:
        for _ in range(5):
            caller.received.clear()
            invite = caller_invite("100", TRUNK)
            caller.send(invite)
            await network.settle()
            if flow == "cancelled":
                caller.send(_cancel_of(invite))
            elif flow in ("answered", "anchored", "relayed"):
                ok = next(r for r in caller.responses() if r.status == 200)
                ack, bye = ack_and_bye(invite, ok, TRUNK)
                caller.send(ack)
                if flow == "relayed":  # an INFO crosses to the winner and back
                    caller.send(in_dialog(invite, ok, "INFO", 2, b"Signal=5\r\n",
                                          "application/dtmf-relay"))
                    await network.settle()
                    assert any(r.cseq.method == "INFO" and r.status == 200
                               for r in caller.responses())
                caller.send(bye)
            await network.settle()
        assert not engine.active
        # Every transaction's last timer (Timers D, J, K...) runs out.
        stack = engine.stack
        stack.handle_deadline(asyncio.get_running_loop().time() + 3600)
        await network.settle()
        assert stack.layer.transaction_count == 0
        caller.received.clear()
        assert gc.collect() == 0
    finally:
        gc.enable()
