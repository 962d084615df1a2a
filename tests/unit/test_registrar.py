"""Registrar behaviour with scripted time: RFC 3261 §10.3, RFC 5626 outbound, devices, NAT,
keep-alive, lockout, persistence."""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from b2bua.registrar import (
    DeviceSpec,
    MemoryLocationStore,
    Registrar,
    RegistrarSettings,
    SqliteLocationStore,
    UserAccount,
    build_registrar,
)
from b2bua.registrar.digest import answer_challenge, parse_credentials
from b2bua.registrar.model import Binding, LocationStore
from b2bua.sip.errors import SipParseError
from b2bua.sip.flow import Flow
from b2bua.sip.message import Request, Response, parse_message
from b2bua.store import open_database

DOMAIN = "pbx.local"
T0 = 1_700_000_000.0
SECRET = "s3cret"
UDP = Flow("udp", "192.0.2.10", 5060, None, "198.51.100.1", 5060)


class FakeRandom:
    def __init__(self) -> None:
        self._n = itertools.count(1)

    def __call__(self, size: int) -> bytes:
        return next(self._n).to_bytes(size, "big")


def users() -> list[UserAccount]:
    return [
        UserAccount(
            "1001",
            "Alice",
            SECRET,
            (
                DeviceSpec("sip", "Bureau"),
                DeviceSpec("softphone", "Mobile", username="1001-2"),
                DeviceSpec("teams", "Teams", contact="sip:1001@127.0.0.1:5090"),
            ),
        ),
        UserAccount(
            "1002",
            "Bruno",
            "other",
            (DeviceSpec("sip", "Desk 1"), DeviceSpec("sip", "Desk 2"), DeviceSpec("other", "Door")),
        ),
    ]


def make_registrar(
    store: LocationStore | None = None, accounts: Sequence[UserAccount] | None = None, **settings: object
) -> Registrar:
    base: dict[str, object] = {"domain": DOMAIN, "local_addresses": ("198.51.100.1",)}
    base.update(settings)
    return Registrar(
        RegistrarSettings(**base),  # type: ignore[arg-type]
        users() if accounts is None else accounts,
        store if store is not None else MemoryLocationStore(),
        nonce_key=b"n" * 32,
        random_bytes=FakeRandom(),
    )


class Phone:
    """A UA that registers, answering challenges like a softphone (reuses its nonce, nc+1)."""

    _ids = itertools.count(1)

    def __init__(
        self,
        registrar: Registrar,
        user: str = "1001",
        *,
        password: str = SECRET,
        contact: str | None = None,
        flow: Flow = UDP,
        instance: str | None = None,
        reg_id: int | None = None,
        outbound: bool = False,
        algorithm: str = "SHA-256",
        host: str = DOMAIN,
        auth_user: str | None = None,
        user_agent: str = "TestPhone/1.0",
    ) -> None:
        self.registrar = registrar
        self.user = user
        self.auth_user = auth_user or user
        self.password = password
        self.contact = contact or f"sip:{user}@{flow.host}:{flow.port}"
        self.flow = flow
        self.instance = instance
        self.reg_id = reg_id
        self.outbound = outbound
        self.algorithm = algorithm
        self.host = host
        self.user_agent = user_agent
        self.call_id = f"call-{next(self._ids)}@test"
        self.cseq = 0
        self.challenge: str | None = None
        self.nc = 0

    def contact_value(self, expires: int | None = None) -> str:
        value = f"<{self.contact}>"
        if self.instance:
            value += f';+sip.instance="{self.instance}"'
        if self.reg_id is not None:
            value += f";reg-id={self.reg_id}"
        if expires is not None:
            value += f";expires={expires}"
        return value

    def request(
        self,
        *,
        contacts: Sequence[str] | None = None,
        expires: int | None = None,
        authorization: str | None = None,
        extra: Sequence[tuple[str, str]] = (),
        ruri_host: str | None = None,
        to_user: str | None = None,
    ) -> Request:
        self.cseq += 1
        host = self.host
        lines = [
            f"REGISTER sip:{ruri_host or host} SIP/2.0",
            f"Via: SIP/2.0/{self.flow.transport.upper()} {self.flow.host}:{self.flow.port};"
            f"branch=z9hG4bK{self.call_id}{self.cseq}",
            f"From: <sip:{self.user}@{host}>;tag=f{self.cseq}",
            f"To: <sip:{to_user or self.user}@{host}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
            "Max-Forwards: 70",
            f"User-Agent: {self.user_agent}",
        ]
        if self.outbound:
            lines.append("Supported: outbound, path")
        for c in [self.contact_value()] if contacts is None else contacts:
            lines.append(f"Contact: {c}")
        if expires is not None:
            lines.append(f"Expires: {expires}")
        if authorization is not None:
            lines.append(f"Authorization: {authorization}")
        for name, value in extra:
            lines.append(f"{name}: {value}")
        msg = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
        assert isinstance(msg, Request)
        return msg

    def credentials(self, ruri_host: str | None = None) -> str:
        assert self.challenge is not None
        self.nc += 1
        return answer_challenge(
            self.challenge, username=self.auth_user, password=self.password, method="REGISTER",
            uri=f"sip:{ruri_host or self.host}", cnonce=f"cn{self.nc}", nc=self.nc,
        )

    def register(self, now: float, *, expires: int | None = 3600, **kwargs: object) -> Response:
        """REGISTER, answering one 401 (a stale or first challenge) with credentials."""
        for _ in range(3):
            auth = self.credentials(kwargs.get("ruri_host")) if self.challenge else None  # type: ignore[arg-type]
            resp = self.registrar.handle_register(
                self.request(expires=expires, authorization=auth, **kwargs),  # type: ignore[arg-type]
                self.flow, now,
            )
            if resp.status != 401:
                return resp
            if self.challenge is not None and "stale=true" not in (resp.headers.get("www-authenticate") or ""):
                return resp  # our credentials were refused
            self.take_challenge(resp)
        return resp

    def take_challenge(self, resp: Response) -> None:
        values = resp.headers.get_all("WWW-Authenticate")
        self.challenge = next(v for v in values if f"algorithm={self.algorithm}" in v)
        self.nc = 0


def contacts_of(resp: Response) -> list[str]:
    return resp.headers.values("contact")


# ---------------------------------------------------------------------------------------------
# Basics


def test_first_register_is_challenged_with_both_algorithms_in_order() -> None:
    reg = make_registrar()
    phone = Phone(reg)
    resp = reg.handle_register(phone.request(expires=3600), UDP, T0)
    assert resp.status == 401
    values = resp.headers.get_all("WWW-Authenticate")
    assert [parse_credentials(v)[1]["algorithm"] for v in values] == ["SHA-256", "MD5"]
    assert all(parse_credentials(v)[1]["realm"] == DOMAIN for v in values)
    assert resp.to.tag


def test_md5_only_agents_are_offered_md5_alone() -> None:
    # The "md5-only agent" quirk: Debian 12's baresip aborts on any SHA-256 challenge.
    reg = make_registrar()
    phone = Phone(reg, user_agent="baresip v1.0.0 (x86_64/linux)", algorithm="MD5")
    resp = reg.handle_register(phone.request(expires=3600), UDP, T0)
    values = resp.headers.get_all("WWW-Authenticate")
    assert [parse_credentials(v)[1]["algorithm"] for v in values] == ["MD5"]
    assert reg.counters["md5_only_agent"] == 1


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_register_then_lookup(algorithm: str) -> None:
    reg = make_registrar()
    phone = Phone(reg, algorithm=algorithm)
    resp = phone.register(T0, expires=600)
    assert resp.status == 200
    assert contacts_of(resp) == ["<sip:1001@192.0.2.10:5060>;expires=600"]
    assert resp.headers.get("Date") == "Tue, 14 Nov 2023 22:13:20 GMT"
    found = [b for b in reg.lookup("1001", T0 + 1) if not b.static]
    assert len(found) == 1
    b = found[0]
    assert (b.aor, b.username, b.contact, b.flow, b.expires_at) == (
        "1001", "1001", "sip:1001@192.0.2.10:5060", UDP, T0 + 600
    )
    assert b.user_agent == "TestPhone/1.0" and b.device == 0 and b.reachable
    assert b.call_id == phone.call_id and b.cseq == phone.cseq


def test_expires_header_default_and_clamp() -> None:
    reg = make_registrar()
    phone = Phone(reg)
    assert contacts_of(phone.register(T0, expires=None)) == [
        "<sip:1001@192.0.2.10:5060>;expires=3600"
    ]
    assert contacts_of(phone.register(T0, expires=999_999)) == [
        "<sip:1001@192.0.2.10:5060>;expires=3600"
    ]
    # The contact's expires parameter wins over the header.
    resp = phone.register(T0, expires=3600, contacts=[phone.contact_value(expires=120)])
    assert contacts_of(resp) == ["<sip:1001@192.0.2.10:5060>;expires=120"]


def test_interval_too_brief() -> None:
    reg = make_registrar(min_expires=60)
    phone = Phone(reg)
    resp = phone.register(T0, expires=30)
    assert resp.status == 423
    assert resp.headers.get("Min-Expires") == "60"
    assert reg.lookup("1001", T0) == reg.static_bindings("1001")


def test_expiry_with_deadlines() -> None:
    reg = make_registrar(keepalive_interval=0)
    Phone(reg).register(T0, expires=300)
    assert reg.next_deadline() == T0 + 300
    assert reg.handle_deadline(T0 + 299) == []
    assert len(reg) == 1
    removed = reg.handle_deadline(T0 + 300)
    assert [b.contact for b in removed] == ["sip:1001@192.0.2.10:5060"]
    assert len(reg) == 0
    assert reg.next_deadline() is None
    # An expired binding is never returned, even before the deadline runs.
    Phone(reg).register(T0, expires=300)
    assert [b for b in reg.lookup("1001", T0 + 300) if not b.static] == []


def test_refresh_moves_the_deadline() -> None:
    reg = make_registrar(keepalive_interval=0)
    phone = Phone(reg)
    phone.register(T0, expires=300)
    phone.register(T0 + 200, expires=300)
    assert reg.next_deadline() == T0 + 500
    assert reg.handle_deadline(T0 + 300) == []
    assert len(reg) == 1


def test_unregister_one_contact_with_expires_zero() -> None:
    reg = make_registrar()
    phone = Phone(reg)
    phone.register(T0)
    resp = phone.register(T0 + 10, expires=0)
    assert resp.status == 200
    assert contacts_of(resp) == []
    assert len(reg) == 0


def test_fetch_without_contact() -> None:
    reg = make_registrar()
    a = Phone(reg, contact="sip:1001@192.0.2.10:5060")
    b = Phone(reg, contact="sip:1001@192.0.2.11:5060", flow=Flow("udp", "192.0.2.11", 5060))
    a.register(T0, expires=600)
    b.register(T0 + 100, expires=600)
    resp = a.register(T0 + 200, expires=None, contacts=[])
    assert resp.status == 200
    assert contacts_of(resp) == [
        "<sip:1001@192.0.2.10:5060>;expires=400",
        "<sip:1001@192.0.2.11:5060>;expires=500",
    ]
    assert len(reg) == 2


def test_contact_star_removes_all_of_the_aor() -> None:
    reg = make_registrar()
    a = Phone(reg, contact="sip:1001@192.0.2.10:5060")
    b = Phone(reg, contact="sip:1001@192.0.2.11:5060", flow=Flow("udp", "192.0.2.11", 5060))
    other = Phone(reg, "1001-2", contact="sip:1001-2@192.0.2.12:5060")
    for p in (a, b, other):
        assert p.register(T0).status == 200
    resp = a.register(T0 + 1, expires=0, contacts=["*"])
    assert resp.status == 200
    assert contacts_of(resp) == []
    # Only the AOR sip:1001@...; the device username 1001-2 is its own AOR.
    assert [x.username for x in reg.bindings("1001")] == ["1001-2"]


@pytest.mark.parametrize(
    ("contacts", "expires"),
    [(["*"], 3600), (["*"], None), (["*", "<sip:1001@192.0.2.10>"], 0)],
)
def test_contact_star_misuse_is_400(contacts: list[str], expires: int | None) -> None:
    reg = make_registrar()
    phone = Phone(reg)
    phone.register(T0)
    resp = phone.register(T0 + 1, expires=expires, contacts=contacts)
    assert resp.status == 400
    assert len(reg) == 1


def test_contact_star_out_of_order_fails() -> None:
    reg = make_registrar()
    phone = Phone(reg)
    phone.cseq = 100
    phone.register(T0)
    phone.cseq -= 5  # an old request of the same Call-ID arrives late
    assert phone.register(T0 + 1, expires=0, contacts=["*"]).status == 500
    assert len(reg) == 1


def test_same_call_id_with_lower_cseq_fails_with_500() -> None:
    reg = make_registrar()
    phone = Phone(reg)
    phone.register(T0, expires=600)
    stored = reg.bindings("1001")[0].cseq
    phone.cseq = stored - 2  # next request carries stored-1 (and the retry stored)
    resp = phone.register(T0 + 1, expires=0)
    assert resp.status == 500
    assert len(reg) == 1  # nothing changed


def test_new_call_id_replaces_regardless_of_cseq() -> None:
    reg = make_registrar()
    phone = Phone(reg)
    phone.register(T0, expires=600)
    reboot = Phone(reg)  # same contact, new Call-ID, CSeq starting over
    resp = reboot.register(T0 + 5, expires=300)
    assert resp.status == 200
    (b,) = reg.bindings("1001")
    assert b.call_id == reboot.call_id and b.expires_at == T0 + 305


def test_several_contacts_in_one_request() -> None:
    reg = make_registrar()
    phone = Phone(reg)
    resp = phone.register(
        T0, expires=600,
        contacts=["<sip:1001@192.0.2.10:5060>", "<sip:1001@192.0.2.10:5062>;expires=120;q=0.5"],
    )
    assert resp.status == 200
    assert sorted(contacts_of(resp)) == [
        "<sip:1001@192.0.2.10:5060>;expires=600",
        "<sip:1001@192.0.2.10:5062>;expires=120;q=0.5",
    ]


def test_contact_uri_comparison_is_case_insensitive_on_host() -> None:
    reg = make_registrar()
    phone = Phone(reg, contact="sip:1001@Host.Example:5060")
    phone.register(T0)
    phone.contact = "sip:1001@host.example:5060;ob"
    phone.register(T0 + 1)
    assert len(reg) == 1


# ---------------------------------------------------------------------------------------------
# Domains and identities


def test_foreign_request_uri_domain_is_403() -> None:
    reg = make_registrar()
    phone = Phone(reg, host="example.com")
    resp = reg.handle_register(phone.request(expires=60), UDP, T0)
    assert resp.status == 403


def test_ip_literal_of_ours_is_accepted() -> None:
    reg = make_registrar()
    phone = Phone(reg, host="198.51.100.1")
    assert phone.register(T0).status == 200
    # The address the request arrived on counts too.
    reg2 = make_registrar(local_addresses=())
    phone2 = Phone(reg2, host="198.51.100.1")
    assert phone2.register(T0).status == 200
    phone3 = Phone(reg2, host="203.0.113.99")
    assert reg2.handle_register(phone3.request(), UDP, T0).status == 403


def test_wildcard_listen_accepts_any_ip_literal() -> None:
    reg = make_registrar(local_addresses=("0.0.0.0",))
    phone = Phone(reg, host="203.0.113.99", flow=Flow("udp", "192.0.2.10", 5060))
    assert phone.register(T0).status == 200


def test_unknown_aor_is_404_after_authentication() -> None:
    reg = make_registrar()
    phone = Phone(reg, "1001")
    phone.register(T0)
    # Unauthenticated: a challenge, never a 404 that would reveal which extensions exist.
    stranger = Phone(reg, "7777")
    assert reg.handle_register(stranger.request(), UDP, T0).status == 401
    resp = phone.register(T0 + 1, to_user="7777")
    assert resp.status == 404


def test_registering_another_users_aor_is_403() -> None:
    reg = make_registrar()
    phone = Phone(reg, "1001")
    assert phone.register(T0, to_user="1002").status == 403


def test_device_username_registers_for_its_extension() -> None:
    reg = make_registrar()
    phone = Phone(reg, "1001-2", contact="sip:mobile@192.0.2.20:5060")
    assert phone.register(T0).status == 200
    (b,) = [b for b in reg.lookup("1001", T0) if not b.static]
    assert (b.aor, b.username, b.device) == ("1001", "1001-2", 1)
    assert reg.extension_for("1001-2") == "1001"


def test_unsupported_require_is_420() -> None:
    reg = make_registrar()
    phone = Phone(reg)
    resp = reg.handle_register(phone.request(extra=[("Require", "foo, path")]), UDP, T0)
    assert resp.status == 420
    assert resp.headers.get("Unsupported") == "foo"


def test_malformed_expires_is_400() -> None:
    reg = make_registrar()
    phone = Phone(reg)
    phone.register(T0)
    resp = phone.register(T0, expires=None, contacts=["<sip:1001@192.0.2.10>;expires=soon"])
    assert resp.status == 400


def test_non_sip_contact_is_400() -> None:
    reg = make_registrar()
    phone = Phone(reg)
    phone.register(T0)
    assert phone.register(T0, contacts=["<tel:+33123456789>"]).status == 400


def test_too_many_bindings_per_aor() -> None:
    reg = make_registrar(max_bindings_per_aor=2)
    for port in (5060, 5062):
        assert Phone(reg, contact=f"sip:1001@192.0.2.10:{port}").register(T0).status == 200
    assert Phone(reg, contact="sip:1001@192.0.2.10:5064").register(T0).status == 403


# ---------------------------------------------------------------------------------------------
# Authentication: unknown users, stale nonces, replays, lockout, INVITE


def _shape(resp: Response) -> tuple[int, list[str], list[tuple[str, ...]]]:
    names = sorted(n.lower() for n, _ in resp.headers)
    params = [tuple(sorted(parse_credentials(v)[1])) for v in resp.headers.get_all("WWW-Authenticate")]
    return resp.status, names, params


def test_unknown_user_and_wrong_password_get_the_same_answer() -> None:
    reg = make_registrar()
    wrong = Phone(reg, "1001", password="bad")
    unknown = Phone(reg, "9999", password="bad")
    r1, r2 = wrong.register(T0), unknown.register(T0)
    assert r1.status == r2.status == 401
    assert _shape(r1) == _shape(r2)
    assert reg.counters["auth_failed"] == 2


def test_stale_nonce_gets_stale_challenge_then_succeeds() -> None:
    reg = make_registrar(nonce_ttl=300)
    phone = Phone(reg)
    assert phone.register(T0).status == 200
    old_challenge = phone.challenge
    # The phone reuses its nonce after it expired: the right digest gets stale=true.
    resp = reg.handle_register(phone.request(expires=3600, authorization=phone.credentials()),
                               UDP, T0 + 400)
    assert resp.status == 401
    assert all("stale=true" in v for v in resp.headers.get_all("WWW-Authenticate"))
    phone.take_challenge(resp)
    assert phone.challenge != old_challenge
    assert phone.register(T0 + 400).status == 200
    assert reg.counters["auth_failed"] == 0


def test_nonce_count_replay_is_refused() -> None:
    reg = make_registrar()
    phone = Phone(reg)
    phone.register(T0)
    creds = phone.credentials()
    assert reg.handle_register(phone.request(authorization=creds), UDP, T0 + 1).status == 200
    replay = reg.handle_register(phone.request(authorization=creds), UDP, T0 + 2)
    assert replay.status == 401
    assert "stale=true" in (replay.headers.get("WWW-Authenticate") or "")


def test_lockout_after_repeated_failures(caplog: pytest.LogCaptureFixture) -> None:
    reg = make_registrar(lockout_failures=3, lockout_window=60, lockout_seconds=300)
    attacker_flow = Flow("udp", "203.0.113.66", 5060)
    attacker = Phone(reg, "1001", password="guess", flow=attacker_flow)
    with caplog.at_level(logging.WARNING, logger="b2bua.registrar"):
        statuses = [attacker.register(T0 + i).status for i in range(3)]
    assert statuses == [401, 401, 403]
    assert any("203.0.113.66" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)
    # Even the right password is refused from that address while locked.
    good_from_there = Phone(reg, "1001", flow=attacker_flow)
    assert good_from_there.register(T0 + 10).status == 403
    # Other sources are not affected.
    assert Phone(reg, "1001").register(T0 + 10).status == 200
    assert reg.is_locked_out("203.0.113.66", T0 + 299)
    assert Phone(reg, "1001", flow=attacker_flow).register(T0 + 303).status == 200


def test_failures_outside_the_window_do_not_add_up() -> None:
    reg = make_registrar(lockout_failures=3, lockout_window=60)
    flow = Flow("udp", "203.0.113.66", 5060)
    for i in range(6):
        assert Phone(reg, "1001", password="bad", flow=flow).register(T0 + 40 * i).status == 401
    assert not reg.is_locked_out("203.0.113.66", T0 + 240)


def test_unknown_users_count_towards_lockout() -> None:
    reg = make_registrar(lockout_failures=2)
    flow = Flow("udp", "203.0.113.67", 5060)
    assert Phone(reg, "5555", password="x", flow=flow).register(T0).status == 401
    assert Phone(reg, "5556", password="x", flow=flow).register(T0).status == 403


def _malformed(phone: Phone) -> str:
    """Right credentials but for an opaque with a non-ASCII character (`opaque="café..."`)."""
    return phone.credentials().replace('opaque="', 'opaque="café')


def test_non_ascii_opaque_is_a_counted_failure_answered_400() -> None:
    reg = make_registrar(lockout_failures=3)
    phone = Phone(reg)
    phone.take_challenge(reg.handle_register(phone.request(), UDP, T0))
    resp = reg.handle_register(phone.request(authorization=_malformed(phone)), UDP, T0 + 1)
    assert resp.status == 400 and resp.reason == "Malformed Credentials"
    assert reg.counters["auth_failed"] == reg.counters["auth_malformed"] == 1
    # The third malformed request from that source locks it out.
    assert reg.handle_register(phone.request(authorization=_malformed(phone)), UDP, T0 + 2).status == 400
    assert reg.handle_register(phone.request(authorization=_malformed(phone)), UDP, T0 + 3).status == 403
    assert reg.is_locked_out(UDP.host, T0 + 4)
    assert phone.register(T0 + 5).status == 403


def test_malformed_proxy_authorization_on_invite_is_counted() -> None:
    reg = make_registrar(lockout_failures=2)
    challenge = reg.authenticate(_invite(), T0, flow=UDP).response
    assert challenge is not None
    creds = answer_challenge(challenge.headers.get_all("Proxy-Authenticate")[0], username="1001",
                             password=SECRET, method="INVITE", uri="sip:1002@pbx.local",
                             cnonce="x").replace('opaque="', 'opaque="café')
    first = reg.authenticate(_invite(creds), T0 + 1, flow=UDP)
    assert not first.ok and first.response is not None and first.response.status == 400
    second = reg.authenticate(_invite(creds), T0 + 2, flow=UDP)
    assert second.response is not None and second.response.status == 403
    assert reg.is_locked_out(UDP.host, T0 + 3)


def _invite(authorization: str | None = None) -> Request:
    lines = [
        "INVITE sip:1002@pbx.local SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKinv1",
        "From: <sip:1001@pbx.local>;tag=a",
        "To: <sip:1002@pbx.local>",
        "Call-ID: inv-1",
        "CSeq: 1 INVITE",
        "Contact: <sip:1001@192.0.2.10:5060>",
        "Max-Forwards: 70",
    ]
    if authorization:
        lines.append(f"Proxy-Authorization: {authorization}")
    msg = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(msg, Request)
    return msg


def test_authenticate_invite_with_407() -> None:
    reg = make_registrar()
    result = reg.authenticate(_invite(), T0, flow=UDP)
    assert not result.ok and result.response is not None
    assert result.response.status == 407
    challenges = result.response.headers.get_all("Proxy-Authenticate")
    assert len(challenges) == 2 and "WWW-Authenticate" not in result.response.headers
    creds = answer_challenge(challenges[0], username="1001-2", password=SECRET, method="INVITE",
                             uri="sip:1002@pbx.local", cnonce="x")
    ok = reg.authenticate(_invite(creds), T0 + 1, flow=UDP)
    assert ok.ok and ok.username == "1001-2" and ok.extension == "1001"
    # Credentials computed for REGISTER do not work for INVITE.
    bad = answer_challenge(challenges[0], username="1001", password=SECRET, method="REGISTER",
                           uri="sip:1002@pbx.local", cnonce="y")
    assert not reg.authenticate(_invite(bad), T0 + 1, flow=UDP).ok


# ---------------------------------------------------------------------------------------------
# RFC 5626: instance ids, reg-id, flows


INSTANCE = "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"


def test_same_instance_from_a_new_port_replaces_the_binding() -> None:
    reg = make_registrar()
    phone = Phone(reg, instance=INSTANCE, contact="sip:1001@192.0.2.10:5060")
    phone.register(T0)
    moved = Flow("udp", "192.0.2.10", 40000)
    phone2 = Phone(reg, instance=INSTANCE, contact="sip:1001@192.0.2.10:40000", flow=moved)
    resp = phone2.register(T0 + 30)
    assert resp.status == 200
    (b,) = reg.bindings("1001")
    assert b.flow == moved and b.contact == "sip:1001@192.0.2.10:40000"
    assert contacts_of(resp) == [
        f'<sip:1001@192.0.2.10:40000>;expires=3600;+sip.instance="{INSTANCE}"'
    ]


def test_without_instance_a_new_contact_is_a_new_binding() -> None:
    reg = make_registrar()
    Phone(reg, contact="sip:1001@192.0.2.10:5060").register(T0)
    Phone(reg, contact="sip:1001@192.0.2.10:40000").register(T0)
    assert len(reg) == 2


def test_outbound_registration_and_flow_loss() -> None:
    reg = make_registrar(unreachable_grace=120, keepalive_interval=25)
    tcp = Flow("tcp", "192.0.2.30", 50123, 7, "198.51.100.1", 5060)
    phone = Phone(reg, instance=INSTANCE, reg_id=1, outbound=True, flow=tcp,
                  contact="sip:1001@192.0.2.30:50123;transport=tcp;ob")
    resp = phone.register(T0)
    assert resp.status == 200
    assert resp.headers.get("Require") == "outbound"
    assert resp.headers.get("Flow-Timer") == "25"
    (b,) = reg.bindings("1001")
    assert b.outbound and b.reg_id == 1
    assert reg.target_for(b) == (
        reg.target_for(b)[0], tcp
    )
    affected = reg.connection_closed(7, T0 + 10)
    assert affected == [b] and not b.reachable
    assert [x for x in reg.lookup("1001", T0 + 11) if not x.static] == []
    assert reg.lookup("1001", T0 + 11, include_unreachable=True)[0] is b
    assert reg.next_deadline() == T0 + 130
    assert reg.handle_deadline(T0 + 130) == [b]
    assert len(reg) == 0


def test_outbound_reregistration_on_a_new_flow_restores_reachability() -> None:
    reg = make_registrar()
    tcp1 = Flow("tcp", "192.0.2.30", 50123, 7)
    tcp2 = Flow("tcp", "192.0.2.30", 50999, 8)
    phone = Phone(reg, instance=INSTANCE, reg_id=1, outbound=True, flow=tcp1)
    phone.register(T0)
    reg.connection_closed(7, T0 + 1)
    phone.flow = tcp2
    assert phone.register(T0 + 2).status == 200
    (b,) = reg.bindings("1001")
    assert b.reachable and b.flow == tcp2
    assert reg.handle_deadline(T0 + 500) == []


def test_two_outbound_flows_of_one_instance_lookup_returns_one() -> None:
    reg = make_registrar()
    f1 = Flow("tcp", "192.0.2.30", 50001, 1)
    f2 = Flow("tcp", "192.0.2.30", 50002, 2)
    Phone(reg, instance=INSTANCE, reg_id=1, outbound=True, flow=f1).register(T0)
    Phone(reg, instance=INSTANCE, reg_id=2, outbound=True, flow=f2).register(T0 + 1)
    assert len(reg) == 2
    (b,) = [x for x in reg.lookup("1001", T0 + 2) if not x.static]
    assert b.reg_id == 2
    reg.connection_closed(2, T0 + 3)
    (b,) = [x for x in reg.lookup("1001", T0 + 4) if not x.static]
    assert b.reg_id == 1


def test_tcp_binding_without_outbound_is_removed_with_its_connection() -> None:
    reg = make_registrar()
    tcp = Flow("tcp", "192.0.2.31", 50200, 9)
    Phone(reg, flow=tcp, contact="sip:1001@192.0.2.31:5060;transport=tcp").register(T0)
    assert len(reg) == 1
    assert len(reg.connection_closed(9, T0 + 1)) == 1
    assert len(reg) == 0


def test_several_outbound_contacts_in_one_request_is_400() -> None:
    reg = make_registrar()
    phone = Phone(reg, instance=INSTANCE, reg_id=1, outbound=True)
    phone.register(T0)
    resp = phone.register(T0 + 1, contacts=[
        f'<sip:1001@192.0.2.10:5060>;+sip.instance="{INSTANCE}";reg-id=1',
        f'<sip:1001@192.0.2.10:5062>;+sip.instance="{INSTANCE}";reg-id=2',
    ])
    assert resp.status == 400


def test_reg_id_without_outbound_support_is_ignored() -> None:
    reg = make_registrar()
    phone = Phone(reg, instance=INSTANCE, reg_id=1, outbound=False)
    resp = phone.register(T0)
    assert resp.status == 200 and "Require" not in resp.headers
    assert not reg.bindings("1001")[0].outbound


# ---------------------------------------------------------------------------------------------
# Devices


def test_static_contacts_are_always_in_lookup() -> None:
    reg = make_registrar()
    (teams,) = reg.lookup("1001", T0 + 10**7)
    assert teams.static and teams.contact == "sip:1001@127.0.0.1:5090" and teams.device == 2
    assert teams.expires_at == math.inf
    assert reg.target_for(teams)[1] == Flow("udp", "127.0.0.1", 5090)
    assert len(reg) == 0


def test_instances_take_the_free_devices_of_a_shared_username_in_order() -> None:
    reg = make_registrar()
    a = Phone(reg, "1002", password="other", instance="<urn:uuid:a>",
              contact="sip:1002@192.0.2.40:5060", flow=Flow("udp", "192.0.2.40", 5060))
    b = Phone(reg, "1002", password="other", instance="<urn:uuid:b>",
              contact="sip:1002@192.0.2.41:5060", flow=Flow("udp", "192.0.2.41", 5060))
    c = Phone(reg, "1002", password="other", instance="<urn:uuid:c>",
              contact="sip:1002@192.0.2.42:5060", flow=Flow("udp", "192.0.2.42", 5060))
    a.register(T0, expires=600)
    b.register(T0, expires=600)
    c.register(T0, expires=3600)
    devices = {x.instance: x.device for x in reg.bindings("1002")}
    # Devices 0 and 1 register; device 2 (Door) too: three phones, three devices.
    assert devices == {"<urn:uuid:a>": 0, "<urn:uuid:b>": 1, "<urn:uuid:c>": 2}
    d = Phone(reg, "1002", password="other", instance="<urn:uuid:d>",
              contact="sip:1002@192.0.2.43:5060", flow=Flow("udp", "192.0.2.43", 5060))
    d.register(T0 + 1, expires=3600)
    assert {x.instance: x.device for x in reg.bindings("1002")}["<urn:uuid:d>"] is None
    # a comes back later with a new address: it keeps its device.
    a.flow = Flow("udp", "192.0.2.50", 5060)
    a.contact = "sip:1002@192.0.2.50:5060"
    a.register(T0 + 10, expires=600)
    assert {x.instance: x.device for x in reg.bindings("1002")}["<urn:uuid:a>"] == 0
    # b's binding expires; d's refresh takes the free device.
    reg.handle_deadline(T0 + 601)
    d.register(T0 + 602, expires=3600)
    assert {x.instance: x.device for x in reg.bindings("1002")}["<urn:uuid:d>"] == 1


def test_lookup_order_and_q() -> None:
    reg = make_registrar()
    Phone(reg, "1001-2", contact="sip:m@192.0.2.20:5060").register(T0)
    Phone(reg, "1001", contact="sip:d@192.0.2.21:5060").register(T0 + 1)
    assert [b.device for b in reg.lookup("1001", T0 + 2)] == [0, 1, 2]


# ---------------------------------------------------------------------------------------------
# NAT and targets


def test_natted_device_is_reached_through_its_flow() -> None:
    reg = make_registrar()
    public = Flow("udp", "203.0.113.5", 40001, None, "198.51.100.1", 5060)
    Phone(reg, flow=public, contact="sip:1001@192.168.1.20:5060").register(T0)
    (b,) = reg.bindings("1001")
    uri, flow = reg.target_for(b)
    assert str(uri) == "sip:1001@192.168.1.20:5060"
    assert flow == public


def test_device_listening_on_another_port_of_its_address_is_reached_there() -> None:
    reg = make_registrar()
    src = Flow("udp", "127.0.0.1", 5089, None, "127.0.0.1", 5060)
    Phone(reg, flow=src, contact="sip:1001@127.0.0.1:5071").register(T0)
    (b,) = reg.bindings("1001")
    _uri, flow = reg.target_for(b)
    assert flow == Flow("udp", "127.0.0.1", 5071, None, "127.0.0.1", 5060)


def test_tcp_device_is_reached_on_its_connection() -> None:
    reg = make_registrar()
    tcp = Flow("tcp", "192.0.2.31", 50200, 9)
    Phone(reg, flow=tcp, contact="sip:1001@192.0.2.31:5060;transport=tcp").register(T0)
    (b,) = reg.bindings("1001")
    assert reg.target_for(b)[1] == tcp


# ---------------------------------------------------------------------------------------------
# Keep-alive


def test_keepalive_marks_unreachable_then_removes_after_grace() -> None:
    reg = make_registrar(keepalive_interval=30, unreachable_grace=120)
    Phone(reg).register(T0)
    assert reg.next_deadline() == T0 + 30
    assert reg.keepalive_due(T0 + 29) == []
    (b,) = reg.keepalive_due(T0 + 30)
    assert reg.next_deadline() == T0 + 60
    reg.keepalive_result(b, True, T0 + 30.1)
    assert b.last_seen == T0 + 30.1
    (b2,) = reg.keepalive_due(T0 + 60)
    reg.keepalive_result(b2, False, T0 + 92)  # the OPTIONS transaction timed out
    assert not b.reachable
    assert [x for x in reg.lookup("1001", T0 + 93) if not x.static] == []
    assert reg.handle_deadline(T0 + 211) == []
    assert reg.handle_deadline(T0 + 212) == [b]
    assert len(reg) == 0


def test_keepalive_answer_restores_reachability() -> None:
    reg = make_registrar(keepalive_interval=30, unreachable_grace=120)
    Phone(reg).register(T0)
    (b,) = reg.keepalive_due(T0 + 30)
    reg.keepalive_result(b, False, T0 + 62)
    reg.keepalive_result(b, True, T0 + 95)
    assert b.reachable
    assert reg.handle_deadline(T0 + 300) == []
    assert len(reg) == 1


def test_no_keepalive_for_tcp_or_when_disabled() -> None:
    reg = make_registrar(keepalive_interval=30)
    Phone(reg, flow=Flow("tcp", "192.0.2.31", 50200, 9)).register(T0)
    assert reg.keepalive_due(T0 + 1000) == []
    reg0 = make_registrar(keepalive_interval=0)
    Phone(reg0).register(T0)
    assert reg0.keepalive_due(T0 + 1000) == []


def test_reregistration_restores_an_unreachable_binding() -> None:
    reg = make_registrar(keepalive_interval=30)
    phone = Phone(reg)
    phone.register(T0)
    (b,) = reg.keepalive_due(T0 + 30)
    reg.keepalive_result(b, False, T0 + 62)
    phone.register(T0 + 70)
    (b,) = reg.bindings("1001")
    assert b.reachable


# ---------------------------------------------------------------------------------------------
# Persistence


def test_store_failure_gives_500_and_changes_nothing() -> None:
    store = MemoryLocationStore()
    reg = make_registrar(store)
    phone = Phone(reg)
    phone.register(T0)
    store.fail_next = True
    resp = phone.register(T0 + 1, expires=0)
    assert resp.status == 500
    assert len(reg) == 1 and len(store.rows) == 1


def test_binding_is_stored_before_the_200() -> None:
    store = MemoryLocationStore()
    reg = make_registrar(store)
    Phone(reg).register(T0)
    (row,) = store.rows.values()
    assert row.contact == "sip:1001@192.0.2.10:5060"


def test_sqlite_round_trip(tmp_path: Path) -> None:
    conn = open_database(tmp_path)
    reg = make_registrar(SqliteLocationStore(conn))
    nat = Flow("udp", "203.0.113.5", 40001, None, "198.51.100.1", 5060)
    Phone(reg, flow=nat, contact="sip:1001@192.168.1.20:5060", instance=INSTANCE).register(T0)
    Phone(reg, "1001-2", contact="sip:m@192.0.2.20:5060").register(T0, expires=100)
    tcp = Flow("tcp", "192.0.2.30", 50123, 7, "198.51.100.1", 5060)
    Phone(reg, "1002", password="other", flow=tcp, instance="<urn:uuid:t>", reg_id=1,
          outbound=True, contact="sip:1002@192.0.2.30:50123;transport=tcp").register(T0)
    conn.close()

    conn2 = open_database(tmp_path)
    again = make_registrar(SqliteLocationStore(conn2))
    assert again.restore(T0 + 200) == 2  # the 100 s binding expired meanwhile
    (b,) = again.bindings("1001")
    assert (b.contact, b.flow, b.instance, b.device, b.user_agent) == (
        "sip:1001@192.168.1.20:5060", nat, INSTANCE, 0, "TestPhone/1.0"
    )
    assert b.expires_at == T0 + 3600 and b.reachable
    assert again.target_for(b)[1] == nat
    # TCP connections did not survive: reachable again only after it re-registers.
    (t,) = again.bindings("1002")
    assert t.flow == tcp and t.outbound and not t.reachable
    assert conn2.execute("SELECT count(*) FROM registrar_bindings").fetchone()[0] == 2


def test_device_claims_survive_a_restart(tmp_path: Path) -> None:
    conn = open_database(tmp_path)
    reg = make_registrar(SqliteLocationStore(conn))
    for name in ("a", "b"):
        Phone(reg, "1002", password="other", instance=f"<urn:uuid:{name}>",
              contact=f"sip:1002@192.0.2.4{ord(name) - 96}:5060").register(T0, expires=60)
    conn.close()
    conn2 = open_database(tmp_path)
    again = make_registrar(SqliteLocationStore(conn2))
    again.restore(T0 + 1000)
    assert len(again) == 0
    b = Phone(again, "1002", password="other", instance="<urn:uuid:b>",
              contact="sip:1002@192.0.2.99:5060")
    b.register(T0 + 1001)
    assert again.bindings("1002")[0].device == 1


def test_build_registrar_keeps_the_nonce_key(tmp_path: Path) -> None:
    class Cfg:
        class server:
            domain = DOMAIN
            auth_algorithms = ("MD5",)
            listen = ()

        class registrar:
            min_expires = 60
            max_expires = 3600
            default_expires = 3600
            nonce_ttl = 300
            keepalive_interval = 30
            unreachable_grace = 120
            lockout_failures = 10
            lockout_window = 60
            lockout_seconds = 300

        class _User:
            extension = "1001"
            name = "A"
            secret = SECRET
            devices = ()

        users = (_User,)

    conn = open_database(tmp_path)
    reg = build_registrar(Cfg, conn, now=T0, local_addresses=["198.51.100.1"])
    phone = Phone(reg, algorithm="MD5")
    assert phone.register(T0).status == 200
    conn.close()
    # After a restart the phone's nonce is still ours: no new challenge needed.
    conn2 = open_database(tmp_path)
    reg2 = build_registrar(Cfg, conn2, now=T0 + 10, local_addresses=["198.51.100.1"])
    phone.registrar = reg2
    resp = reg2.handle_register(phone.request(authorization=phone.credentials()), UDP, T0 + 10)
    assert resp.status == 200
    assert len(reg2) == 1


def test_restore_drops_bindings_of_removed_users() -> None:
    store = MemoryLocationStore()
    reg = make_registrar(store)
    Phone(reg, "1002", password="other").register(T0)
    only_alice = [u for u in users() if u.extension == "1001"]
    again = make_registrar(store, accounts=only_alice)
    assert again.restore(T0 + 1) == 0
    assert store.rows == {}


def test_config_reload_drops_bindings_of_removed_users_and_changes_secrets() -> None:
    store = MemoryLocationStore()
    reg = make_registrar(store)
    Phone(reg, "1002", password="other").register(T0)
    alice = Phone(reg, "1001")
    alice.register(T0)
    reg.set_users([UserAccount("1001", "Alice", "new-secret", users()[0].devices)])
    removed = reg.handle_deadline(T0 + 1)
    assert [b.aor for b in removed] == ["1002"]
    assert list(store.rows) == [("1001", reg.bindings("1001")[0].key)]
    assert Phone(reg, "1001", password=SECRET).register(T0 + 2).status == 401
    assert Phone(reg, "1001", password="new-secret").register(T0 + 2).status == 200


def test_binding_record_fields() -> None:
    reg = make_registrar()
    phone = Phone(reg)
    phone.register(T0, extra=[("Path", "<sip:edge.example;lr;ob>")],
                   contacts=[phone.contact_value() + ";q=0.7"])
    (b,) = reg.bindings("1001")
    assert isinstance(b, Binding)
    assert b.path == ("<sip:edge.example;lr;ob>",) and b.q == 0.7
    assert b.last_seen == T0 and b.registered_at == T0 and b.expires_in(T0 + 0.5) == 3600


# ---------------------------------------------------------------------------------------------
# Property: whatever a REGISTER carries, the registrar answers it (never raises)

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_VALUES = st.sampled_from([
    "*", "<sip:1001@192.0.2.10>", "<sip:1001@192.0.2.10>;expires=0", "<tel:+331>",
    "<sip:1001@192.0.2.10>;expires=x", "<sip:1001@192.0.2.10>;q=2", "<sip:1001@[::1]:5060>",
    '<sip:a@b>;+sip.instance="<urn:uuid:1>";reg-id=1', "<sip:a@b>;reg-id=0", "garbage <",
    "sip:1001@pbx.local", "<sips:1001@pbx.local>", "0", "3600", "99999999999", "-1", "",
    "outbound", "path", "foo", 'Digest username="1001"', "<sip:pbx.local;ob>",
])
_NAMES = st.sampled_from(["Contact", "Expires", "To", "Require", "Supported", "Authorization",
                          "Path", "CSeq", "Call-ID"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=6), st.booleans())
def test_any_register_gets_a_response(headers: list[tuple[str, str]], authed: bool) -> None:
    reg = make_registrar()
    phone = Phone(reg)
    if authed:
        phone.register(T0)
    try:
        request = phone.request(
            authorization=phone.credentials() if authed else None, extra=headers
        )
    except SipParseError:
        return  # the parser refused it: the stack answers 400 before the registrar sees it
    response = reg.handle_register(request, UDP, T0 + 1)
    assert 200 <= response.status < 600
    bytes(response)


def test_failure_windows_are_swept_even_without_any_binding() -> None:
    # A flood of bad credentials on a server where nothing registers: the lockout table is
    # bounded, and still emptied once the failures are older than the window.
    reg = make_registrar(lockout_failures=3, lockout_window=60)
    assert reg.next_deadline() is None
    for i in range(50):
        flow = Flow("udp", f"203.0.113.{i}", 5060)
        assert Phone(reg, "1001", password="bad", flow=flow).register(T0).status == 401
    due = reg.next_deadline()
    assert due is not None and due <= T0
    reg.handle_deadline(T0)
    assert reg.next_deadline() == T0 + 10  # tracked: swept every 10 s
    reg.handle_deadline(T0 + 10)
    assert reg.lockout.tracking  # the window is not over
    reg.handle_deadline(T0 + 61)
    assert not reg.lockout.tracking and reg.next_deadline() is None
