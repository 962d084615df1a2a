"""The sans-IO trunk layer: client digest, outbound registration on a fake clock, OPTIONS
health with hysteresis, lines, trunk choice and failover, number formats, status rows."""

from __future__ import annotations

import itertools
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b2bua.registrar.digest import compute_ha1, compute_response
from b2bua.sip.message import Request, Response
from b2bua.testing.clock import FakeClock
from b2bua.trunks import (
    Credentials,
    Lines,
    OptionsPing,
    Registration,
    RegistrationState,
    Trunks,
    TrunkSpec,
    fails_over,
    format_number,
    presented_number,
)
from b2bua.trunks.digest import ChallengeError, authorization, choose_challenges, parse_challenge
from b2bua.trunks.registration import refresh_delay
from b2bua.trunks.service import line_token

CARRIER = TrunkSpec(
    "carrier", "sip.carrier.example", 5080, username="0442930600", password="s3cret",
    register=True, register_expires=600,
)
CONTACT = "<sip:0442930600@192.0.2.1:5060;line=x>"
CHALLENGE = 'Digest realm="carrier", nonce="abc123", qop="auth", algorithm=MD5, opaque="op"'


def tokens() -> object:
    counter = itertools.count(1)
    return lambda: f"t{next(counter)}"


def registration(**kwargs: object) -> Registration:
    return Registration(CARRIER, contact=CONTACT, random_token=tokens(),  # type: ignore[arg-type]
                        random_fraction=lambda: 1.0, **kwargs)  # type: ignore[arg-type]


def reply(request: Request, status: int, *headers: tuple[str, str]) -> Response:
    return Response(status, headers=[
        ("From", request.headers.get("from") or ""), ("To", request.headers.get("to") or ""),
        ("Call-ID", request.call_id), ("CSeq", request.headers.get("cseq") or ""), *headers,
    ])


def sent(machine: Registration | OptionsPing) -> Request:
    (out,) = machine.take_requests()
    return out.request


def registered(reg: Registration, clock: FakeClock, expires: int = 600) -> None:
    reg.start(clock.now())
    request = sent(reg)
    reg.handle_response(reply(request, 200, ("Contact", f"{CONTACT};expires={expires}")),
                        clock.now())
    assert reg.state is RegistrationState.REGISTERED


# ---- client digest -------------------------------------------------------------------------


RFC7616 = dict(
    realm="http-auth@example.org", nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
)


@pytest.mark.parametrize("algorithm, expected", [
    ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
])
def test_rfc_7616_example(algorithm: str, expected: str) -> None:
    challenge = parse_challenge(
        f'Digest realm="{RFC7616["realm"]}", qop="auth, auth-int", algorithm={algorithm}, '
        f'nonce="{RFC7616["nonce"]}", opaque="{RFC7616["opaque"]}"')
    header, value = authorization(
        challenge, Credentials("Mufasa", "Circle of Life"), "GET", "/dir/index.html",
        "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")
    assert header == "Authorization"
    assert f'response="{expected}"' in value
    assert "qop=auth, nc=00000001" in value and f'opaque="{RFC7616["opaque"]}"' in value


@given(st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters='"\\'),
               min_size=1, max_size=20),
       st.sampled_from(["MD5", "SHA-256"]), st.booleans())
def test_answer_verifies_with_the_server_side_formula(user: str, algorithm: str, qop: bool) -> None:
    text = f'Digest realm="pbx", nonce="n0", algorithm={algorithm}' + (', qop="auth"' if qop else "")
    challenge = parse_challenge(text, proxy=True)
    header, value = authorization(challenge, Credentials(user, "pw"), "INVITE", "sip:x@y", "cn")
    assert header == "Proxy-Authorization"
    ha1 = compute_ha1(algorithm, user, "pbx", "pw")
    if qop:
        expected = compute_response(algorithm, ha1, "n0", "INVITE", "sip:x@y", qop="auth",
                                    nc="00000001", cnonce="cn")
    else:
        expected = compute_response(algorithm, ha1, "n0", "INVITE", "sip:x@y")
    assert value.endswith(f'response="{expected}"')


def test_topmost_supported_challenge_per_realm() -> None:
    chosen = choose_challenges([
        'Digest realm="a", nonce="1", algorithm=SHA-512-256',
        'Digest realm="a", nonce="2", algorithm=SHA-256, qop="auth"',
        'Digest realm="a", nonce="3", algorithm=MD5, qop="auth"',
        'Digest realm="b", nonce="4", qop="auth-int"',
    ], ['Digest realm="p", nonce="5"'])
    assert [(c.realm, c.nonce, c.proxy) for c in chosen] == [("a", "2", False), ("p", "5", True)]
    with pytest.raises(ChallengeError, match="auth-int"):
        choose_challenges(['Digest realm="b", nonce="4", qop="auth-int"'], [])
    with pytest.raises(ChallengeError, match="not a Digest"):
        choose_challenges(['Basic realm="x"'], [])


@given(st.text(max_size=200))
def test_parse_challenge_raises_only_challenge_error(text: str) -> None:
    try:
        parse_challenge(text)
    except ChallengeError:
        pass


def test_credentials_never_print_the_password() -> None:
    assert "s3cret" not in repr(CARRIER.credentials)


# ---- registration --------------------------------------------------------------------------


def test_register_challenge_answer_and_refresh_ladder() -> None:
    clock = FakeClock(1000.0)
    reg = registration()
    reg.start(clock.now())
    first = sent(reg)
    assert first.method == "REGISTER" and first.request_uri_text == "sip:sip.carrier.example:5080"
    assert first.headers.get("to") == "<sip:0442930600@sip.carrier.example>"
    assert first.headers.get("contact") == CONTACT and first.headers.get("expires") == "600"
    assert "authorization" not in first.headers and "via" not in first.headers
    reg.handle_response(reply(first, 100), clock.now())  # provisional: nothing
    assert reg.take_requests() == []
    reg.handle_response(reply(first, 401, ("WWW-Authenticate", CHALLENGE)), clock.now())
    second = sent(reg)
    assert second.call_id == first.call_id  # §10.2.4: one Call-ID per boot
    assert second.cseq.number == first.cseq.number + 1
    auth = second.headers.get("authorization") or ""
    assert 'username="0442930600"' in auth and 'uri="sip:sip.carrier.example:5080"' in auth
    ha1 = compute_ha1("MD5", "0442930600", "carrier", "s3cret")
    cnonce = auth.split('cnonce="')[1].split('"')[0]
    expected = compute_response("MD5", ha1, "abc123", "REGISTER", "sip:sip.carrier.example:5080",
                                qop="auth", nc="00000001", cnonce=cnonce)
    assert f'response="{expected}"' in auth
    reg.handle_response(reply(second, 200, ("Contact", "<sip:other@192.0.2.9>;expires=30"),
                              ("Contact", f"{CONTACT};expires=300")), clock.now())
    assert reg.registered and reg.state is RegistrationState.REGISTERED
    assert reg.expires_at == 1300.0
    assert reg.next_deadline() == 1000.0 + 270  # 30 s before the granted 300 s
    events = reg.take_events()
    assert [e.level for e in events] == [logging.INFO] and "registered for 300 s" in events[0].message
    # Nothing before the deadline; the refresh at it.
    reg.handle_deadline(1269.0)
    assert reg.take_requests() == []
    clock.advance(270)
    reg.handle_deadline(clock.now())
    refresh = sent(reg)
    assert refresh.cseq.number == second.cseq.number + 1
    reg.handle_response(reply(refresh, 200, ("Expires", "120")), clock.now())  # no Contact param
    assert reg.expires_at == clock.now() + 120 and reg.next_deadline() == clock.now() + 90
    assert reg.take_events()[0].level == logging.DEBUG  # a refresh is not news


@pytest.mark.parametrize("granted, delay", [(600, 570), (3600, 3570), (60, 30), (20, 10)])
def test_refresh_delay(granted: int, delay: int) -> None:
    assert refresh_delay(granted) == delay


def test_failures_back_off_exponentially_up_to_the_ceiling() -> None:
    clock = FakeClock()
    reg = registration()
    reg.start(clock.now())
    waits = []
    for _ in range(9):
        request = sent(reg)
        reg.handle_response(reply(request, 500), clock.now())
        deadline = reg.next_deadline()
        assert deadline is not None
        waits.append(deadline - clock.now())
        clock.advance(deadline - clock.now())
        reg.handle_deadline(clock.now())
    assert waits == [30, 60, 120, 240, 480, 960, 1800, 1800, 1800]
    levels = [e.level for e in reg.take_events()]
    assert levels == [logging.WARNING] + [logging.DEBUG] * 8  # one warning, not a flood
    assert reg.last_error == "500 Server Internal Error" and reg.failures == 9


@given(st.lists(st.floats(0, 0.999), min_size=1, max_size=15))
def test_backoff_stays_between_half_and_all_of_its_bound(fractions: list[float]) -> None:
    draws = iter(fractions)
    reg = Registration(CARRIER, contact=CONTACT, random_token=tokens(),  # type: ignore[arg-type]
                       random_fraction=lambda: next(draws))
    now = 0.0
    reg.start(now)
    assert len(reg.take_requests()) == 1
    for n in range(1, len(fractions) + 1):
        reg.handle_failure("timeout", now)
        deadline = reg.next_deadline()
        assert deadline is not None
        bound = min(1800, 30 * 2 ** (n - 1))
        assert bound / 2 - 1e-6 <= deadline - now <= bound + 1e-6
        now = deadline
        reg.handle_deadline(now)
        assert len(reg.take_requests()) == 1


def test_retry_after_is_respected() -> None:
    reg = registration()
    reg.start(0)
    reg.handle_response(reply(sent(reg), 503, ("Retry-After", "120 (maintenance)")), 0)
    assert reg.next_deadline() == 120 and reg.state is RegistrationState.FAILED


def test_403_stops_the_storm_with_one_warning() -> None:
    clock = FakeClock()
    reg = registration()
    reg.start(0)
    for _ in range(3):
        reg.handle_response(reply(sent(reg), 403), clock.now())
        assert reg.state is RegistrationState.REJECTED and not reg.registered
        assert reg.next_deadline() == clock.now() + 1800
        clock.advance(1800)
        reg.handle_deadline(clock.now())
    events = reg.take_events()
    assert [e.level for e in events] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert "refused our credentials" in events[0].message


def test_second_challenge_means_wrong_credentials_unless_stale() -> None:
    reg = registration()
    reg.start(0)
    reg.handle_response(reply(sent(reg), 401, ("WWW-Authenticate", CHALLENGE)), 0)
    with_auth = sent(reg)
    stale = CHALLENGE.replace('nonce="abc123"', 'nonce="n2", stale=true')
    reg.handle_response(reply(with_auth, 401, ("WWW-Authenticate", stale)), 0)
    again = sent(reg)
    assert 'nonce="n2"' in (again.headers.get("authorization") or "")
    reg.handle_response(reply(again, 401, ("WWW-Authenticate", CHALLENGE)), 0)
    assert reg.state is RegistrationState.REJECTED and reg.take_requests() == []
    assert reg.last_error == "401 Unauthorized: the carrier refused our credentials"


def test_proxy_challenge_gets_proxy_authorization() -> None:
    reg = registration()
    reg.start(0)
    reg.handle_response(reply(sent(reg), 407, ("Proxy-Authenticate", CHALLENGE)), 0)
    request = sent(reg)
    assert "proxy-authorization" in request.headers and "authorization" not in request.headers


def test_unanswerable_challenge_is_a_failure() -> None:
    reg = registration()
    reg.start(0)
    reg.handle_response(
        reply(sent(reg), 401, ("WWW-Authenticate", 'Digest realm="x", nonce="1", qop="auth-int"')),
        0)
    assert reg.state is RegistrationState.FAILED and "auth-int" in (reg.last_error or "")


def test_423_registers_again_with_min_expires() -> None:
    reg = registration()
    reg.start(0)
    reg.handle_response(reply(sent(reg), 423, ("Min-Expires", "1200")), 0)
    assert sent(reg).headers.get("expires") == "1200"


def test_timeout_and_lost_transaction_are_failures() -> None:
    reg = registration()
    reg.start(0)
    sent(reg)
    assert reg.next_deadline() == 40  # the guard, should no outcome ever come
    reg.handle_deadline(40)
    assert reg.state is RegistrationState.FAILED and reg.last_error == "no response to REGISTER"
    assert reg.next_deadline() == 70
    reg.handle_deadline(70)
    sent(reg)
    reg.handle_failure("transport failure", 71)
    assert reg.last_error == "transport failure" and reg.next_deadline() == 71 + 60


def test_binding_survives_failed_refreshes_until_it_expires() -> None:
    clock = FakeClock()
    reg = registration()
    registered(reg, clock, expires=100)
    reg.take_events()
    clock.advance(70)
    reg.handle_deadline(clock.now())
    reg.handle_failure("timeout", clock.now())
    assert reg.registered and reg.state is RegistrationState.FAILED
    assert reg.next_deadline() == 100  # the expiry comes before the retry at 70 + 30
    clock.advance(30)
    reg.handle_deadline(clock.now())
    assert not reg.registered
    assert any("expired" in e.message for e in reg.take_events())


def test_stale_responses_are_ignored() -> None:
    reg = registration()
    reg.start(0)
    first = sent(reg)
    reg.handle_response(reply(first, 401, ("WWW-Authenticate", CHALLENGE)), 0)
    sent(reg)
    reg.handle_response(reply(first, 200), 0)  # a late answer to the first REGISTER
    assert not reg.registered


def test_stop_unregisters() -> None:
    clock = FakeClock()
    reg = registration()
    registered(reg, clock)
    reg.stop(clock.now())
    bye = sent(reg)
    assert bye.headers.get("expires") == "0"
    reg.handle_response(reply(bye, 401, ("WWW-Authenticate", CHALLENGE)), clock.now())
    bye2 = sent(reg)  # the un-REGISTER is authenticated too
    assert "authorization" in bye2.headers and bye2.headers.get("expires") == "0"
    reg.handle_response(reply(bye2, 200), clock.now())
    assert not reg.registered and reg.state is RegistrationState.UNREGISTERED
    assert reg.next_deadline() is None


# ---- OPTIONS health ------------------------------------------------------------------------


def ping(**kwargs: object) -> OptionsPing:
    spec = TrunkSpec("gw", "127.0.0.2", 5061, transport="tls", options_ping=30)
    return OptionsPing(spec, from_uri="sip:pbx@pbx.test", random_token=tokens(),  # type: ignore[arg-type]
                       **kwargs)  # type: ignore[arg-type]


def test_options_ping_hysteresis_and_events() -> None:
    p = ping()
    clock = FakeClock()
    p.start(clock.now())
    states = []
    for outcome in ["ok", "fail", "ok", "fail", "fail", "ok", "fail", "ok", "ok", "401"]:
        request = sent(p)
        assert request.method == "OPTIONS" and request.request_uri_text == "sip:127.0.0.2:5061;transport=tls"
        if outcome == "fail":
            p.handle_failure("timeout", clock.now())
        else:
            p.handle_response(reply(request, 200 if outcome == "ok" else 401), clock.now())
        states.append(p.up)
        assert p.next_deadline() == clock.now() + 30
        clock.advance(30)
        p.handle_deadline(clock.now())
    assert states == [True, True, True, True, False, False, False, False, True, True]
    events = p.take_events()
    assert [e.level for e in events] == [logging.WARNING, logging.INFO]
    assert "down" in events[0].message and "up again" in events[1].message


def test_503_to_options_counts_as_a_failure_and_disabled_ping_sends_nothing() -> None:
    p = ping(down_after=1)
    p.start(0)
    p.handle_response(reply(sent(p), 503), 0)
    assert not p.up and p.last_error == "503 Service Unavailable to OPTIONS"
    off = OptionsPing(TrunkSpec("x", "h"), from_uri="sip:a@b", random_token=tokens())  # type: ignore[arg-type]
    off.start(0)
    assert off.take_requests() == [] and off.next_deadline() is None and off.up


# ---- lines ---------------------------------------------------------------------------------


def test_lines_are_counted_once_per_call() -> None:
    lines = Lines(2)
    assert lines.acquire("c1", "inbound") and lines.acquire("c1", "inbound")
    assert lines.acquire("c2", "outbound")
    assert not lines.acquire("c3", "outbound")  # no free line
    assert (lines.in_use, lines.free, lines.count("inbound")) == (2, 0, 1)
    assert lines.release("c1") and not lines.release("c1")
    assert lines.acquire("c3", "outbound")
    assert Lines(0).free is None


@given(st.integers(0, 4), st.lists(st.tuples(st.booleans(), st.integers(0, 6)), max_size=60))
def test_lines_never_exceed_the_limit(limit: int, ops: list[tuple[bool, int]]) -> None:
    lines = Lines(limit)
    model: set[int] = set()
    for take, call in ops:
        if take:
            ok = lines.acquire(str(call), "inbound")
            assert ok == (call in model or not limit or len(model) < limit)
            if ok:
                model.add(call)
        else:
            assert lines.release(str(call)) == (call in model)
            model.discard(call)
        assert lines.in_use == len(model) and (not limit or lines.in_use <= limit)


# ---- choice, failover, numbers ------------------------------------------------------------


def trunks() -> Trunks:
    specs = [
        TrunkSpec("main", "127.0.0.2", 5080, prefixes=("0", "+"), lines=1, options_ping=30,
                  username="u1", password="p", register=True),
        TrunkSpec("backup", "127.0.0.3", 5080, prefixes=("0",), lines=2, caller_id="0442930600"),
        TrunkSpec("intl", "127.0.0.4", prefixes=("00",)),
    ]
    return Trunks(specs, contact_for=lambda s: "sip:u1@127.0.0.1:5060", from_uri="sip:pbx@pbx",
                  random_token=tokens(), random_fraction=lambda: 1.0)  # type: ignore[arg-type]


def test_trunks_in_order_skipping_down_and_full_ones() -> None:
    t = trunks()
    assert [s.name for s in t.route("0612345678").trunks] == ["main", "backup"]
    assert [s.name for s in t.route("0044123").trunks] == ["main", "backup", "intl"]
    assert [s.name for s in t.route("+33612").trunks] == ["main"]
    assert t.route("1234").reason == "no trunk takes this number"
    t.start(0)
    for request in t.take_requests():
        if request.purpose == "options":
            t.handle_failure("main", "options", "timeout", 0)
    t.handle_deadline(30)
    t.handle_failure("main", "options", "timeout", 30)
    assert not t.is_up("main")
    chosen = t.route("0612345678")
    assert [s.name for s in chosen.trunks] == ["backup", "main"] and chosen.down == ("main",)
    assert t.acquire_line("backup", "c1", "outbound") and t.acquire_line("backup", "c2", "inbound")
    assert t.acquire_line("main", "c3", "outbound")
    none = t.route("0612345678")
    assert none.trunks == () and none.reason == "no free line"
    assert none.no_free_line == ("main", "backup")


def test_status_rows_and_inbound_recognition() -> None:
    t = trunks()
    t.start(0)
    (register,) = [r for r in t.take_requests() if r.purpose == "register"]
    contact = register.request.headers.get("contact")
    assert contact == f"<sip:u1@127.0.0.1:5060;line={line_token(t.specs['main'])}>"
    t.handle_response("main", "register", reply(register.request, 200, ("Expires", "600")), 0)
    t.acquire_line("backup", "c1", "inbound")
    rows = [r.to_json() for r in t.status()]
    assert rows == [
        {"name": "main", "registered": True, "up": True, "lines": 1, "lines_in_use": 0,
         "last_error": None},
        {"name": "backup", "registered": None, "up": True, "lines": 2, "lines_in_use": 1,
         "last_error": None},
        {"name": "intl", "registered": None, "up": True, "lines": 0, "lines_in_use": 0,
         "last_error": None},
    ]
    main = t.specs["main"]
    assert t.by_request_uri("u1", {"line": line_token(main)}) is main
    assert t.by_request_uri("u1", {}) is main
    assert t.by_request_uri("u1", {"line": "nope"}) is None
    assert t.by_request_uri("other", {}) is None


@pytest.mark.parametrize("status, moves", [
    (503, True), (408, True), (None, True), (486, False), (404, False), (500, False), (401, False),
])
def test_failover_statuses(status: int | None, moves: bool) -> None:
    assert fails_over(status) is moves


@pytest.mark.parametrize("number, fmt, out", [
    ("0612345678", "e164", "+33612345678"),
    ("+33 6 12 34 56 78", "national", "0612345678"),
    ("0033612345678", "e164", "+33612345678"),
    ("+44 20 7946 0000", "national", "+442079460000"),
    ("+44 20 7946 0000", "e164", "+442079460000"),
    ("112", "e164", "112"),
    ("3615", "e164", "3615"),
])
def test_number_formats(number: str, fmt: str, out: str) -> None:
    assert format_number(number, fmt, "33") == out  # type: ignore[arg-type]


def test_presented_number_is_the_trunks_unless_a_forward_keeps_the_caller() -> None:
    spec = TrunkSpec("c", "h", caller_id="0442930600", number_format="e164")
    assert presented_number(spec, "1001", keep_original=False, country_code="33") == "+33442930600"
    assert presented_number(spec, "0699887766", keep_original=True,
                            country_code="33") == "+33699887766"


def test_spec_from_config_like_object() -> None:
    class Cfg:
        name = "carrier"
        address = "[::1]:5070"
        transport = "tls"
        lines = None

    spec = TrunkSpec.from_config(Cfg())
    assert (spec.host, spec.port, spec.transport, spec.lines) == ("::1", 5070, "tls", 0)
    assert spec.uri("u") == "sip:u@[::1]:5070;transport=tls"
    Cfg.address = "sip.example"
    assert TrunkSpec.from_config(Cfg()).target_port == 5061


def test_reconfigure_keeps_unchanged_trunks_and_unregisters_removed_ones() -> None:
    t = trunks()
    t.start(0)
    (register,) = [r for r in t.take_requests() if r.purpose == "register"]
    t.handle_response("main", "register", reply(register.request, 200, ("Expires", "600")), 0)
    registration = t.registrations["main"]
    assert t.acquire_line("main", "c1", "inbound") and t.acquire_line("backup", "c2", "outbound")
    specs = list(t.order)
    # Unchanged: the same registration, its binding and lines kept; nothing is sent.
    t.reconfigure(specs, 10)
    assert t.registrations["main"] is registration and registration.registered
    assert t.take_requests() == [] and t.lines["main"].holds("c1")
    # "main" removed, "backup" with fewer lines: main is unregistered, backup keeps its call.
    smaller = TrunkSpec("backup", "127.0.0.3", 5080, prefixes=("0",), lines=1,
                        caller_id="0442930600")
    t.reconfigure([smaller, specs[2]], 20)
    (bye,) = t.take_requests()
    assert bye.trunk == "main" and bye.request.headers.get("expires") == "0"
    assert "main" not in t.specs and t.unregistering
    t.handle_response("main", "register", reply(bye.request, 200), 20)
    assert not t.unregistering and not registration.registered
    assert t.lines["backup"].holds("c2") and t.lines["backup"].limit == 1
    assert not t.has_free_line("backup")
    assert [s.name for s in t.route("0612345678").trunks] == []
