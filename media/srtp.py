"""SDES-SRTP (RFC 4568) for the relay: key negotiation in SDP and per-leg protect/unprotect.

Theory of operation. A leg of a call is either plain RTP or SRTP. An SRTP leg has one
`SrtpContext`: a libsrtp session for what we send to it (our master key, which we announce in
the SDP we send to that leg) and one for what it sends to us (its master key, from the SDP it
sent). The relay decrypts what arrives from an SRTP leg before anything else looks at it (DTMF,
recording, latching) and encrypts what goes out to an SRTP leg last, after the header rewrite;
so an SRTP leg talks to a plain leg, to another SRTP leg (with other keys), or to our players.

Which legs are SRTP follows each leg's `media_encryption`:

- "sdes": every offer we send to the leg is SRTP, and its offers and answers must be SRTP;
- "optional" (the default): an SRTP offer from the leg is answered with SRTP; our own offers to
  it are plain, unless the leg already uses SRTP (a re-INVITE keeps what was negotiated);
- "none": the leg is plain; an SRTP offer from it is refused.

The crypto itself is libsrtp's (through pylibsrtp); this module only picks suites and keys.
Key material comes from a `key_source` (os.urandom by default) so that tests can fix it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import pylibsrtp

from media.errors import MediaError
from media.sdp import Crypto, KeyParams, SdpError, crypto_lines

__all__ = [
    "DEFAULT_SUITE",
    "MEDIA_ENCRYPTIONS",
    "SUITES",
    "MediaEncryption",
    "SrtpContext",
    "SrtpError",
    "choose_crypto",
    "local_crypto",
]

MediaEncryption = Literal["sdes", "optional", "none"]
MEDIA_ENCRYPTIONS: tuple[MediaEncryption, ...] = ("sdes", "optional", "none")


@dataclass(frozen=True, slots=True)
class Suite:
    """An SRTP crypto suite we can run: its libsrtp profile and master key + salt length."""

    name: str
    profile: int
    key_length: int  # master key + master salt, in bytes


# RFC 4568 §6.2: AES_CM_128_HMAC_SHA1_80 (the one every SDES endpoint has) and _32; both have a
# 128-bit master key and a 112-bit master salt.
SUITES: dict[str, Suite] = {
    "AES_CM_128_HMAC_SHA1_80": Suite(
        "AES_CM_128_HMAC_SHA1_80", pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 30
    ),
    "AES_CM_128_HMAC_SHA1_32": Suite(
        "AES_CM_128_HMAC_SHA1_32", pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32, 30
    ),
}
DEFAULT_SUITE = "AES_CM_128_HMAC_SHA1_80"

KeySource = Callable[[int], bytes]


class SrtpError(Exception):
    """A packet that does not authenticate (wrong key, replayed, cut short)."""


class SrtpContext:
    """The two libsrtp sessions of one SRTP leg."""

    __slots__ = ("_rx", "_tx", "local_key", "remote_key", "suite")

    def __init__(self, suite: str, local_key: bytes, remote_key: bytes) -> None:
        info = SUITES[suite]
        self.suite = suite
        self.local_key = local_key
        self.remote_key = remote_key
        self._tx = pylibsrtp.Session(
            pylibsrtp.Policy(local_key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND, 0, info.profile)
        )
        self._rx = pylibsrtp.Session(
            pylibsrtp.Policy(remote_key, pylibsrtp.Policy.SSRC_ANY_INBOUND, 0, info.profile)
        )

    def same_keys(self, suite: str, local_key: bytes, remote_key: bytes) -> bool:
        return (suite, local_key, remote_key) == (self.suite, self.local_key, self.remote_key)

    def protect(self, rtp: bytes) -> bytes:
        """SrtpError when libsrtp refuses the packet (a header longer than the packet)."""
        try:
            return self._tx.protect(rtp)
        except (pylibsrtp.Error, ValueError) as e:
            raise SrtpError(str(e)) from e

    def protect_rtcp(self, rtcp: bytes) -> bytes:
        try:
            return self._tx.protect_rtcp(rtcp)
        except (pylibsrtp.Error, ValueError) as e:
            raise SrtpError(str(e)) from e

    def unprotect(self, srtp: bytes) -> bytes:
        try:
            return self._rx.unprotect(srtp)
        except (pylibsrtp.Error, ValueError) as e:
            raise SrtpError(str(e)) from e

    def unprotect_rtcp(self, srtcp: bytes) -> bytes:
        try:
            return self._rx.unprotect_rtcp(srtcp)
        except (pylibsrtp.Error, ValueError) as e:
            raise SrtpError(str(e)) from e


def choose_crypto(values: Iterable[str]) -> Crypto:
    """The first a=crypto line of an SRTP offer that we can use (the answerer's choice,
    RFC 4568 §7.1.1); MediaError with status 488 when there is none.

    Usable: a suite of `SUITES`, one inline key of the suite's length, no MKI, and no session
    parameter we would have to honour."""
    parsed = crypto_lines(values)
    for item in parsed:
        if isinstance(item, Crypto) and _usable(item):
            return item
    offered = [x.suite for x in parsed if isinstance(x, Crypto)]
    malformed = [x.reason for x in parsed if isinstance(x, SdpError)]
    if not parsed:
        why = "no a=crypto line (only SDES keying is supported)"
    elif offered:
        why = f"no supported crypto suite among {', '.join(offered)[:200]}"
    else:
        why = f"unreadable a=crypto: {'; '.join(malformed)[:200]}"
    raise MediaError(
        f"SRTP offer in SDP not acceptable: {why} "
        f"(supported: {', '.join(SUITES)})",
        status=488,
    )


def _usable(crypto: Crypto) -> bool:
    suite = SUITES.get(crypto.suite)
    if suite is None or not crypto.usable_params or len(crypto.keys) != 1:
        return False
    key = crypto.keys[0]
    return key.mki is None and len(key.key_salt) == suite.key_length


def check_answer(values: Iterable[str], offered: Crypto) -> Crypto:
    """The a=crypto line of an answer to our `offered` line: same tag and suite, a usable key
    (RFC 4568 §7.1.2); MediaError otherwise."""
    for item in crypto_lines(values):
        if isinstance(item, Crypto) and item.tag == offered.tag:
            if item.suite != offered.suite or not _usable(item):
                raise MediaError(
                    f"SRTP answer in SDP not acceptable: crypto {item.tag} {item.suite[:40]} "
                    f"does not match the offered {offered.suite}",
                    status=488,
                )
            return item
    raise MediaError(
        f"SRTP answer in SDP not acceptable: no a=crypto with tag {offered.tag}", status=488
    )


def local_crypto(tag: int, suite: str, key: bytes) -> Crypto:
    """Our a=crypto line: `key` (master key || salt) inline."""
    return Crypto(tag, suite, (KeyParams(key),))


def new_key(suite: str, key_source: KeySource = os.urandom) -> bytes:
    """Fresh master key and salt for `suite` (RFC 4568 §6.1: keys MUST be random)."""
    return key_source(SUITES[suite].key_length)
