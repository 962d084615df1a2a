"""Fork-late across calls with the real registrar, in scripted time: pushes for ringing calls,
woken devices joining each call once, `call_ended` for iOS, nothing kept once calls are over;
and 1,000 pushed calls at 20 calls/s."""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Hashable

from b2bua.push import CallEvent, PushTarget
from b2bua.push.fork import RingDevice, WakeDevice, device_of
from b2bua.push.waker import Waker
from b2bua.registrar import BindingAppeared, Registrar
from b2bua.registrar.model import Binding
from b2bua.sip.flow import Flow
from tests.unit.test_registrar import T0, Phone, make_registrar

VOIP = "DEF123GHIJ.org.example.phone.voip"


class Device:
    """A mobile softphone: registers over TCP with push parameters; each wake is a new connection."""

    connections = itertools.count(1000)

    def __init__(self, reg: Registrar, n: int, provider: str) -> None:
        self.reg = reg
        self.n = n
        self.instance = f"<urn:uuid:00000000-0000-0000-0000-{n:012d}>"
        self.push = (PushTarget("apns", f"{n:064x}", VOIP) if provider == "apns"
                     else PushTarget("fcm", f"fcm-token-{n}", "b2bua-test"))
        self.phone: Phone | None = None
        self.flow: Flow | None = None
        self.waking = False  # a push was received and the app is starting

    def register(self, now: float) -> None:
        cid = next(self.connections)
        self.flow = Flow("tcp", f"192.0.2.{self.n}", 40000 + cid % 20000, cid, "198.51.100.1", 5060)
        contact = (f"sip:1001@{self.flow.host}:{self.flow.port};transport=tcp;"
                   f"pn-provider={self.push.provider};pn-prid={self.push.prid};"
                   f"pn-param={self.push.param}")
        if self.phone is None:
            self.phone = Phone(self.reg, contact=contact, flow=self.flow, instance=self.instance)
        else:
            self.phone.contact, self.phone.flow = contact, self.flow
        assert self.phone.register(now, expires=3600).status == 200

    def sleep(self, now: float) -> None:
        assert self.flow is not None and self.flow.connection_id is not None
        self.reg.connection_closed(self.flow.connection_id, now)


_branch_ids = itertools.count(1)


def ids(binding: Binding) -> str:
    """Call-IDs of the branches a woken device would get (each branch is its own dialog)."""
    return f"branch-{next(_branch_ids)}@pbx"


def setup(devices: list[str], wait: float = 10) -> tuple[Registrar, Waker, list[Device], list[WakeDevice]]:
    reg = make_registrar(push_providers=("apns", "fcm"))
    sent: list[WakeDevice] = []
    waker = Waker(reg, sent.append, wait)
    phones = [Device(reg, i + 1, p) for i, p in enumerate(devices)]
    for d in phones:
        d.register(T0)
        d.sleep(T0)
    return reg, waker, phones, sent


def test_ringing_call_wakes_sleeping_devices_and_they_join() -> None:
    reg, waker, (ios, android), sent = setup(["apns", "fcm"])
    joined: list[tuple[Hashable, RingDevice]] = []
    reg.on_binding_appeared = lambda e: joined.extend(waker.binding_appeared(e, now))
    now = T0 + 1
    assert waker.call_ringing("c1", "1001", ids, "0600000001", "Bruno", now) == 2
    assert [c.target for c in sent] == [ios.push, android.push]
    assert waker.next_deadline() == now + 10
    now = T0 + 2
    android.register(now)  # woken: a new connection
    assert [(call, r.binding.flow, r.call_id) for call, r in joined] == [
        ("c1", android.flow, sent[1].notification.call_id)]
    waker.call_over("c1", "answered_elsewhere", now + 1)
    ended = sent[2:]
    assert [(c.target, c.notification.event, c.notification.reason) for c in ended] == [
        (ios.push, CallEvent.ENDED, "answered_elsewhere")]
    assert len(waker) == 0 and waker.next_deadline() is None


def test_late_waker_joins_nothing_and_the_waker_forgets_the_call() -> None:
    reg, waker, (ios,), sent = setup(["apns"], wait=10)
    joined: list[tuple[Hashable, RingDevice]] = []
    reg.on_binding_appeared = lambda e: joined.extend(waker.binding_appeared(e, T0 + 12))
    waker.call_ringing("c1", "1001", ids, "0600000001", "Bruno", T0)
    waker.handle_deadline(T0 + 10)
    assert [c.notification.reason for c in sent[1:]] == ["timeout"]
    assert len(waker) == 0
    ios.register(T0 + 12)
    assert joined == []
    waker.call_over("c1", "cancelled", T0 + 13)
    assert len(sent) == 2


def test_dead_token_reported_by_the_provider_is_forgotten() -> None:
    from b2bua.push.model import Notification, Outcome, PushResult
    from b2bua.push.service import PushReport

    reg, waker, _, sent = setup(["fcm"])
    waker.call_ringing("c1", "1001", ids, "0600000001", "Bruno", T0 + 1)
    [command] = sent
    report = PushReport(command.target, command.notification,
                        PushResult(Outcome.INVALID_TOKEN, 404, "UNREGISTERED"), T0 + 1, 0.01)
    waker.push_result(command, report)
    [binding] = reg.bindings("1001")
    assert binding.push is None and binding.last_push_result == "invalid_token (404 UNREGISTERED)"
    assert isinstance(command.notification, Notification)
    assert waker.call_ringing("c2", "1001", ids, "0600000001", "Bruno", T0 + 2) == 0


def test_thousand_pushed_calls_at_20_per_second() -> None:
    """1,000 calls at 20 calls/s to an extension with four sleeping softphones (two iOS, two
    Android) that wake after a random delay (some too late) and fall asleep again; calls are
    answered or cancelled after a random ring time. No call ever gets two branches for one
    device, none after its wait or its end, every binding is one per device at the end, and the
    waker holds nothing once the calls are over."""
    rng = random.Random(17)
    reg, waker, phones, sent = setup(["apns", "apns", "fcm", "fcm"], wait=10)
    by_device = {device_of(reg.bindings("1001")[i]): d for i, d in
                 enumerate(sorted(phones, key=lambda d: d.n))}
    now = T0
    branches: list[tuple[Hashable, str | None, float]] = []

    def appeared(event: BindingAppeared) -> None:
        for call, ring in waker.binding_appeared(event, now):
            branches.append((call, device_of(ring.binding), now))
            assert ring.call_id == f"branch-{call}-{ring.binding.key}"

    reg.on_binding_appeared = appeared
    events: list[tuple[float, int, str, object]] = []
    seq = itertools.count()
    started: dict[Hashable, float] = {}
    ended_at: dict[Hashable, float] = {}
    pushes_before = 0
    for i in range(1000):
        heapq.heappush(events, (T0 + i / 20, next(seq), "call", i))
    while events:
        now, _, kind, what = heapq.heappop(events)
        deadline = waker.next_deadline()
        while deadline is not None and deadline <= now:
            waker.handle_deadline(deadline)
            deadline = waker.next_deadline()
        if kind == "call":
            call = what
            started[call] = now
            waker.call_ringing(call, "1001", lambda b, c=call: f"branch-{c}-{b.key}",
                               "0600000001", "Bench", now)
            for command in sent[pushes_before:]:
                device = by_device[device_of(command.binding)]
                if command.notification.event is CallEvent.INCOMING and not device.waking:
                    # The app wakes once per push it gets while asleep, sometimes too late.
                    device.waking = True
                    heapq.heappush(events, (now + rng.uniform(0.2, 14), next(seq), "wake", device))
            pushes_before = len(sent)
            heapq.heappush(events, (now + rng.uniform(1, 15), next(seq), "over", call))
        elif kind == "wake":
            assert isinstance(what, Device)
            what.register(now)
            what.waking = False
            heapq.heappush(events, (now + 1.0, next(seq), "sleep", what))
        elif kind == "sleep":
            assert isinstance(what, Device)
            what.sleep(now)
        else:
            ended_at[what] = now
            waker.call_over(what, rng.choice(["answered_elsewhere", "cancelled"]), now)
            pushes_before = len(sent)
    waker.handle_deadline(now + 60)
    pairs = [(call, device) for call, device, _ in branches]
    assert len(pairs) == len(set(pairs)), "a device got two branches of one call"
    for call, _, at in branches:
        assert started[call] <= at < min(started[call] + 10, ended_at[call])  # type: ignore[index]
    assert len(branches) > 300  # the scenario does exercise fork-late
    assert len(waker) == 0 and waker.next_deadline() is None
    assert len(reg.bindings("1001")) == 4  # one per device, whatever the wakes
    ended = [c for c in sent if c.notification.event is CallEvent.ENDED]
    assert ended and all(c.target.provider == "apns" for c in ended)
    assert len({(c.notification.call_id, device_of(c.binding)) for c in ended}) == len(ended)
    assert {c.notification.reason for c in ended} >= {"timeout", "answered_elsewhere"}
    assert waker.counters["devices_joined"] == len(branches)
