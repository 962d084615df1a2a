"""Calls through trunks, for the call engine: which trunk, lines, digest challenges, failover,
the number presented, and each leg's media encryption (docs/trunks.md).

Theory of operation
-------------------
The engine calls in here at a few places only: a new INVITE (is it from a trunk, by the `line`
parameter of the Contact we registered there; does the trunk have a free line), routing to an
external number (`plan`), a final failure or a timeout of a branch that goes to a trunk
(`final_input`, `failed_input`: which branch input it is), the two branch actions of the
table's trunk block (ANSWER_CHALLENGE, FAIL_OVER), a branch's answer (`won`) and the call's
END (`call_ended`: its lines are given back). State changes stay the tables' business
(b2bua.calls.table): this module classifies and acts, it never sets a state.

- A trunk is chosen by its `prefixes` and its state (b2bua.trunks.routing); the call holds a
  line of it from the first INVITE on (key `<call>/out`; an inbound call holds its trunk's line
  under the call's key) until the branch fails, the call moves to another trunk, or it ends.
- A 401/407 to a trunk branch is answered once with the trunk's credentials, in a new client
  transaction (RFC 3261 §22.2: new Via branch, CSeq + 1, same Call-ID, From and To); a second
  challenge fails the branch with 403 and a Reason that says so.
- A 503, a 408 or a transport failure moves the call to the next trunk that takes the number
  (a new branch, a new dialog), until none is left; the call record says what happened.
- The number presented (From and P-Asserted-Identity) is the trunk's `caller_id`, unless the
  call is a forward that keeps its original caller; written in the trunk's number format.
- A leg's `media_encryption` (the trunk's, or the device's) reaches the media port: the caller's
  with MediaOpen, a callee's when its branch wins (MediaEncrypt); a callee that must have SRTP
  is sent the SRTP form of the offer (MediaOpened.secure_offer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from b2bua.calls.directory import Trunk, normalize_number
from b2bua.calls.model import Branch, Call, Plan, Target
from b2bua.calls.table import BranchInput, CallState
from b2bua.commands import MediaEncrypt, MediaOpen
from b2bua.sip.dialog import ClientInvite
from b2bua.sip.errors import SipParseError
from b2bua.sip.flow import Flow
from b2bua.sip.message import Request, Response
from b2bua.sip.uri import SipUri
from b2bua.trunks.digest import ChallengeError, choose_challenges
from b2bua.trunks.model import TrunkSpec
from b2bua.trunks.requests import with_credentials
from b2bua.trunks.routing import candidates, fails_over, format_number, presented_number
from b2bua.trunks.service import Trunks, line_token

if TYPE_CHECKING:
    from b2bua.addressing import Local
    from b2bua.calls.engine import CallEngine
    from b2bua.calls.events import MediaOpened
    from b2bua.tokens import TokenSource

__all__ = ["NO_FREE_LINE", "NO_TRUNK", "TrunkCall", "Trunking", "make_trunks"]

log = logging.getLogger(__name__)

NO_FREE_LINE = "no free line"
NO_TRUNK = "no trunk configured"
_SEPARATORS = str.maketrans("", "", " \t.-/()")
_AUTHORIZATION = frozenset({"via", "cseq", "authorization", "proxy-authorization"})
MAX_CHALLENGES = 3  # stale nonces answered again, within reason


def make_trunks(specs: tuple[TrunkSpec, ...], local: Local, tokens: TokenSource,
                domain: str, source_for: Callable[[str], str | None] | None = None) -> Trunks:
    """The server's `Trunks`: our Contact at a trunk is our address on the trunk's flow. When
    we listen on every interface (0.0.0.0, ::), `source_for(address)` names the interface
    address that reaches the trunk: a carrier cannot send calls to 0.0.0.0."""

    def contact_for(spec: TrunkSpec) -> str:
        flow = trunks.flow(spec.name)
        hostport = local.hostport(flow)
        host, _, port = hostport.rpartition(":")
        if host.strip("[]") in ("0.0.0.0", "::") and source_for is not None:
            found = source_for(flow.host)
            if found is not None:
                hostport = f"[{found}]:{port}" if ":" in found else f"{found}:{port}"
        transport = "" if spec.transport == "udp" else f";transport={spec.transport}"
        return f"sip:{spec.username or 'b2bua'}@{hostport}{transport}"

    trunks = Trunks(specs, contact_for=contact_for, from_uri=f"sip:b2bua@{domain}",
                    random_token=lambda: tokens.token(6))
    return trunks


class HasTrunks(Protocol):
    """A directory's trunks (one company's), or every tenant's (b2bua.tenants.Tenants)."""

    @property
    def trunks(self) -> Sequence[Trunk]: ...


@dataclass(eq=False, slots=True)
class TrunkCall:
    """What a call holds of the trunks, and where its external number may go next."""

    inbound: str | None = None  # the trunk whose line the caller's leg holds
    outbound: str | None = None  # the trunk whose line the current external branch holds
    number: str = ""  # the external number, as the route gave it
    keep_original: bool = False  # a forward: the original caller is presented
    private: bool = False  # a bounce's private call
    remaining: list[TrunkSpec] = field(default_factory=list)  # trunks still to try
    extra: list[tuple[str, str]] = field(default_factory=list)  # the plan's headers
    secure_offer: bytes = b""  # the offer in SRTP, for a callee that must have it
    failure: str = ""  # why the last trunk branch failed without a response


class Trunking:
    """The engine's trunk logic (see the module docstring). One per engine."""

    def __init__(self, trunks: Trunks) -> None:
        self.trunks = trunks
        self.calls: dict[str, TrunkCall] = {}

    # ================================================================ inbound
    def by_line(self, directory: HasTrunks, request: Request) -> Trunk | None:
        """The trunk an INVITE was sent to through the Contact we registered there (its
        Request-URI carries our `line` parameter), whatever its source address."""
        uri = request.request_uri
        if not isinstance(uri, SipUri):
            return None
        line = uri.params.get("line")
        if not line:
            return None
        for name in self.trunks.registrations:
            if line_token(self.trunks.specs[name]) == line:
                return _trunk_named(directory, name)
        return None

    def dialled(self, request: Request, dialled: str) -> str:
        """The number a trunk's caller dialled: a carrier that sends to our registered Contact
        (whose user part is our account name) names the number dialled in the To header."""
        uri = request.request_uri
        if not isinstance(uri, SipUri) or not uri.params.get("line"):
            return dialled
        try:
            to = request.to.uri
        except SipParseError:  # a To we cannot read: the Request-URI's user stands
            return dialled
        user = to.user_unescaped if isinstance(to, SipUri) else None
        if user and user.lstrip("+").isdigit():
            return user
        return dialled

    def take_inbound_line(self, call: Call) -> bool:
        """A line of the caller's trunk for `call`; False when every line is busy."""
        trunk = call.trunk
        if trunk is None or trunk.name not in self.trunks.lines:
            return True
        if not self.trunks.acquire_line(trunk.name, call.key, "inbound"):
            log.info("call %s: trunk %s has no free line", call.key, trunk.name)
            return False
        self._state(call).inbound = trunk.name
        return True

    # ================================================================ media encryption
    def media_open(self, engine: CallEngine, call: Call, flow: Flow) -> MediaOpen:
        """The MediaOpen of a new call: the caller's leg with its own `media_encryption`."""
        request = call.a_request
        music = engine._music_of(call, call.callee)
        directory = call.tenant.directory
        if not directory.srtp_configured:
            return MediaOpen(call.key, request.body, music, flow.host)
        mode = "optional"
        if call.trunk is not None:
            spec = self.trunks.specs.get(call.trunk.name)
            mode = spec.media_encryption if spec is not None else "optional"
        else:
            mode = directory.caller_encryption(call.caller, flow, _Scoped(engine, call),
                                               engine.wall_clock())
        return MediaOpen(call.key, request.body, music, flow.host, mode, True)

    def media_opened(self, call: Call, event: MediaOpened) -> None:
        if event.secure_offer:
            self._state(call).secure_offer = event.secure_offer

    def offer_for(self, call: Call, target: Target) -> bytes:
        """The offer a branch's INVITE carries: the SRTP one for a callee that must have it."""
        if target.encryption == "sdes":
            state = self.calls.get(call.key)
            if state is not None and state.secure_offer:
                return state.secure_offer
        return call.b_offer

    def won(self, engine: CallEngine, call: Call, branch: Branch) -> None:
        """A branch answered: the leg takes its callee's `media_encryption` (before its answer
        is read), and a trunk that answers is alive."""
        target = branch.target
        if target.trunk is not None:
            self.trunks.call_succeeded(target.trunk)
        if target.encryption != "optional" and engine.media.value != "none":
            engine.outbox.append(MediaEncrypt(call.key, "b", target.encryption))

    # ================================================================ outbound
    def plan(self, engine: CallEngine, call: Call, number: str, diverted_from: str | None,
             private: bool, ring_timeout: float | None) -> Plan | str:
        """The plan of a call to external `number` through the first trunk that takes it and
        has a free line (holding that line), or why there is none."""
        directory = call.tenant.directory
        if not directory.trunk_specs:
            return NO_TRUNK
        self._release_outbound(call)
        cc = directory.country_code
        dialled = number.translate(_SEPARATORS)
        trunks = self.trunks
        # The call's company's trunks only (each tenant's are named NAME@DOMAIN).
        chosen = candidates(dialled, [trunks.specs.get(s.name, s) for s in directory.trunk_specs],
                            is_up=trunks.is_up, has_free_line=trunks.has_free_line,
                            canonical=normalize_number(number, cc))
        if not chosen.trunks:
            reason = chosen.reason or NO_TRUNK
            log.info("call %s: %s for %s", call.key, reason, number)
            return reason
        extra = engine._diversion(call, diverted_from) if diverted_from else []
        if private:
            extra += [("Privacy", "id"),
                      ("P-Asserted-Identity", f"<sip:{call.caller}@{call.tenant.domain}>")]
        state = self._state(call)
        state.number = number
        state.keep_original = diverted_from is not None
        state.private = private
        state.extra = extra
        state.remaining = list(chosen.trunks)
        spec = self._next_trunk(call, state)
        if spec is None:
            return NO_FREE_LINE
        target = self._target(engine, call, state, spec)
        return Plan([target], ring_timeout, extra, private,
                    _trunk_named(directory, spec.name))

    def _next_trunk(self, call: Call, state: TrunkCall) -> TrunkSpec | None:
        """The next trunk to try whose line we could take (it is then held)."""
        while state.remaining:
            spec = state.remaining.pop(0)
            if self.trunks.acquire_line(spec.name, _out(call), "outbound"):
                state.outbound = spec.name
                return spec
        return None

    def _target(self, engine: CallEngine, call: Call, state: TrunkCall,
                spec: TrunkSpec) -> Target:
        cc = call.tenant.directory.country_code
        dialled = format_number(state.number, spec.number_format, cc)
        host = f"[{spec.host}]" if ":" in spec.host else spec.host
        params: dict[str, str | None] = {}
        if spec.transport != "udp":
            params["transport"] = spec.transport
        uri = SipUri(host, user=dialled, port=spec.port, params=params)
        identity: str | None = None
        headers: tuple[tuple[str, str], ...] = ()
        if not state.private:
            shown = presented_number(spec, call.caller, keep_original=state.keep_original,
                                     country_code=cc) if call.caller else ""
            if shown:
                domain = call.tenant.domain
                name = call.caller_name
                # The company's number is presented without a person's name.
                company = spec.caller_id is not None and not state.keep_original
                display = f'"{name}" ' if name and not company else ""
                identity = f"{display}<sip:{shown}@{domain}>"
                headers = (("P-Asserted-Identity", f"<sip:{shown}@{domain}>"),)
        return Target(uri, self.trunks.flow(spec.name), f"trunk {spec.name}", dialled,
                      f"<sip:{dialled}@{spec.hostport}>", trunk=spec.name,
                      encryption=spec.media_encryption, identity=identity, headers=headers)

    # ================================================================ branch failures
    def final_input(self, engine: CallEngine, branch: Branch, response: Response) -> BranchInput:
        """The branch input of a final failure of a trunk branch (the engine set its status
        and Reason): a challenge to answer or refused, the next trunk, or a plain REJECT."""
        name = branch.target.trunk
        assert name is not None
        status = response.status
        if status in (401, 407):
            return self._challenge_input(engine, branch, response, name)
        if fails_over(status):
            self.trunks.call_failed(name, f"{status} {response.reason} to INVITE")
            return BranchInput.TRUNK_FAILED
        self.trunks.call_succeeded(name)
        self._release(engine, branch)
        return BranchInput.REJECT

    def failed_input(self, engine: CallEngine, branch: Branch, why: str) -> BranchInput:
        """A trunk branch's INVITE timed out or its transport failed: the next trunk."""
        name = branch.target.trunk
        assert name is not None
        self.trunks.call_failed(name, f"INVITE {why}")
        state = self.calls.get(branch.call)
        if state is not None:
            state.failure = "transport failure" if "transport" in why else "no response"
        return BranchInput.TRUNK_FAILED

    def _challenge_input(self, engine: CallEngine, branch: Branch, response: Response,
                         name: str) -> BranchInput:
        spec = self.trunks.specs.get(name)
        credentials = spec.credentials if spec is not None else None
        self.trunks.call_succeeded(name)
        why: str
        if credentials is None:
            why = "asks for credentials and the trunk has none"
        else:
            try:
                challenges = choose_challenges(
                    response.headers.get_all("www-authenticate"),
                    response.headers.get_all("proxy-authenticate"))
            except ChallengeError as e:
                challenges = []
                why = f"sent a challenge we cannot answer ({e})"
            else:
                answered = ("authorization" in branch.invite.headers
                            or "proxy-authorization" in branch.invite.headers)
                stale = any(c.stale for c in challenges)
                if not answered or (stale and branch.invite.cseq.number < MAX_CHALLENGES):
                    return BranchInput.CHALLENGED
                why = "refused our credentials"
        status = response.status
        call = engine.calls.get(branch.call)
        note = f"trunk {name} {why} ({status} {response.reason})"
        log.warning("call %s: %s", branch.call, note)
        if call is not None:
            call.notes.append(note)
        # The caller must not take the carrier's challenge for ours: 403 with the cause.
        branch.status = 403
        branch.reason = f'SIP;cause={status};text="trunk {name} {why}"'
        self._release(engine, branch)
        return BranchInput.AUTH_REFUSED

    # ================================================================ branch actions
    def answer_challenge(self, engine: CallEngine, branch: Branch, response: Any) -> None:
        """ANSWER_CHALLENGE: the INVITE again with credentials, as a new client transaction
        of the same branch (RFC 3261 §22.2, §8.1.3.5)."""
        assert isinstance(response, Response)
        name = branch.target.trunk
        spec = self.trunks.specs.get(name or "")
        credentials = spec.credentials if spec is not None else None
        assert credentials is not None  # CHALLENGED is given only with credentials
        challenges = choose_challenges(response.headers.get_all("www-authenticate"),
                                       response.headers.get_all("proxy-authenticate"))
        old = branch.invite
        flow = branch.target.flow
        via, key = engine.local.via(flow)
        # §8.1.3.5: "This new request constitutes a new transaction and SHOULD have the same
        # value of the Call-ID, To, and From of the previous request, but the CSeq should
        # contain a new sequence number that is one higher than the previous."
        headers: list[tuple[str, str]] = [("Via", via)]
        for header, value in old.headers:
            lowered = header.lower()
            if lowered == "cseq":
                headers.append(("CSeq", f"{old.cseq.number + 1} INVITE"))
            elif lowered not in _AUTHORIZATION:
                headers.append((header, value))
        invite = Request("INVITE", old.request_uri, headers, old.body)
        with_credentials(invite, challenges, credentials, lambda: engine.tokens.token(8))
        if engine.branches.get(branch.key) is branch:
            del engine.branches[branch.key]
        branch.key = key
        branch.invite = invite
        branch.client = ClientInvite(invite)
        branch.status = None
        branch.reason = ""
        engine.branches[key] = branch
        log.info("call %s: trunk %s challenged the INVITE (%s): sent again with credentials",
                 branch.call, name, response.status)
        engine._send(invite, flow, owned=True)

    def fail_over(self, engine: CallEngine, branch: Branch, response: Any) -> None:
        """FAIL_OVER: the trunk could not take the call (503, 408, transport): its line is
        given back, and the next trunk that takes the number gets a new branch; with none
        left, the branch's failure is the call's as usual."""
        self._release(engine, branch)
        call = engine.calls.get(branch.call)
        if call is None or branch not in call.branches:
            return
        name = branch.target.trunk
        state = self.calls.get(call.key)
        what = (f"{response.status} {response.reason}" if isinstance(response, Response)
                else (state.failure if state is not None and state.failure else "no response"))
        spec = None
        if state is not None and call.state in (CallState.RINGING, CallState.BOUNCING):
            spec = self._next_trunk(call, state)
        if spec is None or state is None:
            note = f"trunk {name}: {what}, no other trunk"
            if state is not None and call.state in (CallState.RINGING, CallState.BOUNCING):
                log.info("call %s: %s", call.key, note)
                call.notes.append(note)
            engine._report_failure(branch, response)
            return
        note = f"trunk {name}: {what}, trying trunk {spec.name}"
        log.info("call %s: %s", call.key, note)
        call.notes.append(note)
        plan = call.plan
        assert plan is not None
        engine._start_branch(call, self._target(engine, call, state, spec), plan)

    # ================================================================ the end
    def call_ended(self, call: Call) -> None:
        """END: every line the call holds is given back."""
        state = self.calls.pop(call.key, None)
        if state is None:
            return
        if state.inbound is not None:
            self.trunks.release_line(state.inbound, call.key)
        if state.outbound is not None:
            self.trunks.release_line(state.outbound, _out(call))

    # ================================================================ helpers
    def _state(self, call: Call) -> TrunkCall:
        state = self.calls.get(call.key)
        if state is None:
            state = self.calls[call.key] = TrunkCall()
        return state

    def _release(self, engine: CallEngine, branch: Branch) -> None:
        """The line of a trunk branch that is over (failed, or moved to another trunk)."""
        state = self.calls.get(branch.call)
        name = branch.target.trunk
        if state is not None and name is not None and state.outbound == name:
            self.trunks.release_line(name, f"{branch.call}/out")
            state.outbound = None

    def _release_outbound(self, call: Call) -> None:
        state = self.calls.get(call.key)
        if state is not None and state.outbound is not None:
            self.trunks.release_line(state.outbound, _out(call))
            state.outbound = None


def _out(call: Call) -> str:
    return f"{call.key}/out"


def _trunk_named(directory: HasTrunks, name: str) -> Trunk | None:
    return next((t for t in directory.trunks if t.name == name), None)


class _Scoped:
    """The registrar's lookup for the extensions of a call's company (b2bua.tenants.names)."""

    def __init__(self, engine: CallEngine, call: Call) -> None:
        self.location = engine.location
        self.aor = call.tenant.aor

    def lookup(self, extension: str, now: float) -> Any:
        return self.location.lookup(self.aor(extension), now)

