"""Several workers: the mark in our tokens, who owns a message, the channel between workers, and
a registrar that reads back what another worker committed."""

from __future__ import annotations

import asyncio
import socket
import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b2bua import tokens
from b2bua.registrar import SqliteLocationStore
from b2bua.sip.flow import Flow
from b2bua.sip.message import Request, Response, parse_message
from b2bua.store import open_database
from b2bua.transport.ingress import owner_of
from b2bua.workers import (
    BINDINGS,
    HERE,
    VOICEMAIL,
    Channel,
    Handlers,
    Role,
    call_id_owner,
    channel_sockets,
    decode_flow,
    encode_flow,
    port_range,
    primary_role,
    route,
)
from tests.unit.test_registrar import T0, Phone, make_registrar


@pytest.mark.parametrize("index", [0, 1, 7, tokens.MAX_WORKERS - 1])
def test_every_token_of_a_worker_carries_its_mark(index: int) -> None:
    source = tokens.TokenSource(prefix=tokens.worker_prefix(index))
    for made in (source.token(), source.token(12), source.tag()):
        assert tokens.worker_of(made) == index
        assert made[0] not in string.hexdigits
        assert all(c in string.hexdigits for c in made[1:])


def test_a_single_process_marks_nothing() -> None:
    made = tokens.TokenSource(prefix=tokens.worker_prefix(None)).tag()
    assert len(made) == 10 and all(c in string.hexdigits for c in made)
    assert tokens.worker_of(made) is None


def test_a_seeded_source_repeats_itself_and_two_unseeded_ones_differ() -> None:
    assert tokens.TokenSource(b"x").token() == tokens.TokenSource(b"x").token()
    assert tokens.TokenSource().token(16) != tokens.TokenSource().token(16)


@given(st.text(max_size=12))
def test_foreign_text_names_a_worker_only_with_a_mark_letter(text: str) -> None:
    owner = tokens.worker_of(text)
    if text and "g" <= text[0] <= "v":
        assert owner == ord(text[0]) - ord("g")
    else:
        assert owner is None


def test_a_worker_index_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError):
        tokens.worker_prefix(tokens.MAX_WORKERS)


@given(
    st.sampled_from(["udp", "tcp", "tls"]),
    st.sampled_from(["127.0.0.1", "::1", "2001:db8::7", "192.0.2.200"]),
    st.integers(0, 65535),
    st.none() | st.integers(0, 2**40),
    st.none() | st.sampled_from(["127.0.0.1", "::"]),
    st.none() | st.integers(0, 65535),
)
def test_a_flow_crosses_the_channel_unchanged(
    transport: str, host: str, port: int, cid: int | None, lhost: str | None, lport: int | None
) -> None:
    flow = Flow(transport, host, port, cid, lhost, lport)
    line = encode_flow(flow)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_flow(line[:-1]) == flow


def wire(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def _msg(text: str) -> Request | Response:
    return parse_message(wire(text))


RESPONSE = """SIP/2.0 180 Ringing
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{branch}
From: <sip:100@pbx>;tag={ours}
To: <sip:100@pbx>;tag=dev1
Call-ID: x1
CSeq: 1 INVITE
Content-Length: 0

"""

REQUEST = """{method} sip:b2bua@127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.9:5070;branch=z9hG4bK77
From: <sip:dev@pbx>;tag=dev1
To: <sip:100@pbx>{to_tag}
Call-ID: {call_id}
CSeq: 2 {method}
Max-Forwards: 70
Content-Length: 0

"""


@pytest.mark.parametrize("count", [2, 3, 16])
def test_a_response_belongs_to_the_worker_that_made_its_branch(count: int) -> None:
    for index in range(count):
        mark = chr(ord("g") + index)
        text = RESPONSE.format(branch=f"{mark}0123abcd", ours="g1")
        assert route(wire(text), count) == index
        assert owner_of(_msg(text), count) == index
    # no mark of ours (a stray): handled where it was read
    text = RESPONSE.format(branch="0123abcd", ours="h1")
    assert route(wire(text), 2) == HERE == owner_of(_msg(text), 2)


def test_an_in_dialog_request_belongs_to_the_worker_that_made_its_to_tag() -> None:
    for method, to_tag, owner in (("BYE", ";tag=i5ff", 2), ("ACK", ";tag=g5ff", 0),
                                  ("INFO", ";x=1;tag=h0", 1)):
        text = REQUEST.format(method=method, to_tag=to_tag, call_id="x1")
        assert route(wire(text), 3) == owner == owner_of(_msg(text), 3)


@given(st.text(string.ascii_letters + string.digits + "-.!%*_+`'~@:", min_size=1, max_size=40),
       st.sampled_from(["INVITE", "CANCEL", "REGISTER", "OPTIONS"]),
       st.sampled_from(["", ";tag=0abc", ";tag=Gabc"]))
def test_a_new_request_belongs_to_the_worker_its_call_id_names(
    call_id: str, method: str, to_tag: str
) -> None:
    """A CANCEL lands with its INVITE; a tag that is not ours does not count."""
    text = REQUEST.format(method=method, to_tag=to_tag, call_id=call_id)
    for count in (2, 3, 5):
        owner = call_id_owner(call_id, count)
        assert route(wire(text), count) == owner == owner_of(_msg(text), count)
        compact = text.replace("Call-ID:", "i:").replace("To:", "t:")
        assert route(wire(compact), count) == owner


def test_a_tag_lookalike_in_a_display_name_does_not_count() -> None:
    text = REQUEST.format(method="INVITE", to_tag="", call_id="abc").replace(
        "To: <sip:100@pbx>", 'To: "x;tag=h1" <sip:100@pbx>')
    assert route(wire(text), 2) == call_id_owner("abc", 2) == owner_of(_msg(text), 2)
    text = text.replace("<sip:100@pbx>", "<sip:100@pbx>;tag=h9")
    assert route(wire(text), 2) == 1 == owner_of(_msg(text), 2)


def test_bytes_that_do_not_tell_are_parsed_first() -> None:
    assert route(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=x\r\n\r\n", 2) is None
    assert route(b"BYE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n", 2) is None


async def test_frames_reach_the_worker_they_are_for() -> None:
    got: list[tuple[str, object]] = []
    handlers = [Handlers() for _ in range(3)]
    for i, h in enumerate(handlers):
        h.sip = lambda data, flow, i=i: got.append((f"sip{i}", (data, flow)))
        h.bindings = lambda text, i=i: got.append((f"bindings{i}", text))
        h.voicemail = lambda text, i=i: got.append((f"voicemail{i}", text))
    socks = channel_sockets(3)
    first = primary_role(3, socks)
    channels = [Channel(first.of(i, s.fileno()), handlers[i], s) for i, s in enumerate(socks)]
    loop = asyncio.get_running_loop()
    for ch in channels:
        ch.start(loop)
    try:
        flow = Flow("udp", "192.0.2.9", 5070, None, "127.0.0.1", 5060)
        other = Flow("udp", "2001:db8::1", 5080, None, "::1", 5060)
        channels[0].forward(2, b"SIP/2.0 200 OK\r\n\r\n", flow)
        channels[0].forward(2, b"SIP/2.0 180 Ringing\r\n\r\n" + b"\n" * 3, other)
        big, bigger = b"x" * 40_000, b"BYE sip:x SIP/2.0\r\n\r\n" + b"y" * 25_000
        channels[0].forward(1, big, flow)  # too much to share a frame
        channels[0].forward(1, bigger, other)
        channels[1].tell_others(BINDINGS, "1001")
        channels[2].tell_others(VOICEMAIL, "1002")
        # a frame from anyone else is not taken
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            stranger.sendto(BINDINGS + b"9999", ("127.0.0.1", first.ports[0]))
        for _ in range(100):
            if len(got) >= 8:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        sip = [item for item in got if item[0].startswith("sip")]
        # in order, each with its own flow
        assert [item for item in sip if item[0] == "sip2"] == [
            ("sip2", (b"SIP/2.0 200 OK\r\n\r\n", flow)),
            ("sip2", (b"SIP/2.0 180 Ringing\r\n\r\n\n\n\n", other)),
        ]
        assert [item for item in sip if item[0] == "sip1"] == [
            ("sip1", (big, flow)), ("sip1", (bigger, other))
        ]
        assert sorted(item for item in got if not item[0].startswith("sip")) == [
            ("bindings0", "1001"), ("bindings2", "1001"),
            ("voicemail0", "1002"), ("voicemail1", "1002"),
        ]
        assert channels[0].forwarded == 4
        assert channels[2].received == 2 + 1  # two datagrams (one frame), and a notice
        assert channels[1].received == 2 + 1  # two datagrams (two frames), and a notice
    finally:
        for ch in channels:
            ch.close()


async def test_every_other_worker_hears_that_a_connection_closed() -> None:
    closed: list[tuple[int, Flow]] = []
    handlers = [Handlers() for _ in range(3)]
    for i, h in enumerate(handlers):
        h.closed = lambda flow, i=i: closed.append((i, flow))
    socks = channel_sockets(3)
    first = primary_role(3, socks)
    channels = [Channel(first.of(i, s.fileno()), handlers[i], s) for i, s in enumerate(socks)]
    loop = asyncio.get_running_loop()
    for ch in channels:
        ch.start(loop)
    try:
        flow = Flow("tls", "2001:db8::7", 5061, 42, "::1", 5061)
        channels[0].tell_closed(flow)
        for _ in range(100):
            if len(closed) >= 2:
                break
            await asyncio.sleep(0.01)
        assert sorted(closed) == [(1, flow), (2, flow)]
    finally:
        for ch in channels:
            ch.close()


def test_a_role_crosses_the_command_line_unchanged() -> None:
    role = Role(2, 3, 4242, (40001, 40002, 40003), 7)
    assert Role.parse(str(role)) == role
    with pytest.raises(ValueError):
        Role.parse("3:3:4242:7:40001,40002,40003")
    with pytest.raises(ValueError):
        Role.parse("1:3:4242:7:40001")


def test_a_worker_reads_back_the_bindings_another_committed(tmp_path: Path) -> None:
    first = make_registrar(SqliteLocationStore(open_database(tmp_path)))
    second = make_registrar(SqliteLocationStore(open_database(tmp_path)))
    changed: list[str] = []
    first.on_change = changed.append
    phone = Phone(first)
    assert phone.register(T0, expires=600).status == 200
    assert changed == ["1001"]
    assert [b for b in second.lookup("1001", T0 + 1) if not b.static] == []
    assert second.reload("1001", T0 + 1) == 1
    (b,) = [b for b in second.lookup("1001", T0 + 1) if not b.static]
    assert (b.contact, b.expires_at, b.device) == ("sip:1001@192.0.2.10:5060", T0 + 600, 0)
    # a refresh replaces it, an unregister removes it, in the other worker too
    phone.register(T0 + 100, expires=900)
    second.reload("1001", T0 + 101)
    assert [b.expires_at for b in second.lookup("1001", T0 + 101) if not b.static] == [T0 + 1000]
    assert len(second) == 1
    phone.register(T0 + 200, expires=0)
    assert changed == ["1001"] * 3
    assert second.reload("1001", T0 + 201) == 0
    assert len(second) == 0


def test_a_worker_started_beside_the_first_keeps_tcp_bindings_reachable(tmp_path: Path) -> None:
    """The first worker holds the TCP connections: another worker that starts (or starts
    again) while it runs must not take them for lost, as a restarted server does."""
    first = make_registrar(SqliteLocationStore(open_database(tmp_path)))
    tcp = Flow("tcp", "192.0.2.30", 50123, 7, "198.51.100.1", 5060)
    Phone(first, "1002", password="other", flow=tcp,
          contact="sip:1002@192.0.2.30:50123;transport=tcp").register(T0)
    beside = make_registrar(SqliteLocationStore(open_database(tmp_path)))
    assert beside.restore(T0 + 10, connections_survived=True) == 1
    assert [b.reachable for b in beside.bindings("1002")] == [True]
    assert len(beside.lookup("1002", T0 + 10)) == 1
    restarted = make_registrar(SqliteLocationStore(open_database(tmp_path)))
    restarted.restore(T0 + 10)
    assert [b.reachable for b in restarted.bindings("1002")] == [False]


def test_a_worker_that_keeps_exiting_is_started_again_less_and_less_often(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from b2bua import workers

    now = [1000.0]
    monkeypatch.setattr(workers.time, "monotonic", lambda: now[0])
    socks = channel_sockets(2)
    try:
        supervisor = workers.Supervisor(primary_role(2, socks),
                                        [sys.executable, "-c", "raise SystemExit(3)"], socks)
        supervisor.start()

        def exited() -> None:
            supervisor.procs[1].wait(10)

        starts = []
        for _ in range(40):  # 40 seconds, a check each second as the housekeeping does
            exited()
            before = supervisor.respawns
            supervisor.check()
            if supervisor.respawns > before:
                starts.append(now[0] - 1000.0)
            now[0] += 1.0
        # started again after 1, then 2, 4, 8, 16 seconds (each counted from its exit)
        assert starts == [1.0, 4.0, 9.0, 18.0, 35.0]
        supervisor.stopping = True
        exited()
    finally:
        for s in socks:
            s.close()


@given(st.integers(1, 60000), st.integers(0, 5000), st.integers(1, 16))
def test_each_worker_takes_its_own_block_of_rtp_ports(first: int, size: int, count: int) -> None:
    last = min(first + size, 65535)
    blocks = [port_range(first, last, i, count) for i in range(count)]
    pairs = [set(range(lo + lo % 2, hi, 2)) for lo, hi in blocks]
    if len(range(first + first % 2, last, 2)) < count:  # too few pairs to share
        assert blocks == [(first, last)] * count
        return
    for (lo, hi), own in zip(blocks, pairs, strict=True):
        assert first <= lo and hi <= last and lo % 2 == 0 and own
    assert sum(len(p) for p in pairs) == len(set().union(*pairs))  # disjoint


def test_every_worker_counts_every_failed_authentication() -> None:
    """A source that spreads its guesses over the workers is locked out at the configured
    count in all of them."""
    workers = [make_registrar(lockout_failures=3, lockout_window=60, lockout_seconds=300)
               for _ in range(2)]
    workers[0].on_failure = workers[1].count_failure
    workers[1].on_failure = workers[0].count_failure
    flow = Flow("udp", "203.0.113.66", 5060)
    # guesses 1 and 3 reach worker 0, guess 2 worker 1 (as Call-IDs spread them)
    assert Phone(workers[0], "1001", password="guess", flow=flow).register(T0).status == 401
    assert Phone(workers[1], "1001", password="guess", flow=flow).register(T0 + 1).status == 401
    assert Phone(workers[0], "1001", password="guess", flow=flow).register(T0 + 2).status == 403
    for reg in workers:
        assert reg.is_locked_out("203.0.113.66", T0 + 10)
        assert Phone(reg, "1001", flow=flow).register(T0 + 10).status == 403
        assert Phone(reg, "1001").register(T0 + 10).status == 200  # other sources: fine
