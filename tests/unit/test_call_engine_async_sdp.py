"""The call engine's SDP path when the media port answers later (rtpengine): a call's messages
keep their order, a backend failure ends the call cleanly, and a port that answers at once (the
built-in relay) is served within the same drain. Real stack and engine, in-memory network, a
fake clock and no event loop: the media port below is the test's own, answering when told."""

from __future__ import annotations

from typing import Any

from b2bua.calls.events import MediaFailed, MediaOpened, SdpReady
from b2bua.commands import Command, MediaClose, MediaOpen, MediaRewrite
from b2bua.config import config_from_text
from b2bua.sip.message import Request, Response, make_response
from b2bua.testing.clock import FakeClock
from b2bua.testing.memory import SDP, Agent, MemoryNetwork, ack_and_bye, build_b2bua, caller_invite

TRUNK = ("127.0.0.2", 5090)
DEVICE = ("127.0.0.1", 5071)
CONFIG = (
    '[server]\ndomain = "pbx.test"\nlisten = ["udp:127.0.0.1:5060"]\n'
    '[[trunks]]\nname = "t"\naddress = "127.0.0.2:5080"\ninbound_from = ["127.0.0.2/32"]\n'
    '[[users]]\nextension = "100"\nname = "Bench"\nsecret = "s"\n'
    '[[users.devices]]\ntype = "sip"\nlabel = "d"\ncontact = "sip:100@127.0.0.1:5071"\n'
)


class LaterMedia:
    """A media port whose rewritten SDP comes back when the test releases that step (or at
    once, with `immediate`). Step n's body points at 10.9.9.n."""

    anchor = True

    def __init__(self, immediate: bool = False) -> None:
        self.immediate = immediate
        self.post: Any = None
        self.steps: list[tuple[str, str]] = []  # (from leg, kind)
        self.pending: dict[int, MediaRewrite] = {}  # step number -> its command
        self.released: list[str] = []  # calls whose media was let go

    def execute(self, command: Command) -> None:
        if isinstance(command, MediaOpen):
            self.post(MediaOpened(command.call, command.offer))
        elif isinstance(command, MediaRewrite):
            step = len(self.steps)
            self.steps.append((command.leg, command.kind.value))
            self.pending[step] = command
            if self.immediate:
                self.release(step)
        elif isinstance(command, MediaClose):
            self.released.append(command.call)

    def release(self, step: int, fail: bool = False) -> None:
        command = self.pending.pop(step)
        if fail:
            self.post(MediaFailed(command.call, 503, "rtpengine did not answer in 3.0 s",
                                  command.ticket))
            return
        body = command.body.replace(b"127.0.0.1", f"10.9.9.{step}".encode())
        self.post(SdpReady(command.call, command.ticket, body))


def setup(immediate: bool = False, late_offer: bool = False) -> Any:
    network = MemoryNetwork()
    port = LaterMedia(immediate)
    engine = build_b2bua(config_from_text(CONFIG), network, media=port, clock=FakeClock())
    device = Agent(network, DEVICE, "silent")
    caller = Agent(network, TRUNK, "caller")
    invite = caller_invite("100", TRUNK)
    if late_offer:
        invite = Request(invite.method, invite.request_uri,
                         [h for h in invite.headers if h[0].lower() != "content-type"])
    caller.send(invite)
    network.pump()
    (b_invite,) = device.requests("INVITE")
    return network, engine, port, device, caller, invite, b_invite


def respond(device: Agent, invite: Request, status: int, body: bytes = SDP) -> None:
    device.send(make_response(invite, status, to_tag=device.tag, headers=[
        ("Contact", f"<sip:ua@{DEVICE[0]}:{DEVICE[1]}>"), ("Content-Type", "application/sdp"),
    ], body=body))


def statuses(agent: Agent) -> list[int]:
    return [r.status for r in agent.responses() if r.cseq.method == "INVITE" and r.status > 100]


def test_183_then_200_reach_the_caller_in_order_whatever_order_the_backend_answers() -> None:
    network, _engine, hook, device, caller, _, b_invite = setup()
    respond(device, b_invite, 183)
    respond(device, b_invite, 200)
    network.pump()
    assert statuses(caller) == []  # both wait for the backend
    assert hook.steps == [("b", "answer"), ("b", "answer")]
    hook.release(1)  # the 200's answer comes back first...
    network.pump()
    assert statuses(caller) == []  # ...but the 183 goes first
    hook.release(0)
    network.pump()
    assert statuses(caller) == [183, 200]
    early, ok = (r for r in caller.responses() if r.status in (183, 200))
    assert b"10.9.9.0" in early.body and b"10.9.9.1" in ok.body
    assert len(device.requests("ACK")) == 1


def test_late_offer_ack_waits_for_its_2xx_and_carries_the_rewritten_answer() -> None:
    network, engine, hook, device, caller, invite, b_invite = setup(late_offer=True)
    assert not b_invite.body
    respond(device, b_invite, 200)  # the callee's offer
    network.pump()
    assert statuses(caller) == [] and not device.requests("ACK")
    hook.release(0)
    network.pump()
    ok = next(r for r in caller.responses() if r.status == 200)
    assert b"10.9.9.0" in ok.body
    ack, bye = ack_and_bye(invite, ok, TRUNK)
    ack.body = SDP
    ack.headers.set("Content-Type", "application/sdp")
    caller.send(ack)
    network.pump()
    assert hook.steps[-1] == ("a", "answer")
    assert not device.requests("ACK")  # not before the backend rewrote the answer
    hook.release(1)
    network.pump()
    (b_ack,) = device.requests("ACK")
    assert b"10.9.9.1" in b_ack.body
    caller.send(bye)
    network.pump()
    assert device.requests("BYE") and not engine.active


def test_backend_failure_on_the_answer_gives_503_and_bye_to_the_callee() -> None:
    network, engine, hook, device, caller, _, b_invite = setup()
    respond(device, b_invite, 200)
    network.pump()
    hook.release(0, fail=True)
    network.pump()
    assert statuses(caller) == [503]
    assert len(device.requests("ACK")) == 1 and len(device.requests("BYE")) == 1
    assert not engine.active
    assert engine.counters["failed"] == 1
    assert hook.released  # the media session is released


def test_backend_failure_on_a_reinvite_gives_500_and_ends_the_call() -> None:
    network, engine, hook, device, caller, invite, b_invite = setup()
    respond(device, b_invite, 200)
    network.pump()
    hook.release(0)
    network.pump()
    ok = next(r for r in caller.responses() if r.status == 200)
    ack, _ = ack_and_bye(invite, ok, TRUNK)
    caller.send(ack)
    network.pump()
    reinvite = Request("INVITE", ack.request_uri, [
        (n, v) for n, v in ack.headers if n.lower() not in ("cseq", "via")
    ] + [("Via", "SIP/2.0/UDP 127.0.0.2:5090;branch=z9hG4bK-re1;rport"), ("CSeq", "3 INVITE"),
         ("Contact", "<sip:caller@127.0.0.2:5090>"), ("Content-Type", "application/sdp")], SDP)
    caller.send(reinvite)
    network.pump()
    hook.release(1, fail=True)
    network.pump()
    assert [r.status for r in caller.responses() if r.cseq.number == 3 and r.status > 100] == [500]
    assert caller.requests("BYE") and device.requests("BYE")
    assert not engine.active


def test_the_call_ends_while_the_backend_thinks_the_caller_gets_487() -> None:
    network, engine, hook, device, caller, _, b_invite = setup()
    respond(device, b_invite, 200)
    network.pump()
    # The callee hangs up before the backend answered: nothing more is relayed to it.
    ack = device.requests("ACK")[0]
    bye = Request("BYE", str(ack.from_.uri), [
        ("Via", f"SIP/2.0/UDP {DEVICE[0]}:{DEVICE[1]};branch=z9hG4bK-bye1;rport"),
        ("Max-Forwards", "70"), ("From", ack.headers.get("to") or ""),
        ("To", ack.headers.get("from") or ""), ("Call-ID", ack.call_id), ("CSeq", "1 BYE"),
    ])
    device.send(bye)
    network.pump()
    hook.release(0)
    network.pump()
    assert statuses(caller) == [487]
    assert not engine.active


def test_an_immediate_port_is_served_within_the_same_drain() -> None:
    """The built-in relay answers at once: the 183 and the 200 reach the caller in the drain
    that took them from the callee, with no loop turn and no task (there is no loop here)."""
    network, _engine, hook, device, caller, _, b_invite = setup(immediate=True)
    respond(device, b_invite, 183)
    respond(device, b_invite, 200)
    network.pump()
    assert statuses(caller) == [183, 200]
    assert not hook.pending
    assert all(r.status not in (183, 200) or b"10.9.9." in r.body for r in caller.responses())
    assert isinstance(caller.responses()[0], Response)


def test_a_reinvite_whose_sdp_media_refuses_gets_488_and_the_call_goes_on() -> None:
    network, engine, hook, device, caller, invite, b_invite = setup()
    respond(device, b_invite, 200)
    network.pump()
    hook.release(0)
    network.pump()
    ok = next(r for r in caller.responses() if r.status == 200)
    ack, _ = ack_and_bye(invite, ok, TRUNK)
    caller.send(ack)
    network.pump()
    reinvite = Request("INVITE", ack.request_uri, [
        (n, v) for n, v in ack.headers if n.lower() not in ("cseq", "via")
    ] + [("Via", "SIP/2.0/UDP 127.0.0.2:5090;branch=z9hG4bK-re2;rport"), ("CSeq", "3 INVITE"),
         ("Contact", "<sip:caller@127.0.0.2:5090>"), ("Content-Type", "application/sdp")], SDP)
    caller.send(reinvite)
    network.pump()
    command = hook.pending.pop(1)
    hook.post(MediaFailed(command.call, 488, "no crypto suite we know", command.ticket))
    network.pump()
    assert [r.status for r in caller.responses() if r.cseq.number == 3 and r.status > 100] == [488]
    assert not caller.requests("BYE") and not device.requests("BYE")
    assert len(engine.active) == 1  # the call goes on
