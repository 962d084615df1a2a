"""Digest authentication, server side: RFC 7616 vectors, nonces, nonce-counts, no enumeration."""

from __future__ import annotations

import hashlib
import itertools
import time

import pytest

from b2bua.registrar.digest import (
    DigestServer,
    DigestSyntaxError,
    Verdict,
    answer_challenge,
    compute_ha1,
    compute_response,
    parse_credentials,
)

REALM = "pbx.local"
URI = "sip:pbx.local"
T0 = 1_700_000_000.0


class FakeRandom:
    """Deterministic bytes: a counter, so every nonce and tag differs."""

    def __init__(self) -> None:
        self._n = itertools.count(1)

    def __call__(self, size: int) -> bytes:
        return next(self._n).to_bytes(size, "big")


def make_server(algorithms: tuple[str, ...] = ("SHA-256", "MD5"), ttl: float = 300) -> DigestServer:
    return DigestServer(
        REALM,
        algorithms,
        key=b"k" * 32,
        nonce_ttl=ttl,
        random_bytes=FakeRandom(),
        credentials={"1001": "secret-1001", "1001-2": "secret-1001"},
    )


def answer(server: DigestServer, now: float, *, user: str = "1001", password: str = "secret-1001",
           algorithm: str = "SHA-256", nc: int = 1, uri: str = URI, method: str = "REGISTER",
           challenge: str | None = None) -> tuple[str, str]:
    if challenge is None:
        challenge = next(c for c in server.challenges(now) if f"algorithm={algorithm}" in c)
    value = answer_challenge(challenge, username=user, password=password, method=method,
                             uri=uri, cnonce="0a4f113b", nc=nc)
    return value, challenge


# -- RFC 7616 §3.9.1 example --------------------------------------------------------------------

RFC_USER = "Mufasa"
RFC_REALM = "http-auth@example.org"
RFC_PASSWORD = "Circle of Life"
RFC_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC_URI = "/dir/index.html"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_example_vectors(algorithm: str, expected: str) -> None:
    ha1 = compute_ha1(algorithm, RFC_USER, RFC_REALM, RFC_PASSWORD)
    got = compute_response(algorithm, ha1, RFC_NONCE, "GET", RFC_URI, qop="auth",
                           nc="00000001", cnonce=RFC_CNONCE)
    assert got == expected


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_vectors_through_the_client_helper(algorithm: str, expected: str) -> None:
    challenge = (f'Digest realm="{RFC_REALM}", qop="auth, auth-int", algorithm={algorithm}, '
                 f'nonce="{RFC_NONCE}", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"')
    value = answer_challenge(challenge, username=RFC_USER, password=RFC_PASSWORD,
                             method="GET", uri=RFC_URI, cnonce=RFC_CNONCE)
    _, params = parse_credentials(value)
    assert params["response"] == expected
    assert params["opaque"] == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"


def test_rfc2617_example() -> None:
    ha1 = compute_ha1("MD5", "Mufasa", "testrealm@host.com", "Circle Of Life")
    got = compute_response("MD5", ha1, "dcd98b7102dd2f0e8b11d0f600bfb0c093", "GET",
                           "/dir/index.html", qop="auth", nc="00000001", cnonce="0a4f113b")
    assert got == "6629fae49393a05397450978507c4ef1"


def test_response_without_qop_is_rfc2069() -> None:
    ha1 = compute_ha1("MD5", "Mufasa", "testrealm@host.com", "Circle Of Life")
    ha2 = hashlib.md5(b"GET:/dir/index.html").hexdigest()
    expected = hashlib.md5(f"{ha1}:abc:{ha2}".encode()).hexdigest()
    assert compute_response("MD5", ha1, "abc", "GET", "/dir/index.html") == expected


# -- parsing -------------------------------------------------------------------------------------


def test_parse_credentials_quoted_and_tokens() -> None:
    scheme, params = parse_credentials(
        'Digest username="a\\"b", realm="pbx.local",nc=00000001 ,  qop=auth, uri="sip:x,y"'
    )
    assert scheme == "Digest"
    assert params == {"username": 'a"b', "realm": "pbx.local", "nc": "00000001",
                      "qop": "auth", "uri": "sip:x,y"}


@pytest.mark.parametrize(
    "bad",
    ['Digest username="unterminated', "Digest username", 'Digest a="1" b="2"',
     'Digest a=1, a=2', "", "Digest =x"],
)
def test_parse_credentials_rejects(bad: str) -> None:
    with pytest.raises(DigestSyntaxError):
        parse_credentials(bad)


# -- challenges ----------------------------------------------------------------------------------


def test_one_challenge_per_algorithm_in_order() -> None:
    server = make_server()
    values = server.challenges(T0)
    assert len(values) == 2
    assert "algorithm=SHA-256" in values[0] and "algorithm=MD5" in values[1]
    for v in values:
        scheme, params = parse_credentials(v)
        assert scheme == "Digest"
        assert params["realm"] == REALM
        assert params["qop"] == "auth"
        assert params["opaque"] == server.opaque
        assert "stale" not in params
    # One nonce for the whole set, a new one per challenge.
    n1 = {parse_credentials(v)[1]["nonce"] for v in values}
    n2 = {parse_credentials(v)[1]["nonce"] for v in server.challenges(T0)}
    assert len(n1) == 1 and n1 != n2


def test_stale_flag() -> None:
    _, params = parse_credentials(make_server().challenges(T0, stale=True)[0])
    assert params["stale"] == "true"


def test_nonce_is_verifiable_and_forgery_fails() -> None:
    server = make_server()
    nonce = server.make_nonce(T0)
    assert server.nonce_issued_at(nonce) == pytest.approx(T0, abs=0.001)
    tampered = nonce[:-2] + ("AA" if nonce[-2:] != "AA" else "BB")
    assert server.nonce_issued_at(tampered) is None
    other = DigestServer(REALM, ("MD5",), key=b"x" * 32, nonce_ttl=300, random_bytes=FakeRandom())
    assert other.nonce_issued_at(nonce) is None
    assert server.nonce_issued_at("short") is None
    assert server.nonce_issued_at("!" * 36) is None


# -- verification --------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_valid_credentials(algorithm: str) -> None:
    server = make_server()
    value, _ = answer(server, T0, algorithm=algorithm)
    result = server.verify("REGISTER", URI, [value], T0 + 1)
    assert result.verdict is Verdict.OK
    assert result.username == "1001"


def test_device_username_shares_the_secret() -> None:
    server = make_server()
    value, _ = answer(server, T0, user="1001-2")
    assert server.verify("REGISTER", URI, [value], T0).verdict is Verdict.OK


def test_no_credentials_for_our_realm() -> None:
    server = make_server()
    assert server.verify("REGISTER", URI, [], T0).verdict is Verdict.NO_CREDENTIALS
    other = 'Digest username="1001", realm="elsewhere", nonce="x", uri="sip:a", response="0"'
    assert server.verify("REGISTER", URI, [other], T0).verdict is Verdict.NO_CREDENTIALS
    assert server.verify("REGISTER", URI, ["Basic abc"], T0).verdict is Verdict.NO_CREDENTIALS


def test_wrong_password_and_unknown_user_look_the_same() -> None:
    server = make_server()
    wrong, _ = answer(server, T0, password="nope")
    unknown, _ = answer(server, T0, user="9999", password="nope")
    r1 = server.verify("REGISTER", URI, [wrong], T0)
    r2 = server.verify("REGISTER", URI, [unknown], T0)
    assert r1.verdict is r2.verdict is Verdict.FAILED
    assert r1.reason == r2.reason


def test_unknown_user_costs_the_same_as_wrong_password() -> None:
    server = make_server()
    wrong = [answer(server, T0, password="nope")[0] for _ in range(300)]
    unknown = [answer(server, T0, user=f"u{i}", password="nope")[0] for i in range(300)]

    def timed(values: list[str]) -> float:
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for v in values:
                server.verify("REGISTER", URI, [v], T0)
            best = min(best, time.perf_counter() - start)
        return best

    a, b = timed(wrong), timed(unknown)
    assert 0.5 < a / b < 2.0


def test_stale_nonce_with_right_password_is_stale_not_failed() -> None:
    server = make_server(ttl=300)
    value, _ = answer(server, T0)
    assert server.verify("REGISTER", URI, [value], T0 + 301).verdict is Verdict.STALE
    wrong, _ = answer(server, T0, password="nope")
    assert server.verify("REGISTER", URI, [wrong], T0 + 301).verdict is Verdict.FAILED


def test_nonce_count_must_increase() -> None:
    server = make_server()
    challenge = server.challenges(T0)[0]
    v1, _ = answer(server, T0, nc=1, challenge=challenge)
    v2, _ = answer(server, T0, nc=2, challenge=challenge)
    v5, _ = answer(server, T0, nc=5, challenge=challenge)
    assert server.verify("REGISTER", URI, [v1], T0).verdict is Verdict.OK
    assert server.verify("REGISTER", URI, [v1], T0).verdict is Verdict.STALE  # replay
    assert server.verify("REGISTER", URI, [v5], T0).verdict is Verdict.OK
    assert server.verify("REGISTER", URI, [v2], T0).verdict is Verdict.STALE  # went backwards
    assert server.tracked_nonces == 1
    assert server.purge(T0 + 301) == 1


def test_without_qop_a_nonce_serves_once() -> None:
    server = make_server(("MD5",))
    nonce = server.make_nonce(T0)
    ha1 = compute_ha1("MD5", "1001", REALM, "secret-1001")
    resp = compute_response("MD5", ha1, nonce, "REGISTER", URI)
    value = (f'Digest username="1001", realm="{REALM}", nonce="{nonce}", uri="{URI}", '
             f'response="{resp}"')
    assert server.verify("REGISTER", URI, [value], T0).verdict is Verdict.OK
    assert server.verify("REGISTER", URI, [value], T0).verdict is Verdict.STALE


def _flip_response(value: str) -> str:
    """The same credentials with the first hex digit of the response changed."""
    _, params = parse_credentials(value)
    digest = params["response"]
    flipped = ("1" if digest[0] == "0" else "0") + digest[1:]
    return value.replace(digest, flipped)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda v: v.replace("algorithm=SHA-256", "algorithm=SHA-512-256"), "algorithm not offered"),
        (lambda v: v.replace(f'uri="{URI}"', 'uri="sip:other.example"'), "digest uri does not match"),
        (lambda v: v.replace("qop=auth", "qop=auth-int"), "qop not offered"),
        (lambda v: v + ", userhash=true", "userhash"),
        (lambda v: v.replace('opaque="', 'opaque="x'), "opaque mismatch"),
        (lambda v: v.replace('nonce="', 'nonce="A'), "nonce not issued here"),
        (lambda v: _flip_response(v), "wrong credentials"),
    ],
)
def test_failures(mutate: object, reason: str) -> None:
    server = make_server()
    value, _ = answer(server, T0)
    result = server.verify("REGISTER", URI, [mutate(value)], T0)  # type: ignore[operator]
    assert result.verdict is Verdict.FAILED
    assert reason in result.reason


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        # The original report: a non-ASCII opaque made hmac.compare_digest raise TypeError.
        (lambda v: v.replace('opaque="', 'opaque="café'), "opaque is not printable ASCII"),
        (lambda v: v.replace('nonce="', 'nonce="é'), "nonce is not printable ASCII"),
        (lambda v: v.replace('response="', 'response="é'), "response is not printable ASCII"),
        (lambda v: v.replace('response="', 'response="0'), "response is not a digest"),
        (lambda v: v.replace('response="', 'response="zz')[:-3] + '"', "not hexadecimal"),
        (lambda v: v.replace('cnonce="', 'cnonce="\udcff'), "cnonce is not printable ASCII"),
        (lambda v: v.replace('username="1001"', 'username="10\udce901"'), "username is not UTF-8"),
        (lambda v: v.replace('username="1001"', 'username="10\x0001"'), "username is not UTF-8"),
        (lambda v: v.replace('uri="', 'uri="sip:é'), "uri is not printable ASCII"),
        (lambda v: v.replace("nc=00000001", "nc=0000001"), "nc of 8 hex digits"),
        (lambda v: v.replace("nc=00000001", "nc=0000000g"), "nc of 8 hex digits"),
        (lambda v: v.replace("nc=00000001, ", ""), "nc of 8 hex digits"),
        (lambda v: v.replace('cnonce="0a4f113b"', 'cnonce=""'), "qop without cnonce"),
        (lambda v: v.replace("algorithm=SHA-256", 'algorithm="SHA 256"'), "algorithm is not a token"),
        (lambda v: v.replace("qop=auth", "qop=ç"), "qop is not printable ASCII"),
        (lambda v: 'Digest realm="pbx.local", username="1001"', "no nonce"),
        (lambda v: v.replace('uri="sip:pbx.local"', 'uri=""'), "no uri"),
        (lambda v: v + ", nc=2", "malformed credentials: parameter 'nc' repeated"),
        (lambda v: v + ', x="', "malformed credentials"),
    ],
)
def test_malformed_credentials(mutate: object, reason: str) -> None:
    """Credentials that break the grammar are MALFORMED (a failure the registrar answers 400),
    never an exception."""
    server = make_server()
    value, _ = answer(server, T0)
    result = server.verify("REGISTER", URI, [mutate(value)], T0)  # type: ignore[operator]
    assert result.verdict is Verdict.MALFORMED
    assert reason in result.reason


def test_response_hex_digits_compare_in_any_case() -> None:
    server = make_server()
    value, _ = answer(server, T0)
    _, params = parse_credentials(value)
    upper = value.replace(params["response"], params["response"].upper())
    assert server.verify("REGISTER", URI, [upper], T0).verdict is Verdict.OK


def test_md5_default_algorithm_when_absent() -> None:
    server = make_server(("MD5",))
    value, _ = answer(server, T0, algorithm="MD5")
    value = value.replace(", algorithm=MD5", "")
    assert server.verify("REGISTER", URI, [value], T0).verdict is Verdict.OK
    sha_only = make_server(("SHA-256",))
    v2, _ = answer(sha_only, T0)
    v2 = v2.replace(", algorithm=SHA-256", "")
    assert sha_only.verify("REGISTER", URI, [v2], T0).verdict is Verdict.FAILED


def test_equivalent_uri_accepted() -> None:
    server = make_server()
    value, _ = answer(server, T0, uri="sip:PBX.local")
    assert server.verify("REGISTER", "sip:pbx.local", [value], T0).verdict is Verdict.OK


def test_nonce_from_the_future_refused() -> None:
    server = make_server()
    value, _ = answer(server, T0 + 60)
    assert server.verify("REGISTER", URI, [value], T0).verdict is Verdict.FAILED


def test_nonce_table_is_capped() -> None:
    server = DigestServer(REALM, ("MD5",), key=b"k" * 32, nonce_ttl=300,
                          random_bytes=FakeRandom(), credentials={"1001": "s"},
                          max_tracked_nonces=10)
    for i in range(25):
        value, _ = answer(server, T0 + i, password="s", algorithm="MD5")
        assert server.verify("REGISTER", URI, [value], T0 + i).verdict is Verdict.OK
    assert server.tracked_nonces <= 10


def test_credentials_can_be_replaced() -> None:
    server = make_server()
    server.set_credentials({"1001": "new"})
    old, _ = answer(server, T0)
    new, _ = answer(server, T0, password="new")
    assert server.verify("REGISTER", URI, [old], T0).verdict is Verdict.FAILED
    assert server.verify("REGISTER", URI, [new], T0).verdict is Verdict.OK


# -- property: remote input never raises anything but DigestSyntaxError ---------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_PIECES = st.sampled_from([
    "Digest ", "digest\t", "Basic ", "username=", "realm=", "nonce=", "uri=", "response=",
    "qop=", "nc=", "cnonce=", "algorithm=", "opaque=", "userhash=", '"', "\\", ",", " ", "=",
    "pbx.local", "1001", "MD5", "SHA-256", "auth", "00000001", "0x000001", "0000_001",
    "sip:pbx.local", "\udcff", "é",
])


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=40).map("".join))
def test_verify_never_raises(value: str) -> None:
    server = make_server()
    try:
        parse_credentials(value)
    except DigestSyntaxError:
        pass
    result = server.verify("REGISTER", URI, [value], T0)
    assert result.verdict in (Verdict.NO_CREDENTIALS, Verdict.FAILED, Verdict.MALFORMED)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(
    st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20),
    max_size=6,
))
def test_quoted_params_round_trip(params: dict[str, str]) -> None:
    from b2bua.sip.grammar import quote

    text = "Digest " + ", ".join(f"{k}={quote(v)}" for k, v in params.items())
    assert parse_credentials(text) == ("Digest", params)
