"""The transaction layer through its public API, with scripted time (no sleeps).

Each test plays one side of an exchange: it feeds messages as they would come off the wire
(serialized and parsed again), drives time with a FakeClock from deadline to deadline, and checks
the datagrams the layer hands to the adapter and the events it hands to the TU.
"""

from __future__ import annotations

import itertools

import pytest

from b2bua.sip.flow import Flow
from b2bua.sip.message import Request, Response, make_response, parse_message
from b2bua.sip.transaction import (
    MAX_REMEMBERED,
    AckTimedOut,
    CancelReceived,
    ClientTransaction,
    Event,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    State,
    TimerConfig,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
    make_ack,
    make_cancel,
)
from b2bua.testing.clock import FakeClock

UDP = Flow("udp", "192.0.2.10", 5060)
TCP = Flow("tcp", "192.0.2.10", 5060, connection_id=7)


def new_layer(**kwargs: object) -> tuple[TransactionLayer, FakeClock]:
    counter = itertools.count(1)
    layer = TransactionLayer(
        TimerConfig(), random_token=lambda: f"tok{next(counter)}", **kwargs  # type: ignore[arg-type]
    )
    return layer, FakeClock()


def request(
    method: str = "INVITE",
    *,
    branch: str = "z9hG4bKbranch1",
    call_id: str = "call-1@192.0.2.10",
    from_tag: str = "ft1",
    to_tag: str | None = None,
    cseq: int = 1,
    transport: str = "UDP",
    sent_by: str = "192.0.2.10:5060",
) -> Request:
    """A request as it comes off the wire."""
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    text = (
        f"{method} sip:bob@192.0.2.20 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {sent_by};branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:alice@example.com>;tag={from_tag}\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    msg = parse_message(text.encode())
    assert isinstance(msg, Request)
    return msg


def wire(message: Request | Response) -> Request | Response:
    """The same message after a trip through the network: serialized and parsed again."""
    return parse_message(bytes(message))


def reply(req: Request, status: int, to_tag: str = "callee1") -> Response:
    response = wire(make_response(req, status, to_tag=to_tag))
    assert isinstance(response, Response)
    return response


def events(layer: TransactionLayer) -> list[Event]:
    out = []
    while (event := layer.next_event()) is not None:
        out.append(event)
    return out


def sent(layer: TransactionLayer) -> list[Request | Response]:
    return [parse_message(data) for data, _ in layer.datagrams_to_send()]


def first_lines(layer: TransactionLayer) -> list[str]:
    return [data.split(b"\r\n", 1)[0].decode() for data, _ in layer.datagrams_to_send()]


def ladder(layer: TransactionLayer, clock: FakeClock) -> list[tuple[float, list[str], list[str]]]:
    """Run every deadline until no timer is left: (time, datagrams sent, event names) each."""
    steps = []
    while (t := clock.run_next(layer)) is not None:
        steps.append((t, first_lines(layer), [type(e).__name__ for e in events(layer)]))
    return steps


def run_before(
    layer: TransactionLayer, clock: FakeClock, until: float
) -> list[tuple[float, list[str]]]:
    """Run the deadlines before `until`, then set the clock to `until`: (time, datagrams) each."""
    steps = []
    while (deadline := layer.next_deadline()) is not None and deadline < until:
        clock.jump(deadline)
        layer.handle_deadline(deadline)
        steps.append((deadline, first_lines(layer)))
    clock.jump(until)
    return steps


# -- INVITE client transaction -----------------------------------------------------------------


def test_timer_a_ladder_then_timer_b_timeout() -> None:
    layer, clock = new_layer()
    tx = layer.send_request(request(), UDP, clock.now())
    assert tx.state is State.CALLING
    assert first_lines(layer) == ["INVITE sip:bob@192.0.2.20 SIP/2.0"]
    steps = ladder(layer, clock)
    retransmits = [t for t, lines, _ in steps if lines]
    # Timer A: 0.5, 1, 2, 4, 8, 16 s apart; the next (32 s) would come after Timer B at 64*T1.
    assert retransmits == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(lines == ["INVITE sip:bob@192.0.2.20 SIP/2.0"] for _, lines, _ in steps if lines)
    assert steps[-1] == (32.0, [], ["TransactionTimedOut", "TransactionTerminated"])
    assert tx.state is State.TERMINATED
    assert layer.retransmissions_sent == 6
    assert layer.timeouts == 1
    assert layer.transaction_count == 0
    assert layer.next_deadline() is None


def test_timer_a_does_not_run_on_a_reliable_transport() -> None:
    layer, clock = new_layer()
    layer.send_request(request(transport="TCP"), TCP, clock.now())
    layer.datagrams_to_send()
    assert layer.next_deadline() == 32.0  # Timer B only
    assert ladder(layer, clock) == [(32.0, [], ["TransactionTimedOut", "TransactionTerminated"])]


def test_provisional_response_stops_retransmissions_and_timer_b() -> None:
    layer, clock = new_layer()
    invite = request()
    tx = layer.send_request(invite, UDP, clock.now())
    layer.datagrams_to_send()
    clock.advance(0.2)
    ringing = reply(invite, 180)
    layer.receive(ringing, UDP, clock.now())
    assert events(layer) == [ResponseReceived(tx, ringing, UDP)]
    assert tx.state is State.PROCEEDING
    assert layer.next_deadline() is None  # no Timer C: the call engine times the ringing


INVITE_WITH_ROUTES = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnashds8;rport\r\n"
    b"Route: <sip:p1.example.com;lr>\r\n"
    b"Route: <sip:p2.example.com;lr>,<sip:p3.example.com;lr>\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    b"CSeq: 31862 INVITE\r\n"
    b"Contact: <sip:alice@192.0.2.1>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n\r\n"
    b"v=0\n"
)

BUSY_HERE = (
    b"SIP/2.0 486 Busy Here\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnashds8;rport=5060;received=192.0.2.1\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>;tag=314159\r\n"
    b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    b"CSeq: 31862 INVITE\r\n"
    b"Content-Length: 0\r\n\r\n"
)

EXPECTED_ACK = (
    b"ACK sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnashds8;rport\r\n"
    b"Route: <sip:p1.example.com;lr>\r\n"
    b"Route: <sip:p2.example.com;lr>,<sip:p3.example.com;lr>\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>;tag=314159\r\n"
    b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    b"CSeq: 31862 ACK\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def test_client_builds_and_resends_the_ack_of_a_non_2xx() -> None:
    layer, clock = new_layer()
    invite = parse_message(INVITE_WITH_ROUTES)
    assert isinstance(invite, Request)
    tx = layer.send_request(invite, UDP, clock.now())
    assert layer.datagrams_to_send() == [(INVITE_WITH_ROUTES, UDP)]
    clock.advance(0.3)
    busy = parse_message(BUSY_HERE)
    layer.receive(busy, UDP, clock.now())
    # §17.1.1.3: Request-URI, Call-ID, From of the INVITE; To of the response; one Via (the
    # INVITE's top Via); CSeq number with method ACK; the INVITE's Route headers; no body.
    assert layer.datagrams_to_send() == [(EXPECTED_ACK, UDP)]
    assert events(layer) == [ResponseReceived(tx, busy, UDP)]
    assert tx.state is State.COMPLETED
    assert tx.ack is not None and bytes(tx.ack) == EXPECTED_ACK
    # Waiting out Timer D, it keeps bytes only; the messages are parsed again when asked for.
    assert tx._request is None and tx._ack is None and tx._last_response is None
    assert tx.request.call_id == invite.call_id and bytes(tx.request) == INVITE_WITH_ROUTES
    assert tx.last_response is not None and bytes(tx.last_response) == BUSY_HERE

    clock.advance(1.0)
    layer.receive(parse_message(BUSY_HERE), UDP, clock.now())  # the 486 again: ACK again
    assert layer.datagrams_to_send() == [(EXPECTED_ACK, UDP)]
    assert events(layer) == []  # "the newly generated ACK MUST NOT be passed up to the TU"
    assert layer.retransmissions_absorbed == 1

    # Timer D (32 s on UDP) absorbs retransmissions, then the transaction ends.
    assert ladder(layer, clock) == [(0.3 + 32.0, [], ["TransactionTerminated"])]
    layer.receive(parse_message(BUSY_HERE), UDP, clock.now())
    assert layer.datagrams_to_send() == [] and layer.stray_responses == 1


def test_timer_d_is_zero_on_a_reliable_transport() -> None:
    layer, clock = new_layer()
    invite = request(transport="TCP")
    tx = layer.send_request(invite, TCP, clock.now())
    layer.datagrams_to_send()
    busy = reply(invite, 486)
    layer.receive(busy, TCP, clock.now())
    assert first_lines(layer) == ["ACK sip:bob@192.0.2.20 SIP/2.0"]
    assert events(layer) == [ResponseReceived(tx, busy, TCP), TransactionTerminated(tx)]
    assert layer.next_deadline() is None


def test_accepted_client_passes_every_2xx_up_until_timer_m() -> None:
    """RFC 6026 §8.4: 2xx retransmissions and forked 2xx reach the TU; no ACK from the
    transaction (the TU acknowledges a 2xx)."""
    layer, clock = new_layer()
    invite = request()
    tx = layer.send_request(invite, UDP, clock.now())
    layer.datagrams_to_send()
    ok = reply(invite, 200, to_tag="b1")
    layer.receive(ok, UDP, clock.now())
    assert tx.state is State.ACCEPTED
    assert events(layer) == [ResponseReceived(tx, ok, UDP)]
    assert layer.datagrams_to_send() == []

    clock.advance(1.0)
    again = reply(invite, 200, to_tag="b1")
    forked = reply(invite, 200, to_tag="b2")
    layer.receive(again, UDP, clock.now())
    layer.receive(forked, UDP, clock.now())
    assert events(layer) == [ResponseReceived(tx, again, UDP), ResponseReceived(tx, forked, UDP)]
    assert layer.datagrams_to_send() == []

    assert ladder(layer, clock) == [(32.0, [], ["TransactionTerminated"])]  # Timer M
    layer.receive(reply(invite, 200, to_tag="b1"), UDP, clock.now())
    assert events(layer) == [] and layer.stray_responses == 1  # RFC 6026: discarded


def test_response_matching_uses_branch_and_cseq_method() -> None:
    layer, clock = new_layer()
    invite = request()
    invite_tx = layer.send_request(invite, UDP, clock.now())
    layer.receive(reply(invite, 180), UDP, clock.now())
    cancel = make_cancel(invite)
    cancel_tx = layer.send_request(cancel, UDP, clock.now())
    assert cancel_tx is not invite_tx and cancel_tx.branch == invite_tx.branch
    events(layer)
    ok = reply(cancel, 200)
    terminated = reply(invite, 487)
    layer.receive(ok, UDP, clock.now())
    layer.receive(terminated, UDP, clock.now())
    assert events(layer) == [
        ResponseReceived(cancel_tx, ok, UDP),
        ResponseReceived(invite_tx, terminated, UDP),
    ]
    layer.receive(reply(request(branch="z9hG4bKother"), 200), UDP, clock.now())
    assert events(layer) == [] and layer.stray_responses == 1


def test_make_cancel_copies_what_section_9_1_requires() -> None:
    invite = parse_message(INVITE_WITH_ROUTES)
    assert isinstance(invite, Request)
    assert bytes(make_cancel(invite)) == (
        b"CANCEL sip:bob@biloxi.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnashds8;rport\r\n"
        b"Route: <sip:p1.example.com;lr>\r\n"
        b"Route: <sip:p2.example.com;lr>,<sip:p3.example.com;lr>\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
        b"To: Bob <sip:bob@biloxi.example.com>\r\n"
        b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
        b"CSeq: 31862 CANCEL\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


def test_make_ack_is_usable_on_its_own() -> None:
    invite = parse_message(INVITE_WITH_ROUTES)
    busy = parse_message(BUSY_HERE)
    assert isinstance(invite, Request) and isinstance(busy, Response)
    assert bytes(make_ack(invite, busy)) == EXPECTED_ACK


def test_transport_error_while_calling() -> None:
    layer, clock = new_layer()
    tx = layer.send_request(request(), UDP, clock.now())
    other = layer.send_request(request(branch="z9hG4bKelse"), Flow("udp", "192.0.2.99", 5060), 0)
    layer.transport_error(UDP, clock.now())
    assert events(layer) == [TransportFailed(tx), TransactionTerminated(tx)]
    assert other.state is State.CALLING


def test_a_closed_connection_is_known_by_its_id_alone() -> None:
    """Another worker's copy of a TCP flow may lack our local address (b2bua.workers): the
    connection id is what names the connection."""
    layer, clock = new_layer()
    ours = Flow("tcp", "192.0.2.10", 40000, 7, None, None)
    tx = layer.send_request(request(), ours, clock.now())
    other = layer.send_request(request(branch="z9hG4bKelse"),
                               Flow("tcp", "192.0.2.10", 40000, 8, None, None), 0)
    layer.transport_error(Flow("tcp", "192.0.2.10", 40000, 7, "127.0.0.1", 5060), clock.now())
    assert events(layer) == [TransportFailed(tx), TransactionTerminated(tx)]
    assert other.state is State.CALLING


def test_send_request_refuses_ack_and_a_reused_branch() -> None:
    layer, clock = new_layer()
    layer.send_request(request(), UDP, clock.now())
    with pytest.raises(ValueError):
        layer.send_request(request(), UDP, clock.now())
    with pytest.raises(ValueError):
        layer.send_request(request("ACK"), UDP, clock.now())


def test_new_branch_uses_the_injected_randomness() -> None:
    layer, _ = new_layer()
    assert layer.new_branch() == "z9hG4bKtok1"
    assert layer.new_branch() == "z9hG4bKtok2"


# -- non-INVITE client transaction -------------------------------------------------------------


def test_timer_e_backs_off_to_t2_then_timer_f() -> None:
    layer, clock = new_layer()
    tx = layer.send_request(request("OPTIONS"), UDP, clock.now())
    layer.datagrams_to_send()
    steps = ladder(layer, clock)
    times = [t for t, lines, _ in steps if lines]
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert gaps == [0.5, 1, 2, 4, 4, 4, 4, 4, 4, 4]  # MIN(2*previous, T2)
    assert steps[-1] == (32.0, [], ["TransactionTimedOut", "TransactionTerminated"])  # Timer F
    assert tx.state is State.TERMINATED


def test_timer_e_is_t2_once_proceeding() -> None:
    layer, clock = new_layer()
    options = request("OPTIONS")
    layer.send_request(options, UDP, clock.now())
    layer.datagrams_to_send()
    clock.advance(0.1)
    layer.receive(reply(options, 100), UDP, clock.now())
    steps = ladder(layer, clock)
    times = [t for t, lines, _ in steps if lines]
    # Timer E keeps its schedule (0.5), then fires every T2 in PROCEEDING until Timer F.
    assert times == [0.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5]
    assert steps[-1] == (32.0, [], ["TransactionTimedOut", "TransactionTerminated"])


def test_timer_k_absorbs_response_retransmissions() -> None:
    layer, clock = new_layer()
    options = request("OPTIONS")
    tx = layer.send_request(options, UDP, clock.now())
    layer.datagrams_to_send()
    ok = reply(options, 200)
    layer.receive(ok, UDP, clock.now())
    layer.receive(reply(options, 200), UDP, clock.now())
    assert events(layer) == [ResponseReceived(tx, ok, UDP)]
    assert tx.state is State.COMPLETED and layer.retransmissions_absorbed == 1
    assert ladder(layer, clock) == [(5.0, [], ["TransactionTerminated"])]  # Timer K = T4


def test_timer_k_is_zero_and_timer_e_off_on_a_reliable_transport() -> None:
    layer, clock = new_layer()
    options = request("OPTIONS", transport="TCP")
    tx = layer.send_request(options, TCP, clock.now())
    layer.datagrams_to_send()
    assert layer.next_deadline() == 32.0  # Timer F only
    ok = reply(options, 200)
    layer.receive(ok, TCP, clock.now())
    assert events(layer) == [ResponseReceived(tx, ok, TCP), TransactionTerminated(tx)]
    assert layer.next_deadline() is None


# -- INVITE server transaction -----------------------------------------------------------------


def test_invite_server_sends_100_and_resends_the_last_provisional() -> None:
    layer, clock = new_layer()
    invite = request()
    layer.receive(invite, UDP, clock.now())
    (event,) = events(layer)
    assert isinstance(event, RequestReceived) and event.request is invite and event.flow == UDP
    tx = event.transaction
    assert isinstance(tx, ServerTransaction) and tx.state is State.PROCEEDING
    assert first_lines(layer) == ["SIP/2.0 100 Trying"]

    layer.receive(wire(invite), UDP, clock.now())
    assert first_lines(layer) == ["SIP/2.0 100 Trying"]
    assert events(layer) == []
    assert layer.send_response(tx, make_response(invite, 180, to_tag="me"), clock.now())
    assert first_lines(layer) == ["SIP/2.0 180 Ringing"]
    layer.receive(wire(invite), UDP, clock.now())
    assert first_lines(layer) == ["SIP/2.0 180 Ringing"]
    assert layer.retransmissions_absorbed == 2 and layer.retransmissions_sent == 2
    assert layer.next_deadline() is None  # PROCEEDING waits for the TU


def test_invite_server_without_automatic_100() -> None:
    layer, clock = new_layer(send_trying=False)
    invite = request()
    layer.receive(invite, UDP, clock.now())
    assert layer.datagrams_to_send() == []
    layer.receive(wire(invite), UDP, clock.now())
    assert layer.datagrams_to_send() == [] and layer.retransmissions_absorbed == 1


def _server_tx(layer: TransactionLayer, req: Request, flow: Flow = UDP) -> ServerTransaction:
    layer.receive(req, flow, 0.0)
    (event,) = events(layer)
    assert isinstance(event, RequestReceived) and event.transaction is not None
    layer.datagrams_to_send()
    return event.transaction


def test_timer_g_ladder_until_ack_then_timer_i() -> None:
    layer, clock = new_layer()
    invite = request()
    tx = _server_tx(layer, invite)
    busy = make_response(invite, 486, to_tag="me")
    layer.send_response(tx, busy, clock.now())
    assert first_lines(layer) == ["SIP/2.0 486 Busy Here"]
    assert tx.state is State.COMPLETED
    steps = run_before(layer, clock, 12.0)
    assert steps == [(t, ["SIP/2.0 486 Busy Here"]) for t in (0.5, 1.5, 3.5, 7.5, 11.5)]

    ack = wire(make_ack(invite, busy))
    layer.receive(ack, UDP, clock.now())
    assert tx.state is State.CONFIRMED
    assert events(layer) == []  # the ACK of a non-2xx stays in the transaction
    layer.receive(wire(ack), UDP, clock.now())  # retransmitted ACK: absorbed
    layer.receive(wire(invite), UDP, clock.now())  # late INVITE: ignored, no response
    assert layer.datagrams_to_send() == [] and events(layer) == []
    assert ladder(layer, clock) == [(17.0, [], ["TransactionTerminated"])]  # Timer I = T4


def test_invite_retransmission_in_completed_resends_the_final_response() -> None:
    layer, clock = new_layer()
    invite = request()
    tx = _server_tx(layer, invite)
    layer.send_response(tx, make_response(invite, 603, to_tag="me"), clock.now())
    layer.datagrams_to_send()
    clock.advance(0.2)
    layer.receive(wire(invite), UDP, clock.now())
    assert first_lines(layer) == ["SIP/2.0 603 Decline"]
    assert not layer.send_response(tx, make_response(invite, 486, to_tag="me"), clock.now())
    assert layer.datagrams_to_send() == []


def test_timer_h_fires_when_the_ack_never_comes() -> None:
    layer, clock = new_layer()
    invite = request()
    tx = _server_tx(layer, invite)
    layer.send_response(tx, make_response(invite, 480, to_tag="me"), clock.now())
    layer.datagrams_to_send()
    steps = ladder(layer, clock)
    assert [t for t, lines, _ in steps if lines] == [
        0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5
    ]
    assert steps[-1] == (32.0, [], ["TransactionTimedOut", "TransactionTerminated"])
    assert layer.timeouts == 1


def test_reliable_invite_server_no_timer_g_and_timer_i_zero() -> None:
    layer, clock = new_layer()
    invite = request(transport="TCP")
    tx = _server_tx(layer, invite, TCP)
    busy = make_response(invite, 486, to_tag="me")
    layer.send_response(tx, busy, clock.now())
    layer.datagrams_to_send()
    assert layer.next_deadline() == 32.0  # Timer H only
    clock.advance(0.1)
    layer.receive(wire(make_ack(invite, busy)), TCP, clock.now())
    assert events(layer) == [TransactionTerminated(tx)]
    assert layer.next_deadline() is None


def test_accepted_server_absorbs_invite_retransmissions_until_timer_l() -> None:
    """RFC 6026 §7.1: after a 2xx, INVITE retransmissions are not passed to the TU (nor
    answered by the transaction: the 2xx retransmissions are the TU's)."""
    layer, clock = new_layer()
    invite = request(transport="TCP")
    tx = _server_tx(layer, invite, TCP)
    ok = make_response(invite, 200, to_tag="me")
    assert layer.send_response(tx, ok, clock.now())
    assert tx.state is State.ACCEPTED
    assert first_lines(layer) == ["SIP/2.0 200 OK"]
    clock.advance(0.1)
    layer.receive(wire(invite), TCP, clock.now())
    assert events(layer) == [] and layer.datagrams_to_send() == []
    assert layer.retransmissions_absorbed == 1
    layer.ack_received(invite.call_id, invite.cseq.number)  # stop the 2xx loop
    assert ladder(layer, clock) == [(32.0, [], ["TransactionTerminated"])]  # Timer L
    assert tx.state is State.TERMINATED


# -- 2xx retransmission by the UAS core (§13.3.1.4) ---------------------------------------------


def _answered(flow: Flow = UDP) -> tuple[TransactionLayer, FakeClock, Request, Response]:
    layer, clock = new_layer()
    invite = request(transport=flow.transport.upper())
    tx = _server_tx(layer, invite, flow)
    ok = make_response(invite, 200, to_tag="me")
    assert layer.send_2xx(tx, ok, clock.now())
    assert first_lines(layer) == ["SIP/2.0 200 OK"]
    return layer, clock, invite, ok


def _ack_for_2xx(invite: Request, to_tag: str = "me") -> Request:
    return request(
        "ACK", branch="z9hG4bKack", to_tag=to_tag, call_id=invite.call_id, cseq=invite.cseq.number
    )


def test_2xx_is_retransmitted_until_the_ack_arrives() -> None:
    layer, clock, invite, _ = _answered()
    steps = run_before(layer, clock, 12.0)
    assert steps == [(t, ["SIP/2.0 200 OK"]) for t in (0.5, 1.5, 3.5, 7.5, 11.5)]
    assert layer.pending_2xx == 1
    ack = _ack_for_2xx(invite)
    layer.receive(ack, UDP, clock.now())
    assert events(layer) == [RequestReceived(None, ack, UDP)]  # the ACK of a 2xx is the TU's
    assert layer.pending_2xx == 0
    assert ladder(layer, clock) == [(32.0, [], ["TransactionTerminated"])]  # only Timer L left


def test_ack_with_another_to_tag_does_not_stop_the_2xx() -> None:
    layer, clock, invite, _ = _answered()
    ack = _ack_for_2xx(invite, to_tag="someone-else")
    layer.receive(ack, UDP, clock.now())
    assert events(layer) == [RequestReceived(None, ack, UDP)]
    assert layer.pending_2xx == 1


def test_ack_reusing_the_invite_branch_goes_up_and_stops_the_2xx() -> None:
    layer, clock, invite, ok = _answered()
    ack = wire(make_ack(invite, ok))
    layer.receive(ack, UDP, clock.now())
    assert events(layer) == [RequestReceived(None, ack, UDP)]  # type: ignore[arg-type]
    assert layer.pending_2xx == 0


def test_ack_received_from_the_tu_stops_the_2xx() -> None:
    layer, clock, invite, _ = _answered()
    assert layer.ack_received(invite.call_id, invite.cseq.number)
    assert not layer.ack_received(invite.call_id, invite.cseq.number)
    assert [lines for _, lines, _ in ladder(layer, clock)] == [[]]  # Timer L alone


def test_ack_timeout_after_64_t1_of_2xx_retransmissions() -> None:
    layer, clock, _, _ = _answered()
    steps = ladder(layer, clock)
    assert [t for t, lines, _ in steps if lines] == [
        0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5
    ]
    (tx_events,) = [names for t, _, names in steps if t == 32.0]
    assert sorted(tx_events) == ["AckTimedOut", "TransactionTerminated"]
    assert layer.timeouts == 1 and layer.pending_2xx == 0


def test_2xx_is_retransmitted_on_reliable_transports_too() -> None:
    # §13.3.1.4: "This is independent of whatever transport protocols are used".
    layer, clock, _, _ = _answered(TCP)
    assert clock.run_next(layer) == 0.5
    assert first_lines(layer) == ["SIP/2.0 200 OK"]


def test_send_2xx_rejects_what_is_not_a_2xx_to_an_invite() -> None:
    layer, clock = new_layer()
    options = request("OPTIONS")
    tx = _server_tx(layer, options)
    with pytest.raises(ValueError):
        layer.send_2xx(tx, make_response(options, 200), clock.now())


def test_ack_timed_out_event_names_the_server_transaction() -> None:
    layer, clock, _, _ = _answered()
    clock.run_until(layer, 40.0)
    timed_out = [e for e in events(layer) if isinstance(e, AckTimedOut)]
    assert len(timed_out) == 1 and timed_out[0].transaction.method == "INVITE"


# -- non-INVITE server transaction -------------------------------------------------------------


def test_non_invite_server_absorbs_then_resends_final_until_timer_j() -> None:
    layer, clock = new_layer()
    options = request("OPTIONS")
    tx = _server_tx(layer, options)
    assert tx.state is State.TRYING
    layer.receive(wire(options), UDP, clock.now())  # TRYING: discarded
    assert layer.datagrams_to_send() == [] and events(layer) == []
    layer.send_response(tx, make_response(options, 200, to_tag="me"), clock.now())
    assert first_lines(layer) == ["SIP/2.0 200 OK"]
    assert tx._request is None and tx._last_response is None  # COMPLETED: bytes only
    assert tx.request.method == "OPTIONS" and tx.request.call_id == options.call_id
    assert tx.last_response is not None and tx.last_response.status == 200
    clock.advance(3.0)
    layer.receive(wire(options), UDP, clock.now())
    assert first_lines(layer) == ["SIP/2.0 200 OK"]
    # "Any other final responses passed by the TU ... MUST be discarded"
    assert not layer.send_response(tx, make_response(options, 500), clock.now())
    assert ladder(layer, clock) == [(32.0, [], ["TransactionTerminated"])]  # Timer J


def test_non_invite_server_provisional_is_resent_on_retransmission() -> None:
    layer, clock = new_layer()
    options = request("OPTIONS")
    tx = _server_tx(layer, options)
    layer.send_response(tx, make_response(options, 100), clock.now())
    layer.datagrams_to_send()
    layer.receive(wire(options), UDP, clock.now())
    assert first_lines(layer) == ["SIP/2.0 100 Trying"]
    assert tx.state is State.PROCEEDING


def test_timer_j_is_zero_on_a_reliable_transport() -> None:
    layer, clock = new_layer()
    options = request("OPTIONS", transport="TCP")
    tx = _server_tx(layer, options, TCP)
    layer.send_response(tx, make_response(options, 200, to_tag="me"), clock.now())
    assert events(layer) == [TransactionTerminated(tx)]
    assert layer.next_deadline() is None


# -- CANCEL ------------------------------------------------------------------------------------


def test_cancel_matching_its_invite() -> None:
    layer, clock = new_layer()
    invite = request()
    invite_tx = _server_tx(layer, invite)
    cancel = wire(make_cancel(invite))
    assert isinstance(cancel, Request)
    layer.receive(cancel, UDP, clock.now())
    (event,) = events(layer)
    assert isinstance(event, CancelReceived)
    assert event.invite_transaction is invite_tx and event.request is cancel
    cancel_tx = event.cancel_transaction
    assert cancel_tx is not invite_tx and cancel_tx.method == "CANCEL"
    layer.send_response(cancel_tx, make_response(cancel, 200, to_tag="me"), clock.now())
    layer.send_response(invite_tx, make_response(invite, 487, to_tag="me"), clock.now())
    assert first_lines(layer) == ["SIP/2.0 200 OK", "SIP/2.0 487 Request Terminated"]
    layer.receive(wire(cancel), UDP, clock.now())  # a retransmitted CANCEL: its 200 again
    assert first_lines(layer) == ["SIP/2.0 200 OK"]
    assert events(layer) == []


def test_cancel_without_a_matching_invite() -> None:
    layer, clock = new_layer()
    _server_tx(layer, request())
    stray = request("CANCEL", branch="z9hG4bKnotthere")
    layer.receive(stray, UDP, clock.now())
    (event,) = events(layer)
    assert isinstance(event, CancelReceived)
    assert event.invite_transaction is None and event.request is stray


def test_cancel_after_the_invite_transaction_ended_finds_nothing() -> None:
    layer, clock = new_layer()
    invite = request(transport="TCP")
    tx = _server_tx(layer, invite, TCP)
    busy = make_response(invite, 486, to_tag="me")
    layer.send_response(tx, busy, 0.0)
    layer.receive(wire(make_ack(invite, busy)), TCP, 0.0)
    events(layer)
    layer.receive(wire(make_cancel(invite)), TCP, clock.now())
    (event,) = events(layer)
    assert isinstance(event, CancelReceived) and event.invite_transaction is None


# -- merged requests (§8.2.2.2) ----------------------------------------------------------------


def test_merged_request_is_answered_482_by_the_layer() -> None:
    layer, clock = new_layer()
    first = request(branch="z9hG4bKpath1")
    _server_tx(layer, first)
    merged = request(branch="z9hG4bKpath2", sent_by="198.51.100.7:5060")
    layer.receive(merged, UDP, clock.now())
    assert events(layer) == []  # the TU never sees it
    (answer,) = sent(layer)
    assert isinstance(answer, Response) and answer.status == 482
    assert answer.reason == "Loop Detected" and answer.to.tag == "tok1"
    assert layer.merged_482 == 1
    layer.receive(wire(merged), UDP, clock.now())  # its retransmission: the 482 again
    assert first_lines(layer) == ["SIP/2.0 482 Loop Detected"]
    layer.receive(wire(make_ack(merged, answer)), UDP, clock.now())  # its ACK: absorbed
    assert events(layer) == [] and layer.merged_482 == 1


def test_requests_with_a_to_tag_or_another_cseq_are_not_merged() -> None:
    layer, clock = new_layer()
    _server_tx(layer, request(branch="z9hG4bKp1"))
    layer.receive(request(branch="z9hG4bKp2", cseq=2), UDP, clock.now())
    layer.receive(request(branch="z9hG4bKp3", to_tag="x"), UDP, clock.now())
    assert [type(e) for e in events(layer)] == [RequestReceived, RequestReceived]
    assert layer.merged_482 == 0


# -- matching details --------------------------------------------------------------------------


def test_same_branch_from_another_sent_by_is_another_transaction() -> None:
    layer, _ = new_layer()
    _server_tx(layer, request(branch="z9hG4bKsame", from_tag="a"))
    layer.receive(request(branch="z9hG4bKsame", from_tag="b", sent_by="198.51.100.7"), UDP, 0)
    assert [type(e) for e in events(layer)] == [RequestReceived]


def test_rfc2543_peer_without_magic_cookie() -> None:
    layer, clock = new_layer()
    invite = request(branch="oldstyle1")
    tx = _server_tx(layer, invite)
    layer.receive(wire(invite), UDP, clock.now())
    assert first_lines(layer) == ["SIP/2.0 100 Trying"] and events(layer) == []
    busy = make_response(invite, 486, to_tag="me")
    layer.send_response(tx, busy, clock.now())
    layer.receive(wire(make_ack(invite, busy)), UDP, clock.now())
    assert tx.state is State.CONFIRMED and events(layer) == []


def test_malformed_messages_are_dropped_and_counted() -> None:
    layer, clock = new_layer()
    no_via = parse_message(
        b"SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n"
    )
    layer.receive(no_via, UDP, clock.now())
    bad_from = parse_message(
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <<bad\r\n"
        b"To: <sip:a@b>\r\nCall-ID: y\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    layer.receive(bad_from, UDP, clock.now())
    assert layer.dropped_malformed == 2
    assert events(layer) == [] and layer.transaction_count == 0


def test_abandon_forgets_a_transaction() -> None:
    layer, clock = new_layer()
    invite = request()
    tx = layer.send_request(invite, UDP, clock.now())
    layer.receive(reply(invite, 180), UDP, clock.now())
    events(layer)
    layer.abandon(tx)
    assert events(layer) == [TransactionTerminated(tx)]
    assert layer.transaction_count == 0 and layer.next_deadline() is None


def test_one_deadline_for_the_whole_stack() -> None:
    layer, clock = new_layer()
    layer.send_request(request("OPTIONS", branch="z9hG4bK1"), UDP, 0.0)
    clock.advance(0.2)
    layer.send_request(request("INVITE", branch="z9hG4bK2"), UDP, clock.now())
    assert layer.next_deadline() == 0.5
    layer.datagrams_to_send()
    clock.jump(0.75)  # a late wake-up handles what is due, once each
    layer.handle_deadline(clock.now())
    assert len(layer.datagrams_to_send()) == 2
    assert layer.next_deadline() == pytest.approx(0.75 + 1.0)  # E again, from now


# -- RFC 3581 received / rport -----------------------------------------------------------------


def _with_vias(*lines: str) -> Request:
    vias = "".join(f"Via: {line}\r\n" for line in lines)
    msg = parse_message(
        (
            "INVITE sip:bob@example.com SIP/2.0\r\n"
            f"{vias}"
            "From: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n"
            "Call-ID: r1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(msg, Request)
    return msg



def test_client_transaction_classes() -> None:
    layer, clock = new_layer()
    tx = layer.send_request(request("REGISTER"), UDP, clock.now())
    assert isinstance(tx, ClientTransaction) and tx.is_client and not tx.is_invite
    assert repr(tx) == "<client REGISTER z9hG4bKbranch1 TRYING>"
    assert TransactionTimedOut(tx).transaction is tx


# -- bounded memory -------------------------------------------------------------------------------


_options = itertools.count(1)


def _answered_options(
    layer: TransactionLayer, n: int, clock: FakeClock, txs: list[ServerTransaction] | None = None
) -> list[Request]:
    """`n` OPTIONS, each answered 200 by the TU (so each waits in COMPLETED for Timer J)."""
    requests = []
    for _ in range(n):
        i = next(_options)
        req = request("OPTIONS", branch=f"z9hG4bKopt{i}", call_id=f"opt-{i}")
        layer.receive(req, UDP, clock.now())
        (received,) = [e for e in events(layer) if isinstance(e, RequestReceived)]
        assert received.transaction is not None
        layer.send_response(received.transaction, reply(req, 200), clock.now())
        if txs is not None:
            txs.append(received.transaction)
        requests.append(req)
        clock.advance(0.01)
    layer.datagrams_to_send()
    return requests


def test_waiting_transactions_are_capped_oldest_first() -> None:
    layer, clock = new_layer(max_waiting=3)
    reqs = _answered_options(layer, 5, clock)
    assert layer.waiting_count == 3 and layer.transaction_count == 3
    assert layer.evicted == 2
    # The two oldest ended early: their retransmissions start new transactions (the TU sees
    # them again), while the others' are absorbed and answered with the kept 200.
    layer.receive(wire(reqs[0]), UDP, clock.now())
    assert [type(e) for e in events(layer)][-1:] == [RequestReceived]
    layer.receive(wire(reqs[4]), UDP, clock.now())
    assert [r.status for r in sent(layer) if isinstance(r, Response)] == [200]
    assert not [e for e in events(layer) if isinstance(e, RequestReceived)]


def test_waiting_client_transactions_never_push_out_a_waiting_server_one() -> None:
    """A B2BUA under load has more waiting client transactions than server ones; a BYE's
    server transaction must still answer the retransmission that comes after its 200 was lost."""
    layer, clock = new_layer(max_waiting=2, max_waiting_clients=2)
    (bye,) = _answered_options(layer, 1, clock)
    for i in range(5):  # five answered requests of ours, waiting (Timer K / D) on the other side
        out = request("OPTIONS", branch=f"z9hG4bKout{i}", call_id=f"out-{i}")
        layer.send_request(out, UDP, clock.now())
        layer.datagrams_to_send()
        layer.receive(reply(out, 200), UDP, clock.now())
    events(layer)
    assert layer.evicted == 3 and layer.waiting_count == 3
    layer.receive(wire(bye), UDP, clock.now())
    assert [r.status for r in sent(layer) if isinstance(r, Response)] == [200]
    assert not [e for e in events(layer) if isinstance(e, RequestReceived)]


def test_the_client_side_has_its_own_smaller_cap() -> None:
    """Server transactions kept twice as many as client ones by default: client ones,
    whose early end only drops a late retransmitted response, fewer."""
    default, _ = new_layer()
    assert (default.max_waiting, default.max_waiting_clients) == (4_096, 2_048)
    layer, clock = new_layer(max_waiting=5, max_waiting_clients=2)
    _answered_options(layer, 5, clock)
    for i in range(4):
        out = request("OPTIONS", branch=f"z9hG4bKcli{i}", call_id=f"cli-{i}")
        layer.send_request(out, UDP, clock.now())
        layer.datagrams_to_send()
        layer.receive(reply(out, 200), UDP, clock.now())
    events(layer)
    assert layer.evicted == 2 and layer.waiting_count == 5 + 2


def test_an_evicted_transaction_is_reported_terminated() -> None:
    layer, clock = new_layer(max_waiting=1)
    txs: list[ServerTransaction] = []
    _answered_options(layer, 1, clock, txs)
    events(layer)
    _answered_options(layer, 1, clock, txs)
    terminated = [e.transaction for e in events(layer) if isinstance(e, TransactionTerminated)]
    assert terminated == [txs[0]] and txs[0].state is State.TERMINATED
    assert txs[1].state is State.COMPLETED


def test_accepted_invites_are_never_evicted() -> None:
    layer, clock = new_layer(max_waiting=1)
    invite = request("INVITE", branch="z9hG4bKinv", call_id="inv")
    layer.receive(invite, UDP, clock.now())
    (received,) = [e for e in events(layer) if isinstance(e, RequestReceived)]
    assert received.transaction is not None
    layer.send_2xx(received.transaction, reply(invite, 200), clock.now())
    _answered_options(layer, 3, clock)
    assert received.transaction.state is State.ACCEPTED
    assert layer.pending_2xx == 1


def test_no_room_gets_a_stateless_503_with_retry_after() -> None:
    layer, _ = new_layer(max_transactions=2)
    for i in range(2):  # two requests the TU has not answered yet: nothing can end early
        layer.receive(request("OPTIONS", branch=f"z9hG4bKbusy{i}", call_id=f"busy-{i}"), UDP, 0.0)
    events(layer)
    layer.receive(request("OPTIONS", branch="z9hG4bKmore", call_id="more"), UDP, 0.0)
    (answer,) = sent(layer)
    assert isinstance(answer, Response) and answer.status == 503
    assert answer.headers.get("Retry-After") == "5"
    assert layer.refused == 1 and layer.transaction_count == 2
    assert not [e for e in events(layer) if isinstance(e, RequestReceived)]


def test_with_no_room_a_waiting_transaction_makes_way() -> None:
    layer, clock = new_layer(max_transactions=2)
    _answered_options(layer, 2, clock)
    layer.receive(request("OPTIONS", branch="z9hG4bKnew", call_id="new"), UDP, clock.now())
    assert [type(e) for e in events(layer)] == [TransactionTerminated, RequestReceived]
    assert layer.evicted == 1 and layer.refused == 0


def test_waiting_ends_normally_and_leaves_nothing_behind() -> None:
    layer, clock = new_layer()
    _answered_options(layer, 3, clock)
    assert layer.waiting_count == 3
    ladder(layer, clock)
    assert layer.waiting_count == 0 and layer.transaction_count == 0 and layer.evicted == 0


# -- stateless answers (RFC 3261 §8.2.7) -------------------------------------------------------


def _received(layer: TransactionLayer, req: Request) -> ServerTransaction:
    """A request received, its event taken, what the layer queued left in place."""
    layer.receive(req, UDP, 0.0)
    (event,) = events(layer)
    assert isinstance(event, RequestReceived) and event.transaction is not None
    return event.transaction


def test_a_stateless_answer_keeps_nothing_and_a_retransmission_gets_the_same_bytes() -> None:
    layer, clock = new_layer()
    options = request("OPTIONS")
    tx = _received(layer, options)
    assert layer.answer_statelessly(tx, make_response(options, 200, to_tag="me"), clock.now())
    ((sent, _),) = layer.datagrams_to_send()
    assert sent.startswith(b"SIP/2.0 200 OK")
    assert tx.state is State.TERMINATED and layer.transaction_count == 0
    assert layer.waiting_count == 0 and layer.next_deadline() is None
    assert [type(e) for e in events(layer)] == [TransactionTerminated]
    # The request again: the same bytes, no transaction, nothing for the TU (a new challenge
    # would carry another To tag, which a strict client takes for an unexpected response).
    layer.receive(wire(options), UDP, 0.5)
    assert layer.datagrams_to_send() == [(sent, UDP)] and events(layer) == []
    assert layer.retransmissions_absorbed == 1 and layer.transaction_count == 0
    # 64*T1 later it is forgotten: the request is served anew (a new transaction).
    layer.receive(wire(options), UDP, 33.0)
    (event,) = events(layer)
    assert isinstance(event, RequestReceived) and event.transaction is not None
    assert layer.answered_statelessly == 1


def test_stateless_answers_remembered_are_bounded() -> None:
    layer, clock = new_layer()
    first = request("OPTIONS", branch="z9hG4bK-0", call_id="c0")
    for i in range(MAX_REMEMBERED + 1):
        options = first if i == 0 else request("OPTIONS", branch=f"z9hG4bK-{i}", call_id=f"c{i}")
        tx = _received(layer, options)
        layer.answer_statelessly(tx, make_response(options, 200, to_tag="me"), clock.now())
        events(layer)
    layer.datagrams_to_send()
    layer.receive(wire(first), UDP, 1.0)  # the oldest was forgotten: served anew
    (event,) = events(layer)
    assert isinstance(event, RequestReceived) and event.transaction is not None


def test_a_stateless_refusal_of_an_invite_takes_back_its_queued_100() -> None:
    layer, clock = new_layer()
    invite = request()
    tx = _received(layer, invite)
    challenge = make_response(invite, 407, to_tag="me")
    assert layer.answer_statelessly(tx, challenge, clock.now())
    # One datagram: no 100 (a client that saw one would stop retransmitting its INVITE and
    # wait for a final response nobody sends again) and no Timer G retransmissions.
    assert first_lines(layer) == ["SIP/2.0 407 Proxy Authentication Required"]
    assert layer.transaction_count == 0 and layer.next_deadline() is None
    events(layer)
    layer.receive(wire(make_ack(invite, challenge)), UDP, clock.now())  # matches nothing
    (ack,) = events(layer)
    assert isinstance(ack, RequestReceived) and ack.transaction is None
    assert ack.request.method == "ACK"
    assert layer.datagrams_to_send() == []


def test_once_something_left_on_a_transaction_the_answer_is_stateful() -> None:
    layer, clock = new_layer()
    invite = request()
    tx = _received(layer, invite)
    assert first_lines(layer) == ["SIP/2.0 100 Trying"]  # it has left
    assert layer.answer_statelessly(tx, make_response(invite, 404, to_tag="me"), clock.now())
    assert first_lines(layer) == ["SIP/2.0 404 Not Found"]
    assert tx.state is State.COMPLETED and layer.answered_statelessly == 0
    assert run_before(layer, clock, 1.0) == [(0.5, ["SIP/2.0 404 Not Found"])]  # Timer G


def test_a_2xx_to_an_invite_or_a_provisional_is_never_stateless() -> None:
    layer, clock = new_layer()
    invite = request()
    tx = _received(layer, invite)
    assert layer.answer_statelessly(tx, make_response(invite, 180, to_tag="me"), clock.now())
    assert tx.state is State.PROCEEDING
    assert layer.answer_statelessly(tx, make_response(invite, 200, to_tag="me"), clock.now())
    assert first_lines(layer) == ["SIP/2.0 100 Trying", "SIP/2.0 180 Ringing", "SIP/2.0 200 OK"]
    assert tx.state is State.ACCEPTED and layer.answered_statelessly == 0
    bye = request("BYE", branch="z9hG4bKbye", to_tag="me", cseq=2)
    other = _received(layer, bye)
    layer.answer_statelessly(other, make_response(bye, 200), clock.now())
    assert layer.answered_statelessly == 1  # a non-INVITE's 2xx may be (when the TU says so)


def test_without_automatic_100_an_invite_refusal_is_stateless_too() -> None:
    layer, clock = new_layer(send_trying=False)
    invite = request()
    tx = _received(layer, invite)
    assert layer.answer_statelessly(tx, make_response(invite, 404, to_tag="me"), clock.now())
    assert first_lines(layer) == ["SIP/2.0 404 Not Found"] and layer.transaction_count == 0


def test_a_provisional_from_the_tu_still_queued_makes_the_answer_stateful() -> None:
    layer, clock = new_layer()
    invite = request()
    tx = _received(layer, invite)
    layer.send_response(tx, make_response(invite, 180, to_tag="me"), clock.now())
    layer.answer_statelessly(tx, make_response(invite, 486, to_tag="me"), clock.now())
    assert first_lines(layer) == ["SIP/2.0 100 Trying", "SIP/2.0 180 Ringing",
                                  "SIP/2.0 486 Busy Here"]
    assert tx.state is State.COMPLETED and layer.answered_statelessly == 0
