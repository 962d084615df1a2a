"""Calls through trunks on the fake-clock triangle: registration through the stack, calls sent
to our registered Contact, the 407 of an outbound INVITE answered once in a new transaction,
failover to the next trunk, lines (inbound 486, a device dialling out 503, a forward to the
no-answer destination, a line freed when its call ends), the number presented, and the SRTP
offer for a trunk that demands it. The whole stack runs; the carriers are scripted agents."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from b2bua.calls.records import CallRecorder
from b2bua.commands import MediaEncrypt, MediaRewrite
from b2bua.config import config_from_text
from b2bua.registrar.digest import (
    answer_challenge,
    compute_ha1,
    compute_response,
    parse_credentials,
)
from b2bua.sip.flow import Flow
from b2bua.sip.message import Request, Response, make_response
from b2bua.testing.clock import FakeClock
from b2bua.testing.media import ScriptedMedia
from b2bua.testing.memory import (
    B2bua,
    MemoryNetwork,
    Phone,
    ack_and_bye,
    build_b2bua,
    caller_invite,
)
from b2bua.trunks.service import line_token

MAIN = ("127.0.0.2", 5080)
BACKUP = ("127.0.0.3", 5080)
SECURE = ("127.0.0.4", 5061)
FROM_CARRIER = ("127.0.0.2", 5090)  # the main carrier sends its calls from here
DEVICE = ("127.0.0.5", 5072)  # extension 101's phone, dialling out
ELSEWHERE = ("127.0.0.9", 5099)  # an address no trunk is known by
WALL = 1_780_000_000.0
REALM = "carrier.test"
PASSWORD = "carrier-secret"


def config(main_lines: int = 2, backup: bool = True, credentials: bool = True) -> str:
    auth = (f'username = "0442930600"\npassword = "{PASSWORD}"\nregister = true\n'
            'register_expires = 60\n' if credentials else "")
    text = (
        '[server]\ndomain = "pbx.test"\nlisten = ["udp:127.0.0.1:5060"]\n'
        'auth_algorithms = ["MD5"]\n'
        '[[trunks]]\nname = "main"\naddress = "127.0.0.2:5080"\ninbound_from = ["127.0.0.2/32"]\n'
        'did = { "0442930600" = "100", "0442930602" = "102" }\n'
        f'{auth}lines = {main_lines}\ncaller_id = "0442930600"\nprefixes = ["0", "+"]\n'
    )
    if backup:
        text += ('[[trunks]]\nname = "backup"\naddress = "127.0.0.3:5080"\nprefixes = ["0"]\n'
                 'lines = 1\nnumber_format = "national"\n')
    text += (
        '[[trunks]]\nname = "secure"\naddress = "127.0.0.4:5061"\ntransport = "udp"\n'
        'prefixes = ["9"]\nmedia_encryption = "sdes"\n'
        '[[users]]\nextension = "100"\nname = "Alice"\nsecret = "s100"\nring_timeout = 20\n'
        '[[users.devices]]\ntype = "sip"\nlabel = "desk"\ncontact = "sip:100@127.0.0.1:5071"\n'
        '[[users]]\nextension = "101"\nname = "Bob"\nsecret = "s101"\n'
        '[[users]]\nextension = "102"\nname = "Carol"\nsecret = "s102"\n'
        'forward = { kind = "external", number = "0699887766" }\n'
        'no_answer = { kind = "voicemail" }\n'
    )
    return text


class Carrier(Phone):
    """A carrier's edge: REGISTER and INVITE need digest credentials (401 / 407); OPTIONS get
    200. New INVITEs that carry credentials are left to the test, as a Phone's are."""

    challenge_invites: bool = True
    challenges: int = 0

    def receive(self, message: Request | Response) -> None:
        if isinstance(message, Request) and message.method == "REGISTER":
            self.received.append(message)
            if not self._authorized(message, "authorization"):
                self._challenge(message, 401, "WWW-Authenticate")
                return
            contact = message.headers.get("contact") or ""
            expires = message.headers.get("expires") or "60"
            self.send(make_response(message, 200, to_tag=self.tag,
                                    headers=[("Contact", f"{contact};expires={expires}")]))
            return
        if (isinstance(message, Request) and message.method == "INVITE"
                and message.to.tag is None and self.challenge_invites
                and not self._authorized(message, "proxy-authorization")):
            self.received.append(message)
            self.challenges += 1
            self._challenge(message, 407, "Proxy-Authenticate")
            return
        super().receive(message)

    def _challenge(self, request: Request, status: int, header: str) -> None:
        nonce = secrets.token_hex(8)
        self.send(make_response(request, status, to_tag=self.tag, headers=[
            (header, f'Digest realm="{REALM}", nonce="{nonce}", qop="auth", algorithm=MD5')]))

    @staticmethod
    def _authorized(request: Request, header: str) -> bool:
        value = request.headers.get(header)
        if value is None:
            return False
        _, params = parse_credentials(value)
        ha1 = compute_ha1("MD5", params["username"], params["realm"], PASSWORD)
        expected = compute_response("MD5", ha1, params["nonce"], request.method, params["uri"],
                                    qop=params.get("qop"), nc=params.get("nc"),
                                    cnonce=params.get("cnonce"))
        return params["response"] == expected and params["uri"] == request.request_uri_text


class Office:
    """The B2BUA with three trunks (main, backup, secure), Alice's desk phone (100), Bob's
    phone dialling out (101), Carol (102) forwarded to her mobile."""

    def __init__(self, text: str | None = None) -> None:
        self.network = MemoryNetwork()
        self.clock = FakeClock(1000.0)
        self.media = ScriptedMedia()
        self.b2bua: B2bua = build_b2bua(config_from_text(text or config()), self.network,
                                        wall_clock=lambda: WALL, media=self.media,
                                        clock=self.clock, seed=b"office")
        self.main = Carrier(self.network, MAIN)
        self.backup = Carrier(self.network, BACKUP)
        self.backup.challenge_invites = False
        self.secure = Phone(self.network, SECURE)
        self.desk = Phone(self.network, ("127.0.0.1", 5071))
        self.device = Phone(self.network, DEVICE)
        self.inbound = Phone(self.network, FROM_CARRIER)

    @property
    def trunks(self) -> Any:
        return self.b2bua.trunks.trunks

    def pump(self) -> None:
        self.network.pump()

    def advance(self, seconds: float) -> None:
        self.b2bua.advance(seconds)
        self.pump()

    def lines(self, name: str) -> int:
        return int(self.trunks.lines[name].in_use)

    def call_in(self, did: str = "0442930600", caller: str = "0611223344") -> Request:
        """The main carrier sends a call for `did`."""
        invite = caller_invite(did, FROM_CARRIER, caller)
        self.inbound.send(invite)
        self.pump()
        return invite

    def dial_out(self, number: str) -> Request:
        """Bob's phone dials `number`: 407 from us, then the INVITE with credentials."""
        first = caller_invite(number, DEVICE, "101")
        self.device.send(first)
        self.pump()
        challenge = next(r for r in self.device.responses()
                         if r.status == 407 and r.call_id == first.call_id)
        value = answer_challenge(challenge.headers.get("proxy-authenticate") or "",
                                 username="101", password="s101", method="INVITE",
                                 uri=first.request_uri_text, cnonce="cn")
        headers = [(n, v) for n, v in first.headers if n.lower() not in ("via", "cseq")]
        second = Request("INVITE", first.request_uri_text, [
            ("Via", f"SIP/2.0/UDP {DEVICE[0]}:{DEVICE[1]};branch=z9hG4bK-{secrets.token_hex(6)}"),
            *headers, ("CSeq", "2 INVITE"), ("Proxy-Authorization", value)], first.body)
        self.device.send(second)
        self.pump()
        return second

    def finals(self, phone: Phone, invite: Request) -> list[int]:
        return [r.status for r in phone.responses() if r.call_id == invite.call_id
                and r.cseq == invite.cseq and r.status >= 200]

    def ok(self, phone: Phone, invite: Request) -> Response:
        return next(r for r in phone.responses() if r.call_id == invite.call_id
                    and r.cseq.method == "INVITE" and r.status == 200)

    def hang_up(self, phone: Phone, invite: Request, source: tuple[str, int]) -> None:
        ack, bye = ack_and_bye(invite, self.ok(phone, invite), source)
        bye.headers.set("CSeq", f"{invite.cseq.number + 1} BYE")
        ack.headers.set("CSeq", f"{invite.cseq.number} ACK")
        phone.send(ack)
        phone.send(bye)
        self.pump()

    def records(self) -> list[Any]:
        recorder = self.b2bua.stack.recorder
        assert isinstance(recorder, CallRecorder)
        recorder.flush()
        return list(reversed(recorder.last(100)))

    def assert_quiet(self) -> None:
        self.advance(300)
        engine = self.b2bua.engine
        assert not engine.calls and not engine.branches and not engine.trunking.calls
        assert all(lines.in_use == 0 for lines in self.trunks.lines.values())


def invites_to(carrier: Phone) -> list[Request]:
    """The new INVITEs a carrier got, without retransmissions."""
    seen: dict[tuple[str, int], Request] = {}
    for r in carrier.requests("INVITE"):
        if r.to.tag is None:
            seen.setdefault((r.call_id, r.cseq.number), r)
    return list(seen.values())


# -- registration through the stack -------------------------------------------------------------


def test_the_server_registers_with_digest_refreshes_and_unregisters() -> None:
    o = Office()
    o.b2bua.start_trunks()
    o.pump()
    registers = o.main.requests("REGISTER")
    assert [r.cseq.number for r in registers] == [1, 2]
    assert "authorization" not in registers[0].headers
    assert "authorization" in registers[1].headers
    contact = registers[1].headers.get("contact") or ""
    assert contact == f"<sip:0442930600@127.0.0.1:5060;line={line_token(o.trunks.specs['main'])}>"
    status = {row.name: row.to_json() for row in o.trunks.status()}
    assert status["main"]["registered"] is True and status["backup"]["registered"] is None
    o.advance(31)  # half of the 60 s granted
    assert [r.cseq.number for r in o.main.requests("REGISTER")] == [1, 2, 3, 4]
    assert o.trunks.registrations["main"].registered
    o.b2bua.trunks.stop(o.clock.now())
    o.b2bua.stack.flush()
    o.pump()
    last = o.main.requests("REGISTER")[-1]
    assert last.headers.get("expires") == "0" and "authorization" in last.headers
    assert not o.trunks.registrations["main"].registered


def test_a_call_to_our_registered_contact_comes_from_the_trunk_whatever_its_source() -> None:
    o = Office()
    stranger = Phone(o.network, ELSEWHERE)
    token = line_token(o.trunks.specs["main"])
    invite = caller_invite("0442930600", ELSEWHERE, "0611223344")
    invite.request_uri = Request("INVITE", f"sip:0442930600@127.0.0.1:5060;line={token}",
                                 []).request_uri
    invite.headers.set("To", "<sip:0442930602@carrier.test>")  # the DID, in To
    stranger.send(invite)
    o.pump()
    assert not any(r.status == 407 for r in stranger.responses())
    (call,) = o.b2bua.engine.calls.values()
    assert call.callee == "102" and call.trunk.name == "main"
    assert o.lines("main") == 2, "Carol's forward leaves by the trunk too"
    # Without our line parameter, the same source is a device that must authenticate.
    other = caller_invite("0442930600", ELSEWHERE, "0611223344")
    stranger.send(other)
    o.pump()
    assert o.finals(stranger, other) == [407]


# -- outbound: challenge, failover ----------------------------------------------------------------


def test_the_carriers_407_is_answered_once_in_a_new_transaction() -> None:
    o = Office()
    call = o.dial_out("06.12.34.56.78")
    first, second = invites_to(o.main)
    # RFC 3261 §8.1.3.5 / §22.2: a new transaction, CSeq + 1, same Call-ID, From and To.
    assert first.via.branch != second.via.branch
    assert (first.cseq.number, second.cseq.number) == (1, 2)
    assert first.call_id == second.call_id
    assert first.headers.get("from") == second.headers.get("from")
    assert first.headers.get("to") == second.headers.get("to")
    assert "proxy-authorization" not in first.headers
    assert Carrier._authorized(second, "proxy-authorization")
    assert str(second.request_uri) == "sip:+33612345678@127.0.0.2:5080"
    assert second.headers.get("from", "").startswith("<sip:+33442930600@pbx.test>;tag=")
    assert second.headers.get("p-asserted-identity") == "<sip:+33442930600@pbx.test>"
    assert o.main.requests("ACK"), "the 407 is acknowledged by its transaction"
    assert o.lines("main") == 1
    o.main.respond(180, second)
    o.main.respond(200, second)
    o.pump()
    assert o.finals(o.device, call) == [200]
    ack = [r for r in o.main.requests("ACK") if r.cseq.number == 2]
    assert ack, "the 2xx of the second INVITE is ACKed with its CSeq"
    o.hang_up(o.device, call, DEVICE)
    bye = o.main.requests("BYE")
    assert bye and bye[0].cseq.number == 3
    assert o.lines("main") == 0
    assert o.records()[-1].outcome == "answered"
    o.assert_quiet()


def test_a_second_challenge_fails_the_call_clearly() -> None:
    o = Office()
    with refusing(True):
        call = o.dial_out("0612345678")
    assert len(invites_to(o.main)) == 2, "answered once, not again"
    assert o.finals(o.device, call) == [403]
    final = next(r for r in o.device.responses() if r.status == 403)
    assert final.headers.get("reason") == \
        'SIP;cause=407;text="trunk main refused our credentials"'
    record = o.records()[-1]
    assert "trunk main refused our credentials (407 Proxy Authentication Required)" in \
        record.trace
    assert not invites_to(o.backup), "refused credentials are not a reason to fail over"
    o.assert_quiet()


@pytest.mark.parametrize("how", ["503", "408", "silence"])
def test_the_call_moves_to_the_next_trunk(how: str) -> None:
    o = Office()
    o.main.challenge_invites = False
    call = o.dial_out("0612345678")
    (first,) = invites_to(o.main)
    assert o.lines("main") == 1 and o.lines("backup") == 0
    if how == "silence":
        o.main.receive = lambda message: o.main.received.append(message)  # type: ignore[method-assign]
        o.advance(32.5)  # Timer B
    else:
        o.main.respond(int(how), first)
        o.pump()
    (moved,) = invites_to(o.backup)
    assert moved.call_id != first.call_id, "a new branch: a new dialog"
    assert str(moved.request_uri) == "sip:0612345678@127.0.0.3:5080"  # backup is national
    assert moved.headers.get("from", "").startswith('"Bob" <sip:101@pbx.test>;tag=')
    assert o.lines("main") == 0 and o.lines("backup") == 1
    o.backup.respond(200, moved)
    o.pump()
    assert o.finals(o.device, call) == [200]
    o.hang_up(o.device, call, DEVICE)
    assert o.lines("backup") == 0
    what = {"503": "503 Service Unavailable", "408": "408 Request Timeout",
            "silence": "no response"}[how]
    assert f"trunk main: {what}, trying trunk backup" in o.records()[-1].trace
    o.assert_quiet()


def test_when_every_trunk_fails_the_caller_hears_it() -> None:
    o = Office()
    o.main.challenge_invites = False
    call = o.dial_out("0612345678")
    o.main.respond(503, invites_to(o.main)[0])
    o.pump()
    o.backup.respond(503, invites_to(o.backup)[0])
    o.pump()
    assert o.finals(o.device, call) == [480]
    trace = o.records()[-1].trace
    assert "trunk main: 503 Service Unavailable, trying trunk backup" in trace
    assert "trunk backup: 503 Service Unavailable, no other trunk" in trace
    o.assert_quiet()


def test_a_busy_callee_is_the_callees_answer_not_a_failover() -> None:
    o = Office()
    o.main.challenge_invites = False
    call = o.dial_out("0612345678")
    o.main.respond(486, invites_to(o.main)[0])
    o.pump()
    assert o.finals(o.device, call) == [486] and not invites_to(o.backup)
    assert o.lines("main") == 0
    o.assert_quiet()


# -- lines -----------------------------------------------------------------------------------


def test_a_call_beyond_the_lines_is_refused_and_a_line_frees_when_a_call_ends() -> None:
    o = Office(config(main_lines=2, backup=False))
    calls = [o.call_in() for _ in range(2)]
    assert len(o.desk.invites) == 2 and o.lines("main") == 2
    third = o.call_in()
    assert o.finals(o.inbound, third) == [486]
    assert len(o.desk.invites) == 2
    assert o.records()[-1].trace[-1] == "no free line"
    # Bob dials out: no line either.
    out = o.dial_out("0612345678")
    assert o.finals(o.device, out) == [503] and not invites_to(o.main)
    assert o.records()[-1].trace[-1] == "no free line"
    # One call ends: its line is free again.
    o.desk.respond(200, o.desk.invites[0])
    o.pump()
    o.hang_up(o.inbound, calls[0], FROM_CARRIER)
    assert o.lines("main") == 1
    fourth = o.call_in()
    assert len(o.desk.invites) == 3 and o.finals(o.inbound, fourth) == []
    assert o.lines("main") == 2
    for ringing in o.desk.invites[1:]:
        o.desk.respond(486, ringing)
    o.pump()
    assert o.finals(o.inbound, calls[1]) == [486] and o.finals(o.inbound, fourth) == [486]
    o.assert_quiet()


def test_a_forward_with_no_free_line_takes_the_no_answer_destination() -> None:
    o = Office(config(main_lines=2, backup=False, credentials=False))
    o.main.challenge_invites = False
    o.call_in()  # line 1: Alice's desk rings
    forwarded = o.call_in("0442930602")  # line 2: Carol's forward needs line 3
    assert not invites_to(o.main)
    assert o.finals(o.inbound, forwarded) == [200]  # voicemail answers
    app = o.media.app()
    assert app.extension == "102"
    o.hang_up(o.inbound, forwarded, FROM_CARRIER)
    assert "no free line" in o.records()[-1].trace
    o.desk.respond(486, o.desk.invites[0])
    o.pump()
    o.assert_quiet()


def test_a_forward_keeps_the_original_caller_through_the_trunk() -> None:
    o = Office(config(credentials=False))
    o.main.challenge_invites = False
    forwarded = o.call_in("0442930602", caller="0611223344")
    (invite,) = invites_to(o.main)
    assert o.lines("main") == 2, "the inbound call and its forward each hold a line"
    assert invite.headers.get("from", "").startswith('"Caller" <sip:+33611223344@pbx.test>;tag=')
    assert invite.headers.get("p-asserted-identity") == "<sip:+33611223344@pbx.test>"
    assert (invite.headers.get("diversion") or "").startswith("<sip:102@pbx.test>")
    o.main.respond(200, invite)
    o.pump()
    o.hang_up(o.inbound, forwarded, FROM_CARRIER)
    assert o.lines("main") == 0
    o.assert_quiet()


# -- SRTP ------------------------------------------------------------------------------------


def test_a_trunk_that_demands_srtp_gets_the_srtp_offer_and_its_leg_the_mode() -> None:
    o = Office()
    call = o.dial_out("9123")
    (invite,) = invites_to(o.secure)
    assert b"RTP/SAVP" in invite.body and b"a=crypto:" in invite.body
    o.secure.respond(200, invite)
    o.pump()
    commands = o.media.commands
    encrypt = next(i for i, c in enumerate(commands) if isinstance(c, MediaEncrypt))
    assert commands[encrypt] == MediaEncrypt(commands[encrypt].call, "b", "sdes")
    answer = next(i for i, c in enumerate(commands)
                  if isinstance(c, MediaRewrite) and c.leg == "b" and i > encrypt)
    assert answer > encrypt, "the mode is set before the answer is read"
    assert o.finals(o.device, call) == [200]
    o.hang_up(o.device, call, DEVICE)
    o.assert_quiet()


# -- property: whatever the carriers answer, no line is ever lost ------------------------------


@contextmanager
def refusing(refuse: bool) -> Iterator[None]:
    """While inside, the carriers refuse every credentials."""
    original = Carrier._authorized
    if refuse:
        Carrier._authorized = staticmethod(lambda request, header: False)  # type: ignore[method-assign]
    try:
        yield
    finally:
        Carrier._authorized = staticmethod(original)  # type: ignore[method-assign]


def cancel_of(invite: Request) -> Request:
    return Request("CANCEL", invite.request_uri_text, [
        ("Via", invite.headers.get("via") or ""), ("Max-Forwards", "70"),
        ("From", invite.headers.get("from") or ""), ("To", invite.headers.get("to") or ""),
        ("Call-ID", invite.call_id), ("CSeq", f"{invite.cseq.number} CANCEL")])


MAIN_DOES = st.sampled_from(["answer", "busy", "unavailable", "silent", "challenge", "refuse",
                             "cancel"])
BACKUP_DOES = st.sampled_from(["answer", "busy", "unavailable", "silent"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(calls=[("cancel", "answer"), ("silent", "silent"), ("refuse", "answer")])
@example(calls=[("unavailable", "busy"), ("challenge", "answer"), ("unavailable", "silent")])
@given(calls=st.lists(st.tuples(MAIN_DOES, BACKUP_DOES), min_size=1, max_size=3))
def test_every_call_gets_an_answer_and_gives_its_lines_back(calls: list[tuple[str, str]]) -> None:
    o = Office()
    for main_does, backup_does in calls:
        o.main.challenge_invites = main_does in ("challenge", "refuse")
        with refusing(main_does == "refuse"):
            call = o.dial_out("0612345678")
        for carrier, does in ((o.main, main_does), (o.backup, backup_does)):
            pending = [i for i in carrier.invites if i.call_id not in carrier.finals]
            if not pending or o.finals(o.device, call):
                break
            invite = pending[-1]
            if does in ("answer", "challenge"):
                carrier.respond(200, invite)
            elif does == "busy":
                carrier.respond(486, invite)
            elif does == "unavailable":
                carrier.respond(503, invite)
            elif does == "silent":
                o.advance(33)  # Timer B
            else:
                carrier.respond(180, invite)
                o.pump()
                o.device.send(cancel_of(call))
            o.pump()
        final = o.finals(o.device, call)
        assert len(final) == 1, (calls, final)
        if final == [200]:
            o.hang_up(o.device, call, DEVICE)
        o.advance(40)
        assert o.lines("main") == 0 and o.lines("backup") == 0, calls
        for carrier in (o.main, o.backup):
            assert not carrier.open_dialogs(), calls
    o.assert_quiet()


# -- addresses -----------------------------------------------------------------------------------


def test_our_contact_names_a_real_interface_when_we_listen_on_every_one() -> None:
    from b2bua.addressing import Local
    from b2bua.calls.trunking import make_trunks
    from b2bua.tokens import TokenSource
    from b2bua.transport.manager import LocalAddress
    from b2bua.trunks.model import TrunkSpec

    class Everywhere:
        def local_for(self, flow: Flow) -> LocalAddress:
            return LocalAddress(flow.transport, "0.0.0.0", 5060)

    asked: list[str] = []

    def source_for(host: str) -> str | None:
        asked.append(host)
        return "192.0.2.7"

    spec = TrunkSpec("c", "198.51.100.9", 5080, transport="tcp", username="0442930600",
                     password="p", register=True)
    trunks = make_trunks((spec,), Local(Everywhere(), TokenSource(b"x")), TokenSource(b"y"),
                         "pbx.test", source_for=source_for)
    assert trunks.contact("c") == \
        f"<sip:0442930600@192.0.2.7:5060;transport=tcp;line={line_token(spec)}>"
    assert asked == ["198.51.100.9"]


def test_a_static_contact_is_reached_over_its_devices_transport() -> None:
    from b2bua.registrar import users_from_config
    from b2bua.registrar.location import static_flow
    from b2bua.sip.uri import parse_sip_uri

    text = config() + ('[[users.devices]]\ntype = "teams"\nlabel = "gw"\n'
                       'contact = "sip:gw@127.0.0.4:5061"\ntransport = "tls"\n')
    (user,) = [u for u in users_from_config(config_from_text(text)) if u.extension == "102"]
    (device,) = user.devices
    assert device.transport == "tls"
    assert static_flow(parse_sip_uri("sip:gw@127.0.0.4:5061"), device.transport).transport == "tls"
    assert static_flow(parse_sip_uri("sip:gw@127.0.0.4;transport=udp"), "tls").transport == "udp"
    assert static_flow(parse_sip_uri("sips:gw@127.0.0.4"), "udp") == Flow("tls", "127.0.0.4", 5061)
