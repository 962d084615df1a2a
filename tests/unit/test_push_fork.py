"""Fork-late's push side without sockets or clocks: who is woken, who joins, who is told the call
is over; and, over random event sequences, never two branches for one device."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b2bua.push import CallEvent, PushTarget
from b2bua.push.fork import PushFork, RingDevice, WakeDevice, always_push, device_of
from b2bua.registrar.model import Binding
from b2bua.sip.flow import Flow

T0 = 1_700_000_000.0
VOIP = "DEF123GHIJ.org.example.phone.voip"


def binding(n: int, *, provider: str = "apns", reachable: bool = False, port: int = 40000,
            instance: bool = True, param: str = VOIP) -> Binding:
    return Binding(
        aor="1001", username="1001", key=f"1001|i:dev{n}", contact=f"sip:1001@192.0.2.{n}:{port}",
        flow=Flow("tcp", f"192.0.2.{n}", port, n * 1000 + port), expires_at=T0 + 3600,
        call_id=f"reg-{n}", cseq=1, instance=f"<urn:uuid:dev{n}>" if instance else None,
        reachable=reachable,
        push=PushTarget(provider, f"{n:02d}" * 32 if provider == "apns" else f"fcm-{n}",
                        param if provider == "apns" else "proj"),
    )


def fork(wait: float = 10) -> PushFork:
    return PushFork("1001", lambda b: f"branch-{b.key}", "0600000001", "Bruno Petit", wait)


def test_devices_whose_flow_is_gone_are_woken_with_the_call() -> None:
    f = fork()
    asleep_ios, asleep_android = binding(1), binding(2, provider="fcm")
    awake_android = binding(3, provider="fcm", reachable=True)
    pushes = f.start([asleep_ios, asleep_android, awake_android], T0)
    assert [p.binding for p in pushes] == [asleep_ios, asleep_android]
    n = pushes[0].notification
    assert (n.event, n.call_id, n.caller, n.display_name, n.ttl) == (
        CallEvent.INCOMING, "branch-1001|i:dev1", "0600000001", "Bruno Petit", 10)
    assert pushes[1].notification.call_id == "branch-1001|i:dev2"  # one dialog per branch
    assert f.next_deadline() == T0 + 10 and f.waiting == 2


def test_ios_voip_is_pushed_even_when_reachable_but_never_rung_twice() -> None:
    f = fork()
    awake_ios = binding(1, reachable=True)
    assert [p.binding for p in f.start([awake_ios], T0)] == [awake_ios]
    assert f.next_deadline() is None  # nothing to wait for: it was rung on its flow
    assert f.binding_appeared(binding(1, port=40001, reachable=True), T0 + 1) is None
    assert f.end("answered_elsewhere", T0 + 2) == []  # its branch gets the CANCEL


def test_woken_device_joins_once_in_time() -> None:
    f = fork()
    f.start([binding(1)], T0)
    woken = binding(1, port=40001, reachable=True)
    assert f.binding_appeared(woken, T0 + 2) == RingDevice(woken, "branch-1001|i:dev1")
    assert f.binding_appeared(binding(1, port=40002, reachable=True), T0 + 3) is None
    assert f.waiting == 0 and f.next_deadline() is None
    assert f.end("answered_elsewhere", T0 + 4) == []


def test_a_device_is_recognised_by_its_push_token_without_instance() -> None:
    f = fork()
    f.start([binding(1, instance=False)], T0)
    assert f.binding_appeared(binding(1, instance=False, port=40001, reachable=True), T0 + 1)


def test_late_waker_gets_nothing_and_ios_is_told_at_the_deadline() -> None:
    f = fork(wait=10)
    ios, android = binding(1), binding(2, provider="fcm")
    f.start([ios, android], T0)
    assert f.handle_deadline(T0 + 9.9) == []
    ended = f.handle_deadline(T0 + 10)
    assert [(e.binding, e.notification.event, e.notification.reason) for e in ended] == [
        (ios, CallEvent.ENDED, "timeout")]
    assert f.binding_appeared(binding(1, port=40001, reachable=True), T0 + 11) is None
    assert f.end("answered_elsewhere", T0 + 12) == []  # told once


def test_call_answered_elsewhere_tells_the_ios_devices_still_awaited() -> None:
    f = fork()
    ios, ios2, android = binding(1), binding(4), binding(2, provider="fcm")
    f.start([ios, ios2, android], T0)
    f.binding_appeared(binding(4, port=40001, reachable=True), T0 + 1)  # ios2 joined
    ended = f.end("answered_elsewhere", T0 + 2)
    assert [(e.binding, e.notification.reason) for e in ended] == [(ios, "answered_elsewhere")]
    assert ended[0].notification.call_id == "branch-1001|i:dev1"  # the one its push announced
    assert f.binding_appeared(binding(1, port=40001, reachable=True), T0 + 3) is None
    assert f.handle_deadline(T0 + 60) == [] and f.end("cancelled", T0 + 61) == []


def test_apns_alert_topic_is_not_always_pushed() -> None:
    assert always_push(PushTarget("apns", "00", VOIP))
    assert not always_push(PushTarget("apns", "00", "DEF123GHIJ.org.example.phone"))
    assert not always_push(PushTarget("fcm", "x", ""))
    assert not always_push(PushTarget("apns", "00", "garbage"))
    assert device_of(binding(1)) == "i:<urn:uuid:dev1>"


EVENTS = st.lists(st.one_of(
    st.tuples(st.just("appear"), st.integers(0, 5), st.floats(0, 20)),
    st.tuples(st.just("deadline"), st.just(0), st.floats(0, 20)),
    st.tuples(st.just("end"), st.just(0), st.floats(0, 20)),
), max_size=25)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.sampled_from(["apns", "fcm"]), st.booleans()), min_size=1, max_size=6),
    EVENTS,
)
def test_never_two_branches_for_one_device_and_nothing_after_the_end(
    devices: list[tuple[str, bool]], events: list[tuple[str, int, float]]
) -> None:
    f = fork(wait=10)
    bindings = [binding(i, provider=p, reachable=r) for i, (p, r) in enumerate(devices)]
    woken = {device_of(w.binding) for w in f.start(bindings, T0) if not w.binding.reachable}
    rung: list[str | None] = []
    ended: list[str | None] = []
    over = False
    for kind, n, dt in sorted(events, key=lambda e: e[2]):
        now = T0 + dt
        if kind == "appear":
            out = f.binding_appeared(binding(n, port=41000, reachable=True), now)
            if out is not None:
                assert not over and dt < 10
                rung.append(device_of(out.binding))
        else:
            commands: list[WakeDevice] = (f.handle_deadline(now) if kind == "deadline"
                                          else f.end("cancelled", now))
            if over:
                assert commands == []
            for c in commands:
                assert c.notification.event is CallEvent.ENDED
                assert c.target.provider == "apns"
                ended.append(device_of(c.binding))
            over = over or kind == "end"
    assert len(rung) == len(set(rung)) and set(rung) <= woken
    assert len(ended) == len(set(ended)) and set(ended) <= woken
    assert not set(rung) & set(ended)
