"""A small SDP (RFC 4566 / RFC 8866) model for media anchoring.

Theory of operation: a body is a list of lines. The lines the B2BUA reads or rewrites are typed
(`o=` Origin, `c=` Connection, `m=` Media, `a=rtpmap`, `a=fmtp`, and the direction attributes);
every other line is a `Line` kept verbatim and in order. A typed line parsed from the wire keeps its
original text (`raw`) and serializes to it, so `bytes(SessionDescription.parse(b)) == b` for any
body we accept (with one line terminator; a body that mixes CRLF and LF is normalised to its first
terminator and flagged with the quirk "mixed_line_endings"). A line built or changed by us (with
`.evolve(...)`) has no `raw` and serializes canonically.

Strictness: the v= line must come first, every line must be `x=...`, and a typed line must be
well formed (`m=audio notaport` raises `SdpError`); nothing else is checked. Bytes that are not
UTF-8 survive unchanged (surrogateescape).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, Self

__all__ = [
    "DIRECTIONS",
    "AudioSdp",
    "CodecInfo",
    "Connection",
    "Crypto",
    "Direction",
    "Fmtp",
    "KeyParams",
    "Line",
    "Media",
    "MediaSection",
    "Origin",
    "RtpMap",
    "SdpError",
    "SdpItem",
    "SessionDescription",
    "codecs",
    "crypto_lines",
    "direction",
    "is_hold",
    "is_secure_proto",
    "rewrite_connection",
    "secure_audio_lines",
]

DirectionValue = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
DIRECTIONS: frozenset[str] = frozenset({"sendrecv", "sendonly", "recvonly", "inactive"})

# RFC 3551 static payload types we may meet in audio offers.
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("PCMU", 8000, 1),
    3: ("GSM", 8000, 1),
    4: ("G723", 8000, 1),
    8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1),
    13: ("CN", 8000, 1),
    18: ("G729", 8000, 1),
}

ICE_ATTRIBUTES = frozenset(
    {"candidate", "remote-candidates", "end-of-candidates", "ice-ufrag", "ice-pwd", "ice-options",
     "ice-lite", "ice-mismatch"}
)  # fmt: skip


class SdpError(ValueError):
    """A malformed SDP body."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Typed:
    """Shared behaviour of typed lines: keep the wire text until changed."""

    __slots__ = ()
    raw: str | None

    def format(self) -> str:
        raise NotImplementedError

    @property
    def text(self) -> str:
        return self.raw if self.raw is not None else self.format()

    def evolve(self, **changes: object) -> Self:
        """A copy with `changes` applied; it serializes canonically."""
        return dataclasses.replace(self, raw=None, **changes)  # type: ignore[type-var]


@dataclass(frozen=True, slots=True)
class Line:
    """Any line we do not interpret, kept verbatim."""

    type: str
    value: str

    @property
    def text(self) -> str:
        return f"{self.type}={self.value}"

    @property
    def attribute(self) -> str | None:
        """The attribute name of an a= line (None for other types)."""
        return self.value.partition(":")[0] if self.type == "a" else None


@dataclass(frozen=True, slots=True)
class Origin(_Typed):
    """o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>"""

    username: str
    session_id: str
    session_version: int
    network_type: str = "IN"
    address_type: str = "IP4"
    address: str = "0.0.0.0"
    raw: str | None = field(default=None, compare=False, repr=False)

    def format(self) -> str:
        return (
            f"o={self.username} {self.session_id} {self.session_version} "
            f"{self.network_type} {self.address_type} {self.address}"
        )

    @classmethod
    def parse(cls, value: str, raw: str) -> Origin:
        parts = value.split()
        if len(parts) != 6 or not parts[2].isdigit():
            raise SdpError(f"malformed o= line: {value[:80]!r}")
        return cls(parts[0], parts[1], int(parts[2]), parts[3], parts[4], parts[5], raw)


@dataclass(frozen=True, slots=True)
class Connection(_Typed):
    """c=<nettype> <addrtype> <connection-address>"""

    address: str
    network_type: str = "IN"
    address_type: str = "IP4"
    raw: str | None = field(default=None, compare=False, repr=False)

    def format(self) -> str:
        return f"c={self.network_type} {self.address_type} {self.address}"

    @classmethod
    def parse(cls, value: str, raw: str) -> Connection:
        parts = value.split()
        if len(parts) != 3:
            raise SdpError(f"malformed c= line: {value[:80]!r}")
        return cls(parts[2], parts[0], parts[1], raw)

    @classmethod
    def for_address(cls, address: str) -> Connection:
        return cls(address, "IN", "IP6" if ":" in address else "IP4")

    @property
    def host(self) -> str:
        """The address without a multicast /ttl suffix."""
        return self.address.partition("/")[0]


@dataclass(frozen=True, slots=True)
class Media(_Typed):
    """m=<media> <port>[/<number of ports>] <proto> <fmt> ..."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    raw: str | None = field(default=None, compare=False, repr=False)

    def format(self) -> str:
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        return f"m={self.media} {port} {self.proto} {' '.join(self.formats)}"

    @classmethod
    def parse(cls, value: str, raw: str) -> Media:
        parts = value.split()
        if len(parts) < 4:
            raise SdpError(f"malformed m= line (needs media, port, proto, formats): {value[:80]!r}")
        port_text, _, count_text = parts[1].partition("/")
        if not _is_port(port_text) or (count_text and not count_text.isdigit()):
            raise SdpError(f"malformed m= port {parts[1][:20]!r}")
        count = int(count_text) if count_text else None
        return cls(parts[0], int(port_text), parts[2], tuple(parts[3:]), count, raw)


@dataclass(frozen=True, slots=True)
class RtpMap(_Typed):
    """a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]"""

    payload_type: int
    encoding: str
    clock_rate: int
    parameters: str | None = None
    raw: str | None = field(default=None, compare=False, repr=False)

    def format(self) -> str:
        params = f"/{self.parameters}" if self.parameters is not None else ""
        return f"a=rtpmap:{self.payload_type} {self.encoding}/{self.clock_rate}{params}"

    @classmethod
    def parse(cls, value: str, raw: str) -> RtpMap:
        pt, _, rest = value.strip().partition(" ")
        name, _, rest = rest.strip().partition("/")
        rate, _, params = rest.partition("/")
        if not (pt.isdigit() and int(pt) < 128 and name and rate.isdigit()):
            raise SdpError(f"malformed a=rtpmap: {value[:80]!r}")
        return cls(int(pt), name, int(rate), params or None, raw)


@dataclass(frozen=True, slots=True)
class Fmtp(_Typed):
    """a=fmtp:<format> <format specific parameters>"""

    format_: str
    parameters: str
    raw: str | None = field(default=None, compare=False, repr=False)

    def format(self) -> str:
        return f"a=fmtp:{self.format_} {self.parameters}"

    @classmethod
    def parse(cls, value: str, raw: str) -> Fmtp:
        fmt, _, params = value.strip().partition(" ")
        if not fmt:
            raise SdpError(f"malformed a=fmtp: {value[:80]!r}")
        return cls(fmt, params.strip(), raw)


@dataclass(frozen=True, slots=True)
class Direction(_Typed):
    """a=sendrecv, a=sendonly, a=recvonly or a=inactive (RFC 3264 §5.1)."""

    value: DirectionValue
    raw: str | None = field(default=None, compare=False, repr=False)

    def format(self) -> str:
        return f"a={self.value}"


SdpItem = Line | Origin | Connection | RtpMap | Fmtp | Direction


# RFC 4568 §6.3.1: the session parameters this model knows. Only WSH (a window-size hint) can be
# honoured by ignoring it; a line with any other session parameter is not usable by us.
IGNORABLE_SESSION_PARAMS = ("WSH=",)


@dataclass(frozen=True, slots=True)
class KeyParams:
    """One `inline:<key||salt>[|<lifetime>][|<MKI>:<length>]` of an a=crypto line."""

    key_salt: bytes
    lifetime: str | None = None
    mki: str | None = None

    def format(self) -> str:
        text = "inline:" + base64.b64encode(self.key_salt).decode("ascii")
        if self.lifetime is not None:
            text += f"|{self.lifetime}"
        if self.mki is not None:
            text += f"|{self.mki}"
        return text

    @classmethod
    def parse(cls, text: str) -> KeyParams:
        method, sep, info = text.partition(":")
        if not sep or method != "inline":
            # RFC 4568 §6.1: "inline" is the only key method defined.
            raise SdpError(f"a=crypto key method {method[:20]!r} is not inline")
        key_text, *rest = info.split("|")
        if len(rest) > 2:
            raise SdpError("a=crypto key has more than a lifetime and an MKI")
        try:
            key_salt = base64.b64decode(key_text, validate=True)
        except (binascii.Error, ValueError) as e:
            raise SdpError(f"a=crypto key is not base64: {key_text[:40]!r}") from e
        lifetime = mki = None
        for part in rest:
            if ":" in part:
                mki = part
            else:
                lifetime = part
        return cls(key_salt, lifetime, mki)


@dataclass(frozen=True, slots=True)
class Crypto:
    """a=crypto:<tag> <crypto-suite> <key-params> [<session-param>] ... (RFC 4568 §9.1)."""

    tag: int
    suite: str
    keys: tuple[KeyParams, ...]
    session_params: tuple[str, ...] = ()

    def format(self) -> str:
        keys = ";".join(k.format() for k in self.keys)
        params = "".join(f" {p}" for p in self.session_params)
        return f"a=crypto:{self.tag} {self.suite} {keys}{params}"

    @classmethod
    def parse(cls, value: str) -> Crypto:
        """The value after `a=crypto:`; SdpError if it is malformed."""
        parts = value.split()
        if len(parts) < 3:
            raise SdpError(f"malformed a=crypto (needs tag, suite, key): {value[:80]!r}")
        tag_text, suite, key_text, *params = parts
        # tag = 1*9DIGIT
        if not (tag_text.isascii() and tag_text.isdigit() and len(tag_text) <= 9):
            raise SdpError(f"malformed a=crypto tag {tag_text[:20]!r}")
        keys = tuple(KeyParams.parse(k) for k in key_text.split(";"))
        return cls(int(tag_text), suite, keys, tuple(params))

    @property
    def usable_params(self) -> bool:
        """Every session parameter is one we can honour (RFC 4568 §6.3: a line with an
        unknown or unsupported parameter is not acceptable)."""
        return all(p.startswith(IGNORABLE_SESSION_PARAMS) for p in self.session_params)


def is_secure_proto(proto: str) -> bool:
    """RTP/SAVP, RTP/SAVPF (and the DTLS forms): the m= line asks for SRTP."""
    return "SAVP" in proto.upper()


def crypto_lines(values: Iterable[str]) -> list[Crypto | SdpError]:
    """The a=crypto values of a media section, parsed in order; a malformed one is its error
    (the offerer may list a line we cannot read before one we can)."""
    out: list[Crypto | SdpError] = []
    for value in values:
        try:
            out.append(Crypto.parse(value))
        except SdpError as e:
            out.append(e)
    return out


def secure_audio_lines(lines: list[str], media_index: int, crypto: Crypto | None) -> list[str]:
    """`lines` with the m= line at `media_index` made SRTP (RTP/SAVP, `crypto` as its only
    a=crypto line) or, with `crypto` None, plain RTP (RTP/AVP, no a=crypto). Other sections
    are left alone."""
    end = next(
        (i for i in range(media_index + 1, len(lines)) if lines[i].startswith("m=")), len(lines)
    )
    m = lines[media_index].split(" ", 3)
    if len(m) >= 3:
        proto = m[2]
        if crypto is not None and proto in ("RTP/AVP", "RTP/AVPF"):
            m[2] = proto.replace("RTP/AVP", "RTP/SAVP")
        elif crypto is None and proto in ("RTP/SAVP", "RTP/SAVPF"):
            m[2] = proto.replace("RTP/SAVP", "RTP/AVP")
    section = [x for x in lines[media_index + 1 : end] if not x.startswith("a=crypto:")]
    if crypto is not None:
        section.append(crypto.format())
    return [*lines[:media_index], " ".join(m), *section, *lines[end:]]


@dataclass(frozen=True, slots=True)
class MediaSection:
    """An m= line and the lines after it up to the next m= line."""

    media: Media
    lines: tuple[SdpItem, ...] = ()

    @property
    def connection(self) -> Connection | None:
        return next((x for x in self.lines if isinstance(x, Connection)), None)

    @property
    def direction(self) -> DirectionValue | None:
        return next((x.value for x in self.lines if isinstance(x, Direction)), None)

    def rtpmaps(self) -> dict[int, RtpMap]:
        return {x.payload_type: x for x in self.lines if isinstance(x, RtpMap)}

    def fmtps(self) -> dict[str, Fmtp]:
        return {x.format_: x for x in self.lines if isinstance(x, Fmtp)}

    def attributes(self, name: str) -> Iterator[str]:
        """The values of the other a=<name>[:value] lines of this section."""
        for x in self.lines:
            if isinstance(x, Line) and x.type == "a":
                attr, _, value = x.value.partition(":")
                if attr == name:
                    yield value


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A parsed SDP body: session-level lines (from v=) and the media sections."""

    session: tuple[SdpItem, ...]
    media: tuple[MediaSection, ...] = ()
    eol: str = "\r\n"
    trailer: str = "\r\n"
    quirks: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        """Parse an SDP body; raise `SdpError` if it is malformed."""
        text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
        body = text.rstrip("\r\n")
        if not body:
            raise SdpError("empty SDP body")
        trailer = text[len(body) :]
        quirks: set[str] = set()
        # The usual bodies take one split: LF only, or CRLF everywhere. Any other mix goes line
        # by line and is flagged.
        clean = True
        if "\r" not in body:
            raw_lines = body.split("\n")
            crlf = len(raw_lines) == 1 and trailer.startswith("\r")
        elif body.count("\r") == body.count("\r\n") == body.count("\n"):
            raw_lines, crlf = body.split("\r\n"), True
        else:
            raw_lines = body.split("\n")
            crlf = raw_lines[0].endswith("\r") if len(raw_lines) > 1 else trailer.startswith("\r")
            clean = False
        session: list[SdpItem] = []
        sections: list[MediaSection] = []
        current: Media | None = None
        current_lines: list[SdpItem] = []
        last = len(raw_lines) - 1
        for i, line in enumerate(raw_lines):
            if clean:
                pass
            elif line.endswith("\r"):
                line = line[:-1]
                if not crlf:
                    quirks.add("mixed_line_endings")
            elif crlf and i < last:
                quirks.add("mixed_line_endings")
            if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
                raise SdpError(f"line {i + 1} is not <type>=<value>: {line[:80]!r}")
            if i == 0 and line[0] != "v":
                raise SdpError("SDP must start with a v= line")
            item = _parse_line(line)
            if isinstance(item, Media):
                if current is not None:
                    sections.append(MediaSection(current, tuple(current_lines)))
                current, current_lines = item, []
            elif current is None:
                session.append(item)
            else:
                current_lines.append(item)
        if current is not None:
            sections.append(MediaSection(current, tuple(current_lines)))
        eol = "\r\n" if crlf else "\n"
        if quirks:
            trailer = trailer.replace("\r\n", "\n").replace("\n", eol)
        return cls(tuple(session), tuple(sections), eol, trailer, frozenset(quirks))

    def lines(self) -> Iterator[str]:
        for item in self.session:
            yield item.text
        for section in self.media:
            yield section.media.text
            for item in section.lines:
                yield item.text

    def __str__(self) -> str:
        return self.eol.join(self.lines()) + self.trailer

    def __bytes__(self) -> bytes:
        return str(self).encode("utf-8", "surrogateescape")

    @property
    def origin(self) -> Origin | None:
        return next((x for x in self.session if isinstance(x, Origin)), None)

    @property
    def connection(self) -> Connection | None:
        """The session-level c= line."""
        return next((x for x in self.session if isinstance(x, Connection)), None)

    @property
    def direction(self) -> DirectionValue | None:
        """The session-level direction attribute."""
        return next((x.value for x in self.session if isinstance(x, Direction)), None)

    def connection_for(self, index: int) -> Connection | None:
        """The c= line that applies to media section `index` (its own, else the session's)."""
        return self.media[index].connection or self.connection

    def with_origin(self, origin: Origin) -> SessionDescription:
        """A copy whose o= line is `origin` (added after v= when missing)."""
        if self.origin is None:
            session = (self.session[0], origin, *self.session[1:])
        else:
            session = tuple(origin if isinstance(x, Origin) else x for x in self.session)
        return dataclasses.replace(self, session=session)

    def without_origin_text(self) -> str:
        """The body with the o= line left out: what decides whether a new version is due."""
        return self.eol.join(line for line in self.lines() if not line.startswith("o="))


def _is_port(text: str) -> bool:
    return text.isdigit() and text.isascii() and int(text) <= 65535


def _parse_line(line: str) -> SdpItem | Media:
    kind, value = line[0], line[2:]
    if kind == "c":
        return Connection.parse(value, line)
    if kind == "m":
        return Media.parse(value, line)
    if kind == "o":
        return Origin.parse(value, line)
    if kind == "a":
        name, sep, rest = value.partition(":")
        if sep:
            if name == "rtpmap":
                return RtpMap.parse(rest, line)
            if name == "fmtp":
                return Fmtp.parse(rest, line)
        elif name in DIRECTIONS:
            return Direction(name, line)  # type: ignore[arg-type]
    return Line(kind, value)


# --------------------------------------------------------------------------------------------
# Helpers for the media engine.


@dataclass(frozen=True, slots=True)
class CodecInfo:
    """One format of an m= line, resolved through a=rtpmap or the static table."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int = 1
    fmtp: str | None = None

    @property
    def name(self) -> str:
        return self.encoding.upper()


def codecs(sdp: SessionDescription, index: int = 0) -> list[CodecInfo]:
    """The RTP codecs of media section `index`, in the order of its m= line."""
    section = sdp.media[index]
    maps = section.rtpmaps()
    fmtps = section.fmtps()
    out = []
    for fmt in section.media.formats:
        if not fmt.isdigit():
            continue
        pt = int(fmt)
        fmtp = fmtps[fmt].parameters if fmt in fmtps else None
        if pt in maps:
            m = maps[pt]
            channels = int(m.parameters) if m.parameters and m.parameters.isdigit() else 1
            out.append(CodecInfo(pt, m.encoding, m.clock_rate, channels, fmtp))
        elif pt in STATIC_PAYLOAD_TYPES:
            name, rate, channels = STATIC_PAYLOAD_TYPES[pt]
            out.append(CodecInfo(pt, name, rate, channels, fmtp))
    return out


def direction(sdp: SessionDescription, index: int = 0) -> DirectionValue:
    """The effective direction of media section `index` (media level, session level, sendrecv)."""
    return sdp.media[index].direction or sdp.direction or "sendrecv"


def first_audio(sdp: SessionDescription) -> int | None:
    """The index of the first active (port != 0) audio section, if any."""
    for i, section in enumerate(sdp.media):
        if section.media.media == "audio" and section.media.port != 0:
            return i
    return None


def holds(body: bytes) -> bool:
    """Whether an SDP body (an offer) puts the call on hold; False when it is no SDP."""
    quick = AudioSdp.scan(body)
    if quick is not None:
        return quick.is_hold
    try:
        return is_hold(SessionDescription.parse(body))
    except SdpError:
        return False


def is_hold(sdp: SessionDescription, index: int | None = None) -> bool:
    """True if the offer puts media section `index` (default: the first active audio one) on
    hold: a=sendonly, a=inactive, or the RFC 2543 style c=0.0.0.0."""
    if index is None:
        index = first_audio(sdp)
        if index is None:
            return False
    if direction(sdp, index) in ("sendonly", "inactive"):
        return True
    conn = sdp.connection_for(index)
    return conn is not None and conn.host in ("0.0.0.0", "::")


def rewrite_connection(
    sdp: SessionDescription,
    ip: str,
    port_for_media_index: Mapping[int, int] | Callable[[int], int | None],
    *,
    strip_ice: bool = True,
) -> SessionDescription:
    """Anchor media: every c= line gets `ip`, every active m= line the port given for its index
    (a section given no port is disabled with port 0), a=rtcp the port + 1 with `ip`.

    An RFC 2543 hold (c=0.0.0.0) is kept, so the other leg still sees the hold. ICE attributes are
    dropped by default: the far end must send to us, not to candidates of the other leg.
    """
    lookup = (
        port_for_media_index.get if isinstance(port_for_media_index, Mapping)
        else port_for_media_index
    )  # fmt: skip
    new_conn = Connection.for_address(ip)
    old_session_conn = sdp.connection

    def conn(c: Connection) -> Connection:
        if c.host in ("0.0.0.0", "::"):
            return c
        return new_conn

    session = tuple(_rewrite_items(sdp.session, conn, None, ip, strip_ice))
    sections = []
    for i, section in enumerate(sdp.media):
        media = section.media
        port: int | None = None
        if media.port != 0:
            port = lookup(i)
            if port is None:
                media = Media(media.media, 0, media.proto, media.formats)
            elif port != media.port or media.port_count is not None:
                media = Media(media.media, port, media.proto, media.formats)
        lines = tuple(_rewrite_items(section.lines, conn, port, ip, strip_ice))
        sections.append(MediaSection(media, lines))
    if old_session_conn is None and any(
        s.connection is None and s.media.port != 0 for s in sdp.media
    ):
        # Without a session c= every active section needs its own; add one at the session level.
        at = next(
            (i for i, x in enumerate(session) if isinstance(x, Line) and x.type in "bt"),
            len(session),
        )
        session = (*session[:at], new_conn, *session[at:])
    return SessionDescription(session, tuple(sections), sdp.eol, sdp.trailer, sdp.quirks)


def _rewrite_items(
    items: Iterable[SdpItem],
    conn: Callable[[Connection], Connection],
    port: int | None,
    ip: str,
    strip_ice: bool,
) -> Iterator[SdpItem]:
    for item in items:
        if isinstance(item, Connection):
            yield conn(item)
        elif isinstance(item, Line) and item.type == "a":
            attr = item.attribute
            if strip_ice and attr in ICE_ATTRIBUTES:
                continue
            if attr == "rtcp" and port is not None:
                # RFC 3605: a=rtcp:<port> [<nettype> <addrtype> <connection-address>]
                addr_type = "IP6" if ":" in ip else "IP4"
                yield Line("a", f"rtcp:{port + 1} IN {addr_type} {ip}")
                continue
            yield item
        else:
            yield item


# --------------------------------------------------------------------------------------------
# The usual body, in one pass.


@dataclass(slots=True)
class AudioSdp:
    """What the relay reads from the usual body (one active audio section, a c= line, every
    typed line well formed), found in one pass over its lines, and that body rewritten for the
    other leg as `rewrite_connection` would: the same bytes, in about 0.7x the time.

    `AudioSdp.scan(body)` is None for anything else (several sections, no c= line, a mix of
    line endings, a line `SessionDescription.parse` would refuse...): the relay then takes the
    general path, which also names what is wrong."""

    lines: list[str]
    eol: str
    trailer: str
    media_index: int  # of the m= line in `lines`
    media: Media
    connection: Connection  # the one that applies to the audio section
    direction: DirectionValue
    codecs: list[CodecInfo]
    rtcp: list[str]  # the values of the section's a=rtcp lines
    crypto: list[str] = field(default_factory=list)  # the values of its a=crypto lines

    @classmethod
    def scan(cls, data: bytes) -> AudioSdp | None:
        text = data.decode("utf-8", "surrogateescape")
        body = text.rstrip("\r\n")
        if not body or body[:2] != "v=":
            return None
        if "\r" not in body:
            lines = body.split("\n")
            eol = "\r\n" if len(lines) == 1 and text[len(body) :].startswith("\r") else "\n"
        elif body.count("\r") == body.count("\r\n") == body.count("\n"):
            lines, eol = body.split("\r\n"), "\r\n"
        else:
            return None
        media_index = -1
        session_conn: Connection | None = None
        media_conn: Connection | None = None
        session_dir: str | None = None
        media_dir: str | None = None
        maps: dict[int, RtpMap] = {}
        fmtps: dict[str, str] = {}
        rtcp: list[str] = []
        crypto: list[str] = []
        media: Media | None = None
        for i, line in enumerate(lines):
            kind = line[:1]
            if len(line) < 2 or line[1] != "=" or not ("a" <= kind <= "z"):
                return None
            value = line[2:]
            try:
                if kind == "a":
                    name, sep, rest = value.partition(":")
                    if sep:
                        if name == "rtpmap":
                            m = RtpMap.parse(rest, line)
                            if media is not None:
                                maps[m.payload_type] = m
                        elif name == "fmtp":
                            f = Fmtp.parse(rest, line)
                            if media is not None:
                                fmtps[f.format_] = f.parameters
                        elif name == "rtcp" and media is not None:
                            rtcp.append(rest)
                        elif name == "crypto" and media is not None:
                            crypto.append(rest)
                    elif name in DIRECTIONS:
                        if media is None:
                            session_dir = session_dir or name
                        else:
                            media_dir = media_dir or name
                    elif name == "rtcp" and media is not None:
                        rtcp.append("")
                elif kind == "c":
                    c = Connection.parse(value, line)
                    if media is None:
                        session_conn = session_conn or c
                    else:
                        media_conn = media_conn or c
                elif kind == "m":
                    if media is not None:
                        return None  # several sections: the general path
                    media, media_index = Media.parse(value, line), i
                elif kind == "o":
                    Origin.parse(value, line)
            except SdpError:
                return None
        conn = media_conn or session_conn
        if media is None or media.media != "audio" or media.port == 0 or conn is None:
            return None
        found = []
        for fmt in media.formats:
            if not fmt.isdigit():
                continue
            pt = int(fmt)
            if pt in maps:
                m = maps[pt]
                params = m.parameters
                channels = int(params) if params and params.isdigit() else 1
                found.append(CodecInfo(pt, m.encoding, m.clock_rate, channels, fmtps.get(fmt)))
            elif pt in STATIC_PAYLOAD_TYPES:
                name, rate, channels = STATIC_PAYLOAD_TYPES[pt]
                found.append(CodecInfo(pt, name, rate, channels, fmtps.get(fmt)))
        return cls(lines, eol, text[len(body) :], media_index, media, conn,
                   media_dir or session_dir or "sendrecv", found, rtcp,  # type: ignore[arg-type]
                   crypto)

    @property
    def is_hold(self) -> bool:
        """As `is_hold`: a=sendonly, a=inactive, or c=0.0.0.0."""
        return self.direction in ("sendonly", "inactive") or self.connection.host in ("0.0.0.0", "::")

    def rewritten(self, ip: str, port: int) -> list[str]:
        """The lines as `rewrite_connection(parsed, ip, {index: port})` writes them."""
        new_conn = Connection.for_address(ip).format()
        out: list[str] = []
        media_index = self.media_index
        for i, line in enumerate(self.lines):
            kind = line[0]
            if kind == "c":
                host = line[2:].split()[2].partition("/")[0]
                out.append(line if host in ("0.0.0.0", "::") else new_conn)
            elif kind == "a":
                attr = line[2:].partition(":")[0]
                if attr in ICE_ATTRIBUTES:
                    continue
                if attr == "rtcp" and i > media_index:
                    addr_type = "IP6" if ":" in ip else "IP4"
                    out.append(f"a=rtcp:{port + 1} IN {addr_type} {ip}")
                else:
                    out.append(line)
            elif i == media_index:
                m = self.media
                if port != m.port or m.port_count is not None:
                    line = Media(m.media, port, m.proto, m.formats).format()
                out.append(line)
            else:
                out.append(line)
        return out
