"""The SIP transaction layer: RFC 3261 §17 with RFC 6026's Accepted state, sans-IO.

Theory of operation
-------------------
The four state machines (INVITE and non-INVITE, client and server) are data: `TABLES[machine]`
maps (state, input) to a `Transition` (new state, actions, timers to start, timers to stop), and
`START[machine]` says how a transaction begins. One interpreter, `TransactionLayer._run`, applies
them; nothing else changes a transaction's state. An input the table does not list for the
current state is discarded and counted in `ignored_inputs` (the RFC's "discard" and "ignore").

`TransactionLayer` is the transaction layer of the whole stack, shaped like h11 and aioquic:

- `receive(message, flow, now)` takes a parsed message from the transport. A response is matched
  to a client transaction by top-Via branch and CSeq method (§17.1.3); one that matches none is
  discarded (RFC 6026 §8.9). A request is matched to a server transaction by top-Via branch,
  sent-by and method, an ACK matching its INVITE (§17.2.3), or by the RFC 2543 fields when the
  branch lacks the magic cookie. An unmatched request creates a server transaction, unless it is
  an ACK (a 2xx's ACK goes straight to the TU) or a merged request (§8.2.2.2, answered 482 here).
- `send_request`, `send_response`, `send_2xx` come from the transaction user (TU).
- `next_event()` yields what the TU must know, as frozen dataclasses; `datagrams_to_send()`
  drains what the adapter must send, each datagram paired with the `Flow` it goes to (a response
  goes to the flow its request came on; RFC 3581 details are the transport's).
- `next_deadline()` / `handle_deadline(now)`: one `TimerHeap` holds every timer of every
  transaction. A timer firing is an input (TIMER_A, ...) like a message. Timers of zero duration
  (D, I, J, K on reliable transports) fire at once, inside the call that started them.

The 2xx to an INVITE is outside the server transaction (§13.3.1.4, RFC 6026 §7.1): the UAS core
retransmits it until the ACK comes. That loop lives here too (`send_2xx`), on the same heap,
because it is the same machinery.

The layer never reads a clock and never draws random numbers: `now` is an argument everywhere,
and branches and tags come from the `random_token` callable given to the constructor.

Memory is bounded. A transaction that only absorbs retransmissions (COMPLETED, CONFIRMED) keeps
bytes, not parsed messages, and at most `max_waiting` server transactions and
`max_waiting_clients` client ones are kept: beyond that the oldest of its side ends early
(counted in `evicted`), which costs nothing unless a retransmission of its request or final
response comes later than usual. The two sides are capped apart because their losses differ:
a client transaction ended early drops a late retransmitted response (the peer's INVITE server
transaction gives up at Timer H), a server one serves a late retransmitted request again (a
BYE whose 200 was lost twice then meets no dialog; the call engine remembers ended dialogs
for it, see b2bua.sip.dialog). So the server side keeps more (4,096) and the client side less
(2,048), although a B2BUA under load has three or four waiting client transactions per call
(the losing branches, CANCELs, the other leg's BYE) for one or two server ones; a flood of
requests fills the server side only, and is bounded as before. A transaction in ACCEPTED
(RFC 6026) is never ended early: it belongs to a dialog. At most `max_transactions` live at
once; a new request beyond that gets a stateless 503 with Retry-After (counted in `refused`):
"a server MAY generate a 503 ... if it is overloaded" (RFC 3261 §21.5.4 reads "temporarily
overloaded").

A stateless answer (`answer_statelessly`, RFC 3261 §8.2.7) keeps no transaction; its bytes are
remembered, at most `MAX_REMEMBERED` of them and each for 64*T1, so that a retransmission of
the request gets exactly the same bytes (a new challenge would carry another nonce and To tag).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar, TypeVar, final

from b2bua.sip.errors import SipParseError
from b2bua.sip.flow import Flow
from b2bua.sip.message import Request, Response, make_response, parse_message
from b2bua.sip.timers import RETRANSMIT_TIMERS, Timer, TimerConfig, TimerEntry, TimerHeap

__all__ = [
    "INVITE_CLIENT",
    "INVITE_SERVER",
    "MAGIC_COOKIE",
    "NON_INVITE_CLIENT",
    "NON_INVITE_SERVER",
    "START",
    "TABLES",
    "AckTimedOut",
    "Action",
    "CancelReceived",
    "ClientTransaction",
    "Event",
    "Input",
    "Machine",
    "RequestReceived",
    "ResponseReceived",
    "ServerTransaction",
    "State",
    "Timer",
    "TimerConfig",
    "Transaction",
    "TransactionLayer",
    "TransactionTerminated",
    "TransactionTimedOut",
    "Transition",
    "TransitionHook",
    "TransportFailed",
    "make_ack",
    "make_cancel",
]

MAGIC_COOKIE = "z9hG4bK"


# -- the state machines as data ----------------------------------------------------------------


class State(Enum):
    __hash__ = object.__hash__  # members are singletons: identity hash, computed in C

    CALLING = "CALLING"
    TRYING = "TRYING"
    PROCEEDING = "PROCEEDING"
    COMPLETED = "COMPLETED"
    CONFIRMED = "CONFIRMED"
    ACCEPTED = "ACCEPTED"
    TERMINATED = "TERMINATED"


_NO_TIMERS: tuple[Timer, ...] = ()  # what a transition starting no timer has due at once
_WAITING = frozenset(
    {State.COMPLETED, State.CONFIRMED, State.ACCEPTED, State.TERMINATED}
)
# Defaults of the caps (see the module docstring; `[overload]` in the configuration sets them).
MAX_WAITING = 4_096  # server transactions
MAX_WAITING_CLIENTS = 2_048
MAX_TRANSACTIONS = 65_536
# Stateless answers remembered for the retransmissions of their requests (bytes, by transaction
# key): a client that retransmits gets the same bytes again, not a fresh challenge with another
# nonce and To tag, which a strict client (SIPp) takes for a new, unexpected response. Bounded:
# under a flood the oldest go first, and a request whose answer was forgotten is answered anew.
MAX_REMEMBERED = 1_024
RETRY_AFTER = 5  # seconds, in the 503 of a request refused for lack of room


class Input(Enum):
    __hash__ = object.__hash__  # members are singletons: identity hash, computed in C

    TIMER_A = "TIMER_A"
    TIMER_B = "TIMER_B"
    TIMER_D = "TIMER_D"
    TIMER_E = "TIMER_E"
    TIMER_F = "TIMER_F"
    TIMER_G = "TIMER_G"
    TIMER_H = "TIMER_H"
    TIMER_I = "TIMER_I"
    TIMER_J = "TIMER_J"
    TIMER_K = "TIMER_K"
    TIMER_L = "TIMER_L"
    TIMER_M = "TIMER_M"
    TRANSPORT_ERROR = "TRANSPORT_ERROR"
    RESPONSE_1XX = "RESPONSE_1XX"  # from the network, client side
    RESPONSE_2XX = "RESPONSE_2XX"
    RESPONSE_300_699 = "RESPONSE_300_699"
    REQUEST_RETRANSMIT = "REQUEST_RETRANSMIT"  # from the network, server side
    ACK = "ACK"
    TU_1XX = "TU_1XX"  # from the TU, server side
    TU_2XX = "TU_2XX"
    TU_300_699 = "TU_300_699"


TIMER_INPUT: dict[Timer, Input] = {timer: Input[f"TIMER_{timer.value}"] for timer in Timer}


class Action(Enum):
    __hash__ = object.__hash__  # members are singletons: identity hash, computed in C

    SEND_REQUEST = "SEND_REQUEST"  # the request, first time
    RETRANSMIT_REQUEST = "RETRANSMIT_REQUEST"
    SEND_ACK = "SEND_ACK"  # build the ACK of a 3xx-6xx and send it (§17.1.1.3)
    RESEND_ACK = "RESEND_ACK"
    SEND_TRYING = "SEND_TRYING"  # 100 Trying from the INVITE server transaction itself
    SEND_RESPONSE = "SEND_RESPONSE"  # the TU's response, remembered as the last one
    RESEND_RESPONSE = "RESEND_RESPONSE"  # the last response again
    PASS_TO_TU = "PASS_TO_TU"  # the message becomes an event
    ABSORB = "ABSORB"  # a retransmission stops here (counted)
    INFORM_TIMEOUT = "INFORM_TIMEOUT"
    INFORM_TRANSPORT_ERROR = "INFORM_TRANSPORT_ERROR"


class Machine(Enum):
    __hash__ = object.__hash__  # members are singletons: identity hash, computed in C

    INVITE_CLIENT = "INVITE_CLIENT"
    NON_INVITE_CLIENT = "NON_INVITE_CLIENT"
    INVITE_SERVER = "INVITE_SERVER"
    NON_INVITE_SERVER = "NON_INVITE_SERVER"


# Waiting states that may end early when too many transactions wait: they only absorb
# retransmissions (of the request, or of a 3xx-6xx and its ACK). Not ACCEPTED.
_EVICTABLE: dict[Machine, frozenset[State]] = {
    Machine.INVITE_CLIENT: frozenset({State.COMPLETED}),
    Machine.NON_INVITE_CLIENT: frozenset({State.COMPLETED}),
    Machine.INVITE_SERVER: frozenset({State.COMPLETED, State.CONFIRMED}),
    Machine.NON_INVITE_SERVER: frozenset({State.COMPLETED}),
}


@dataclass(frozen=True, slots=True)
class Transition:
    target: State
    actions: tuple[Action, ...] = ()
    start: tuple[Timer, ...] = ()
    stop: tuple[Timer, ...] = ()


Table = dict[tuple[State, Input], Transition]

_S = State
_I = Input
_A = Action
_T = Timer

# RFC 3261 §17.1.1.2 and Figure 5, as RFC 6026 §8.4 amends them (2xx -> ACCEPTED, Timer M).
INVITE_CLIENT: Table = {
    (_S.CALLING, _I.TIMER_A): Transition(_S.CALLING, (_A.RETRANSMIT_REQUEST,), start=(_T.A,)),
    (_S.CALLING, _I.TIMER_B): Transition(_S.TERMINATED, (_A.INFORM_TIMEOUT,)),
    (_S.CALLING, _I.TRANSPORT_ERROR): Transition(_S.TERMINATED, (_A.INFORM_TRANSPORT_ERROR,)),
    (_S.CALLING, _I.RESPONSE_1XX): Transition(_S.PROCEEDING, (_A.PASS_TO_TU,), stop=(_T.A, _T.B)),
    (_S.CALLING, _I.RESPONSE_2XX): Transition(
        _S.ACCEPTED, (_A.PASS_TO_TU,), start=(_T.M,), stop=(_T.A, _T.B)
    ),
    (_S.CALLING, _I.RESPONSE_300_699): Transition(
        _S.COMPLETED, (_A.SEND_ACK, _A.PASS_TO_TU), start=(_T.D,), stop=(_T.A, _T.B)
    ),
    (_S.PROCEEDING, _I.RESPONSE_1XX): Transition(_S.PROCEEDING, (_A.PASS_TO_TU,)),
    (_S.PROCEEDING, _I.RESPONSE_2XX): Transition(_S.ACCEPTED, (_A.PASS_TO_TU,), start=(_T.M,)),
    (_S.PROCEEDING, _I.RESPONSE_300_699): Transition(
        _S.COMPLETED, (_A.SEND_ACK, _A.PASS_TO_TU), start=(_T.D,)
    ),
    (_S.COMPLETED, _I.RESPONSE_300_699): Transition(_S.COMPLETED, (_A.ABSORB, _A.RESEND_ACK)),
    (_S.COMPLETED, _I.TRANSPORT_ERROR): Transition(_S.TERMINATED, (_A.INFORM_TRANSPORT_ERROR,)),
    (_S.COMPLETED, _I.TIMER_D): Transition(_S.TERMINATED),
    (_S.ACCEPTED, _I.RESPONSE_2XX): Transition(_S.ACCEPTED, (_A.PASS_TO_TU,)),
    (_S.ACCEPTED, _I.TIMER_M): Transition(_S.TERMINATED),
}

_NICT_FINAL = Transition(_S.COMPLETED, (_A.PASS_TO_TU,), start=(_T.K,), stop=(_T.E, _T.F))

# RFC 3261 §17.1.2.2 and Figure 6.
NON_INVITE_CLIENT: Table = {
    (_S.TRYING, _I.TIMER_E): Transition(_S.TRYING, (_A.RETRANSMIT_REQUEST,), start=(_T.E,)),
    (_S.TRYING, _I.TIMER_F): Transition(_S.TERMINATED, (_A.INFORM_TIMEOUT,)),
    (_S.TRYING, _I.TRANSPORT_ERROR): Transition(_S.TERMINATED, (_A.INFORM_TRANSPORT_ERROR,)),
    (_S.TRYING, _I.RESPONSE_1XX): Transition(_S.PROCEEDING, (_A.PASS_TO_TU,)),
    (_S.TRYING, _I.RESPONSE_2XX): _NICT_FINAL,
    (_S.TRYING, _I.RESPONSE_300_699): _NICT_FINAL,
    (_S.PROCEEDING, _I.TIMER_E): Transition(_S.PROCEEDING, (_A.RETRANSMIT_REQUEST,), start=(_T.E,)),
    (_S.PROCEEDING, _I.TIMER_F): Transition(_S.TERMINATED, (_A.INFORM_TIMEOUT,)),
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): Transition(_S.TERMINATED, (_A.INFORM_TRANSPORT_ERROR,)),
    (_S.PROCEEDING, _I.RESPONSE_1XX): Transition(_S.PROCEEDING, (_A.PASS_TO_TU,)),
    (_S.PROCEEDING, _I.RESPONSE_2XX): _NICT_FINAL,
    (_S.PROCEEDING, _I.RESPONSE_300_699): _NICT_FINAL,
    # "The "Completed" state exists to buffer any additional response retransmissions."
    (_S.COMPLETED, _I.RESPONSE_2XX): Transition(_S.COMPLETED, (_A.ABSORB,)),
    (_S.COMPLETED, _I.RESPONSE_300_699): Transition(_S.COMPLETED, (_A.ABSORB,)),
    (_S.COMPLETED, _I.TIMER_K): Transition(_S.TERMINATED),
}

# RFC 3261 §17.2.1 and Figure 7, as RFC 6026 §7.1 amends them (2xx -> ACCEPTED, Timer L).
INVITE_SERVER: Table = {
    (_S.PROCEEDING, _I.REQUEST_RETRANSMIT): Transition(
        _S.PROCEEDING, (_A.ABSORB, _A.RESEND_RESPONSE)
    ),
    (_S.PROCEEDING, _I.TU_1XX): Transition(_S.PROCEEDING, (_A.SEND_RESPONSE,)),
    (_S.PROCEEDING, _I.TU_2XX): Transition(_S.ACCEPTED, (_A.SEND_RESPONSE,), start=(_T.L,)),
    (_S.PROCEEDING, _I.TU_300_699): Transition(
        _S.COMPLETED, (_A.SEND_RESPONSE,), start=(_T.G, _T.H)
    ),
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): Transition(_S.TERMINATED, (_A.INFORM_TRANSPORT_ERROR,)),
    (_S.COMPLETED, _I.REQUEST_RETRANSMIT): Transition(
        _S.COMPLETED, (_A.ABSORB, _A.RESEND_RESPONSE)
    ),
    (_S.COMPLETED, _I.TIMER_G): Transition(_S.COMPLETED, (_A.RESEND_RESPONSE,), start=(_T.G,)),
    (_S.COMPLETED, _I.TIMER_H): Transition(_S.TERMINATED, (_A.INFORM_TIMEOUT,)),
    (_S.COMPLETED, _I.ACK): Transition(_S.CONFIRMED, start=(_T.I,), stop=(_T.G, _T.H)),
    (_S.COMPLETED, _I.TRANSPORT_ERROR): Transition(_S.TERMINATED, (_A.INFORM_TRANSPORT_ERROR,)),
    (_S.CONFIRMED, _I.ACK): Transition(_S.CONFIRMED, (_A.ABSORB,)),
    (_S.CONFIRMED, _I.TIMER_I): Transition(_S.TERMINATED),
    (_S.ACCEPTED, _I.REQUEST_RETRANSMIT): Transition(_S.ACCEPTED, (_A.ABSORB,)),
    (_S.ACCEPTED, _I.ACK): Transition(_S.ACCEPTED, (_A.PASS_TO_TU,)),
    (_S.ACCEPTED, _I.TU_2XX): Transition(_S.ACCEPTED, (_A.SEND_RESPONSE,)),
    (_S.ACCEPTED, _I.TIMER_L): Transition(_S.TERMINATED),
}

_NIST_FINAL = Transition(_S.COMPLETED, (_A.SEND_RESPONSE,), start=(_T.J,))

# RFC 3261 §17.2.2 and Figure 8.
NON_INVITE_SERVER: Table = {
    # "Once in the "Trying" state, any further request retransmissions are discarded."
    (_S.TRYING, _I.REQUEST_RETRANSMIT): Transition(_S.TRYING, (_A.ABSORB,)),
    (_S.TRYING, _I.TU_1XX): Transition(_S.PROCEEDING, (_A.SEND_RESPONSE,)),
    (_S.TRYING, _I.TU_2XX): _NIST_FINAL,
    (_S.TRYING, _I.TU_300_699): _NIST_FINAL,
    (_S.PROCEEDING, _I.REQUEST_RETRANSMIT): Transition(
        _S.PROCEEDING, (_A.ABSORB, _A.RESEND_RESPONSE)
    ),
    (_S.PROCEEDING, _I.TU_1XX): Transition(_S.PROCEEDING, (_A.SEND_RESPONSE,)),
    (_S.PROCEEDING, _I.TU_2XX): _NIST_FINAL,
    (_S.PROCEEDING, _I.TU_300_699): _NIST_FINAL,
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): Transition(_S.TERMINATED, (_A.INFORM_TRANSPORT_ERROR,)),
    # "Any other final responses passed by the TU to the server transaction MUST be discarded
    # while in the "Completed" state": no TU_* entry below.
    (_S.COMPLETED, _I.REQUEST_RETRANSMIT): Transition(
        _S.COMPLETED, (_A.ABSORB, _A.RESEND_RESPONSE)
    ),
    (_S.COMPLETED, _I.TRANSPORT_ERROR): Transition(_S.TERMINATED, (_A.INFORM_TRANSPORT_ERROR,)),
    (_S.COMPLETED, _I.TIMER_J): Transition(_S.TERMINATED),
}

TABLES: dict[Machine, Table] = {
    Machine.INVITE_CLIENT: INVITE_CLIENT,
    Machine.NON_INVITE_CLIENT: NON_INVITE_CLIENT,
    Machine.INVITE_SERVER: INVITE_SERVER,
    Machine.NON_INVITE_SERVER: NON_INVITE_SERVER,
}

# How each machine begins: the client sends its request and arms its timers (§17.1.1.2: "MUST
# start timer A with a value of T1" on unreliable transports; "For any transport, the client
# transaction MUST start timer B with a value of 64*T1 seconds"); the server passes the request
# up, and the INVITE server "MUST generate a 100 (Trying) response unless it knows that the TU
# will generate a provisional or final response within 200 ms" (§17.2.1).
START: dict[Machine, Transition] = {
    Machine.INVITE_CLIENT: Transition(_S.CALLING, (_A.SEND_REQUEST,), start=(_T.A, _T.B)),
    Machine.NON_INVITE_CLIENT: Transition(_S.TRYING, (_A.SEND_REQUEST,), start=(_T.E, _T.F)),
    Machine.INVITE_SERVER: Transition(_S.PROCEEDING, (_A.PASS_TO_TU, _A.SEND_TRYING)),
    Machine.NON_INVITE_SERVER: Transition(_S.TRYING, (_A.PASS_TO_TU,)),
}


# -- transactions ------------------------------------------------------------------------------


def _wire(message: Request | Response) -> bytes:
    """A message's bytes as they arrived (no serialisation of, e.g., a Via stamped since)."""
    raw = message._raw
    return raw if raw is not None else bytes(message)


_M = TypeVar("_M", Request, Response)


def _kept(message: _M | None, data: bytes | None, kind: type[_M]) -> _M | None:
    """`message` while it is kept, else parsed again from `data` (see `Transaction`)."""
    if message is not None or data is None:
        return message
    parsed = parse_message(data)
    assert isinstance(parsed, kind)
    return parsed


class Transaction:
    """What both sides share. `state` is only changed by the layer's table interpreter.

    Once a transaction only absorbs retransmissions (COMPLETED, CONFIRMED, ACCEPTED: up to 64*T1
    on UDP), the layer needs nothing but bytes and keys: `release()` lets go of the parsed
    messages, and `request`, `last_response` and `ack` are parsed again from those bytes if
    anyone still asks. A loaded server holds tens of thousands of such transactions."""

    __slots__ = (
        "_intervals", "_request", "_request_raw", "_timers", "branch", "context", "flow", "key",
        "machine", "method", "state",
    )

    is_client: ClassVar[bool] = False

    def __init__(
        self, machine: Machine, request: Request, flow: Flow, branch: str, key: tuple[object, ...]
    ) -> None:
        self.machine = machine
        self._request: Request | None = request
        self._request_raw: bytes | None = None  # its bytes, once released
        self.method = request.method
        self.flow = flow
        self.branch = branch
        self.key = key
        self.state = START[machine].target
        self._timers: dict[Timer, TimerEntry[_Payload]] = {}
        self._intervals: dict[Timer, float] = {}
        # The transaction user's own: who started a client transaction (its events go back
        # there), which call an INVITE server transaction belongs to. The layer never reads it.
        self.context: object = None

    @property
    def request(self) -> Request:
        request = _kept(self._request, self._request_raw, Request)
        assert request is not None
        return request

    def release(self) -> None:
        """Drop the parsed messages (their bytes stay)."""
        request = self._request
        if request is not None:
            self._request_raw = _wire(request)
        self._request = None

    @property
    def is_invite(self) -> bool:
        return self.machine is Machine.INVITE_CLIENT or self.machine is Machine.INVITE_SERVER

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    def __repr__(self) -> str:
        side = "client" if self.is_client else "server"
        return f"<{side} {self.method} {self.branch} {self.state.value}>"


class ClientTransaction(Transaction):
    """A request we sent. `ack` is the ACK this transaction built for a 3xx-6xx, if any;
    `last_response` the last response received."""

    __slots__ = ("_ack", "_ack_bytes", "_last_response", "_last_response_raw", "_request_bytes")

    is_client = True

    def __init__(
        self, machine: Machine, request: Request, flow: Flow, branch: str, key: tuple[object, ...]
    ) -> None:
        super().__init__(machine, request, flow, branch, key)
        self._request_bytes = bytes(request)
        self._ack_bytes: bytes | None = None
        self._ack: Request | None = None
        self._last_response: Response | None = None
        self._last_response_raw: bytes | None = None

    @property
    def ack(self) -> Request | None:
        return _kept(self._ack, self._ack_bytes, Request)

    @property
    def last_response(self) -> Response | None:
        return _kept(self._last_response, self._last_response_raw, Response)

    def release(self) -> None:
        super().release()
        if self._last_response is not None:
            self._last_response_raw = _wire(self._last_response)
        self._ack = self._last_response = None


class ServerTransaction(Transaction):
    """A request we received. `last_response` is the last response sent on it."""

    __slots__ = ("_last_response", "_merge_key", "_response_bytes")

    def __init__(
        self, machine: Machine, request: Request, flow: Flow, branch: str, key: tuple[object, ...]
    ) -> None:
        super().__init__(machine, request, flow, branch, key)
        self._response_bytes: bytes | None = None
        self._merge_key: tuple[object, ...] | None = None
        self._last_response: Response | None = None

    @property
    def last_response(self) -> Response | None:
        return _kept(self._last_response, self._response_bytes, Response)

    def release(self) -> None:
        super().release()
        self._last_response = None


class _AckWait:
    """A 2xx to an INVITE being retransmitted until its ACK (§13.3.1.4)."""

    __slots__ = ("data", "give_up", "interval", "key", "retransmit", "to_tag", "transaction")

    def __init__(
        self,
        transaction: ServerTransaction,
        data: bytes,
        key: tuple[str, int],
        to_tag: str | None,
        interval: float,
    ) -> None:
        self.transaction = transaction
        self.data = data
        self.key = key
        self.to_tag = to_tag
        self.interval = interval
        self.retransmit: TimerEntry[_Payload] | None = None
        self.give_up: TimerEntry[_Payload] | None = None


_RETRANSMIT_2XX = "retransmit 2xx"
_GIVE_UP_2XX = "give up 2xx"
_Payload = tuple[Transaction, Timer] | tuple[_AckWait, str]


# -- events for the transaction user -----------------------------------------------------------
# Plain slotted classes, not frozen dataclasses: several are made per message, and a frozen
# dataclass pays an object.__setattr__ per field. The TU treats them as read-only.


@final
@dataclass(slots=True)
class RequestReceived:
    """A new request. `transaction` is None for an ACK to a 2xx (it belongs to the dialog)."""

    transaction: ServerTransaction | None
    request: Request
    flow: Flow


@final
@dataclass(slots=True)
class ResponseReceived:
    """A response for a client transaction (a 2xx retransmission too, in ACCEPTED)."""

    transaction: ClientTransaction
    response: Response
    flow: Flow


@final
@dataclass(slots=True)
class CancelReceived:
    """A CANCEL (§9.2). The TU answers `cancel_transaction` itself (200, or 481 when
    `invite_transaction` is None) and, if the INVITE is still unanswered, the INVITE with 487."""

    invite_transaction: ServerTransaction | None
    cancel_transaction: ServerTransaction
    request: Request


@final
@dataclass(slots=True)
class TransactionTimedOut:
    """Timer B or F (no final response), or Timer H on an INVITE server (no ACK came)."""

    transaction: Transaction


@final
@dataclass(slots=True)
class TransportFailed:
    """The transport reported a failure for the flow this transaction sends on."""

    transaction: Transaction


@final
@dataclass(slots=True)
class TransactionTerminated:
    """The transaction is gone; the TU may forget what it keyed on it."""

    transaction: Transaction


@final
@dataclass(slots=True)
class AckTimedOut:
    """No ACK for our 2xx within 64*T1 (§13.3.1.4): the TU should end the session (BYE)."""

    transaction: ServerTransaction


Event = (
    RequestReceived
    | ResponseReceived
    | CancelReceived
    | TransactionTimedOut
    | TransportFailed
    | TransactionTerminated
    | AckTimedOut
)

TransitionHook = Callable[[Transaction, State, Input, State], None]


# -- message helpers ---------------------------------------------------------------------------


def make_ack(invite: Request, response: Response) -> Request:
    """The ACK a client INVITE transaction sends for a 3xx-6xx response (§17.1.1.3).

    Request-URI, Call-ID and From of the INVITE; To of the response (with its tag); CSeq number of
    the INVITE with method ACK; one Via, the INVITE's top Via; the INVITE's Route headers.
    """
    fields: list[tuple[str, str]] = [("Via", invite.headers.values("via")[0])]
    # "If the INVITE request whose response is being acknowledged had Route header fields,
    # those header fields MUST appear in the ACK."
    fields.extend(("Route", value) for value in invite.headers.get_all("route"))
    fields.append(("Max-Forwards", invite.headers.get("max-forwards") or "70"))
    fields.append(("From", invite.headers.get("from") or ""))
    # "The To header field in the ACK MUST equal the To header field in the response being
    # acknowledged"
    fields.append(("To", response.headers.get("to") or ""))
    fields.append(("Call-ID", invite.headers.get("call-id") or ""))
    fields.append(("CSeq", f"{invite.cseq.number} ACK"))
    return Request("ACK", invite.request_uri_text, fields)


def make_cancel(invite: Request) -> Request:
    """The CANCEL of a request we sent (§9.1).

    "The Request-URI, Call-ID, To, the numeric part of CSeq, and From header fields in the CANCEL
    request MUST be identical to those in the request being cancelled, including tags. A CANCEL
    constructed by a client MUST have only a single Via header field value matching the top Via
    value in the request being cancelled." Route headers are copied too.
    """
    fields: list[tuple[str, str]] = [("Via", invite.headers.values("via")[0])]
    fields.extend(("Route", value) for value in invite.headers.get_all("route"))
    fields.append(("Max-Forwards", invite.headers.get("max-forwards") or "70"))
    fields.append(("From", invite.headers.get("from") or ""))
    fields.append(("To", invite.headers.get("to") or ""))
    fields.append(("Call-ID", invite.headers.get("call-id") or ""))
    fields.append(("CSeq", f"{invite.cseq.number} CANCEL"))
    return Request("CANCEL", invite.request_uri_text, fields)


# -- matching keys -----------------------------------------------------------------------------


def _server_key(request: Request, method: str | None = None) -> tuple[object, ...]:
    """§17.2.3: branch, sent-by and method (ACK counts as INVITE); RFC 2543 fields otherwise."""
    via = request.via
    if method is None:
        method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return (branch, via.host.lower(), via.port, method)
    # RFC 2543 peers: Request-URI, From tag, Call-ID, CSeq number and top Via identify the
    # transaction (the To tag is left out, so the ACK of a non-2xx still matches its INVITE).
    return (
        "rfc2543",
        request.request_uri_text,
        request.from_.tag,
        request.call_id,
        request.cseq.number,
        via.transport,
        via.host.lower(),
        via.port,
        branch,
        method,
    )


def _input_for_response(status: int, *, from_tu: bool) -> Input:
    if not 100 <= status <= 699:
        raise ValueError(f"status {status} out of range")
    if status < 200:
        return Input.TU_1XX if from_tu else Input.RESPONSE_1XX
    if status < 300:
        return Input.TU_2XX if from_tu else Input.RESPONSE_2XX
    return Input.TU_300_699 if from_tu else Input.RESPONSE_300_699


# -- the layer ---------------------------------------------------------------------------------


class TransactionLayer:
    """Every client and server transaction of a stack, their timers, and the 2xx retransmissions.

    Counters (plain ints): `retransmissions_sent` (requests, ACKs and responses sent again),
    `retransmissions_absorbed` (duplicates that stopped here), `timeouts` (B, F, H, and
    `AckTimedOut`), `merged_482` (merged requests answered 482), `stray_responses` (matched no
    transaction, discarded), `ignored_inputs` (no transition for the state), `dropped_malformed`
    (a header needed for matching did not parse), `evicted` (waiting transactions ended early,
    over `max_waiting`), `refused` (new requests answered 503, over `max_transactions`).
    """

    def __init__(
        self,
        timers: TimerConfig | None = None,
        *,
        random_token: Callable[[], str],
        send_trying: bool = True,
        on_transition: TransitionHook | None = None,
        max_waiting: int = MAX_WAITING,
        max_transactions: int = MAX_TRANSACTIONS,
        max_waiting_clients: int = MAX_WAITING_CLIENTS,
    ) -> None:
        if min(max_waiting, max_waiting_clients, max_transactions) < 1:
            raise ValueError("the transaction caps must be at least 1")
        self.timers = timers if timers is not None else TimerConfig()
        # What `TimerConfig.duration` gives each timer that does not back off, per reliability
        # (None: the timer does not run there); the retransmission timers are asked each time.
        self._fixed: dict[bool, dict[Timer, float | None]] = {
            reliable: {
                timer: self.timers.duration(timer, reliable=reliable)
                for timer in Timer
                if reliable or timer not in RETRANSMIT_TIMERS
            }
            for reliable in (False, True)
        }
        self._token = random_token
        self._send_trying = send_trying
        self._on_transition = on_transition
        self._clients: dict[tuple[object, ...], ClientTransaction] = {}
        self._servers: dict[tuple[object, ...], ServerTransaction] = {}
        self._merge: dict[tuple[object, ...], ServerTransaction] = {}
        self._acks: dict[tuple[str, int], _AckWait] = {}
        # Stateless answers by transaction key, oldest first: (bytes, until when).
        self._remembered: OrderedDict[tuple[object, ...], tuple[bytes, float]] = OrderedDict()
        # Transactions in an evictable waiting state, oldest first.
        self._waiting_servers: OrderedDict[Transaction, None] = OrderedDict()
        self._waiting_clients: OrderedDict[Transaction, None] = OrderedDict()
        self.max_waiting = max_waiting
        self.max_waiting_clients = max_waiting_clients
        self.max_transactions = max_transactions
        self._heap: TimerHeap[_Payload] = TimerHeap()
        self._events: deque[Event] = deque()
        self._out: list[tuple[bytes, Flow]] = []
        self.retransmissions_sent = 0
        self.retransmissions_absorbed = 0
        self.timeouts = 0
        self.merged_482 = 0
        self.stray_responses = 0
        self.ignored_inputs = 0
        self.dropped_malformed = 0
        self.evicted = 0
        self.refused = 0
        self.answered_statelessly = 0

    # -- randomness ------------------------------------------------------------------------
    def new_branch(self) -> str:
        """A fresh branch: the RFC 3261 magic cookie then a random token (§8.1.1.7)."""
        return MAGIC_COOKIE + self._token()

    def new_tag(self) -> str:
        return self._token()

    # -- output ----------------------------------------------------------------------------
    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def datagrams_to_send(self) -> list[tuple[bytes, Flow]]:
        """Everything to send since the last call, in order, each with its flow."""
        out, self._out = self._out, []
        return out

    @property
    def transaction_count(self) -> int:
        """Live client and server transactions."""
        return len(self._clients) + len(self._servers)

    @property
    def waiting_count(self) -> int:
        """Transactions that only absorb retransmissions (the ones the waiting caps bound)."""
        return len(self._waiting_servers) + len(self._waiting_clients)

    @property
    def pending_2xx(self) -> int:
        """2xx responses still retransmitted while waiting for their ACK."""
        return len(self._acks)

    # -- timers ----------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """When `handle_deadline` must next be called, or None when no timer runs."""
        return self._heap.next_deadline()

    def earliest_added(self) -> float:
        """The earliest deadline added since the last call (b2bua.stack.Watched)."""
        return self._heap.earliest_added()

    def handle_deadline(self, now: float) -> None:
        """Fire every timer due at `now`, earliest first."""
        while (entry := self._heap.pop_due(now)) is not None:
            owner, name = entry.payload
            if isinstance(owner, Transaction):
                assert isinstance(name, Timer)
                if owner._timers.get(name) is entry:
                    del owner._timers[name]
                self._run(owner, TIMER_INPUT[name], now)
            else:
                assert isinstance(name, str)
                self._ack_wait_timer(owner, name, now, entry)

    # -- from the transport ----------------------------------------------------------------
    def receive(self, message: Request | Response, flow: Flow, now: float) -> None:
        """A parsed message from `flow`. Requests should have passed `validate_request` (the
        adapter answers a broken one statelessly); whatever cannot be matched is dropped."""
        if isinstance(message, Response):
            self._receive_response(message, flow, now)
        else:
            self._receive_request(message, flow, now)

    def transport_error(self, flow: Flow, now: float) -> None:
        """The transport could not send to `flow` (or its connection died): every transaction
        sending there gets TRANSPORT_ERROR (§17.1.4, §17.2.4). A connection is known by its
        id alone (another worker's copy of its flow may lack our local address)."""
        cid = flow.connection_id
        for tx in [*self._clients.values(), *self._servers.values()]:
            if tx.flow == flow or (cid is not None and tx.flow.connection_id == cid
                                   and tx.flow.transport == flow.transport):
                self._run(tx, Input.TRANSPORT_ERROR, now)

    def _receive_response(self, response: Response, flow: Flow, now: float) -> None:
        try:
            branch = response.via.branch
            method = response.cseq.method
        except SipParseError:
            self.dropped_malformed += 1
            return
        # §17.1.3: the branch of the top Via and the CSeq method identify the client transaction.
        tx = self._clients.get((branch, method)) if branch else None
        if tx is None:
            # RFC 6026 §8.9 (amending §18.1.2): "any element other than a stateless proxy MUST
            # silently discard the response."
            self.stray_responses += 1
            return
        self._run(tx, _input_for_response(response.status, from_tu=False), now, response, flow)

    def _receive_request(self, request: Request, flow: Flow, now: float) -> None:
        method = request.method
        ack_key: tuple[str, int] = ("", 0)
        merge_key: tuple[object, ...] = ()
        try:
            key = _server_key(request)
            to_tag = request.to.tag
            if method == "ACK":
                ack_key = (request.call_id, request.cseq.number)
            elif to_tag is None:
                merge_key = _merge_key(request)
            invite_key = _server_key(request, "INVITE") if method == "CANCEL" else None
        except SipParseError:
            self.dropped_malformed += 1
            return
        tx = self._servers.get(key)
        if method == "ACK":
            if tx is not None and tx.machine is Machine.INVITE_SERVER:
                self._run(tx, Input.ACK, now, request, flow)
            else:
                self._ack_for_2xx(request, flow, ack_key, to_tag)
            return
        if tx is not None:
            self._run(tx, Input.REQUEST_RETRANSMIT, now, request, flow)
            return
        answered = self._remembered.get(key)
        if answered is not None:
            if answered[1] > now:  # a retransmission of a request answered statelessly
                self.retransmissions_absorbed += 1
                self.retransmissions_sent += 1
                self._out.append((answered[0], flow))
                return
            del self._remembered[key]
        if to_tag is None and merge_key in self._merge:
            # §8.2.2.2: "If the request has no tag in the To header field, the UAS core MUST
            # check the request against ongoing transactions. If the From tag, Call-ID, and CSeq
            # exactly match those associated with an ongoing transaction, but the request does
            # not match that transaction (based on the matching rules in Section 17.2.3), the
            # UAS core SHOULD generate a 482 (Loop Detected) response and pass it to the server
            # transaction."
            self._answer_merged(request, flow, key, now)
            return
        if not self._room():
            self._refuse(request, flow)
            return
        machine = Machine.INVITE_SERVER if method == "INVITE" else Machine.NON_INVITE_SERVER
        tx = ServerTransaction(machine, request, flow, request.via.branch or "", key)
        self._servers[key] = tx
        if to_tag is None:
            tx._merge_key = merge_key
            self._merge[merge_key] = tx
        if invite_key is not None:
            invite = self._servers.get(invite_key)
            if invite is not None and invite.machine is not Machine.INVITE_SERVER:
                invite = None
            self._start(tx, now, cancelled=invite)
        else:
            self._start(tx, now)

    def _room(self) -> bool:
        """Whether one more transaction fits (a waiting one ends early to make room)."""
        if len(self._servers) + len(self._clients) < self.max_transactions:
            return True
        return self._evict_oldest()

    def _refuse(self, request: Request, flow: Flow) -> None:
        """No room for a new server transaction: a stateless 503 (RFC 3261 §21.5.4, with
        Retry-After, §20.33)."""
        self.refused += 1
        response = make_response(
            request, 503, to_tag=self.new_tag(), headers=[("Retry-After", str(RETRY_AFTER))]
        )
        self._out.append((bytes(response), flow))

    def _evict_oldest(self) -> bool:
        """End the client transaction that has waited longest (its early end costs least),
        else the server one; False when none waits."""
        waiting = self._waiting_clients or self._waiting_servers
        if not waiting:
            return False
        self._evict(waiting)
        return True

    def _waiting_of(self, tx: Transaction) -> tuple[OrderedDict[Transaction, None], int]:
        """The waiting queue of `tx`'s side, and its cap."""
        if tx.is_client:
            return self._waiting_clients, self.max_waiting_clients
        return self._waiting_servers, self.max_waiting

    def _evict(self, waiting: OrderedDict[Transaction, None]) -> None:
        """End the oldest transaction of one side's waiting queue."""
        tx, _ = waiting.popitem(last=False)
        self.evicted += 1
        tx.state = State.TERMINATED
        self._terminated(tx)

    def _answer_merged(
        self, request: Request, flow: Flow, key: tuple[object, ...], now: float
    ) -> None:
        self.merged_482 += 1
        machine = Machine.INVITE_SERVER if request.method == "INVITE" else Machine.NON_INVITE_SERVER
        tx = ServerTransaction(machine, request, flow, request.via.branch or "", key)
        self._servers[key] = tx  # retransmissions of the merged request get the 482 again
        response = make_response(request, 482, to_tag=self.new_tag())
        self._run(tx, Input.TU_300_699, now, response)

    def _ack_for_2xx(
        self, ack: Request, flow: Flow, key: tuple[str, int], to_tag: str | None
    ) -> None:
        wait = self._acks.get(key)
        if wait is not None and (wait.to_tag is None or wait.to_tag == to_tag):
            self._stop_ack_wait(wait)
        self._events.append(RequestReceived(None, ack, flow))

    # -- from the transaction user ---------------------------------------------------------
    def send_request(self, request: Request, flow: Flow, now: float) -> ClientTransaction:
        """Start a client transaction for `request`, which already carries its top Via with a
        unique branch (see `new_branch`). The request is sent as it is."""
        if request.method == "ACK":
            raise ValueError("an ACK is not a transaction: send it statelessly")
        branch = request.via.branch
        if not branch:
            raise ValueError("the top Via of a request we send needs a branch")
        key: tuple[object, ...] = (branch, request.method)
        if key in self._clients:
            raise ValueError(f"branch {branch} already used by a live {request.method}")
        machine = Machine.INVITE_CLIENT if request.method == "INVITE" else Machine.NON_INVITE_CLIENT
        tx = ClientTransaction(machine, request, flow, branch, key)
        self._clients[key] = tx
        self._start(tx, now)
        return tx

    def send_response(self, transaction: ServerTransaction, response: Response, now: float) -> bool:
        """Send the TU's response on `transaction` (to the flow its request came on).

        A 2xx to an INVITE goes through `send_2xx` (retransmitted until the ACK). Returns False
        when the transaction's state discards it (e.g. a second final response)."""
        if transaction.machine is Machine.INVITE_SERVER and 200 <= response.status < 300:
            return self.send_2xx(transaction, response, now)
        return self._run(
            transaction, _input_for_response(response.status, from_tu=True), now, response
        )

    def send_2xx(self, transaction: ServerTransaction, response: Response, now: float) -> bool:
        """Send a 2xx to an INVITE and retransmit it until its ACK (§13.3.1.4).

        Retransmissions run at T1, 2*T1, ... capped at T2, on every transport, until
        `ack_received()` or a matching ACK (Call-ID, CSeq number, To tag) arrives through
        `receive()`; after 64*T1 without one, `AckTimedOut` is emitted."""
        if transaction.machine is not Machine.INVITE_SERVER or not 200 <= response.status < 300:
            raise ValueError("send_2xx is for a 2xx to an INVITE")
        key = (response.call_id, response.cseq.number)  # the INVITE's, copied (§8.2.6.2)
        if not self._run(transaction, Input.TU_2XX, now, response):
            return False
        old = self._acks.pop(key, None)
        if old is not None:
            self._stop_ack_wait(old)
        try:
            to_tag = response.to.tag
        except SipParseError:
            to_tag = None
        assert transaction._response_bytes is not None
        wait = _AckWait(transaction, transaction._response_bytes, key, to_tag, self.timers.t1)
        self._acks[key] = wait
        # §13.3.1.4: "The 2xx response is passed to the transport with an interval that starts
        # at T1 seconds and doubles for each retransmission until it reaches T2 seconds ...
        # This is independent of whatever transport protocols are used to send the response."
        wait.retransmit = self._heap.schedule(now + wait.interval, (wait, _RETRANSMIT_2XX))
        # "If the server retransmits the 2xx response for 64*T1 seconds without receiving an
        # ACK, the dialog is confirmed, but the session SHOULD be terminated."
        wait.give_up = self._heap.schedule(
            now + self.timers.transaction_timeout, (wait, _GIVE_UP_2XX)
        )
        return True

    def ack_received(self, call_id: str, cseq_number: int) -> bool:
        """The TU saw the ACK of our 2xx: stop retransmitting it. Returns whether one was pending."""
        wait = self._acks.get((call_id, cseq_number))
        if wait is None:
            return False
        self._stop_ack_wait(wait)
        return True

    def send_stateless(self, message: Request | Response, flow: Flow) -> None:
        """Queue a message that belongs to no transaction (the ACK of a 2xx, a stateless answer)."""
        self.send_bytes(bytes(message), flow)

    def send_bytes(self, data: bytes, flow: Flow) -> None:
        """Queue bytes that belong to no transaction (an ACK sent again): they leave in order
        with everything else queued."""
        self._out.append((data, flow))

    def answer_statelessly(
        self, transaction: ServerTransaction, response: Response, now: float
    ) -> bool:
        """Answer a request with a final response and keep no state for it (RFC 3261 §8.2.7).

        For what the TU refuses at once and would refuse again, identically, if the request
        came again: a challenge to a request without credentials, 404, 405, 481, 501, a 200 to
        OPTIONS. "The stateless UAS role is needed primarily to handle unauthenticated requests
        for which a challenge response is issued. If unauthenticated requests were handled
        statefully, then malicious floods of unauthenticated requests could create massive
        amounts of transaction state". The transaction ends at once: a retransmission of the
        request gets the same bytes again while they are remembered (`MAX_REMEMBERED`, 64*T1),
        else is served again; an ACK of a stateless non-2xx to an INVITE matches nothing
        and goes to the TU as a stray ACK, and nothing is retransmitted, so a flood from a
        forged source address gets one datagram per request, not the eleven of Timer G.

        Only while nothing has left on the transaction: an INVITE's 100 (Trying) still queued is
        withdrawn (a client that saw a 100 would stop retransmitting and wait for a final
        response that is never sent again, §17.1.1.2). Otherwise, or for a 2xx to an INVITE
        (which makes a dialog) or a provisional response, the response is sent statefully
        (`send_response`). Returns whether it was sent."""
        status = response.status
        invite = transaction.machine is Machine.INVITE_SERVER
        if (
            status < 200
            or (invite and status < 300)
            or transaction.state not in (State.TRYING, State.PROCEEDING)
            or not self._withdraw(transaction)
        ):
            return self.send_response(transaction, response, now)
        self.answered_statelessly += 1
        data = bytes(response)
        self._out.append((data, transaction.flow))
        remembered = self._remembered
        if len(remembered) >= MAX_REMEMBERED:
            remembered.popitem(last=False)
        remembered[transaction.key] = (data, now + self.timers.transaction_timeout)
        transaction.state = State.TERMINATED
        self._terminated(transaction)
        return True

    def _withdraw(self, tx: ServerTransaction) -> bool:
        """Whether nothing but our own 100 (Trying) was sent on `tx`, and it has not left yet
        (then it is taken back)."""
        sent = tx._response_bytes
        if sent is None:
            return True
        if not sent.startswith(b"SIP/2.0 100 "):  # the TU's provisional: it stands
            return False
        out = self._out
        for i in range(len(out) - 1, -1, -1):
            if out[i][0] is sent:
                del out[i]
                tx._response_bytes = None
                tx._last_response = None
                return True
        return False

    def client_transaction(self, branch: str, method: str) -> ClientTransaction | None:
        """Our live client transaction `branch` for `method`, if any."""
        return self._clients.get((branch, method))

    def abandon(self, transaction: Transaction) -> None:
        """Forget a transaction the TU gave up on, e.g. an INVITE with no final response 64*T1
        after its CANCEL (§9.1: "the client SHOULD consider the INVITE transaction terminated")."""
        if transaction.state is not State.TERMINATED:
            transaction.state = State.TERMINATED
            self._terminated(transaction)

    # -- the interpreter -------------------------------------------------------------------
    def _start(
        self, tx: Transaction, now: float, *, cancelled: ServerTransaction | None = None
    ) -> None:
        start = START[tx.machine]
        tx.state = start.target
        self._apply(tx, start, now, tx._request, tx.flow, cancelled)

    def _run(
        self,
        tx: Transaction,
        inp: Input,
        now: float,
        message: Request | Response | None = None,
        flow: Flow | None = None,
    ) -> bool:
        """Feed one input to a transaction; False if its table has no entry (input discarded)."""
        transition = TABLES[tx.machine].get((tx.state, inp))
        if transition is None:
            self.ignored_inputs += 1
            return False
        old = tx.state
        tx.state = transition.target
        for timer in transition.stop:
            entry = tx._timers.pop(timer, None)
            if entry is not None:
                self._heap.cancel(entry)
        zero = self._apply(tx, transition, now, message, flow, None)
        if self._on_transition is not None:
            self._on_transition(tx, old, inp, tx.state)
        if old is not tx.state and tx.state in _WAITING:
            # From here on the transaction only absorbs retransmissions (for up to 64*T1): it
            # keeps bytes, not parsed messages, so that thousands of waiting transactions weigh
            # little on memory.
            tx.release()
            if tx.state in _EVICTABLE[tx.machine]:
                waiting, cap = self._waiting_of(tx)
                if tx not in waiting:
                    waiting[tx] = None
                    if len(waiting) > cap:
                        self._evict(waiting)
        if tx.state is State.TERMINATED:
            self._terminated(tx)
        for timer in zero:
            self._run(tx, TIMER_INPUT[timer], now)
        return True

    def _apply(
        self,
        tx: Transaction,
        transition: Transition,
        now: float,
        message: Request | Response | None,
        flow: Flow | None,
        cancelled: ServerTransaction | None,
    ) -> Sequence[Timer]:
        """Do a transition's actions and start its timers; returns the timers due at once."""
        for action in transition.actions:
            self._act(action, tx, message, flow, cancelled)
        if not transition.start:
            return _NO_TIMERS
        zero: list[Timer] = []
        reliable = tx.flow.reliable
        fixed = self._fixed[reliable]
        for timer in transition.start:
            old_entry = tx._timers.pop(timer, None)
            if old_entry is not None:
                self._heap.cancel(old_entry)
            if timer in fixed:
                duration = fixed[timer]
                if duration is None:
                    continue
            else:
                duration = self.timers.duration(
                    timer,
                    reliable=reliable,
                    previous=tx._intervals.get(timer),
                    proceeding=tx.state is State.PROCEEDING,
                )
                if duration is None:
                    continue
                tx._intervals[timer] = duration
            if duration <= 0:
                zero.append(timer)
            else:
                tx._timers[timer] = self._heap.schedule(now + duration, (tx, timer))
        return zero

    def _act(
        self,
        action: Action,
        tx: Transaction,
        message: Request | Response | None,
        flow: Flow | None,
        cancelled: ServerTransaction | None,
    ) -> None:
        if action is Action.PASS_TO_TU:
            self._pass_to_tu(tx, message, flow, cancelled)
        elif action is Action.ABSORB:
            self.retransmissions_absorbed += 1
        elif action is Action.INFORM_TIMEOUT:
            self.timeouts += 1
            self._events.append(TransactionTimedOut(tx))
        elif action is Action.INFORM_TRANSPORT_ERROR:
            self._events.append(TransportFailed(tx))
        elif isinstance(tx, ClientTransaction):
            self._act_client(action, tx, message)
        else:
            assert isinstance(tx, ServerTransaction)
            self._act_server(action, tx, message)

    def _act_client(
        self, action: Action, tx: ClientTransaction, message: Request | Response | None
    ) -> None:
        if action is Action.SEND_REQUEST:
            self._out.append((tx._request_bytes, tx.flow))
        elif action is Action.RETRANSMIT_REQUEST:
            self.retransmissions_sent += 1
            self._out.append((tx._request_bytes, tx.flow))
        elif action is Action.SEND_ACK:
            assert isinstance(message, Response)
            # §17.1.1.2: "the client transaction MUST generate an ACK request, even if the
            # transport is reliable"
            assert tx._request is not None
            ack = tx._ack = make_ack(tx._request, message)
            tx._ack_bytes = bytes(ack)
            self._out.append((tx._ack_bytes, tx.flow))
        elif action is Action.RESEND_ACK:
            # "Any retransmissions of the final response that are received while in the
            # "Completed" state MUST cause the ACK to be re-passed to the transport layer for
            # retransmission, but the newly generated ACK MUST NOT be passed up to the TU."
            if tx._ack_bytes is not None:
                self.retransmissions_sent += 1
                self._out.append((tx._ack_bytes, tx.flow))
        else:  # pragma: no cover - the tables give client transactions no other action
            raise AssertionError(f"{action} on a client transaction")

    def _act_server(
        self, action: Action, tx: ServerTransaction, message: Request | Response | None
    ) -> None:
        if action is Action.SEND_RESPONSE:
            assert isinstance(message, Response)
            self._send_response(tx, message)
        elif action is Action.SEND_TRYING:
            if self._send_trying:
                assert tx._request is not None
                self._send_response(tx, make_response(tx._request, 100))
        elif action is Action.RESEND_RESPONSE:
            # §17.2.1: "If a request retransmission is received while in the "Proceeding" state,
            # the most recent provisional response that was received from the TU MUST be passed
            # to the transport layer for retransmission"; in COMPLETED the final response is.
            if tx._response_bytes is not None:
                self.retransmissions_sent += 1
                self._out.append((tx._response_bytes, tx.flow))
        else:  # pragma: no cover - the tables give server transactions no other action
            raise AssertionError(f"{action} on a server transaction")

    def _send_response(self, tx: ServerTransaction, response: Response) -> None:
        tx._response_bytes = bytes(response)
        if tx._request is not None:  # (not once released: the bytes are enough)
            tx._last_response = response
        self._out.append((tx._response_bytes, tx.flow))

    def _pass_to_tu(
        self,
        tx: Transaction,
        message: Request | Response | None,
        flow: Flow | None,
        cancelled: ServerTransaction | None,
    ) -> None:
        assert message is not None and flow is not None
        if isinstance(tx, ClientTransaction):
            assert isinstance(message, Response)
            if tx._request is not None:
                tx._last_response = message
            else:  # released (a 2xx retransmitted in ACCEPTED): the bytes are enough
                tx._last_response_raw = _wire(message)
            self._events.append(ResponseReceived(tx, message, flow))
            return
        assert isinstance(tx, ServerTransaction) and isinstance(message, Request)
        if message.method == "ACK":
            # RFC 6026 §7.1: an ACK matching a server transaction in ACCEPTED (a 2xx's ACK that
            # reused the INVITE's branch) goes to the TU, which owns the 2xx.
            self._ack_for_2xx(message, flow, (message.call_id, message.cseq.number), message.to.tag)
        elif message.method == "CANCEL":
            self._events.append(CancelReceived(cancelled, tx, message))
        else:
            self._events.append(RequestReceived(tx, message, flow))

    def _terminated(self, tx: Transaction) -> None:
        for entry in tx._timers.values():
            self._heap.cancel(entry)
        tx._timers.clear()
        self._waiting_of(tx)[0].pop(tx, None)
        if isinstance(tx, ClientTransaction):
            if self._clients.get(tx.key) is tx:
                del self._clients[tx.key]
        else:
            assert isinstance(tx, ServerTransaction)
            if self._servers.get(tx.key) is tx:
                del self._servers[tx.key]
            if tx._merge_key is not None and self._merge.get(tx._merge_key) is tx:
                del self._merge[tx._merge_key]
        self._events.append(TransactionTerminated(tx))

    # -- 2xx retransmission (§13.3.1.4) ----------------------------------------------------
    def _ack_wait_timer(
        self, wait: _AckWait, name: str, now: float, entry: TimerEntry[_Payload]
    ) -> None:
        if name == _RETRANSMIT_2XX:
            if wait.retransmit is not entry:
                return
            self.retransmissions_sent += 1
            self._out.append((wait.data, wait.transaction.flow))
            wait.interval = min(2 * wait.interval, self.timers.t2)
            wait.retransmit = self._heap.schedule(now + wait.interval, (wait, _RETRANSMIT_2XX))
        elif wait.give_up is entry:
            self._stop_ack_wait(wait)
            self.timeouts += 1
            self._events.append(AckTimedOut(wait.transaction))

    def _stop_ack_wait(self, wait: _AckWait) -> None:
        for entry in (wait.retransmit, wait.give_up):
            if entry is not None:
                self._heap.cancel(entry)
        wait.retransmit = wait.give_up = None
        if self._acks.get(wait.key) is wait:
            del self._acks[wait.key]


def _merge_key(request: Request) -> tuple[object, ...]:
    """§8.2.2.2: From tag, Call-ID and CSeq (number and method)."""
    cseq = request.cseq
    return (request.from_.tag, request.call_id, cseq.number, cseq.method)
