"""HTTP Digest authentication, client side, as a SIP UAC uses it (RFC 3261 §22.2, RFC 7616,
RFC 8760): answering the 401 (WWW-Authenticate) and 407 (Proxy-Authenticate) of a carrier.

Theory of operation. A challenge header value is parsed into a `Challenge`; of the challenges of
one response, the topmost one of each realm whose algorithm we know is answered (RFC 8760 §2.4:
"the UAC SHOULD use the topmost header field value that it supports"). SHA-256 and MD5 are known,
in their plain forms (not the -sess variants). With qop=auth offered the answer carries qop, a
fresh cnonce and nc=00000001; a challenge that offers only qop=auth-int is refused, one without
qop is answered the RFC 2069 way. The `opaque` is echoed, the `algorithm` named.

Sans-IO: the cnonce comes from a `random_token()` callable given by the caller. Nothing here
looks at a clock or keeps state between requests; which challenges were already answered is the
caller's business (a second challenge to a request with credentials means they were refused,
unless the challenge says stale=true).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from b2bua.sip.errors import SipParseError
from b2bua.sip.grammar import parse_auth_params

__all__ = [
    "ALGORITHMS",
    "Challenge",
    "ChallengeError",
    "Credentials",
    "authorization",
    "choose_challenges",
    "parse_challenge",
]

ALGORITHMS: dict[str, Callable[[bytes], hashlib._Hash]] = {
    "MD5": hashlib.md5,
    "SHA-256": hashlib.sha256,
}
MAX_CHALLENGE = 4096

class ChallengeError(ValueError):
    """A challenge we cannot answer (malformed, unknown algorithm, no usable qop)."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """A username and password for one trunk."""

    username: str
    password: str

    def __repr__(self) -> str:  # never print a password in a log or a traceback
        return f"Credentials(username={self.username!r}, password=***)"


@dataclass(frozen=True, slots=True)
class Challenge:
    """One parsed `Digest` challenge."""

    realm: str
    nonce: str
    algorithm: str = "MD5"  # as written by the server
    qop: tuple[str, ...] = ()  # the offered qop options, lower-cased
    opaque: str | None = None
    stale: bool = False
    proxy: bool = False  # from Proxy-Authenticate (answer with Proxy-Authorization)

    @property
    def known_algorithm(self) -> str | None:
        """Our name of its algorithm, None when we do not implement it."""
        upper = self.algorithm.upper()
        return next((a for a in ALGORITHMS if a == upper), None)


def parse_challenge(value: str, *, proxy: bool = False) -> Challenge:
    """Parse `Digest realm="...", nonce="...", ...`; ChallengeError when it is not one."""
    if len(value) > MAX_CHALLENGE:
        raise ChallengeError("challenge too long")
    text = value.strip()
    scheme, _, rest = text.partition(" ")
    if scheme.lower() != "digest":
        raise ChallengeError(f"not a Digest challenge: {scheme[:20]!r}")
    try:
        params = parse_auth_params(rest)
    except SipParseError as e:
        raise ChallengeError(f"malformed challenge: {e}") from None
    if "nonce" not in params:
        raise ChallengeError("challenge without a nonce")
    qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
    return Challenge(
        realm=params.get("realm", ""),
        nonce=params["nonce"],
        algorithm=params.get("algorithm", "MD5"),
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
        proxy=proxy,
    )


def choose_challenges(
    www_authenticate: Iterable[str], proxy_authenticate: Iterable[str]
) -> list[Challenge]:
    """The challenges of a 401/407 we will answer: per realm (and header kind) the topmost one
    we can answer. ChallengeError when there is none, naming why."""
    chosen: dict[tuple[bool, str], Challenge] = {}
    problems: list[str] = []
    for values, proxy in ((www_authenticate, False), (proxy_authenticate, True)):
        for value in values:
            try:
                challenge = parse_challenge(value, proxy=proxy)
            except ChallengeError as e:
                problems.append(str(e))
                continue
            if challenge.known_algorithm is None:
                problems.append(f"algorithm {challenge.algorithm[:20]} not supported")
                continue
            if challenge.qop and "auth" not in challenge.qop:
                problems.append(f"qop {','.join(challenge.qop)[:30]} not supported")
                continue
            chosen.setdefault((proxy, challenge.realm), challenge)
    if not chosen:
        raise ChallengeError("; ".join(problems) or "no challenge in the response")
    return list(chosen.values())


def _h(algorithm: str, text: str) -> str:
    return ALGORITHMS[algorithm](text.encode("utf-8", "surrogateescape")).hexdigest()


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def authorization(
    challenge: Challenge,
    credentials: Credentials,
    method: str,
    uri: str,
    cnonce: str,
    nc: int = 1,
) -> tuple[str, str]:
    """The header (`Authorization` or `Proxy-Authorization`) and its value answering
    `challenge` for a request `method` to `uri` (RFC 7616 §3.4)."""
    algorithm = challenge.known_algorithm
    if algorithm is None:
        raise ChallengeError(f"algorithm {challenge.algorithm[:20]} not supported")
    # RFC 7616 §3.4.2: A1 = unq(username) ":" unq(realm) ":" passwd
    ha1 = _h(algorithm, f"{credentials.username}:{challenge.realm}:{credentials.password}")
    # §3.4.3: for qop "auth" (or none), A2 = Method ":" request-uri
    ha2 = _h(algorithm, f"{method}:{uri}")
    fields = [
        f"username={_quote(credentials.username)}",
        f"realm={_quote(challenge.realm)}",
        f"nonce={_quote(challenge.nonce)}",
        f"uri={_quote(uri)}",
        f"algorithm={algorithm}",
    ]
    if challenge.qop:
        nc_text = f"{nc:08x}"
        # §3.4.1: response = KD(H(A1), unq(nonce) ":" nc ":" unq(cnonce) ":" unq(qop) ":" H(A2))
        response = _h(algorithm, f"{ha1}:{challenge.nonce}:{nc_text}:{cnonce}:auth:{ha2}")
        fields += ["qop=auth", f"nc={nc_text}", f"cnonce={_quote(cnonce)}"]
    else:
        response = _h(algorithm, f"{ha1}:{challenge.nonce}:{ha2}")  # RFC 2069
    fields.append(f"response={_quote(response)}")
    if challenge.opaque is not None:
        fields.append(f"opaque={_quote(challenge.opaque)}")
    header = "Proxy-Authorization" if challenge.proxy else "Authorization"
    return header, "Digest " + ", ".join(fields)
