"""RTP (RFC 3550) packets, a minimal RTCP header reader and RFC 4733 telephone events.

Theory of operation: `RtpPacket.parse(data)` turns a datagram into a packet and `bytes(packet)`
gives back exactly the same bytes: the CSRC list, the header extension and the padding (including
the padding octets' own values) are all kept. Only `RtpError` escapes `parse` on any input; the
fuzz test feeds random bytes to check that.

The relay itself does not parse every packet: it rewrites sequence number, timestamp and SSRC in
place (see `media.player.OutgoingStream`). Full parsing is for tests, the recorder and DTMF.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = [
    "DTMF_EVENTS",
    "DtmfDetector",
    "DtmfEvent",
    "RtcpPacket",
    "RtpError",
    "RtpExtension",
    "RtpPacket",
    "TelephoneEvent",
    "is_rtcp",
    "parse_rtcp",
]

RTP_VERSION = 2
_HEADER = struct.Struct("!BBHII")
_U32 = struct.Struct("!I")


class RtpError(ValueError):
    """A datagram that is not a well-formed RTP/RTCP packet (or telephone-event payload)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """The RFC 3550 §5.3.1 header extension: a 16-bit profile field and 32-bit-aligned data."""

    profile: int
    data: bytes = b""


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet. `padding` holds the padding octets verbatim (the last one is their count);
    it is empty when the P bit is clear."""

    payload_type: int = 0
    sequence_number: int = 0
    timestamp: int = 0
    ssrc: int = 0
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding: bytes = b""
    version: int = field(default=RTP_VERSION)

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one RTP datagram; raise `RtpError` if it is malformed."""
        size = len(data)
        if size < 12:
            raise RtpError(f"RTP packet too short ({size} bytes)")
        b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data, 0)
        version = b0 >> 6
        if version != RTP_VERSION:
            raise RtpError(f"RTP version {version}, expected 2")
        cc = b0 & 0x0F
        pos = 12 + 4 * cc
        if size < pos:
            raise RtpError("RTP packet truncated in the CSRC list")
        csrc = struct.unpack_from(f"!{cc}I", data, 12) if cc else ()
        extension = None
        if b0 & 0x10:
            if size < pos + 4:
                raise RtpError("RTP packet truncated in the header extension")
            profile, words = struct.unpack_from("!HH", data, pos)
            end = pos + 4 + 4 * words
            if size < end:
                raise RtpError("RTP header extension longer than the packet")
            extension = RtpExtension(profile, bytes(data[pos + 4 : end]))
            pos = end
        end = size
        padding = b""
        if b0 & 0x20:
            count = data[-1]
            # RFC 3550 §5.1: "The last octet of the padding contains a count of how many padding
            # octets should be ignored, including itself."
            if count == 0 or count > size - pos:
                raise RtpError(f"bad RTP padding count {count}")
            end = size - count
            padding = bytes(data[end:])
        return cls(
            payload_type=b1 & 0x7F,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            payload=bytes(data[pos:end]),
            marker=bool(b1 & 0x80),
            csrc=tuple(csrc),
            extension=extension,
            padding=padding,
            version=version,
        )

    def __bytes__(self) -> bytes:
        if len(self.csrc) > 15:
            raise RtpError("at most 15 CSRC identifiers")
        b0 = (self.version << 6) | len(self.csrc)
        if self.padding:
            b0 |= 0x20
        if self.extension is not None:
            b0 |= 0x10
        b1 = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        parts = [
            _HEADER.pack(
                b0,
                b1,
                self.sequence_number & 0xFFFF,
                self.timestamp & 0xFFFFFFFF,
                self.ssrc & 0xFFFFFFFF,
            )
        ]
        if self.csrc:
            parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
        if self.extension is not None:
            data = self.extension.data
            if len(data) % 4:
                raise RtpError("RTP header extension data must be a multiple of 4 bytes")
            parts.append(struct.pack("!HH", self.extension.profile, len(data) // 4))
            parts.append(data)
        parts.append(self.payload)
        parts.append(self.padding)
        return b"".join(parts)


# --------------------------------------------------------------------------------------------
# RTCP: enough to recognize a compound packet and relay it.

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204


def is_rtcp(data: bytes) -> bool:
    """True if `data` looks like RTCP rather than RTP (RFC 5761 §4: packet types 192-223)."""
    return len(data) >= 2 and (data[0] >> 6) == RTP_VERSION and 192 <= data[1] <= 223


@dataclass(frozen=True, slots=True)
class RtcpPacket:
    """One packet of an RTCP compound. `ssrc` is the sender's SSRC (SR/RR/BYE/APP) or the first
    chunk's (SDES); `sender_info` (NTP seconds, NTP fraction, RTP timestamp, packet count, octet
    count) is set for SR only; `body` is everything after the common header."""

    packet_type: int
    count: int
    ssrc: int
    body: bytes
    sender_info: tuple[int, int, int, int, int] | None = None


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Parse an RTCP compound datagram into its packets; raise `RtpError` if malformed."""
    packets: list[RtcpPacket] = []
    pos = 0
    size = len(data)
    if size < 8:
        raise RtpError(f"RTCP packet too short ({size} bytes)")
    while pos < size:
        if size - pos < 4:
            raise RtpError("RTCP packet truncated in the header")
        b0, packet_type, words = struct.unpack_from("!BBH", data, pos)
        if b0 >> 6 != RTP_VERSION:
            raise RtpError(f"RTCP version {b0 >> 6}, expected 2")
        end = pos + 4 * (words + 1)
        if end > size:
            raise RtpError("RTCP length field longer than the datagram")
        body = bytes(data[pos + 4 : end])
        if b0 & 0x20:
            if not body or body[-1] == 0 or body[-1] > len(body):
                raise RtpError("bad RTCP padding")
            body = body[: -body[-1]]
        ssrc = _U32.unpack_from(body)[0] if len(body) >= 4 else 0
        sender_info = None
        if packet_type == RTCP_SR:
            if len(body) < 24:
                raise RtpError("RTCP SR too short")
            sender_info = struct.unpack_from("!IIIII", body, 4)
        elif packet_type == RTCP_RR and len(body) < 4:
            raise RtpError("RTCP RR too short")
        packets.append(RtcpPacket(packet_type, b0 & 0x1F, ssrc, body, sender_info))
        pos = end
    if packets[0].packet_type not in (RTCP_SR, RTCP_RR):
        # RFC 3550 §6.1: "The first RTCP packet in the compound packet MUST always be a report
        # packet"; we relay such datagrams anyway but refuse to call them RTCP reports.
        raise RtpError("RTCP compound does not start with SR or RR")
    return packets


# --------------------------------------------------------------------------------------------
# RFC 4733 telephone events (DTMF).

DTMF_EVENTS = "0123456789*#ABCD"
_EVENT = struct.Struct("!BBH")


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """The RFC 4733 §2.3 payload: event code, end bit, volume (0..63, -dBm0) and duration."""

    event: int
    end: bool
    volume: int
    duration: int

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) < 4:
            raise RtpError(f"telephone-event payload too short ({len(payload)} bytes)")
        event, flags, duration = _EVENT.unpack_from(payload, 0)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def __bytes__(self) -> bytes:
        return _EVENT.pack(
            self.event, (0x80 if self.end else 0) | (self.volume & 0x3F), self.duration & 0xFFFF
        )

    @property
    def digit(self) -> str | None:
        """The DTMF digit for events 0-15, else None (e.g. 16 is flash)."""
        return DTMF_EVENTS[self.event] if self.event < len(DTMF_EVENTS) else None


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """A completed key press: digit (or None for non-DTMF events), code, duration in timestamp
    units, and the RTP timestamp that identifies the event."""

    digit: str | None
    event: int
    duration: int
    timestamp: int
    volume: int


class DtmfDetector:
    """Reports each RFC 4733 event once, when its first end packet arrives.

    RFC 4733 §2.5.1.4: "the final packet for each event [...] SHOULD be sent a total of three
    times"; all packets of one event share its RTP timestamp, so the detector remembers the
    timestamps it has reported (per SSRC) and ignores their repeats. An event whose end packets
    were all lost is reported when a packet of a later event (another timestamp) shows up.
    """

    __slots__ = ("_pending", "_reported")

    def __init__(self) -> None:
        self._reported: dict[int, int] = {}  # ssrc -> timestamp of the last reported event
        self._pending: dict[int, tuple[int, TelephoneEvent]] = {}

    def feed(self, packet: RtpPacket) -> list[DtmfEvent]:
        """Feed a telephone-event packet; return the events it completes (0, 1 or 2)."""
        event = TelephoneEvent.parse(packet.payload)
        ssrc, ts = packet.ssrc, packet.timestamp
        out: list[DtmfEvent] = []
        if self._reported.get(ssrc) == ts:
            return out
        pending = self._pending.get(ssrc)
        if pending is not None and pending[0] != ts:
            # A new event began before we saw the end of the previous one: the end was lost.
            out.append(_dtmf(pending[0], pending[1]))
            self._reported[ssrc] = pending[0]
            del self._pending[ssrc]
        if event.end:
            self._pending.pop(ssrc, None)
            self._reported[ssrc] = ts
            out.append(_dtmf(ts, event))
        else:
            self._pending[ssrc] = (ts, event)
        return out


def _dtmf(timestamp: int, event: TelephoneEvent) -> DtmfEvent:
    return DtmfEvent(event.digit, event.event, event.duration, timestamp, event.volume)
