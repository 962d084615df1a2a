"""Property: whatever order the caller, three phones and the clock act in, a call never leaves a
leg open, a branch uncancelled, or anything behind in the engine and the transaction layer.

A hypothesis state machine drives the fake-clock triangle of test_call_flows: the phones send
provisional responses, answer (from one dialog or two), refuse, hang up, retransmit; the caller
cancels, acknowledges, hangs up; time jumps. After each step the call tables' invariants hold;
at the end everyone hangs up, time runs out, and nothing is left anywhere.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from b2bua.calls.table import RINGING_BRANCHES, BranchState, CallState
from b2bua.sip.message import Response
from b2bua.testing.memory import Phone
from tests.unit.test_call_flows import CALLER, Triangle, ack_and_bye, config

PHONE = st.integers(min_value=0, max_value=3)  # phone 3 is Dave, the transfer target


class CallMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.t = Triangle(config())
        self.dave = Phone(self.t.network, ("127.0.0.1", 5081))  # extension 103: a target
        self.t.phones.append(self.dave)  # checked like the others at the end
        self.acked = False
        self.hung_up = False
        self.invited_at = 0.0
        self.spoke = [False, False, False, False]
        self.invited: dict[int, float] = {}
        self.answered_at: dict[int, float] = {}

    @initialize()
    def call(self) -> None:
        self.t.call()
        self.invited_at = self.t.clock.now()

    def _open_invite(self, i: int) -> bool:
        """Phone `i` may still answer its INVITE: no final yet, and it has spoken before
        Timer B (a phone silent for 64*T1 is dead to us: RFC 3261 §17.1.1.2)."""
        phone = self.t.phones[i]
        if not phone.invites or phone.invites[-1].call_id in phone.finals:
            return False
        invited = self.invited.setdefault(i, self.invited_at if i < 3 else self.t.clock.now())
        if not self.spoke[i] and self.t.clock.now() - invited >= 32.0:
            return False
        self.spoke[i] = True
        return True

    @rule(i=PHONE, status=st.sampled_from([100, 180, 183]))
    def provisional(self, i: int, status: int) -> None:
        if self._open_invite(i):
            self.t.phones[i].respond(status)
            self.t.pump()

    @rule(i=PHONE)
    def answer(self, i: int) -> None:
        if self._open_invite(i):
            self.answered_at[i] = self.t.clock.now()
            self.t.phones[i].respond(200)
            self.t.pump()

    @rule(i=PHONE)
    def answer_from_a_second_dialog(self, i: int) -> None:
        """Another phone behind phone `i`'s gateway answers too, while our INVITE transaction
        still takes 2xx responses (64*T1 after the first, RFC 6026 Timer M)."""
        phone = self.t.phones[i]
        if i in self.answered_at and self.t.clock.now() - self.answered_at[i] < 32.0:
            phone.respond(200, tag=f"{phone.tag}x")
            self.t.pump()

    @rule(i=PHONE)
    def retransmit_the_2xx(self, i: int) -> None:
        phone = self.t.phones[i]
        if phone.invites and phone.finals.get(phone.invites[-1].call_id) == 200:
            phone.respond(200)
            self.t.pump()

    @rule(i=PHONE, status=st.sampled_from([404, 480, 486, 603]))
    def refuse(self, i: int, status: int) -> None:
        if self._open_invite(i):
            self.t.phones[i].respond(status)
            self.t.pump()

    @rule(i=PHONE)
    def callee_hangs_up(self, i: int) -> None:
        phone = self.t.phones[i]
        if phone.invites:
            call_id = phone.invites[-1].call_id
            if (call_id, phone.tag) in phone.confirmed and (call_id, phone.tag) not in phone.ended:
                phone.hang_up()
                self.t.pump()

    @rule(i=st.integers(min_value=0, max_value=2), blind=st.booleans())
    def transfer_to_dave(self, i: int, blind: bool) -> None:
        """The phone in the call refers it to extension 103 (or to nobody we know)."""
        phone = self.t.phones[i]
        if not phone.invites:
            return
        call_id = phone.invites[-1].call_id
        if (call_id, phone.tag) in phone.confirmed and (call_id, phone.tag) not in phone.ended:
            phone.in_dialog("REFER", headers=[
                ("Refer-To", "<sip:103@pbx.test>" if blind else "<sip:nobody@pbx.test>")])
            self.t.pump()
            if self.dave.invites and 3 not in self.invited:
                self.invited[3] = self.t.clock.now()  # Dave's INVITE came now

    @rule()
    def caller_cancels(self) -> None:
        self.t.caller_cancels()

    @rule()
    def caller_acks(self) -> None:
        if self._caller_ok() is not None and not self.acked:
            self.acked = True
            self.t.caller_acks()

    @rule()
    def caller_hangs_up(self) -> None:
        ok = self._caller_ok()
        if ok is not None and not self.hung_up:
            assert self.t.invite is not None
            ack, bye = ack_and_bye(self.t.invite, ok, CALLER)
            if not self.acked:
                self.acked = True
                self.t.caller.send(ack)
            self.hung_up = True
            self.t.caller.send(bye)
            self.t.pump()

    @rule()
    def voicemail_ends(self) -> None:
        if self.t.media.apps:
            self.t.media.finish(self.t.media.app().call, "voicemail")
            self.t.pump()

    @rule(seconds=st.sampled_from([0.3, 2.0, 10.0, 21.0, 40.0]))
    def time_passes(self, seconds: float) -> None:
        self.t.advance(seconds)

    def _caller_ok(self) -> Response | None:
        return next((r for r in self.t.caller.responses()
                     if r.status == 200 and r.cseq.method == "INVITE"), None)

    @invariant()
    def tables_hold(self) -> None:
        for call in self.t.b2bua.engine.calls.values():
            assert call.state is not CallState.ENDED
            if call.state in (CallState.CONNECTING, CallState.ANSWERED):
                for branch in call.branches:
                    if branch is not call.winner:
                        assert branch.state not in RINGING_BRANCHES, "a loser still rings"
            if call.winner is not None:
                assert call.winner.state is BranchState.ANSWERED
        finals = self.t.caller_finals()
        assert len(set(finals)) <= 1, f"the caller got two different finals: {finals}"

    def teardown(self) -> None:
        t = self.t
        if self._caller_ok() is None:
            t.caller_cancels()
        ok = self._caller_ok()
        if ok is not None and not self.hung_up:
            assert t.invite is not None
            ack, bye = ack_and_bye(t.invite, ok, CALLER)
            if not self.acked:
                t.caller.send(ack)
            t.caller.send(bye)
            t.pump()
        t.assert_quiet()


CallMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_random_event_orders_leave_nothing_open = CallMachine.TestCase
