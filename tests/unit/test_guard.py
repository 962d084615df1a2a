"""Overload protection with scripted time: per-source request rates, the global overload
state, the receiver in front of the stack, and when memory is handed back."""

from __future__ import annotations

import ipaddress

import pytest

from b2bua.server import ReleasePolicy
from b2bua.sip.flow import Flow
from b2bua.sip.message import Response, parse_message
from b2bua.transport.guard import (
    BUSY_ENTER_SAMPLES,
    ENTER_SAMPLES,
    REJECTS_PER_WINDOW,
    Admission,
    GuardedReceiver,
    GuardSettings,
    OverloadGuard,
    SourceLimiter,
    is_new_invite,
)

A = "192.0.2.10"
B = "192.0.2.11"


def settings(**kwargs: object) -> GuardSettings:
    base: dict[str, object] = {"source_rate": 10, "block_seconds": 5.0}
    base.update(kwargs)
    return GuardSettings(**base)  # type: ignore[arg-type]


def send(limiter: SourceLimiter, host: str, n: int, start: float, spread: float = 0.5) -> list[Admission]:
    return [limiter.admit(host, start + spread * i / n) for i in range(n)]


# -- SourceLimiter --------------------------------------------------------------------------------


def test_a_source_within_its_rate_is_never_limited() -> None:
    limiter = SourceLimiter(settings())
    for second in range(30):
        assert set(send(limiter, A, 10, float(second))) == {Admission.ADMIT}
    assert limiter.blocks == 0 and limiter.dropped == 0


def test_over_the_rate_a_source_is_blocked_and_others_are_not() -> None:
    limiter = SourceLimiter(settings())
    verdicts = send(limiter, A, 15, 0.0)
    assert verdicts[:10] == [Admission.ADMIT] * 10
    assert verdicts[10:] == [Admission.DROP] * 5
    assert limiter.blocks == 1 and limiter.dropped == 5
    assert limiter.admit(B, 0.6) is Admission.ADMIT
    # Blocked for block_seconds even if it calms down at once...
    assert limiter.admit(A, 3.0) is Admission.DROP
    assert limiter.blocked(3.0) == {A: pytest.approx(5.0 + 0.5 * 10 / 15)}
    # ...then back.
    assert limiter.admit(A, 6.0) is Admission.ADMIT


def test_a_flood_stays_blocked_as_long_as_it_lasts() -> None:
    limiter = SourceLimiter(settings(block_seconds=2.0))
    for second in range(20):
        verdicts = send(limiter, A, 100, float(second), spread=0.99)
        if second:
            assert set(verdicts) == {Admission.DROP}, second
    assert limiter.blocks == 1  # one block, extended, not twenty
    assert limiter.admit(A, 22.5) is Admission.ADMIT  # 2 s after the flood's last window


def test_trusted_networks_are_never_limited() -> None:
    limiter = SourceLimiter(settings(trusted=(ipaddress.ip_network("192.0.2.0/28"),)))
    assert set(send(limiter, A, 1000, 0.0)) == {Admission.ADMIT}
    assert limiter.blocks == 0


def test_reject_answers_a_few_per_window_and_drops_the_rest() -> None:
    limiter = SourceLimiter(settings(action="reject"))
    verdicts = send(limiter, A, 100, 0.0)
    assert verdicts.count(Admission.REJECT) == REJECTS_PER_WINDOW
    assert verdicts.count(Admission.DROP) == 90 - REJECTS_PER_WINDOW
    assert limiter.retry_after(A, 0.6) == 5
    assert limiter.retry_after(B, 0.6) == 1  # not blocked: the smallest wait


def test_the_table_of_sources_is_bounded() -> None:
    limiter = SourceLimiter(settings(max_sources=100))
    for i in range(1000):
        limiter.admit(str(ipaddress.ip_address("10.0.0.0") + i), i * 0.001)
    assert len(limiter) <= 100
    limiter.sweep(10.0)
    assert len(limiter) == 0


def test_a_blocked_source_survives_the_sweep() -> None:
    limiter = SourceLimiter(settings())
    send(limiter, A, 20, 0.0)
    limiter.admit(B, 0.0)
    limiter.sweep(3.0)
    assert A in limiter.blocked(3.0) and len(limiter) == 1


def test_blocks_are_logged_at_once_and_drops_once_per_interval() -> None:
    limiter = SourceLimiter(settings(log_interval=10.0))
    send(limiter, A, 50, 0.0)
    first = limiter.report(0.5)
    assert len(first) == 2
    assert f"source {A} sent more than 10 requests in a second" in first[0]
    assert "40 requests from 1 blocked sources dropped" in first[1]
    for t in range(1, 10):  # the flood goes on: nothing more until the interval is over
        send(limiter, A, 50, float(t))
        assert limiter.report(t + 0.5) == []
    (again,) = limiter.report(10.5)
    assert "450 requests" in again and A in again
    assert limiter.report(20.6) == []  # nothing dropped since


# -- OverloadGuard ---------------------------------------------------------------------------------


def test_one_long_pause_does_not_overload() -> None:
    guard = OverloadGuard(settings())
    guard.sample(0.1, 0.8, 0.0)  # one 800 ms pause
    for i in range(1, 30):
        guard.sample(0.1, 0.001, i * 0.1)
    assert not guard.overloaded and guard.report() == []


def test_a_busy_loop_overloads_then_recovers() -> None:
    guard = OverloadGuard(settings(hold_seconds=2.0))
    t = 0.0
    samples = 0
    while not guard.overloaded:
        t += 0.1
        samples += 1
        guard.sample(1.0, 0.005, t)
        assert samples < 40
    assert samples == BUSY_ENTER_SAMPLES
    (entered,) = guard.report()
    assert entered.startswith("overloaded (loop busy")
    for _ in range(10):  # calm, but not for hold_seconds yet
        t += 0.1
        guard.sample(0.2, 0.001, t)
    assert guard.overloaded
    for _ in range(30):
        t += 0.1
        guard.sample(0.2, 0.001, t)
    assert not guard.overloaded
    assert guard.report()[0].startswith("no longer overloaded")
    assert guard.entered == 1


def test_a_busy_thread_whose_timers_keep_time_is_not_refused_for_a_burst() -> None:
    """A saturated second on a machine shared with others: served, the timers are on time."""
    guard = OverloadGuard(settings())
    for i in range(3 * BUSY_ENTER_SAMPLES):
        guard.sample(1.0 if i % BUSY_ENTER_SAMPLES else 0.7, 0.008, i * 0.1)
    assert not guard.overloaded


def test_timers_late_for_half_a_second_overload() -> None:
    guard = OverloadGuard(settings())
    for i in range(ENTER_SAMPLES):
        assert not guard.overloaded
        guard.sample(0.3, 0.5, i * 0.1)
    assert guard.overloaded


# -- telling a new INVITE from its bytes ---------------------------------------------------------


@pytest.mark.parametrize(
    "data, new",
    [
        (b"INVITE sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\nCSeq: 1 INVITE\r\n\r\n", True),
        (b"INVITE sip:a@b SIP/2.0\r\nt: <sip:a@b>\r\n\r\n", True),
        (b"INVITE sip:a@b SIP/2.0\r\nTO :<sip:a@b>;TAG=x\r\n\r\n", False),
        (b"INVITE sip:a@b SIP/2.0\r\nTo: <sip:a@b>;tag=1\r\n\r\n", False),
        (b'INVITE sip:a@b SIP/2.0\r\nTo: "tag=" <sip:a@b>\r\n\r\n', False),  # let through
        (b"OPTIONS sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\n\r\n", False),
        (b"SIP/2.0 200 OK\r\nTo: <sip:a@b>\r\nCSeq: 1 INVITE\r\n\r\n", False),
        (b"INVITE sip:a@b SIP/2.0\r\n\r\n", False),  # no To: the stack answers 400
    ],
)
def test_is_new_invite(data: bytes, new: bool) -> None:
    assert is_new_invite(data) is new


# -- the receiver in front of the stack ----------------------------------------------------------


class Inner:
    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.lost: list[Flow] = []

    def message_received(self, data: bytes, flow: Flow) -> None:
        self.got.append(data)

    def connection_lost(self, flow: Flow) -> None:
        self.lost.append(flow)


def _request(method: str, n: int, to_tag: str = "") -> bytes:
    tag = f";tag={to_tag}" if to_tag else ""
    return (
        f"{method} sip:1001@pbx.test SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {A}:5060;branch=z9hG4bK-g{n}\r\n"
        f"From: <sip:x@pbx.test>;tag=f{n}\r\nTo: <sip:1001@pbx.test>{tag}\r\n"
        f"Call-ID: g{n}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def _receiver(**kwargs: object) -> tuple[GuardedReceiver, Inner, list[Response], list[float]]:
    inner = Inner()
    answers: list[Response] = []
    now = [0.0]

    def sent(data: bytes, flow: Flow) -> None:
        msg = parse_message(data)
        assert isinstance(msg, Response)
        answers.append(msg)

    receiver = GuardedReceiver(inner, settings(**kwargs), lambda: now[0], lambda: "gtag", sent)
    return receiver, inner, answers, now


FLOW = Flow("udp", A, 5060)


def test_receiver_drops_a_flooding_source_before_the_stack() -> None:
    receiver, inner, answers, _ = _receiver()
    for n in range(30):
        receiver.message_received(_request("OPTIONS", n), FLOW)
    assert len(inner.got) == 10 and answers == []
    # Responses are never limited: they answer what we sent.
    receiver.message_received(b"SIP/2.0 200 OK\r\n\r\n", FLOW)
    assert inner.got[-1].startswith(b"SIP/2.0 200")
    receiver.connection_lost(FLOW)
    assert inner.lost == [FLOW]
    assert receiver.counters()["requests_dropped_over_rate_total"] == 20


def test_receiver_rejects_with_the_time_left() -> None:
    receiver, inner, answers, _ = _receiver(action="reject")
    for n in range(30):
        receiver.message_received(_request("OPTIONS", n), FLOW)
    receiver.message_received(b"garbage that cannot be answered\r\n\r\n", FLOW)
    assert len(inner.got) == 10
    assert [a.status for a in answers] == [503] * REJECTS_PER_WINDOW
    assert {a.headers.get("Retry-After") for a in answers} == {"5"}
    assert answers[0].call_id == "g10"


def test_overloaded_new_invites_get_503_and_the_rest_passes() -> None:
    receiver, inner, answers, _ = _receiver(retry_after=7)
    for i in range(BUSY_ENTER_SAMPLES):
        receiver.overload.sample(1.0, 0.0, i * 0.1)
    assert receiver.overload.overloaded
    receiver.message_received(_request("INVITE", 1), FLOW)
    (answer,) = answers
    assert answer.status == 503 and answer.headers.get("Retry-After") == "7"
    assert answer.headers.get("To", "").count(";tag=") == 1
    for data in (_request("INVITE", 2, to_tag="abc"), _request("BYE", 3, to_tag="abc"),
                 _request("OPTIONS", 4), _request("ACK", 5)):
        receiver.message_received(data, FLOW)
    assert len(inner.got) == 4 and len(answers) == 1
    assert receiver.counters()["overload_invites_refused_total"] == 1


# -- handing memory back after a flood ------------------------------------------------------------

MB = 1 << 20


def test_release_policy() -> None:
    policy = ReleasePolicy(growth=16 * MB, follow_ups=2, spacing=20.0)
    assert not policy.due(0.0, 60 * MB, quiet=True)  # the baseline
    assert not policy.due(10.0, 70 * MB, quiet=True)  # grown, but not enough
    assert not policy.due(20.0, 150 * MB, quiet=False)  # a flood: not while it lasts
    assert policy.due(60.0, 150 * MB, quiet=True)
    policy.released(60.0, 90 * MB)
    assert not policy.due(70.0, 90 * MB, quiet=True)
    assert policy.due(80.0, 90 * MB, quiet=True)  # follow-ups, 20 s apart
    policy.released(80.0, 80 * MB)
    assert policy.due(100.0, 80 * MB, quiet=True)
    policy.released(100.0, 75 * MB)
    # Done: 75 MB is the new baseline, so no release until it grows again.
    assert not policy.due(200.0, 80 * MB, quiet=True)
    assert policy.baseline == 75 * MB
    assert policy.due(300.0, 92 * MB, quiet=True)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        GuardSettings(action="shrug")
    with pytest.raises(ValueError):
        GuardSettings(busy=0)


# -- configuration --------------------------------------------------------------------------------

BASE = """
[server]
domain = "pbx.test"
listen = ["udp:127.0.0.1:5060"]

[[trunks]]
name = "carrier"
address = "127.0.0.2:5080"
inbound_from = ["127.0.0.2/32"]
"""


def test_overload_section_and_trusted_trunks() -> None:
    from b2bua.config import config_from_text
    from b2bua.server import guard_settings

    config = config_from_text(BASE + """
[overload]
source_rate = 50
block_seconds = 30
action = "reject"
trusted = ["10.0.0.0/8"]
loop_busy_percent = 80
loop_lag_ms = 250
max_waiting_transactions = 2000
""")
    g = guard_settings(config)
    assert (g.source_rate, g.block_seconds, g.action, g.busy, g.lag) == (50, 30.0, "reject", 0.8, 0.25)
    assert [str(n) for n in g.trusted] == ["10.0.0.0/8", "127.0.0.2/32"]
    assert config.overload.max_waiting_transactions == 2000
    assert config.overload.max_transactions == 65_536


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("action = \"ban\"", "overload.action"),
        ("source_rate = 0", "overload.source_rate"),
        ("loop_busy_percent = 120", "overload.loop_busy_percent"),
        ("trusted = [\"10.0.0.1/8\"]", "has host bits set"),
        ("max_waiting_transactions = 10", "overload.max_waiting_transactions"),
    ],
)
def test_overload_errors_name_the_line(line: str, fragment: str) -> None:
    from b2bua.config import ConfigError, config_from_text

    with pytest.raises(ConfigError) as info:
        config_from_text(BASE + "\n[overload]\n" + line + "\n")
    text = str(info.value)
    assert fragment in text and ":12: " in text, text
