"""Fuzzing every header the registrar and the digest code read, through the whole stack.

The B2BUA is the real one (stack, transaction layer, core, registrar, call engine) over an
in-memory network (`b2bua.testing.memory`); only the wire is replaced. Each example comes from
its own source address, so lockout counts never mix. What is asserted:

- every request that can be answered gets exactly one final response, with a status from a
  known set, and nothing is logged at ERROR (the stack logs a transaction user's exception
  there: a traceback is a failure of this test);
- credentials for our realm that are not right, however malformed, are a failed
  authentication: counted (`auth_failed` grows by one), answered 400/401 (REGISTER) or
  400/403 (INVITE), and `lockout_failures` of them lock the source out (403 even for the right
  password).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from b2bua.config import config_from_text
from b2bua.registrar.digest import DigestSyntaxError, answer_challenge, parse_credentials
from b2bua.sip.errors import SipParseError
from b2bua.sip.grammar import quote
from b2bua.sip.message import Request, Response, parse_message
from b2bua.sip.uri import parse_uri
from b2bua.testing.memory import Agent, MemoryNetwork, build_b2bua

DOMAIN = "pbx.test"
SECRET = "s3cret"
LOCKOUT = 3
CONFIG = f"""
[server]
domain = "{DOMAIN}"
listen = ["udp:127.0.0.1:5060"]

[registrar]
lockout_failures = {LOCKOUT}
lockout_window = 600

[[users]]
extension = "1001"
name = "Alice"
secret = "{SECRET}"
  [[users.devices]]
  type = "sip"
  label = "Desk"

[[users]]
extension = "1002"
name = "Bruno"
secret = "other"
  [[users.devices]]
  type = "sip"
  label = "Desk"
"""

REGISTER_STATUSES = {200, 400, 401, 403, 404, 416, 420, 423, 500, 505, 513}
INVITE_STATUSES = {400, 403, 404, 407, 416, 420, 480, 482, 483, 484, 485, 488, 500, 503, 505, 513}
CREDENTIAL_PARAMS = ("username", "realm", "nonce", "uri", "response", "cnonce", "nc", "qop",
                     "algorithm", "opaque")

# Remote text: any character but CR and LF (which would end the header line), including
# non-ASCII, controls and bytes that are not UTF-8 (decoded by the parser as surrogate escapes).
_TEXT = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
    max_size=80,
)
_RAW = st.binary(max_size=40).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").decode("utf-8", "surrogateescape")
)
_NASTY = st.sampled_from([
    "café", "\udcff\udcfe", "\x00", "é\\", '"', '\\"', ",", "=", "\t", " ", "", "0" * 5000,
    "Digest", "digest ", "ffffffff", "g" * 64, "0" * 32, "0" * 64, "auth", "AUTH", "auth-int",
    "MD5", "SHA-256", "SHA-512-256", "sip:", "sip:1001@pbx.test", "sip:[::1", "%", "%zz",
    "<sip:x>", "\u202e", "\uffff", "💥",
])
VALUES = st.one_of(_TEXT, _RAW, _NASTY)


class Peer(Agent):
    """A source address that keeps what it receives and answers nothing."""

    def receive(self, message: Request | Response) -> None:
        self.received.append(message)


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def errors() -> Iterator[Errors]:
    handler = Errors()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


_hosts = (f"10.{a}.{b}.{c}" for a, b, c in itertools.product(range(1, 255), repeat=3))
_n = itertools.count(1)


class Harness:
    def __init__(self, network: MemoryNetwork, engine: object) -> None:
        self.network = network
        self.registrar = engine.registrar  # type: ignore[attr-defined]

    def peer(self) -> Peer:
        return Peer(self.network, (next(_hosts), 5060))

    def send(self, peer: Peer, method: str, headers: list[tuple[str, str]],
             request_uri: str | None = None) -> list[Response]:
        """Send one request from `peer` (raw header values, any text) and return what came back."""
        n = next(_n)
        host, port = peer.address
        uri = request_uri if request_uri is not None else (
            f"sip:{DOMAIN}" if method == "REGISTER" else f"sip:1002@{DOMAIN}")
        fields = {
            "via": f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK-fz{n};rport",
            "max-forwards": "70",
            "from": f"<sip:1001@{DOMAIN}>;tag=f{n}",
            "to": f"<sip:1001@{DOMAIN}>" if method == "REGISTER" else f"<sip:1002@{DOMAIN}>",
            "call-id": f"fz-{n}",
            "cseq": f"{n} {method}",
            "contact": f"<sip:1001@{host}:{port}>",
        }
        lines = [f"{method} {uri} SIP/2.0"]
        names = {name.lower() for name, _ in headers}
        lines += [f"{k}: {v}" for k, v in fields.items() if k not in names]
        lines += [f"{k}: {v}" for k, v in headers]
        data = ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode("utf-8", "surrogateescape")
        before = len(peer.received)
        self.network.deliver(data, peer.address)
        self.network.pump()
        return [m for m in peer.received[before:] if isinstance(m, Response)]

    def challenge(self, peer: Peer, method: str) -> str:
        header = "WWW-Authenticate" if method == "REGISTER" else "Proxy-Authenticate"
        (final,) = [r for r in self.send(peer, method, []) if r.status >= 200]
        assert final.status == (401 if method == "REGISTER" else 407)
        return next(v for v in final.headers.get_all(header) if "algorithm=SHA-256" in v)


def finals(responses: list[Response]) -> list[Response]:
    return [r for r in responses if r.status >= 200]


def credentials(challenge: str, method: str, password: str = SECRET, nc: int = 1) -> str:
    uri = f"sip:{DOMAIN}" if method == "REGISTER" else f"sip:1002@{DOMAIN}"
    return answer_challenge(challenge, username="1001", password=password, method=method,
                            uri=uri, cnonce="c0ffee", nc=nc)


def mutate(value: str, name: str, action: str, text: str, quoted: bool) -> str:
    """The credentials `value` with parameter `name` replaced, removed or repeated."""
    _, params = parse_credentials(value)
    new = quote(text) if quoted else text
    parts = []
    for key, val in params.items():
        kept = f"{key}={quote(val) if key not in ('nc', 'qop', 'algorithm') else val}"
        if key != name:
            parts.append(kept)
        elif action == "replace":
            parts.append(f"{key}={new}")
        elif action == "repeat":
            parts += [kept, f"{key}={new}"]
    return "Digest " + ", ".join(parts)


def benign(original: str, mutated: str, name: str, method: str) -> bool:
    """Whether a mutation leaves credentials that are still right (same meaning)."""
    try:
        _, before = parse_credentials(original)
        _, after = parse_credentials(mutated)
    except DigestSyntaxError:
        return False
    if after == before:
        return True
    if name == "opaque" and "opaque" not in after:
        return True  # opaque is optional
    if set(after) != set(before) or any(after[k] != before[k] for k in after if k != name):
        return False
    old, new = before[name], after[name]
    if name in ("algorithm", "response") and old.lower() == new.lower():
        return True
    if name == "uri":
        try:
            return parse_uri(old) == parse_uri(new)
        except SipParseError:
            return False
    return False


def for_our_realm(mutated: str) -> bool:
    try:
        _, params = parse_credentials(mutated)
    except DigestSyntaxError:
        return True  # unreadable: counted whatever its realm
    return params.get("realm") == DOMAIN


@pytest.mark.parametrize("method", ["REGISTER", "INVITE"])
async def test_bad_credentials_are_counted_and_answered(method: str, errors: Errors) -> None:
    network = MemoryNetwork()
    harness = Harness(network, build_b2bua(config_from_text(CONFIG), network))
    registrar = harness.registrar
    header = "Authorization" if method == "REGISTER" else "Proxy-Authorization"

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        name=st.sampled_from(CREDENTIAL_PARAMS),
        action=st.sampled_from(["replace", "replace", "replace", "remove", "repeat"]),
        text=VALUES,
        quoted=st.booleans(),
    )
    def run(name: str, action: str, text: str, quoted: bool) -> None:
        errors.records.clear()
        peer = harness.peer()
        host = peer.address[0]
        challenge = harness.challenge(peer, method)
        good = credentials(challenge, method)
        bad = mutate(good, name, action, text, quoted)
        assume(not benign(good, bad, name, method))
        counted = for_our_realm(bad)
        for attempt in range(LOCKOUT):
            failed_before = registrar.counters["auth_failed"]
            (final,) = finals(harness.send(peer, method, [(header, bad)]))
            assert registrar.counters["auth_failed"] - failed_before == (1 if counted else 0)
            if not counted:
                assert final.status == (401 if method == "REGISTER" else 403)
            elif attempt < LOCKOUT - 1:
                allowed = {400, 401} if method == "REGISTER" else {400, 403}
                assert final.status in allowed, (final.status, final.reason)
            else:
                assert final.status == 403  # the last allowed failure locks the source out
            assert not errors.records, errors.records[0].getMessage()
        assert registrar.is_locked_out(host, time.time()) == counted
        if counted:
            # Even the right password is refused from there now.
            right = credentials(harness.challenge(harness.peer(), method), method)
            (final,) = finals(harness.send(peer, method, [(header, right)]))
            assert final.status == 403

    run()


# Headers the registrar (REGISTER) and the authentication of an INVITE read, besides the
# credentials: each is replaced by remote text while the credentials stay right.
REGISTER_HEADERS = ("To", "From", "Contact", "Expires", "Require", "Supported", "Path",
                    "User-Agent", "Call-ID", "CSeq", "Via", "Max-Forwards", "Authorization",
                    "Proxy-Require", "Request-URI")
INVITE_HEADERS = ("To", "From", "Contact", "User-Agent", "Call-ID", "Via", "Max-Forwards",
                  "Proxy-Authorization", "Require", "Supported", "Request-URI", "Content-Type")


@pytest.mark.parametrize("method", ["REGISTER", "INVITE"])
async def test_every_header_gets_a_clean_answer(method: str, errors: Errors) -> None:
    network = MemoryNetwork()
    harness = Harness(network, build_b2bua(config_from_text(CONFIG), network))
    names = REGISTER_HEADERS if method == "REGISTER" else INVITE_HEADERS
    header = "Authorization" if method == "REGISTER" else "Proxy-Authorization"
    statuses = REGISTER_STATUSES if method == "REGISTER" else INVITE_STATUSES | {200}

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(name=st.sampled_from(names), text=VALUES, extra=st.booleans())
    def run(name: str, text: str, extra: bool) -> None:
        errors.records.clear()
        peer = harness.peer()
        challenge = harness.challenge(peer, method)
        headers = [(header, credentials(challenge, method))]
        uri = None
        if name == "Request-URI":
            assume(text and " " not in text and "\t" not in text)
            uri = text
        elif extra:
            headers.append((name, text))  # one more of that header
        else:
            headers = [(n, v) for n, v in headers if n != name] + [(name, text)]
        responses = harness.send(peer, method, headers, uri)
        got = finals(responses)
        assert len(got) <= 1
        if not got:
            # Dropped: only when there is nowhere to send an answer (RFC 3261 §18.2.1).
            assert name in ("Via", "CSeq"), [r.status for r in responses]
        else:
            assert got[0].status in statuses, (got[0].status, got[0].reason)
            reparsed = parse_message(bytes(got[0]))
            assert isinstance(reparsed, Response)
        assert not errors.records, errors.records[0].getMessage()

    run()
