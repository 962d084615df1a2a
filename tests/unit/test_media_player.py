"""Paced playback and outgoing-stream continuity, on a fake clock."""

from __future__ import annotations

import random
import struct

import pytest

from media.player import OutgoingStream, PacingStats, PlaybackScheduler, Player
from media.rtp import RtpPacket

FRAMES = [bytes([i]) * 160 for i in range(5)]
START = 1000.0


def header(data: bytes) -> tuple[bool, int, int, int]:
    b1, seq, ts, ssrc = struct.unpack_from("!xBHII", data)
    return bool(b1 & 0x80), seq, ts, ssrc


def test_first_packets_numbering_and_marker() -> None:
    stream = OutgoingStream(ssrc=0x1234, sequence=65534, timestamp=0xFFFFFF00)
    player = Player(FRAMES, 0, stream, START)
    assert player.next_deadline() == START
    assert player.packets_due(START - 0.001) == []
    (p,) = player.packets_due(START)
    assert (p.marker, p.sequence_number, p.timestamp, p.ssrc, p.payload_type) == (
        True, 65534, 0xFFFFFF00, 0x1234, 0,
    )  # fmt: skip
    assert p.payload == FRAMES[0]
    assert player.packets_due(START + 0.0199) == []
    p2, p3 = player.packets_due(START + 0.045)
    assert (p2.marker, p2.sequence_number, p2.timestamp) == (False, 65535, 0xFFFFFFA0)
    assert (p3.sequence_number, p3.timestamp) == (0, 0x40)  # both wrap around
    assert player.next_deadline() == START + 0.06


def test_one_shot_and_loop() -> None:
    once = Player(FRAMES, 8, OutgoingStream(1, 0, 0), START, loop=False)
    got = once.packets_due(START + 0.09)
    assert [p.payload for p in got] == FRAMES
    assert once.sent_all and once.finished and once.next_deadline() is None
    looping = Player(FRAMES, 8, OutgoingStream(1, 0, 0), START, max_late=1.0)
    got = looping.packets_due(START + 0.2 - 1e-9)  # 10 deadlines: 0, 20, ..., 180 ms
    assert [p.payload for p in got] == FRAMES + FRAMES
    assert not looping.finished


def test_no_drift_over_an_hour_with_jittery_wakeups() -> None:
    rng = random.Random(7)
    stream = OutgoingStream(ssrc=9, sequence=100, timestamp=5000)
    player = Player(FRAMES, 0, stream, START)
    sent = 0
    now = START
    hour = 3600.0
    while True:
        deadline = player.next_deadline()
        assert deadline is not None
        if deadline > START + hour:
            break
        now = max(now, deadline + rng.uniform(0, 0.004))  # the loop wakes up 0-4 ms late
        for data in player.datagrams_due(now):
            _, seq, ts, _ = header(data)
            assert seq == (100 + sent) & 0xFFFF
            assert ts == (5000 + 160 * sent) & 0xFFFFFFFF
            nominal = START + sent * 0.02
            assert 0 <= now - nominal <= 0.0045
            sent += 1
    assert sent == 180_001  # deadlines 0 s .. 3600 s inclusive, none lost, none extra
    assert player.next_deadline() == START + 180_001 * 0.02


def test_late_wakeup_skips_instead_of_bursting() -> None:
    stream = OutgoingStream(1, 0, 0)
    player = Player(FRAMES, 0, stream, START, max_late=0.05)
    player.packets_due(START)
    got = player.packets_due(START + 1.0)  # the loop stalled for one second
    assert len(got) == 3  # only frames at most 50 ms late: deadlines 0.96, 0.98, 1.00
    assert [p.sequence_number for p in got] == [1, 2, 3]
    assert [p.timestamp for p in got] == [48 * 160, 49 * 160, 50 * 160]
    assert [p.payload for p in got] == [FRAMES[48 % 5], FRAMES[49 % 5], FRAMES[50 % 5]]


def rtp(seq: int, ts: int, ssrc: int, payload: bytes = b"x" * 160, marker: bool = False) -> bytes:
    return bytes(RtpPacket(0, seq, ts, ssrc, payload, marker))


def test_relay_rewrites_to_our_ssrc_and_keeps_gaps_and_order() -> None:
    stream = OutgoingStream(ssrc=0xABCD, sequence=10, timestamp=1000)
    out = [
        stream.relay(rtp(s, 7000 + 160 * (s - 500), 0x5555), START + 0.02 * (s - 500))
        for s in (500, 501, 503, 502)
    ]
    parsed = [RtpPacket.parse(o) for o in out if o is not None]
    assert [p.sequence_number for p in parsed] == [10, 11, 13, 12]
    assert [p.timestamp for p in parsed] == [1000, 1160, 1480, 1320]
    assert {p.ssrc for p in parsed} == {0xABCD}
    assert [p.marker for p in parsed] == [True, False, False, False]
    assert parsed[0].payload == b"x" * 160
    assert stream.relay(b"\x40" + b"\x00" * 20, START) is None
    assert stream.relay(b"\x80\x00", START) is None


def test_switch_between_relay_and_playback_is_continuous() -> None:
    stream = OutgoingStream(ssrc=0x77, sequence=1, timestamp=0)
    sent: list[tuple[float, bytes]] = []
    t = START
    # 1 s of relay from a phone whose own numbering is arbitrary
    for i in range(50):
        t = START + 0.02 * i
        data = stream.relay(rtp(40000 + i, 123456 + 160 * i, 0x999), t)
        assert data is not None
        sent.append((t, data))
    # hold: 2 s of music starting one frame later
    player = Player(FRAMES, 0, stream, t + 0.02)
    for _ in range(100):
        t = player.next_deadline() or 0.0
        sent += [(t, d) for d in player.datagrams_due(t)]
    # resume the relay; the phone's numbering went on meanwhile (it keeps sending while held)
    stream.switch()
    for i in range(150, 200):
        t = START + 0.02 * i
        data = stream.relay(rtp(40000 + i, 123456 + 160 * i, 0x999), t)
        assert data is not None
        sent.append((t, data))
    headers = [header(d) for _, d in sent]
    assert {h[3] for h in headers} == {0x77}
    assert [h[1] for h in headers] == list(range(1, 201))
    for (t0, _), (t1, _), h0, h1 in zip(sent, sent[1:], headers, headers[1:], strict=False):
        assert h1[2] - h0[2] == round((t1 - t0) * 8000)
    markers = [i for i, h in enumerate(headers) if h[0]]
    assert markers == [0, 50, 150]


def test_relay_new_source_ssrc_counts_as_a_switch() -> None:
    stream = OutgoingStream(ssrc=1, sequence=0, timestamp=0)
    stream.relay(rtp(10, 100, 0xA), START)
    data = stream.relay(rtp(7, 9999, 0xB), START + 0.02)
    assert data is not None
    marker, seq, ts, _ = header(data)
    assert (marker, seq, ts) == (True, 1, 160)


def test_scheduler_orders_players_and_forgets_finished_ones() -> None:
    sched = PlaybackScheduler()
    a = Player(FRAMES, 0, OutgoingStream(1, 0, 0), START, context="a")
    b = Player(FRAMES[:2], 0, OutgoingStream(2, 0, 0), START + 0.005, loop=False, context="b")
    c = Player(FRAMES, 0, OutgoingStream(3, 0, 0), START + 0.01, context="c")
    for p in (a, b, c):
        sched.add(p)
    assert len(sched) == 3 and sched.next_deadline() == pytest.approx(START)
    due = sched.due(START + 0.006)
    assert [(p.context, len(d)) for p, d, _ in due] == [("a", 1), ("b", 1)]
    assert [t for _, _, t in due] == pytest.approx([START, START + 0.005])
    assert sched.next_deadline() == pytest.approx(START + 0.01)
    sched.remove(c)
    assert sched.next_deadline() == pytest.approx(START + 0.02)
    due = sched.due(START + 0.03)
    assert [(p.context, len(d), p.sent_all) for p, d, _ in due] == [("a", 1, False), ("b", 1, True)]
    assert len(sched) == 1
    assert sched.next_deadline() == pytest.approx(START + 0.04)
    sched.remove(a)
    assert sched.next_deadline() is None and len(sched) == 0


def test_scheduler_buckets_players_on_a_grid() -> None:
    sched = PlaybackScheduler(resolution=0.001)
    assert sched.align(START + 0.0004) == pytest.approx(START + 0.001)
    assert sched.align(START + 0.002) == pytest.approx(START + 0.002)
    early = Player(FRAMES, 0, OutgoingStream(1, 0, 0), START + 0.0004, context="off-grid")
    players = [
        Player(FRAMES, 0, OutgoingStream(i, 0, 0), START + 0.001, context=i) for i in range(50)
    ]
    for p in (early, *players):
        sched.add(p)
    # the off-grid player waits for its bucket; all 51 are served by one wake-up
    assert sched.next_deadline() == pytest.approx(START + 0.001)
    assert sched.due(START + 0.0009) == []
    due = sched.due(START + 0.001)
    assert len(due) == 51 and len({t for _, _, t in due}) == 1
    assert due[0][2] == pytest.approx(START + 0.001)
    # 20 ms later, again one bucket for everybody
    assert sched.next_deadline() == pytest.approx(START + 0.021)
    assert len(sched.due(START + 0.021)) == 51


def test_pacing_stats() -> None:
    stats = PacingStats()
    assert stats.percentile(0.99) == 0.0
    for i in range(100):
        stats.record(0.00005 if i < 98 else -0.003)
    stats.record(1.0)
    assert stats.count == 101 and stats.max == 1.0
    assert stats.percentile(0.5) == pytest.approx(0.0001)
    assert stats.percentile(0.99) == pytest.approx(0.0031)
    assert stats.percentile(1.0) == pytest.approx(0.1001)
    stats.reset()
    assert stats.count == 0


def test_scheduler_makes_progress_on_bucket_boundaries() -> None:
    # A deadline a hair after its bucket's time, and a wake-up exactly at the bucket time.
    sched = PlaybackScheduler(resolution=0.001)
    player = Player(FRAMES, 0, OutgoingStream(1, 0, 0), 100.02 + 1e-12)
    sched.add(player)
    when = sched.next_deadline()
    assert when is not None
    due = sched.due(when)
    assert [len(d) for _, d, _ in due] == [1]
    assert sched.next_deadline() == pytest.approx(100.04)
