"""HTTP Digest authentication, server side, as SIP uses it (RFC 3261 §22, RFC 7616, RFC 8760).

Theory of operation
-------------------
A challenge is one `WWW-Authenticate` (REGISTER, 401) or `Proxy-Authenticate` (INVITE, 407)
header per algorithm of `auth_algorithms`, in that order (RFC 8760 §2.4: "the UAS ... MUST
list the challenges in order of preference"), all with `qop="auth"`, the realm (the SIP domain),
one nonce and one opaque.

Nonces are stateless-verifiable: `base64url(issued_ms[6] | salt[8] | mac[12])` where
`mac = HMAC-SHA256(key, issued_ms | salt)`. Any nonce we issued can be checked without a table, a
restart keeps them valid when the key is persisted, and a forged one fails the MAC. A nonce older
than `nonce_ttl` is *stale*: when the digest computed with it is otherwise right the answer is a
new challenge with `stale=true`, so the client retries without asking its user (RFC 7616 §3.3).

Replay protection: the highest nonce-count (nc) accepted for each nonce is remembered until the
nonce goes stale; a request whose nc is not greater is refused (RFC 7616 §3.4: "the server ...
MUST NOT accept a request with a nonce-count it has already seen"). A request without qop (RFC
2069 style, still accepted because it is cheap) may use a nonce once. Only successful requests
enter the table, so a flood of bad credentials cannot grow it; it is also capped.

No user enumeration: an unknown username is verified against a dummy HA1 computed like a real
one, so it takes the same path, the same time and gets the same verdict as a wrong password.
All comparisons of secrets use `hmac.compare_digest`, on bytes: it refuses a `str` with a
non-ASCII character, and every parameter is remote text.

Remote text is validated before it is used: credentials that break the digest-response grammar
(RFC 3261 §25.1, RFC 7616 §3.4: a missing required parameter, a `response` that is not the
algorithm's number of hex digits, an `nc` that is not 8 hex digits, a control character, bytes
that are not UTF-8, a non-ASCII nonce, opaque, cnonce or uri) get the verdict MALFORMED. The
registrar counts MALFORMED like FAILED towards the source's lockout and answers 400.

Sans-IO: the clock is the `now` argument (seconds), randomness a `random_bytes(n)` callable.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from b2bua.sip.errors import SipParseError
from b2bua.sip.grammar import parse_auth_params, quote
from b2bua.sip.uri import SipUri, parse_uri

ALGORITHMS: dict[str, Callable[..., hashlib._Hash]] = {
    "MD5": hashlib.md5,
    "SHA-256": hashlib.sha256,
}

NONCE_CLOCK_SKEW = 5.0  # seconds a nonce may appear to come from the future (clock steps)
MAX_TRACKED_NONCES = 200_000
MAX_AUTH_HEADER = 4096
# Length of the request-digest (`response`) of each algorithm, in hex digits.
RESPONSE_LENGTH = {"MD5": 32, "SHA-256": 64}
_LHEX = re.compile(r"[0-9a-fA-F]+")
_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Parameters that are ours or protocol tokens: printable ASCII only (RFC 7616 §3.4).
_ASCII_PARAMS = ("nonce", "opaque", "cnonce", "uri", "response", "nc", "qop", "algorithm",
                 "userhash")


class Verdict(enum.Enum):
    """Outcome of checking the credentials of a request."""

    OK = "ok"
    NO_CREDENTIALS = "no_credentials"  # nothing for our realm: challenge, not a failure
    STALE = "stale"  # right digest, but an old nonce or a nonce-count already seen
    FAILED = "failed"  # wrong password, unknown user, forged nonce, wrong uri...
    MALFORMED = "malformed"  # credentials for us that break the grammar: a failure, and a 400


@dataclass(frozen=True, slots=True)
class DigestResult:
    verdict: Verdict
    username: str | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK


class DigestSyntaxError(ValueError):
    """A credentials header that does not follow the auth-param grammar."""


def parse_credentials(value: str) -> tuple[str, dict[str, str]]:
    """Split `Digest a=b, c="d"` into the scheme and its parameters (names lower-cased,
    quoted values unescaped). Raises `DigestSyntaxError`."""
    if len(value) > MAX_AUTH_HEADER:
        raise DigestSyntaxError("credentials too long")
    text = value.strip()
    scheme, _, rest = text.partition(" ")
    if "\t" in scheme:
        scheme, _, tail = scheme.partition("\t")
        rest = tail + " " + rest
    if not scheme:
        raise DigestSyntaxError("missing scheme")
    try:
        return scheme, parse_auth_params(rest)
    except SipParseError as e:
        raise DigestSyntaxError(str(e)) from None


def h(algorithm: str, data: str) -> str:
    """Hex digest of `data` (UTF-8) with the named algorithm."""
    return ALGORITHMS[algorithm](data.encode("utf-8", "surrogateescape")).hexdigest()


def compute_ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    return h(algorithm, f"{username}:{realm}:{password}")


def compute_response(
    algorithm: str,
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    *,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
) -> str:
    """The request-digest of RFC 7616 §3.4.1 (qop=auth) or RFC 2069 (no qop)."""
    ha2 = h(algorithm, f"{method}:{uri}")
    if qop is None:
        return h(algorithm, f"{ha1}:{nonce}:{ha2}")
    return h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


class DigestServer:
    """Issues challenges and verifies credentials for one realm."""

    def __init__(
        self,
        realm: str,
        algorithms: Sequence[str],
        *,
        key: bytes,
        nonce_ttl: float,
        random_bytes: Callable[[int], bytes],
        credentials: Mapping[str, str] | None = None,
        max_tracked_nonces: int = MAX_TRACKED_NONCES,
    ) -> None:
        unknown = [a for a in algorithms if a not in ALGORITHMS]
        if unknown or not algorithms:
            raise ValueError(f"unsupported digest algorithms {unknown or list(algorithms)}")
        if len(key) < 16:
            raise ValueError("the nonce key must be at least 16 bytes")
        self.realm = realm
        self.algorithms: tuple[str, ...] = tuple(algorithms)
        self._offered = {a.upper(): a for a in self.algorithms}
        self._key = key
        self.nonce_ttl = float(nonce_ttl)
        self._random = random_bytes
        self._max_nonces = max_tracked_nonces
        self.opaque = base64.urlsafe_b64encode(
            hmac.new(key, b"opaque:" + realm.encode(), hashlib.sha256).digest()[:12]
        ).decode()
        self._opaque = self.opaque.encode("ascii")
        # nonce -> (issued_at, highest nc accepted); insertion order is first-use order.
        self._nc: dict[str, tuple[float, int]] = {}
        self._ha1: dict[str, dict[str, str]] = {}
        # Same cost as a real user: HA1 of a random name and password, never matching.
        dummy = self._random(16).hex()
        self._dummy_ha1 = {a: compute_ha1(a, dummy, realm, dummy) for a in self.algorithms}
        self.set_credentials(credentials or {})

    # -- users ---------------------------------------------------------------------------------
    def set_credentials(self, credentials: Mapping[str, str]) -> None:
        """Replace the username -> password table (HA1 per algorithm precomputed)."""
        self._ha1 = {
            user: {a: compute_ha1(a, user, self.realm, pw) for a in self.algorithms}
            for user, pw in credentials.items()
        }

    # -- nonces --------------------------------------------------------------------------------
    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:12]

    def make_nonce(self, now: float) -> str:
        issued = int(now * 1000).to_bytes(6, "big")
        body = issued + self._random(8)
        return base64.urlsafe_b64encode(body + self._mac(body)).decode()

    def nonce_issued_at(self, nonce: str) -> float | None:
        """When we issued `nonce`, or None when it is not one of ours (forged or garbled)."""
        if len(nonce) != 36:
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce.encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            return None
        if len(raw) != 26 or not hmac.compare_digest(raw[14:], self._mac(raw[:14])):
            return None
        return int.from_bytes(raw[:6], "big") / 1000.0

    # -- challenges ----------------------------------------------------------------------------
    def challenges(
        self, now: float, *, stale: bool = False, algorithms: Sequence[str] | None = None
    ) -> list[str]:
        """One header value per offered algorithm (all, or the given subset of them), in
        preference order, sharing one nonce."""
        nonce = self.make_nonce(now)
        tail = ", stale=true" if stale else ""
        realm = quote(self.realm)
        offered = self.algorithms if algorithms is None else [
            a for a in self.algorithms if a in algorithms
        ] or self.algorithms
        return [
            f'Digest realm={realm}, nonce="{nonce}", opaque="{self.opaque}", '
            f'algorithm={alg}, qop="auth"{tail}'
            for alg in offered
        ]

    # -- verification --------------------------------------------------------------------------
    def verify(
        self, method: str, request_uri: str, authorizations: Sequence[str], now: float
    ) -> DigestResult:
        """Check the credentials headers of a request (`Authorization` or
        `Proxy-Authorization` values) against this realm. Never raises on remote input."""
        params: dict[str, str] | None = None
        for value in authorizations:
            if value.lstrip()[:7].lower() != "digest " and value.lstrip()[:7].lower() != "digest\t":
                continue  # another scheme (Basic, Bearer...): not for us
            try:
                scheme, candidate = parse_credentials(value)
            except DigestSyntaxError as exc:
                return DigestResult(Verdict.MALFORMED, None, f"malformed credentials: {exc}")
            if scheme.lower() != "digest":
                continue
            if candidate.get("realm") == self.realm:
                params = candidate
                break
        if params is None:
            return DigestResult(Verdict.NO_CREDENTIALS)
        problem = malformation(params)
        if problem is not None:
            username = params.get("username")
            named = username if username is not None and _is_text(username) else None
            return DigestResult(Verdict.MALFORMED, named, problem)

        username = params["username"]
        nonce = params["nonce"]
        uri = params["uri"]
        response = params["response"]
        algorithm = self._offered.get(params.get("algorithm", "MD5").upper())
        if algorithm is None:
            return DigestResult(Verdict.FAILED, username, "algorithm not offered")
        if len(response) != RESPONSE_LENGTH[algorithm]:
            return DigestResult(Verdict.MALFORMED, username, "response is not a digest")
        if params.get("userhash", "false").lower() != "false":
            return DigestResult(Verdict.FAILED, username, "userhash not offered")
        qop = params.get("qop")
        nc_text = params.get("nc")
        cnonce = params.get("cnonce")
        nc_value = 0
        if qop is not None:
            if qop.lower() != "auth":
                return DigestResult(Verdict.FAILED, username, "qop not offered")
            assert nc_text is not None  # malformation() checked it
            nc_value = int(nc_text, 16)
        opaque = params.get("opaque")
        if opaque is not None and not hmac.compare_digest(opaque.encode("ascii"), self._opaque):
            return DigestResult(Verdict.FAILED, username, "opaque mismatch")
        issued = self.nonce_issued_at(nonce)
        if issued is None or issued > now + NONCE_CLOCK_SKEW:
            return DigestResult(Verdict.FAILED, username, "nonce not issued here")
        if not _same_uri(uri, request_uri):
            return DigestResult(Verdict.FAILED, username, "digest uri does not match Request-URI")

        table = self._ha1.get(username)
        ha1 = table[algorithm] if table is not None else self._dummy_ha1[algorithm]
        expected = compute_response(
            algorithm, ha1, nonce, method, uri, qop=qop, nc=nc_text, cnonce=cnonce
        )
        matches = hmac.compare_digest(expected.encode("ascii"), response.lower().encode("ascii"))
        if not matches or table is None:
            # One verdict and one reason for a wrong password and an unknown user.
            return DigestResult(Verdict.FAILED, username, "wrong credentials")

        if now - issued > self.nonce_ttl:
            return DigestResult(Verdict.STALE, username, "nonce expired")
        seen = self._nc.get(nonce)
        if qop is None:
            # RFC 2069 style: no nonce-count, so the nonce is good for one request.
            if seen is not None:
                return DigestResult(Verdict.STALE, username, "nonce already used")
            nc_value = 1
        elif seen is not None and nc_value <= seen[1]:
            return DigestResult(Verdict.STALE, username, "nonce-count replayed")
        if seen is None and len(self._nc) >= self._max_nonces:
            self.purge(now)
            if len(self._nc) >= self._max_nonces:
                del self._nc[next(iter(self._nc))]
        self._nc[nonce] = (issued, nc_value)
        return DigestResult(Verdict.OK, username)

    def purge(self, now: float) -> int:
        """Forget nonce-counts of nonces that went stale; returns how many."""
        limit = now - self.nonce_ttl
        old = [n for n, (issued, _) in self._nc.items() if issued < limit]
        for n in old:
            del self._nc[n]
        return len(old)

    @property
    def tracked_nonces(self) -> int:
        return len(self._nc)


def _is_text(value: str) -> bool:
    """Valid UTF-8 (no byte the parser had to escape) without control characters."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return _CONTROL.search(value) is None


def malformation(params: Mapping[str, str]) -> str | None:
    """Why digest credentials break the digest-response grammar (RFC 3261 §25.1, RFC 7616
    §3.4), or None when they follow it. Only the grammar: whether they are right is `verify`'s
    business."""
    # dig-resp: username, realm, nonce, digest-uri and dresponse are required; "If the qop
    # directive is sent ... the cnonce and nonce-count directives MUST be sent" (RFC 7616 §3.4).
    for name in ("username", "realm", "nonce", "uri", "response"):
        if not params.get(name):
            return f"no {name}"
    for name in ("username", "realm"):
        if not _is_text(params[name]):
            return f"{name} is not UTF-8 text"
    for name in _ASCII_PARAMS:
        value = params.get(name)
        if value is not None and not (value.isascii() and value.isprintable()):
            return f"{name} is not printable ASCII"
    # request-digest = LDQUOT 32LHEX RDQUOT (the length depends on the algorithm).
    if _LHEX.fullmatch(params["response"]) is None:
        return "response is not hexadecimal"
    for name in ("algorithm", "qop", "userhash"):
        value = params.get(name)
        if value is not None and _TOKEN.fullmatch(value) is None:
            return f"{name} is not a token"
    if "qop" in params:
        nc = params.get("nc")
        # nonce-count = "nc" EQUAL 8LHEX
        if nc is None or len(nc) != 8 or _LHEX.fullmatch(nc) is None:
            return "qop without an nc of 8 hex digits"
        if not params.get("cnonce"):
            return "qop without cnonce"
    return None


def _same_uri(digest_uri: str, request_uri: str) -> bool:
    """RFC 7616 §3.4.6: the digest-uri must designate the request's target."""
    if digest_uri == request_uri:
        return True
    try:
        digest, target = parse_uri(digest_uri), parse_uri(request_uri)
    except SipParseError:
        return False
    if digest == target:
        return True
    # Tolerated quirk, "digest-uri without user": some UAs (SIPp among them) answer an INVITE's
    # challenge with the Request-URI's host and port only. The host and port must still be the
    # request's, and nonce-count replay protection still applies.
    return (
        isinstance(digest, SipUri)
        and isinstance(target, SipUri)
        and digest.user is None
        and digest.host.lower() == target.host.lower()
        and digest.port == target.port
    )


def answer_challenge(
    challenge: str,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    cnonce: str,
    nc: int = 1,
) -> str:
    """Client side: the credentials value answering one challenge header value (qop=auth when
    offered). Used by tests, benchmarks and outgoing requests that get challenged."""
    scheme, params = parse_credentials(challenge)
    if scheme.lower() != "digest":
        raise DigestSyntaxError(f"not a Digest challenge: {scheme!r}")
    algorithm = params.get("algorithm", "MD5")
    if algorithm.upper() not in {a.upper() for a in ALGORITHMS}:
        raise DigestSyntaxError(f"unsupported algorithm {algorithm!r}")
    algorithm = next(a for a in ALGORITHMS if a.upper() == algorithm.upper())
    realm = params.get("realm", "")
    nonce = params.get("nonce", "")
    qops = [q.strip().lower() for q in params.get("qop", "").split(",") if q.strip()]
    ha1 = compute_ha1(algorithm, username, realm, password)
    fields = [
        f"username={quote(username)}",
        f"realm={quote(realm)}",
        f"nonce={quote(nonce)}",
        f"uri={quote(uri)}",
        f"algorithm={algorithm}",
    ]
    if "auth" in qops:
        nc_text = f"{nc:08x}"
        response = compute_response(
            algorithm, ha1, nonce, method, uri, qop="auth", nc=nc_text, cnonce=cnonce
        )
        fields += ["qop=auth", f"nc={nc_text}", f"cnonce={quote(cnonce)}"]
    else:
        response = compute_response(algorithm, ha1, nonce, method, uri)
    fields.append(f"response={quote(response)}")
    if "opaque" in params:
        fields.append(f"opaque={quote(params['opaque'])}")
    return "Digest " + ", ".join(fields)
