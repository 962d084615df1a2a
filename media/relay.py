"""The anchored media of one call, sans-IO: SDP rewriting, symmetric latching, relay decisions,
DTMF, RTP timeouts and recording. The asyncio shell (`media.engine`) owns the sockets and the
timer and calls in here with the time.

Theory of operation. A call has two legs, "a" and "b"; each leg has an RTP port of ours (and
RTCP on port + 1) that faces that leg's far end. SDP coming from one leg is rewritten for the
other leg so that it names our address and the port facing the other leg; codecs pass through
untouched. RTP arriving on a leg's port is checked, fed to the DTMF detector and the recorder of
that leg, then rewritten by the other leg's `OutgoingStream` and sent out of the other leg's port
to where that other leg really sends from.

Symmetric latching (RFC 4961 style; what makes NATed phones work): a leg's destination is the
source address of the first RTP packet received from it; before any packet, the address in its
SDP. Packets from another source are dropped while the latched source is alive; after
`relatch_after` seconds of silence from it, or after an SDP change of that leg, the next source
is latched instead (a phone whose NAT binding changed).

A leg that is being played to (hold music, announcement) gets frames from a `Player` on the same
`OutgoingStream`, and what the other leg sends to it is dropped meanwhile.

SRTP (media.srtp): each leg has a `media_encryption` ("sdes", "optional", "none"). The SDP of an
SRTP leg carries RTP/SAVP and our a=crypto key for that leg; the SDP of a plain leg RTP/AVP and
no a=crypto, whatever the other leg uses. An SRTP leg's packets are authenticated and decrypted
on arrival, before latching, DTMF and recording see them, and encrypted after the header rewrite
on the way out (relayed or played), so the rest of this module only ever sees plain RTP.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import random
import struct
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from media.errors import MediaError
from media.g711 import CODECS, G711Codec
from media.library import FRAME_BYTES, SAMPLE_RATE
from media.player import OutgoingStream, Player
from media.rtp import DtmfDetector, DtmfEvent, RtpError, RtpPacket
from media.sdp import (
    AudioSdp,
    CodecInfo,
    Crypto,
    SdpError,
    SessionDescription,
    codecs,
    direction,
    first_audio,
    is_hold,
    is_secure_proto,
    rewrite_connection,
    secure_audio_lines,
)
from media.srtp import (
    DEFAULT_SUITE,
    MEDIA_ENCRYPTIONS,
    KeySource,
    MediaEncryption,
    SrtpContext,
    SrtpError,
    check_answer,
    choose_crypto,
    local_crypto,
    new_key,
)

__all__ = [
    "LEGS",
    "DtmfReceived",
    "LegName",
    "LegState",
    "Recorder",
    "RecordingResult",
    "RtpTimedOut",
    "SessionCore",
]

LegName = Literal["a", "b"]
LEGS: tuple[LegName, LegName] = ("a", "b")
Address = tuple[str, int]

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop as _audioop
    except ImportError:  # pragma: no cover - Python >= 3.13 without audioop-lts
        _audioop = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    leg: LegName
    event: DtmfEvent


@dataclass(frozen=True, slots=True)
class RtpTimedOut:
    leg: LegName


@dataclass(frozen=True, slots=True)
class RecordingResult:
    """A finished recording: the WAV file (None if nothing was heard), its length in seconds,
    and why it stopped: "max_seconds", "silence", "stopped" or "closed"."""

    path: Path | None
    duration: float
    reason: str


def _rms(pcm: bytes) -> int:
    if _audioop is not None:
        return int(_audioop.rms(pcm, 2))
    n = len(pcm) // 2
    if not n:
        return 0
    samples = struct.unpack(f"<{n}h", pcm[: 2 * n])
    return int((sum(s * s for s in samples) / n) ** 0.5)


class Recorder:
    """Collects what one leg sends as 8 kHz s16le, placed by RTP timestamp (lost or suppressed
    packets become silence), until stopped, `max_seconds` of wall time, or `silence_seconds`
    without voice (RMS above `voice_threshold`). Trailing silence is trimmed to `tail` seconds."""

    def __init__(
        self,
        path: Path,
        start: float,
        max_seconds: float,
        silence_seconds: float | None,
        decoders: dict[int, G711Codec],
        *,
        voice_threshold: int = 250,
        tail: float = 0.5,
    ) -> None:
        self.path = path
        self.start = start
        self.max_seconds = max_seconds
        self.silence_seconds = silence_seconds
        self.decoders = decoders
        self.voice_threshold = voice_threshold
        self.tail = tail
        self.pcm = bytearray()
        self.last_voice = start
        self.last_voice_end = 0  # byte offset just after the last voiced frame
        self.stop_reason: str | None = None
        self._ssrc: int | None = None
        self._base = 0  # RTP timestamp of sample 0 (for the current SSRC)
        self._offset = 0  # sample position of `_base`
        self._first_time = start
        self._limit = int(max_seconds * SAMPLE_RATE) * 2

    def feed(self, data: bytes, now: float) -> None:
        if self.stop_reason is not None or len(data) < 12:
            return
        codec = self.decoders.get(data[1] & 0x7F)
        if codec is None:
            return
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            return
        if packet.ssrc != self._ssrc:
            # The first packet is sample 0 (no leading silence for the network delay); a new
            # source later on goes on at its wall-clock position.
            if self._ssrc is None:
                self._first_time = now
                self._offset = 0
            else:
                wall = round((now - self._first_time) * SAMPLE_RATE)
                self._offset = max(len(self.pcm) // 2, wall)
            self._ssrc = packet.ssrc
            self._base = packet.timestamp
        delta = (packet.timestamp - self._base) & 0xFFFFFFFF
        if delta >= 0x80000000:
            return  # older than the first packet
        pos = 2 * (self._offset + delta)
        pcm = codec.decode(packet.payload)
        if pos >= self._limit:
            return
        pcm = pcm[: self._limit - pos]
        end = pos + len(pcm)
        if end > len(self.pcm):
            self.pcm.extend(bytes(end - len(self.pcm)))
        self.pcm[pos:end] = pcm
        if _rms(pcm) >= self.voice_threshold:
            self.last_voice = now
            self.last_voice_end = max(self.last_voice_end, end)
        self.check(now)

    def check(self, now: float) -> bool:
        """Apply the time limits; True once the recording has stopped."""
        if self.stop_reason is None:
            if now - self.start >= self.max_seconds:
                self.stop_reason = "max_seconds"
            elif self.silence_seconds is not None and now - self.last_voice >= self.silence_seconds:
                self.stop_reason = "silence"
        return self.stop_reason is not None

    def stop(self, reason: str = "stopped") -> None:
        if self.stop_reason is None:
            self.stop_reason = reason

    def audio(self) -> bytes:
        """The recorded audio; after a stop on silence, the silent tail is trimmed."""
        pcm = bytes(self.pcm)
        if self.stop_reason == "silence":
            keep = self.last_voice_end + 2 * int(self.tail * SAMPLE_RATE)
            pcm = pcm[:keep] if self.last_voice_end else b""
        return pcm


@dataclass(slots=True, eq=False)
class LegState:
    """One side of the call as the relay sees it."""

    name: LegName
    rtp_port: int
    out: OutgoingStream
    sdp_address: Address | None = None
    sdp_rtcp_address: Address | None = None
    latched: Address | None = None
    latched_rtcp: Address | None = None
    last_rx: float = float("-inf")
    expect_since: float | None = None  # RTP is expected from this leg since then
    timed_out: bool = False
    held: bool = False  # this leg's last offer put the call on hold
    sends: bool = False  # its SDP says it sends RTP
    dtmf_pts: frozenset[int] = frozenset()
    remote_codecs: list[CodecInfo] = field(default_factory=list)  # of its last SDP's audio section
    playback: tuple[str, int] | None = None  # (codec name, payload type) to play to this leg
    player: Player | None = None
    recorder: Recorder | None = None
    dtmf: DtmfDetector = field(default_factory=DtmfDetector)
    origin_id: str = "0"
    origin_version: int = 0
    last_sent_body: str | None = None
    rx_packets: int = 0
    tx_packets: int = 0
    dropped: int = 0
    encryption: MediaEncryption = "optional"
    srtp: SrtpContext | None = None  # this leg speaks SRTP with these keys
    offer_crypto: Crypto | None = None  # the a=crypto we took from its last offer
    sent_crypto: Crypto | None = None  # the a=crypto of our last offer to it
    local_keys: dict[str, bytes] = field(default_factory=dict)  # our master key per suite
    srtp_errors: int = 0  # packets from it that did not authenticate

    @property
    def destination(self) -> Address | None:
        return self.latched or self.sdp_address

    @property
    def rtcp_destination(self) -> Address | None:
        if self.latched_rtcp is not None:
            return self.latched_rtcp
        if self.sdp_rtcp_address is not None:
            return self.sdp_rtcp_address
        if self.latched is not None:
            return (self.latched[0], self.latched[1] + 1)
        return None


class SessionCore:
    """The media state of one call (both legs), without I/O."""

    def __init__(
        self,
        call_id: str,
        local_ip: str,
        ports: dict[LegName, int],
        rng: random.Random,
        *,
        rtp_timeout: float = 60.0,
        relatch_after: float = 2.0,
        encryption: Mapping[LegName, MediaEncryption] | None = None,
        key_source: KeySource = os.urandom,
    ) -> None:
        self.call_id = call_id
        self.key_source = key_source
        self.local_ip = local_ip
        self.rtp_timeout = rtp_timeout
        self.relatch_after = relatch_after
        self.legs: dict[LegName, LegState] = {}
        for name in LEGS:
            out = OutgoingStream(rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(32))
            self.legs[name] = LegState(
                name, ports[name], out, origin_id=str(rng.randrange(10**9, 10**10))
            )
        self.peer: dict[LegName, LegState] = {"a": self.legs["b"], "b": self.legs["a"]}
        for name, mode in (encryption or {}).items():
            self.set_encryption(name, mode)
        self.events: list[DtmfReceived | RtpTimedOut] = []
        self.established = False  # an offer/answer exchange has completed
        self._offer_from: LegName | None = None
        self._offer_local = False

    # ---- SDP --------------------------------------------------------------------------------

    def set_encryption(self, leg: LegName, mode: MediaEncryption) -> None:
        """The `media_encryption` of `leg` for the SDP exchanged from now on."""
        if mode not in MEDIA_ENCRYPTIONS:
            raise MediaError(f"media_encryption must be one of {', '.join(MEDIA_ENCRYPTIONS)}")
        self.legs[leg].encryption = mode

    def offer(self, from_leg: LegName, sdp: bytes, now: float) -> bytes:
        parsed = self._take(from_leg, sdp, now)
        self._offer_from, self._offer_local = from_leg, False
        return self._forward(self.peer[from_leg], parsed, self._offer_crypto(self.peer[from_leg]))

    def answer(self, from_leg: LegName, sdp: bytes, now: float) -> bytes | None:
        parsed = self._take(from_leg, sdp, now, is_answer=True)
        local = self._offer_local and self._offer_from == _other(from_leg)
        self._settle(now, self.legs[from_leg].remote_codecs)
        if local:
            return None
        to = self.peer[from_leg]
        return self._forward(to, parsed, self._answer_crypto(to))

    def local_answer(self, leg: LegName, sdp: bytes, now: float) -> bytes:
        """Answer an offer from `leg` ourselves (announcement, voicemail, bounce)."""
        taken = self._take(leg, sdp, now)
        # The answer is built from the offer's structure: the general model (a rare path).
        parsed = taken if isinstance(taken, SessionDescription) else SessionDescription.parse(sdp)
        ai = first_audio(parsed)
        offered = codecs(parsed, ai) if ai is not None else []
        # The codec the other leg uses first, when offered: the relay does not transcode (a
        # picked-up call is answered on both sides by us).
        peer = self.peer[leg].playback
        usable = [c for c in offered if c.name in CODECS]
        usable.sort(key=lambda c: peer is None or c.name != peer[0])
        chosen = usable[:1]
        if not chosen:
            raise MediaError("no common codec: the offer has neither PCMU nor PCMA")
        chosen += [c for c in offered if c.name == "TELEPHONE-EVENT" and c.clock_rate == 8000][:1]
        dir_ = direction(parsed, ai) if ai is not None else "sendrecv"
        answer_dir = {"sendonly": "recvonly", "recvonly": "sendonly"}.get(dir_, dir_)
        state = self.legs[leg]
        body = _build_sdp(self.local_ip, state.rtp_port, chosen, answer_dir, parsed, ai,
                          self._answer_crypto(state))
        self._offer_from, self._offer_local = leg, False
        answer = SessionDescription.parse(body)
        self._settle(now, codecs(answer, 0))
        return self._stamp(state, answer)

    def local_offer(self, leg: LegName, now: float) -> bytes:
        """An offer from us to `leg`: the G.711 codec already in use on the other leg, else PCMU
        and PCMA; telephone-event in both cases."""
        other = self.peer[leg]
        te = CodecInfo(101, "telephone-event", 8000, 1, "0-16")
        if other.playback is not None:
            name, _ = other.playback
            chosen = [CodecInfo(CODECS[name].payload_type, name, 8000), te]
        else:
            chosen = [CodecInfo(0, "PCMU", 8000), CodecInfo(8, "PCMA", 8000), te]
        state = self.legs[leg]
        body = _build_sdp(self.local_ip, state.rtp_port, chosen, "sendrecv", None, None,
                          self._offer_crypto(state))
        self._offer_from, self._offer_local = _other(leg), True
        return self._stamp(self.legs[leg], SessionDescription.parse(body))

    def _take(
        self, leg_name: LegName, sdp: bytes, now: float, *, is_answer: bool = False
    ) -> AudioSdp | SessionDescription:
        """Read an offer or answer from `leg_name` into its state; the body, scanned or parsed,
        for `_forward`."""
        leg = self.legs[leg_name]
        address: Address | None = None
        rtcp: Address | None = None
        sends = False
        found: list[CodecInfo] = []
        quick = AudioSdp.scan(sdp)
        taken: AudioSdp | SessionDescription
        if quick is not None:  # the usual body, in one pass
            taken = quick
            self._keying(leg, quick.media.proto, quick.crypto, is_answer)
            host = quick.connection.host
            held = quick.is_hold
            address = _media_address(host, quick.media.port)
            if address is not None:
                rtcp = _rtcp_address(host, quick.media.port, quick.rtcp)
            sends = address is not None and quick.direction in ("sendrecv", "sendonly")
            found = quick.codecs
            leg.dtmf_pts = _dtmf_types(found)
        else:
            try:
                taken = SessionDescription.parse(sdp)
            except SdpError as e:
                raise MediaError(f"malformed SDP from leg {leg_name}: {e.reason}") from e
            held = is_hold(taken)
            ai = first_audio(taken)
            if ai is not None:
                section = taken.media[ai]
                self._keying(leg, section.media.proto, list(section.attributes("crypto")),
                             is_answer)
            else:
                self._keying(leg, "RTP/AVP", [], is_answer)
            if ai is not None:
                conn = taken.connection_for(ai)
                port = taken.media[ai].media.port
                if conn is not None:
                    address = _media_address(conn.host, port)
                    if address is not None:
                        rtcp = _rtcp_address(conn.host, port, taken.media[ai].attributes("rtcp"))
                sends = address is not None and direction(taken, ai) in ("sendrecv", "sendonly")
                found = codecs(taken, ai)
                leg.dtmf_pts = _dtmf_types(found)
        if address != leg.sdp_address:
            leg.latched = None  # a new address in SDP: latch again
            leg.latched_rtcp = None
        leg.sdp_address, leg.sdp_rtcp_address = address, rtcp
        leg.remote_codecs = found
        if not is_answer:
            leg.held = held
        leg.sends = sends
        leg.expect_since = now
        leg.timed_out = False
        if leg.playback is None:
            leg.playback = next(((c.name, c.payload_type) for c in found if c.name in CODECS), None)
        return taken

    def _settle(self, now: float, found: list[CodecInfo]) -> None:
        """An offer/answer exchange completed with an answer listing codecs `found`: each leg's
        playback codec becomes the first G.711 codec of the answer that the leg itself listed,
        with the leg's payload type."""
        self.established = True
        for leg in self.legs.values():
            # RTP is expected from the answer on, not while the callee rings.
            leg.expect_since = now
        if not found:
            return
        order = [c.name for c in found if c.name in CODECS]
        for leg in self.legs.values():
            if not leg.remote_codecs:
                continue
            theirs = {c.name: c for c in leg.remote_codecs}
            pick = next((theirs[name] for name in order if name in theirs), None)
            if pick is not None:
                leg.playback = (pick.name, pick.payload_type)

    def _keying(
        self, leg: LegState, proto: str, crypto: list[str], is_answer: bool
    ) -> None:
        """The SRTP state of `leg` after an offer or answer from it whose audio section has
        `proto` and a=crypto values `crypto`; MediaError (status 488) when it is refused.
        Nothing of the leg changes when it is refused."""
        secure = is_secure_proto(proto)
        if is_answer:
            sent = leg.sent_crypto
            if sent is None:
                if secure:
                    raise MediaError("SRTP answer in SDP to a plain RTP offer", status=488)
                leg.srtp = None
            elif not secure:
                if leg.encryption == "sdes":
                    raise MediaError(
                        "plain RTP answer in SDP refused: media_encryption is sdes", status=488
                    )
                leg.srtp = None  # it declined SRTP: plain RTP it is
            else:
                self._use_keys(leg, sent.suite, check_answer(crypto, sent))
            leg.sent_crypto = None
            return
        if not secure:
            if leg.encryption == "sdes":
                raise MediaError(
                    "plain RTP offer in SDP refused: media_encryption is sdes", status=488
                )
            leg.offer_crypto = None
            leg.srtp = None
            return
        if leg.encryption == "none":
            raise MediaError("SRTP offer in SDP refused: media_encryption is none", status=488)
        chosen = choose_crypto(crypto)
        leg.offer_crypto = chosen
        self._use_keys(leg, chosen.suite, chosen)

    def _use_keys(self, leg: LegState, suite: str, remote: Crypto) -> None:
        local = self._local_key(leg, suite)
        remote_key = remote.keys[0].key_salt
        if leg.srtp is None or not leg.srtp.same_keys(suite, local, remote_key):
            leg.srtp = SrtpContext(suite, local, remote_key)

    def _local_key(self, leg: LegState, suite: str) -> bytes:
        key = leg.local_keys.get(suite)
        if key is None:
            key = leg.local_keys[suite] = new_key(suite, self.key_source)
        return key

    def _offer_crypto(self, to: LegState) -> Crypto | None:
        """The a=crypto of an offer from us to leg `to` (None: a plain offer). SRTP when the leg
        demands it, or when it already speaks SRTP (a re-INVITE keeps what was negotiated)."""
        if to.encryption == "sdes" or (to.encryption == "optional" and to.srtp is not None):
            suite = to.srtp.suite if to.srtp is not None else DEFAULT_SUITE
            to.sent_crypto = local_crypto(1, suite, self._local_key(to, suite))
        else:
            to.sent_crypto = None
        return to.sent_crypto

    def _answer_crypto(self, to: LegState) -> Crypto | None:
        """The a=crypto of our answer to leg `to`'s offer: its chosen tag and suite with our
        key (RFC 4568 §7.1.1), None when its offer was plain."""
        offered = to.offer_crypto
        if offered is None:
            return None
        return local_crypto(offered.tag, offered.suite, self._local_key(to, offered.suite))

    def _forward(
        self, to: LegState, sdp: AudioSdp | SessionDescription, crypto: Crypto | None
    ) -> bytes:
        """`sdp` rewritten for leg `to`: our address and `to`'s port, ICE removed, RTP/SAVP
        with `crypto` or plain RTP/AVP."""
        if isinstance(sdp, AudioSdp):
            lines = sdp.rewritten(self.local_ip, to.rtp_port)
            if crypto is not None or sdp.crypto or is_secure_proto(sdp.media.proto):
                lines = secure_audio_lines(lines, sdp.media_index, crypto)
            return self._stamp_lines(to, lines, sdp.media_index, sdp.eol, sdp.trailer)
        ai = first_audio(sdp)
        ports = {ai: to.rtp_port} if ai is not None else {}
        rewritten = rewrite_connection(sdp, self.local_ip, ports)
        lines = list(rewritten.lines())
        if ai is not None:
            index = len(rewritten.session) + sum(1 + len(s.lines) for s in rewritten.media[:ai])
            lines = secure_audio_lines(lines, index, crypto)
        return self._stamp_lines(to, lines, len(rewritten.session), rewritten.eol,
                                 rewritten.trailer)

    def _stamp(self, to: LegState, sdp: SessionDescription) -> bytes:
        return self._stamp_lines(to, list(sdp.lines()), len(sdp.session), sdp.eol, sdp.trailer)

    def _stamp_lines(
        self, to: LegState, lines: list[str], session_lines: int, eol: str, trailer: str
    ) -> bytes:
        """Our own o= line for leg `to`, its version bumped whenever the body changes
        (RFC 3264 §8: a changed description MUST carry an incremented version). The first
        `session_lines` lines are the session level, where the o= line is (or is added)."""
        body = eol.join([line for line in lines if not line.startswith("o=")])
        if body != to.last_sent_body:
            to.origin_version += 1
            to.last_sent_body = body
        addr_type = "IP6" if ":" in self.local_ip else "IP4"
        origin = f"o=- {to.origin_id} {to.origin_version} IN {addr_type} {self.local_ip}"
        # The session-level o= line is ours (added after v= when missing), as `with_origin` does.
        replaced = False
        for i in range(session_lines):
            if lines[i].startswith("o="):
                lines[i] = origin
                replaced = True
        if not replaced:
            lines.insert(1, origin)
        return (eol.join(lines) + trailer).encode("utf-8", "surrogateescape")

    # ---- RTP --------------------------------------------------------------------------------

    def receive_rtp(
        self, leg: LegState, data: bytes, source: Address, now: float
    ) -> tuple[bytes, Address] | None:
        """A datagram on `leg`'s RTP port: the datagram to send to the other leg, if any."""
        if not _rtp_header_fits(data):
            leg.dropped += 1
            return None
        if leg.srtp is not None:
            # Authenticated before anything else: a forged packet must not move the latch.
            try:
                data = leg.srtp.unprotect(data)
            except SrtpError:
                leg.srtp_errors += 1
                leg.dropped += 1
                return None
        if source != leg.latched:
            # Symmetric RTP: latch to where the leg's RTP comes from (a NAT's address). A
            # packet from the very address its SDP names always takes the latch: after a
            # transfer, the party the SDP now describes wins over one still sending.
            if source != leg.sdp_address and leg.latched is not None and \
                    now - leg.last_rx < self.relatch_after:
                leg.dropped += 1
                return None
            leg.latched = source
        leg.last_rx = now
        leg.rx_packets += 1
        if (data[1] & 0x7F) in leg.dtmf_pts:
            self._dtmf(leg, data)
        if leg.recorder is not None:
            leg.recorder.feed(data, now)
        other = self.peer[leg.name]
        if other.player is not None:
            return None
        dest = other.latched or other.sdp_address
        if dest is None:
            return None
        out = other.out.relay(data, now)
        if out is None:
            return None
        if other.srtp is not None:
            try:
                out = other.srtp.protect(out)
            except SrtpError:
                other.srtp_errors += 1
                return None
        other.tx_packets += 1
        return out, dest

    def receive_rtcp(
        self, leg: LegState, data: bytes, source: Address, now: float
    ) -> tuple[bytes, Address] | None:
        """A datagram on `leg`'s RTCP port: relayed unchanged to the other leg's RTCP address."""
        if len(data) < 8 or data[0] >> 6 != 2:
            return None
        if leg.srtp is not None:
            try:
                data = leg.srtp.unprotect_rtcp(data)
            except SrtpError:
                leg.srtp_errors += 1
                return None
        if source != leg.latched_rtcp:
            if leg.latched_rtcp is not None and now - leg.last_rx < self.relatch_after:
                return None
            leg.latched_rtcp = source
        other = self.peer[leg.name]
        if other.player is not None:
            return None
        dest = other.rtcp_destination
        if dest is None:
            return None
        if other.srtp is not None:
            try:
                data = other.srtp.protect_rtcp(data)
            except SrtpError:
                other.srtp_errors += 1
                return None
        return data, dest

    def _dtmf(self, leg: LegState, data: bytes) -> None:
        try:
            events = leg.dtmf.feed(RtpPacket.parse(data))
        except RtpError:
            return
        for event in events:
            self.events.append(DtmfReceived(leg.name, event))

    def tick(self, now: float) -> list[Recorder]:
        """Housekeeping: RTP timeouts (as events) and recorders whose limits passed."""
        on_hold = not self.established or any(leg.held for leg in self.legs.values())
        done = []
        for leg in self.legs.values():
            if (
                not on_hold
                and leg.sends
                and not leg.timed_out
                and leg.expect_since is not None
                and now - max(leg.last_rx, leg.expect_since) >= self.rtp_timeout
            ):
                leg.timed_out = True
                self.events.append(RtpTimedOut(leg.name))
            if leg.recorder is not None and leg.recorder.check(now):
                done.append(leg.recorder)
        return done

    def start_recording(
        self,
        leg_name: LegName,
        path: Path,
        now: float,
        max_seconds: float,
        silence_seconds: float | None,
    ) -> Recorder:
        leg = self.legs[leg_name]
        if leg.recorder is not None and leg.recorder.stop_reason is None:
            raise MediaError(f"leg {leg_name} is already being recorded")
        decoders: dict[int, G711Codec] = {0: CODECS["PCMU"], 8: CODECS["PCMA"]}
        for state in self.legs.values():
            for c in state.remote_codecs:
                if c.name in CODECS:
                    decoders[c.payload_type] = CODECS[c.name]
        leg.recorder = Recorder(path, now, max_seconds, silence_seconds, decoders)
        return leg.recorder


def _rtp_header_fits(data: bytes) -> bool:
    """Version 2, and the fixed header, its CSRC list and its extension (RFC 3550 §5.1, §5.3.1)
    all within the datagram: what a relay must check before it rewrites or protects one."""
    size = len(data)
    if size < 12 or data[0] & 0xC0 != 0x80:
        return False
    end = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:
        if end + 4 > size:
            return False
        end += 4 + 4 * int.from_bytes(data[end + 2 : end + 4], "big")
    return end <= size


def _dtmf_types(found: list[CodecInfo]) -> frozenset[int]:
    return frozenset(c.payload_type for c in found if c.name == "TELEPHONE-EVENT")


def _media_address(host: str, port: int) -> Address | None:
    """Where a leg's SDP says to send its media: None for a held or disabled stream (0.0.0.0,
    port 0), for a port out of range, and for anything but an IP address. A host name is not
    resolved: a lookup would block the event loop for every packet, and the leg's first RTP
    packet tells where it is anyway (latching)."""
    if not 0 < port < 65536 or not _is_media_host(host):
        return None
    return host, port


@functools.lru_cache(maxsize=1024)
def _is_media_host(host: str) -> bool:
    """Whether `host` is an IP address media can go to (not 0.0.0.0 or ::). Cached: the same
    few hosts come in every offer and answer, and `ipaddress` parses in Python."""
    try:
        return not ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _rtcp_address(host: str, port: int, attributes: Iterable[str]) -> Address | None:
    """Where RTCP goes: port + 1 on `host`, unless an a=rtcp line (RFC 3605:
    `a=rtcp:port [nettype addrtype connection-address]`) says otherwise; None when neither
    names a usable address."""
    rtcp = _media_address(host, port + 1)
    for value in attributes:
        parts = value.split()
        if parts and parts[0].isdigit() and len(parts[0]) <= 5:
            rtcp = _media_address(parts[3] if len(parts) >= 4 else host, int(parts[0]))
    return rtcp


def _other(leg: LegName) -> LegName:
    return "b" if leg == "a" else "a"


def _build_sdp(
    ip: str,
    port: int,
    chosen: list[CodecInfo],
    dir_: str,
    offer: SessionDescription | None,
    audio_index: int | None,
    crypto: Crypto | None = None,
) -> str:
    """An audio SDP from us (RTP/SAVP with `crypto`, else RTP/AVP); as an answer it mirrors the
    offer's m= lines, the others rejected with port 0 (RFC 3264 §6)."""
    addr_type = "IP6" if ":" in ip else "IP4"
    lines = ["v=0", f"o=- 0 0 IN {addr_type} {ip}", "s=-", f"c=IN {addr_type} {ip}", "t=0 0"]
    media = [s.media for s in offer.media] if offer is not None else [None]
    if offer is None:
        audio_index = 0
    for i, m in enumerate(media):
        if i != audio_index:
            assert m is not None
            lines.append(f"m={m.media} 0 {m.proto} {' '.join(m.formats)}")
            continue
        proto = "RTP/SAVP" if crypto is not None else "RTP/AVP"
        lines.append(f"m=audio {port} {proto} {' '.join(str(c.payload_type) for c in chosen)}")
        for c in chosen:
            lines.append(f"a=rtpmap:{c.payload_type} {c.encoding}/{c.clock_rate}")
            if c.fmtp:
                lines.append(f"a=fmtp:{c.payload_type} {c.fmtp}")
        lines.append(f"a=ptime:{FRAME_BYTES * 1000 // SAMPLE_RATE}")
        lines.append(f"a={dir_}")
        if crypto is not None:
            lines.append(crypto.format())
    return "\r\n".join(lines) + "\r\n"


# Re-exported for the engine's callback typing.
DtmfCallback = Callable[[LegName, DtmfEvent], None]
TimeoutCallback = Callable[[LegName], None]
