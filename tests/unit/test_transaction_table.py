"""The transition tables, entry by entry, and random event sequences against the whole layer.

`test_every_transition_of_the_tables` is generated from `TABLES` itself: each (state, input) pair
a machine lists is reached through the public API (messages in, TU responses, transport errors,
the clock), fired once, and checked against the table through the `on_transition` hook. A pair
added to a table without a way to produce it here fails the test.

The hypothesis state machine plays random traffic on both sides (responses, retransmissions,
ACKs, CANCELs, merged requests, transport errors, TU answers, time) and checks that nothing
raises, that deadlines stay in the future, and that once every open request gets a final answer
and enough time passes, every transaction is TERMINATED exactly once and no timer is left.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TypeVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from b2bua.sip.flow import Flow
from b2bua.sip.message import Request, Response, make_response, parse_message
from b2bua.sip.timers import Timer, TimerConfig, TimerHeap
from b2bua.sip.transaction import (
    START,
    TABLES,
    CancelReceived,
    ClientTransaction,
    Input,
    Machine,
    RequestReceived,
    ServerTransaction,
    State,
    Transaction,
    TransactionLayer,
    TransactionTerminated,
    make_ack,
    make_cancel,
)
from b2bua.testing.clock import FakeClock

UDP = Flow("udp", "192.0.2.10", 5060)
TCP = Flow("tcp", "192.0.2.10", 5061, connection_id=3)


def build(
    method: str,
    branch: str,
    *,
    transport: str = "UDP",
    call_id: str = "c@192.0.2.10",
    from_tag: str = "ft",
    cseq: int = 1,
    to_tag: str | None = None,
) -> Request:
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    msg = parse_message(
        (
            f"{method} sip:bob@192.0.2.20 SIP/2.0\r\n"
            f"Via: SIP/2.0/{transport} 192.0.2.10:5060;branch={branch}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:alice@example.com>;tag={from_tag}\r\n"
            f"To: {to}\r\n"
            f"Call-ID: {call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(msg, Request)
    return msg


def wire(message: Request | Response) -> Request | Response:
    return parse_message(bytes(message))


Seen = tuple[Transaction, State, Input, State]
Tx = TypeVar("Tx", ClientTransaction, ServerTransaction)


@dataclass
class Harness:
    clock: FakeClock = field(default_factory=FakeClock)
    seen: list[Seen] = field(default_factory=list)
    layer: TransactionLayer = field(init=False)

    def __post_init__(self) -> None:
        counter = itertools.count()
        self.layer = TransactionLayer(
            TimerConfig(),
            random_token=lambda: f"r{next(counter)}",
            on_transition=lambda tx, old, inp, new: self.seen.append((tx, old, inp, new)),
        )

    def start(self, machine: Machine) -> Transaction:
        method = "INVITE" if machine in (Machine.INVITE_CLIENT, Machine.INVITE_SERVER) else "BYE"
        req = build(method, "z9hG4bKtable")
        if machine in (Machine.INVITE_CLIENT, Machine.NON_INVITE_CLIENT):
            return self.layer.send_request(req, UDP, self.clock.now())
        self.layer.receive(req, UDP, self.clock.now())
        event = self.layer.next_event()
        assert isinstance(event, RequestReceived) and event.transaction is not None
        return event.transaction

    def apply(self, tx: Transaction, inp: Input) -> Seen:
        """Produce `inp` for `tx` through the public API; the transition it caused."""
        mark = len(self.seen)
        now = self.clock.now()
        layer = self.layer
        statuses = {"1XX": 180, "2XX": 200, "300_699": 486}
        if inp.name.startswith("RESPONSE_"):
            status = statuses[inp.name.removeprefix("RESPONSE_")]
            layer.receive(wire(make_response(tx.request, status, to_tag="far")), UDP, now)
        elif inp.name.startswith("TU_"):
            assert isinstance(tx, ServerTransaction)
            status = statuses[inp.name.removeprefix("TU_")]
            layer.send_response(tx, make_response(tx.request, status, to_tag="near"), now)
        elif inp is Input.REQUEST_RETRANSMIT:
            layer.receive(wire(tx.request), tx.flow, now)
        elif inp is Input.ACK:
            assert isinstance(tx, ServerTransaction) and tx.last_response is not None
            layer.receive(wire(make_ack(tx.request, tx.last_response)), tx.flow, now)
        elif inp is Input.TRANSPORT_ERROR:
            layer.transport_error(tx.flow, now)
        else:  # a timer: run the clock until it fires
            for _ in range(100):
                if any(s[0] is tx and s[2] is inp for s in self.seen[mark:]):
                    break
                assert self.clock.run_next(layer) is not None, f"{inp} never fired"
        mine = [s for s in self.seen[mark:] if s[0] is tx and s[2] is inp]
        assert mine, f"{inp} caused no transition"
        return mine[0]


# How to reach each state from the start of its machine.
PATHS: dict[tuple[Machine, State], tuple[Input, ...]] = {
    (Machine.INVITE_CLIENT, State.CALLING): (),
    (Machine.INVITE_CLIENT, State.PROCEEDING): (Input.RESPONSE_1XX,),
    (Machine.INVITE_CLIENT, State.COMPLETED): (Input.RESPONSE_300_699,),
    (Machine.INVITE_CLIENT, State.ACCEPTED): (Input.RESPONSE_2XX,),
    (Machine.NON_INVITE_CLIENT, State.TRYING): (),
    (Machine.NON_INVITE_CLIENT, State.PROCEEDING): (Input.RESPONSE_1XX,),
    (Machine.NON_INVITE_CLIENT, State.COMPLETED): (Input.RESPONSE_2XX,),
    (Machine.INVITE_SERVER, State.PROCEEDING): (),
    (Machine.INVITE_SERVER, State.COMPLETED): (Input.TU_300_699,),
    (Machine.INVITE_SERVER, State.CONFIRMED): (Input.TU_300_699, Input.ACK),
    (Machine.INVITE_SERVER, State.ACCEPTED): (Input.TU_2XX,),
    (Machine.NON_INVITE_SERVER, State.TRYING): (),
    (Machine.NON_INVITE_SERVER, State.PROCEEDING): (Input.TU_1XX,),
    (Machine.NON_INVITE_SERVER, State.COMPLETED): (Input.TU_2XX,),
}

ENTRIES = [
    pytest.param(machine, state, inp, id=f"{machine.name}-{state.name}-{inp.name}")
    for machine, table in TABLES.items()
    for state, inp in table
]


@pytest.mark.parametrize(("machine", "state", "inp"), ENTRIES)
def test_every_transition_of_the_tables(machine: Machine, state: State, inp: Input) -> None:
    harness = Harness()
    tx = harness.start(machine)
    assert tx.state is START[machine].target
    for step in PATHS[(machine, state)]:
        harness.apply(tx, step)
    assert tx.state is state
    expected = TABLES[machine][(state, inp)].target
    assert harness.apply(tx, inp) == (tx, state, inp, expected)
    assert tx.state is expected


def test_every_state_of_every_table_is_reachable() -> None:
    for machine, table in TABLES.items():
        states = {s for s, _ in table} | {t.target for t in table.values()}
        assert states - {State.TERMINATED} == {s for m, s in PATHS if m is machine}
        assert all(t.target in states for t in table.values())


def test_the_tables_only_use_timers_of_their_machine() -> None:
    timers = {
        Machine.INVITE_CLIENT: {Timer.A, Timer.B, Timer.D, Timer.M},
        Machine.NON_INVITE_CLIENT: {Timer.E, Timer.F, Timer.K},
        Machine.INVITE_SERVER: {Timer.G, Timer.H, Timer.I, Timer.L},
        Machine.NON_INVITE_SERVER: {Timer.J},
    }
    for machine, table in TABLES.items():
        used = {t for tr in [*table.values(), START[machine]] for t in (*tr.start, *tr.stop)}
        fired = {i for _, i in table if i.name.startswith("TIMER_")}
        assert used == timers[machine]
        assert fired == {Input[f"TIMER_{t.value}"] for t in timers[machine]}


def test_timer_durations() -> None:
    cfg = TimerConfig()
    assert cfg.duration(Timer.A, reliable=False) == 0.5
    assert cfg.duration(Timer.A, reliable=False, previous=16.0) == 32.0
    assert cfg.duration(Timer.A, reliable=True) is None
    assert cfg.duration(Timer.E, reliable=False, previous=4.0) == 4.0
    assert cfg.duration(Timer.E, reliable=False, previous=0.5, proceeding=True) == 4.0
    assert cfg.duration(Timer.G, reliable=False, previous=2.0) == 4.0
    for timer in (Timer.B, Timer.F, Timer.H, Timer.L, Timer.M):
        assert cfg.duration(timer, reliable=False) == cfg.duration(timer, reliable=True) == 32.0
    assert cfg.duration(Timer.D, reliable=False) == 32.0
    assert cfg.duration(Timer.J, reliable=False) == 32.0
    assert cfg.duration(Timer.I, reliable=False) == cfg.duration(Timer.K, reliable=False) == 5.0
    for timer in (Timer.D, Timer.I, Timer.J, Timer.K):
        assert cfg.duration(timer, reliable=True) == 0.0
    with pytest.raises(ValueError):
        TimerConfig(t1=1.0, t2=0.5)


def test_timer_heap_orders_cancels_and_compacts() -> None:
    heap: TimerHeap[str] = TimerHeap()
    late = heap.schedule(2.0, "late")
    first = heap.schedule(1.0, "first")
    tie = heap.schedule(1.0, "tie")
    assert heap.next_deadline() == 1.0 and len(heap) == 3
    heap.cancel(first)
    heap.cancel(first)
    assert len(heap) == 2
    popped = heap.pop_due(1.5)
    assert popped is tie and heap.pop_due(1.5) is None
    heap.cancel(tie)  # already fired: nothing happens
    many = [heap.schedule(10.0 + i, str(i)) for i in range(100)]
    for entry in many:
        heap.cancel(entry)
    assert len(heap) == 1 and heap.next_deadline() == 2.0
    assert heap.pop_due(5.0) is late and heap.next_deadline() is None


def test_fake_clock() -> None:
    clock = FakeClock(10.0)
    assert clock() == clock.now() == 10.0
    assert clock.advance(1.5) == 11.5
    with pytest.raises(ValueError):
        clock.jump(11.0)
    with pytest.raises(ValueError):
        clock.advance(-1)
    harness = Harness(clock=FakeClock())
    harness.start(Machine.NON_INVITE_CLIENT)
    assert harness.clock.run_until(harness.layer, 3.6) == 3  # Timer E at 0.5, 1.5, 3.5
    assert harness.clock.now() == 3.6


# -- random traffic ----------------------------------------------------------------------------

FLOWS = {"udp": UDP, "tcp": TCP}
STATUSES = st.sampled_from([100, 180, 183, 200, 202, 302, 404, 486, 487, 503, 603])


class LayerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        counter = itertools.count()
        self.layer = TransactionLayer(TimerConfig(), random_token=lambda: f"h{next(counter)}")
        self.clients: list[ClientTransaction] = []
        self.servers: list[ServerTransaction] = []
        self.terminated: dict[Transaction, int] = {}
        self.serial = itertools.count()

    def _drain(self) -> None:
        self.layer.datagrams_to_send()
        while (event := self.layer.next_event()) is not None:
            if isinstance(event, RequestReceived) and event.transaction is not None:
                self.servers.append(event.transaction)
            elif isinstance(event, CancelReceived):
                self.servers.append(event.cancel_transaction)
            elif isinstance(event, TransactionTerminated):
                key = event.transaction
                self.terminated[key] = self.terminated.get(key, 0) + 1
                assert event.transaction.state is State.TERMINATED

    def _pick(self, data: st.DataObject, pool: list[Tx]) -> Tx:
        """Mostly a live transaction; sometimes any, so dead ones get late traffic too."""
        live = [tx for tx in pool if tx.state is not State.TERMINATED]
        if live and data.draw(st.integers(0, 3), label="live?"):
            return data.draw(st.sampled_from(live))
        return data.draw(st.sampled_from(pool))

    def _request(self, method: str, transport: str, **kwargs: object) -> Request:
        n = next(self.serial)
        defaults: dict[str, object] = {"call_id": f"call{n}", "from_tag": f"f{n}"}
        defaults.update(kwargs)
        return build(method, f"z9hG4bKh{n}", transport=transport.upper(), **defaults)  # type: ignore[arg-type]

    @rule(method=st.sampled_from(["INVITE", "OPTIONS", "BYE"]), transport=st.sampled_from(sorted(FLOWS)))
    def send(self, method: str, transport: str) -> None:
        req = self._request(method, transport)
        self.clients.append(self.layer.send_request(req, FLOWS[transport], self.clock.now()))
        self._drain()

    @rule(method=st.sampled_from(["INVITE", "OPTIONS", "BYE"]), transport=st.sampled_from(sorted(FLOWS)))
    def arrive(self, method: str, transport: str) -> None:
        self.layer.receive(self._request(method, transport), FLOWS[transport], self.clock.now())
        self._drain()

    @precondition(lambda self: self.clients)
    @rule(data=st.data(), status=STATUSES, tag=st.sampled_from(["a", "b"]))
    def response(self, data: st.DataObject, status: int, tag: str) -> None:
        tx = self._pick(data, self.clients)
        response = wire(make_response(tx.request, status, to_tag=tag))
        self.layer.receive(response, tx.flow, self.clock.now())
        self._drain()

    @precondition(lambda self: self.servers)
    @rule(data=st.data(), status=STATUSES)
    def answer(self, data: st.DataObject, status: int) -> None:
        tx = self._pick(data, self.servers)
        self.layer.send_response(tx, make_response(tx.request, status, to_tag="me"), self.clock.now())
        self._drain()

    @precondition(lambda self: self.servers)
    @rule(data=st.data())
    def retransmit(self, data: st.DataObject) -> None:
        tx = self._pick(data, self.servers)
        self.layer.receive(wire(tx.request), tx.flow, self.clock.now())
        self._drain()

    @precondition(lambda self: self.servers)
    @rule(data=st.data(), same_branch=st.booleans())
    def ack(self, data: st.DataObject, same_branch: bool) -> None:
        tx = self._pick(data, self.servers)
        if tx.method != "INVITE" or tx.last_response is None:
            return
        if same_branch:
            ack = wire(make_ack(tx.request, tx.last_response))
        else:
            ack = build(
                "ACK",
                f"z9hG4bKack{next(self.serial)}",
                transport=tx.flow.transport.upper(),
                call_id=tx.request.call_id,
                cseq=tx.request.cseq.number,
                to_tag=tx.last_response.to.tag,
            )
        self.layer.receive(ack, tx.flow, self.clock.now())
        self._drain()

    @precondition(lambda self: self.servers)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        tx = self._pick(data, self.servers)
        if tx.method != "INVITE":
            return
        self.layer.receive(wire(make_cancel(tx.request)), tx.flow, self.clock.now())
        self._drain()

    @precondition(lambda self: self.servers)
    @rule(data=st.data())
    def merged(self, data: st.DataObject) -> None:
        tx = self._pick(data, self.servers)
        if tx.request.to.tag is not None or tx.method == "CANCEL":
            return
        copy = self._request(
            tx.method,
            tx.flow.transport,
            call_id=tx.request.call_id,
            from_tag=tx.request.from_.tag,
            cseq=tx.request.cseq.number,
        )
        self.layer.receive(copy, tx.flow, self.clock.now())
        self._drain()

    @precondition(lambda self: self.servers)
    @rule(data=st.data())
    def tu_acks(self, data: st.DataObject) -> None:
        tx = self._pick(data, self.servers)
        self.layer.ack_received(tx.request.call_id, tx.request.cseq.number)

    @rule(transport=st.sampled_from(["udp", "tcp", "elsewhere", "elsewhere2"]))
    def transport_error(self, transport: str) -> None:
        flow = FLOWS.get(transport, Flow("udp", "198.51.100.1", 5060))
        self.layer.transport_error(flow, self.clock.now())
        self._drain()

    @rule(
        seconds=st.one_of(
            st.floats(min_value=0, max_value=2, allow_nan=False),
            st.sampled_from([0.5, 4.0, 5.0, 32.0, 40.0]),
        )
    )
    def wait(self, seconds: float) -> None:
        self.clock.run_until(self.layer, self.clock.now() + seconds)
        self._drain()

    @invariant()
    def deadlines_are_in_the_future(self) -> None:
        deadline = self.layer.next_deadline()
        assert deadline is None or deadline > self.clock.now()

    @invariant()
    def terminated_once(self) -> None:
        assert all(count == 1 for count in self.terminated.values())

    def teardown(self) -> None:
        now = self.clock.now()
        for server in self.servers:
            if server.state in (State.TRYING, State.PROCEEDING):
                self.layer.send_response(server, make_response(server.request, 500, to_tag="me"), now)
        for client in self.clients:
            if client.state in (State.CALLING, State.TRYING, State.PROCEEDING):
                self.layer.receive(wire(make_response(client.request, 500, to_tag="x")), UDP, now)
        self._drain()
        self.clock.run_until(self.layer, now + 1000)
        self._drain()
        assert self.layer.transaction_count == 0
        assert self.layer.pending_2xx == 0
        assert self.layer.next_deadline() is None
        for tx in [*self.clients, *self.servers]:
            assert tx.state is State.TERMINATED
            assert self.terminated.get(tx) == 1


LayerMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=40, deadline=None)
test_random_traffic = LayerMachine.TestCase
