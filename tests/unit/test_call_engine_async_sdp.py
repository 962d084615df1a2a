"""The call engine's SDP path when the media backend answers later (rtpengine): a call's messages
keep their order, a backend failure ends the call cleanly, and a backend that answers at once
(the built-in relay) takes no task and no await. Real stack and engine, in-memory network."""

from __future__ import annotations

import asyncio
from typing import Any

from b2bua.config import config_from_text
from b2bua.sip.message import Request, Response, make_response
from b2bua.testing.memory import SDP, Agent, MemoryNetwork, ack_and_bye, build_b2bua, caller_invite
from media.errors import MediaError

TRUNK = ("127.0.0.2", 5090)
DEVICE = ("127.0.0.1", 5071)
CONFIG = (
    '[server]\ndomain = "pbx.test"\nlisten = ["udp:127.0.0.1:5060"]\n'
    '[[trunks]]\nname = "t"\naddress = "127.0.0.2:5080"\ninbound_from = ["127.0.0.2/32"]\n'
    '[[users]]\nextension = "100"\nname = "Bench"\nsecret = "s"\n'
    '[[users.devices]]\ntype = "sip"\nlabel = "d"\ncontact = "sip:100@127.0.0.1:5071"\n'
)


class LaterMedia:
    """A media hook whose rewritten SDP comes later, when the test opens that step's gate (or
    at once, as bytes, with `immediate`)."""

    anchor = True  # every call gets a session (MediaBridge.anchor)

    def __init__(self, immediate: bool = False) -> None:
        self.immediate = immediate
        self.gates: list[asyncio.Event] = []
        self.steps: list[tuple[str, str]] = []  # (from leg, kind)
        self.failing: set[int] = set()  # step numbers whose backend "does not answer"
        self.released: list[Any] = []  # calls whose media was let go (ended or cancelled)

    async def attach(self, call: Any) -> None:
        call.media = self

    def sdp(self, call: Any, from_leg: str, body: bytes, kind: str) -> Any:
        step = len(self.steps)
        self.steps.append((from_leg, kind))
        anchored = body.replace(b"127.0.0.1", f"10.9.9.{step}".encode())
        if self.immediate:
            return anchored
        gate = asyncio.Event()
        self.gates.append(gate)
        return self._later(gate, step, anchored)

    async def _later(self, gate: asyncio.Event, step: int, anchored: bytes) -> bytes:
        await gate.wait()
        if step in self.failing:
            raise MediaError("rtpengine did not answer answer in 3.0 s")
        return anchored

    def ended(self, call: Any) -> None:
        self.released.append(call)

    def cancel(self, call: Any) -> None:
        self.released.append(call)


async def setup(immediate: bool = False, late_offer: bool = False) -> Any:
    network = MemoryNetwork()
    engine = await build_b2bua(config_from_text(CONFIG), network)
    hook = LaterMedia(immediate)
    engine.media_hook = hook
    device = Agent(network, DEVICE, "silent")
    caller = Agent(network, TRUNK, "caller")
    invite = caller_invite("100", TRUNK)
    if late_offer:
        invite = Request(invite.method, invite.request_uri,
                         [h for h in invite.headers if h[0].lower() != "content-type"])
    caller.send(invite)
    await network.settle()
    (b_invite,) = device.requests("INVITE")
    return network, engine, hook, device, caller, invite, b_invite


def respond(device: Agent, invite: Request, status: int, body: bytes = SDP) -> None:
    device.send(make_response(invite, status, to_tag=device.tag, headers=[
        ("Contact", f"<sip:ua@{DEVICE[0]}:{DEVICE[1]}>"), ("Content-Type", "application/sdp"),
    ], body=body))


def statuses(agent: Agent) -> list[int]:
    return [r.status for r in agent.responses() if r.cseq.method == "INVITE" and r.status > 100]


async def test_183_then_200_reach_the_caller_in_order_whatever_order_the_backend_answers() -> None:
    network, _engine, hook, device, caller, _, b_invite = await setup()
    respond(device, b_invite, 183)
    respond(device, b_invite, 200)
    await network.settle()
    assert statuses(caller) == []  # both wait for the backend
    assert hook.steps == [("b", "answer"), ("b", "answer")]
    hook.gates[1].set()  # the 200's answer comes back first...
    await network.settle()
    assert statuses(caller) == []  # ...but the 183 goes first
    hook.gates[0].set()
    await network.settle()
    assert statuses(caller) == [183, 200]
    early, ok = (r for r in caller.responses() if r.status in (183, 200))
    assert b"10.9.9.0" in early.body and b"10.9.9.1" in ok.body
    assert len(device.requests("ACK")) == 1


async def test_late_offer_ack_waits_for_its_2xx_and_carries_the_rewritten_answer() -> None:
    network, engine, hook, device, caller, invite, b_invite = await setup(late_offer=True)
    assert not b_invite.body
    respond(device, b_invite, 200)  # the callee's offer
    await network.settle()
    assert statuses(caller) == [] and not device.requests("ACK")
    hook.gates[0].set()
    await network.settle()
    ok = next(r for r in caller.responses() if r.status == 200)
    assert b"10.9.9.0" in ok.body
    ack, bye = ack_and_bye(invite, ok, TRUNK)
    ack.body = SDP
    ack.headers.set("Content-Type", "application/sdp")
    caller.send(ack)
    await network.settle()
    assert hook.steps[-1] == ("a", "answer")
    assert not device.requests("ACK")  # not before the backend rewrote the answer
    hook.gates[1].set()
    await network.settle()
    (b_ack,) = device.requests("ACK")
    assert b"10.9.9.1" in b_ack.body
    caller.send(bye)
    await network.settle()
    assert device.requests("BYE") and not engine.active


async def test_backend_failure_on_the_answer_gives_503_and_bye_to_the_callee() -> None:
    network, engine, hook, device, caller, _, b_invite = await setup()
    respond(device, b_invite, 200)
    await network.settle()
    hook.failing.add(0)
    hook.gates[0].set()
    await network.settle()
    assert statuses(caller) == [503]
    assert len(device.requests("ACK")) == 1 and len(device.requests("BYE")) == 1
    assert not engine.active
    assert engine.counters["failed"] == 1
    assert hook.released  # the media session is released


async def test_backend_failure_on_a_reinvite_gives_500_and_ends_the_call() -> None:
    network, engine, hook, device, caller, invite, b_invite = await setup()
    respond(device, b_invite, 200)
    await network.settle()
    hook.gates[0].set()
    await network.settle()
    ok = next(r for r in caller.responses() if r.status == 200)
    ack, _ = ack_and_bye(invite, ok, TRUNK)
    caller.send(ack)
    await network.settle()
    reinvite = Request("INVITE", ack.request_uri, [
        (n, v) for n, v in ack.headers if n.lower() not in ("cseq", "via")
    ] + [("Via", "SIP/2.0/UDP 127.0.0.2:5090;branch=z9hG4bK-re1;rport"), ("CSeq", "3 INVITE"),
         ("Contact", "<sip:caller@127.0.0.2:5090>"), ("Content-Type", "application/sdp")], SDP)
    caller.send(reinvite)
    await network.settle()
    hook.failing.add(1)
    hook.gates[1].set()
    await network.settle()
    assert [r.status for r in caller.responses() if r.cseq.number == 3 and r.status > 100] == [500]
    assert caller.requests("BYE") and device.requests("BYE")
    assert not engine.active


async def test_the_call_ends_while_the_backend_thinks_the_caller_gets_487() -> None:
    network, engine, hook, device, caller, _, b_invite = await setup()
    respond(device, b_invite, 200)
    await network.settle()
    # The callee hangs up before the backend answered: nothing more is relayed to it.
    ack = device.requests("ACK")[0]
    bye = Request("BYE", str(ack.from_.uri), [
        ("Via", f"SIP/2.0/UDP {DEVICE[0]}:{DEVICE[1]};branch=z9hG4bK-bye1;rport"),
        ("Max-Forwards", "70"), ("From", ack.headers.get("to") or ""),
        ("To", ack.headers.get("from") or ""), ("Call-ID", ack.call_id), ("CSeq", "1 BYE"),
    ])
    device.send(bye)
    await network.settle()
    hook.gates[0].set()
    await network.settle()
    assert statuses(caller) == [487]
    assert not engine.active


async def test_immediate_backend_takes_no_task_and_no_await() -> None:
    network, _engine, _hook, device, caller, _, b_invite = await setup(immediate=True)
    respond(device, b_invite, 183)
    respond(device, b_invite, 200)
    tasks = len(asyncio.all_tasks())
    network.pump()  # synchronously: no loop turn between the responses and the relay
    assert statuses(caller) == [183, 200]
    assert len(asyncio.all_tasks()) == tasks
    assert all(r.status not in (183, 200) or b"10.9.9." in r.body for r in caller.responses())
    assert isinstance(caller.responses()[0], Response)
