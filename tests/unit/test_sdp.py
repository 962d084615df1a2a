"""SDP model: exact round trip, typed lines, strict errors, and the anchoring helpers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.sdp import (
    AudioSdp,
    CodecInfo,
    Connection,
    Direction,
    Fmtp,
    Line,
    Media,
    Origin,
    RtpMap,
    SdpError,
    SessionDescription,
    codecs,
    direction,
    is_hold,
    rewrite_connection,
)


def crlf(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode()


PHONE_OFFER = crlf(
    "v=0",
    "o=1001 3344 3344 IN IP4 192.168.1.20",
    "s=Talk",
    "c=IN IP4 192.168.1.20",
    "t=0 0",
    "a=X-nat:0",
    "m=audio 4000 RTP/AVP 9 0 8 111 101",
    "a=rtcp:4001 IN IP4 192.168.1.20",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:111 opus/48000/2",
    "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=ptime:20",
    "a=sendrecv",
)

WEBRTC_LIKE = crlf(
    "v=0",
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 0",
    "c=IN IP4 0.0.0.0",
    "a=candidate:0123 1 udp 2122260223 10.0.0.5 54321 typ host",
    "a=ice-ufrag:abcd",
    "a=ice-pwd:0123456789abcdef0123456789",
    "a=mid:0",
    "a=rtpmap:111 opus/48000/2",
    "a=rtpmap:0 PCMU/8000",
)

VECTORS = {
    "phone offer": PHONE_OFFER,
    "webrtc-like with ICE foundation 0123": WEBRTC_LIKE,
    "LF line endings": b"v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 5004 RTP/AVP 0\n",
    "no final line ending": b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0",
    "extra blank lines at the end": PHONE_OFFER + b"\r\n\r\n",
    "odd spacing kept": crlf(
        "v=0",
        "o=- 1 1  IN IP4 10.0.0.1",
        "s= ",
        "c=IN  IP4 10.0.0.1 ",
        "t=0 0",
        "m=audio  5004 RTP/AVP 0 8 ",
        "a=rtpmap:0  PCMU/8000",
        "a=fmtp:101  0-15",
    ),
    "non-UTF-8 session name": b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=Caf\xe9\r\nt=0 0\r\n",
    "two streams and session-level direction": crlf(
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.1",
        "s=-",
        "c=IN IP4 10.0.0.1",
        "t=0 0",
        "a=sendonly",
        "m=audio 5004 RTP/AVP 0",
        "m=video 0 RTP/AVP 96",
        "a=rtpmap:96 H264/90000",
    ),
    "port count": crlf("v=0", "s=-", "c=IN IP4 10.0.0.1", "t=0 0", "m=audio 5004/2 RTP/AVP 0"),
}


@pytest.mark.parametrize("data", VECTORS.values(), ids=VECTORS.keys())
def test_round_trip_exact(data: bytes) -> None:
    sdp = SessionDescription.parse(data)
    assert bytes(sdp) == data
    assert sdp.quirks == frozenset()


def test_typed_lines() -> None:
    sdp = SessionDescription.parse(PHONE_OFFER)
    assert sdp.origin == Origin("1001", "3344", 3344, "IN", "IP4", "192.168.1.20")
    assert sdp.connection == Connection("192.168.1.20")
    (audio,) = sdp.media
    assert audio.media == Media("audio", 4000, "RTP/AVP", ("9", "0", "8", "111", "101"))
    assert audio.rtpmaps()[111] == RtpMap(111, "opus", 48000, "2")
    assert audio.fmtps()["101"] == Fmtp("101", "0-16")
    assert audio.direction == "sendrecv"
    assert Line("a", "ptime:20") in audio.lines
    assert list(audio.attributes("ptime")) == ["20"]
    assert Direction("sendrecv") in audio.lines


def test_codecs_resolves_static_and_dynamic_types() -> None:
    sdp = SessionDescription.parse(PHONE_OFFER)
    assert codecs(sdp) == [
        CodecInfo(9, "G722", 8000),
        CodecInfo(0, "PCMU", 8000),
        CodecInfo(8, "PCMA", 8000),
        CodecInfo(111, "opus", 48000, 2, "minptime=10;useinbandfec=1"),
        CodecInfo(101, "telephone-event", 8000, 1, "0-16"),
    ]


def test_mixed_line_endings_are_normalised_and_flagged() -> None:
    sdp = SessionDescription.parse(b"v=0\r\ns=-\nt=0 0\r\nm=audio 1 RTP/AVP 0\n")
    assert sdp.quirks == {"mixed_line_endings"}
    assert bytes(sdp) == b"v=0\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\n"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"\r\n", "empty"),
        (b"s=-\r\nv=0\r\n", "start with a v="),
        (b"v=0\r\nm=audio notaport RTP/AVP 0\r\n", "m= port"),
        (b"v=0\r\nm=audio 70000 RTP/AVP 0\r\n", "m= port"),
        (b"v=0\r\nm=audio -1 RTP/AVP 0\r\n", "m= port"),
        (b"v=0\r\nm=audio 4000/x RTP/AVP 0\r\n", "m= port"),
        (b"v=0\r\nm=audio 4000 RTP/AVP\r\n", "malformed m="),
        (b"v=0\r\nc=IN IP4\r\n", "malformed c="),
        (b"v=0\r\no=- 1 x IN IP4 1.2.3.4\r\n", "malformed o="),
        (b"v=0\r\na=rtpmap:abc PCMU/8000\r\n", "rtpmap"),
        (b"v=0\r\na=rtpmap:0 PCMU\r\n", "rtpmap"),
        (b"v=0\r\na=rtpmap:200 PCMU/8000\r\n", "rtpmap"),
        (b"v=0\r\na=fmtp:\r\n", "fmtp"),
        (b"v=0\r\n\r\ns=-\r\n", "not <type>=<value>"),
        (b"v=0\r\nhello\r\n", "not <type>=<value>"),
        (b"v=0\r\nA=x\r\n", "not <type>=<value>"),
    ],
)
def test_malformed(data: bytes, reason: str) -> None:
    with pytest.raises(SdpError, match=reason):
        SessionDescription.parse(data)


sdp_lines = st.lists(
    st.sampled_from(
        [
            "o=- 1 2 IN IP4 10.0.0.1",
            "s=-",
            "c=IN IP4 10.0.0.2",
            "c=IN IP6 ::1",
            "t=0 0",
            "m=audio 4000 RTP/AVP 0 8 101",
            "m=video 0 RTP/AVP 96",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-15",
            "a=sendonly",
            "a=inactive",
            "a=ptime:20",
            "a=candidate:0123 1 udp 1 10.0.0.5 1 typ host",
            "b=AS:64",
        ]
    ),
    max_size=20,
)


@given(sdp_lines, st.sampled_from(["\r\n", "\n"]))
def test_round_trip_property(lines: list[str], eol: str) -> None:
    data = eol.join(["v=0", *lines]) + eol
    assert str(SessionDescription.parse(data)) == data


@given(st.binary(max_size=200))
def test_random_bytes_raise_only_sdp_error(data: bytes) -> None:
    try:
        sdp = SessionDescription.parse(data)
    except SdpError:
        return
    if not sdp.quirks:
        assert bytes(sdp) == data


# --- helpers ---------------------------------------------------------------------------------


def test_rewrite_connection_anchors_every_address() -> None:
    sdp = SessionDescription.parse(PHONE_OFFER)
    out = rewrite_connection(sdp, "203.0.113.5", {0: 20000})
    assert bytes(out) == crlf(
        "v=0",
        "o=1001 3344 3344 IN IP4 192.168.1.20",
        "s=Talk",
        "c=IN IP4 203.0.113.5",
        "t=0 0",
        "a=X-nat:0",
        "m=audio 20000 RTP/AVP 9 0 8 111 101",
        "a=rtcp:20001 IN IP4 203.0.113.5",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendrecv",
    )
    assert codecs(out) == codecs(sdp)  # codecs pass through untouched


def test_rewrite_connection_media_level_ice_and_disabled_streams() -> None:
    data = WEBRTC_LIKE + crlf("m=video 0 RTP/AVP 96", "m=audio 7000 RTP/AVP 0", "c=IN IP4 10.0.0.9")
    out = rewrite_connection(SessionDescription.parse(data), "127.0.0.1", lambda i: 30000 + 2 * i)
    text = str(out)
    assert "candidate" not in text and "ice-" not in text
    assert "a=mid:0" in text
    assert [m.media.port for m in out.media] == [30000, 0, 30004]
    # the RFC 2543 hold address is kept; the other media-level c= is ours
    assert out.media[0].connection == Connection("0.0.0.0")
    assert out.media[2].connection == Connection("127.0.0.1")
    assert out.connection is None


def test_rewrite_connection_without_port_disables_section() -> None:
    sdp = SessionDescription.parse(PHONE_OFFER)
    out = rewrite_connection(sdp, "127.0.0.1", {})
    assert out.media[0].media.port == 0


def test_rewrite_adds_session_connection_when_missing() -> None:
    sdp = SessionDescription.parse(
        crlf("v=0", "o=- 1 1 IN IP4 1.1.1.1", "s=-", "t=0 0", "m=audio 5 RTP/AVP 0")
    )
    out = rewrite_connection(sdp, "::1", {0: 20000})
    assert str(out).split("\r\n")[3] == "c=IN IP6 ::1"


def test_direction_and_hold() -> None:
    base = PHONE_OFFER.replace(b"a=sendrecv\r\n", b"")
    assert direction(SessionDescription.parse(base)) == "sendrecv"
    assert not is_hold(SessionDescription.parse(base))
    for attr, held in (("sendonly", True), ("inactive", True), ("recvonly", False)):
        sdp = SessionDescription.parse(base + f"a={attr}\r\n".encode())
        assert direction(sdp) == attr
        assert is_hold(sdp) is held
    rfc2543 = SessionDescription.parse(base.replace(b"c=IN IP4 192.168.1.20", b"c=IN IP4 0.0.0.0"))
    assert is_hold(rfc2543)
    session_level = VECTORS["two streams and session-level direction"]
    assert direction(SessionDescription.parse(session_level)) == "sendonly"
    assert is_hold(SessionDescription.parse(session_level))
    assert not is_hold(SessionDescription.parse(b"v=0\r\ns=-\r\n"))


def test_evolve_serializes_canonically_and_with_origin() -> None:
    sdp = SessionDescription.parse(VECTORS["odd spacing kept"])
    m = sdp.media[0].media
    assert m.evolve(port=6000).text == "m=audio 6000 RTP/AVP 0 8"
    new = sdp.with_origin(Origin("-", "77", 3, address="127.0.0.1"))
    assert str(new).split("\r\n")[1] == "o=- 77 3 IN IP4 127.0.0.1"
    bare = SessionDescription.parse(b"v=0\r\ns=-\r\n").with_origin(Origin("-", "1", 1))
    assert str(bare) == "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\n"


# -- AudioSdp: the one-pass reading of the usual body must match the general model exactly ------

quick_lines = st.lists(
    st.sampled_from(
        [
            "o=- 1 2 IN IP4 10.0.0.1",
            "o=bad",
            "s=-",
            "c=IN IP4 10.0.0.2",
            "c=IN IP6 ::1",
            "c=IN IP4 0.0.0.0",
            "c=IN IP4 224.2.1.1/127",
            "c=IN IP4",
            "t=0 0",
            "m=audio 4000 RTP/AVP 0 8 101",
            "m=audio 4000/2 RTP/AVP 0",
            "m=audio 4000/ RTP/AVP 0",
            "m=audio  4002 RTP/AVP  18 96",
            "m=audio 0 RTP/AVP 0",
            "m=audio x RTP/AVP 0",
            "m=video 5000 RTP/AVP 96",
            "a=rtpmap:101 telephone-event/8000",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:96 opus/48000/2",
            "a=rtpmap:96 G729/8000",
            "a=rtpmap:x",
            "a=fmtp:101 0-15",
            "a=fmtp:96 minptime=10",
            "a=fmtp:",
            "a=sendonly",
            "a=recvonly",
            "a=inactive",
            "a=sendrecv",
            "a=sendonly:x",
            "a=rtcp:4001",
            "a=rtcp:4003 IN IP4 10.9.9.9",
            "a=rtcp",
            "a=ptime:20",
            "a=candidate:0123 1 udp 1 10.0.0.5 1 typ host",
            "a=ice-ufrag:abcd",
            "a=end-of-candidates",
            "b=AS:64",
            "x",
        ]
    ),
    max_size=16,
)


_SESSION = ["o=- 1 2 IN IP4 10.0.0.1", "s=-", "c=IN IP4 10.0.0.2", "c=IN IP6 ::1",
            "c=IN IP4 0.0.0.0", "t=0 0", "a=sendonly", "a=inactive", "a=ice-lite", "b=AS:64",
            "a=rtcp:9", "a=group:BUNDLE 0"]
_MEDIA = ["c=IN IP4 10.0.0.3", "c=IN IP4 0.0.0.0", "a=rtpmap:0 PCMU/8000",
          "a=rtpmap:8 PCMA/8000", "a=rtpmap:101 telephone-event/8000", "a=rtpmap:96 opus/48000/2",
          "a=rtpmap:96 G729/8000", "a=fmtp:101 0-16", "a=fmtp:96 minptime=10", "a=sendonly",
          "a=recvonly", "a=inactive", "a=sendrecv", "a=rtcp:4001",
          "a=rtcp:4003 IN IP4 10.9.9.9", "a=rtcp", "a=ptime:20", "a=ice-pwd:x",
          "a=candidate:1 1 udp 1 10.0.0.5 1 typ host", "o=- 5 5 IN IP4 10.0.0.9"]
_AUDIO = ["m=audio 4000 RTP/AVP 0 8 101", "m=audio 4000/2 RTP/AVP 0", "m=audio 4000/ RTP/AVP 0",
          "m=audio  4002 RTP/AVP  18 96 101", "m=audio 4000 RTP/AVP 0 x 8"]
usual_bodies = st.builds(
    lambda session, m, media: [*session, m, *media],
    st.lists(st.sampled_from(_SESSION), max_size=6),
    st.sampled_from(_AUDIO),
    st.lists(st.sampled_from(_MEDIA), max_size=8),
)


@given(st.one_of(quick_lines, usual_bodies), st.sampled_from(["\r\n", "\n", "mixed"]),
       st.sampled_from(["", "\r\n", "\n", "\r\n\r\n"]),
       st.sampled_from(["127.0.0.1", "::1"]), st.integers(1, 65534))
def test_audio_sdp_reads_and_rewrites_as_the_general_model(
    lines: list[str], eol: str, trailer: str, ip: str, port: int
) -> None:
    if eol == "mixed":
        data = "\r\n".join(["v=0", *lines[:2]]) + "\n" + "\n".join(lines[2:])
    else:
        data = eol.join(["v=0", *lines])
    raw = (data + trailer).encode()
    quick = AudioSdp.scan(raw)
    try:
        sdp = SessionDescription.parse(raw)
    except SdpError:
        assert quick is None  # what the general model refuses goes its way, to be named there
        return
    if quick is None:
        return  # not the usual body: the general path handles it
    assert len(sdp.media) == 1 and sdp.media[0].media.media == "audio"
    assert quick.media == sdp.media[0].media
    assert quick.connection == sdp.connection_for(0)
    assert quick.direction == direction(sdp, 0)
    assert quick.codecs == codecs(sdp, 0)
    assert quick.rtcp == list(sdp.media[0].attributes("rtcp"))
    assert quick.is_hold == is_hold(sdp)
    rewritten = rewrite_connection(sdp, ip, {0: port})
    assert quick.rewritten(ip, port) == list(rewritten.lines())
    assert (quick.eol, quick.trailer) == (rewritten.eol, rewritten.trailer)
    assert quick.media_index == len(sdp.session)


@pytest.mark.parametrize("data", [PHONE_OFFER, VECTORS["LF line endings"],
                                  b"v=0\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nm=audio 5004 RTP/AVP 0"])
def test_audio_sdp_takes_the_usual_bodies(data: bytes) -> None:
    quick = AudioSdp.scan(data)
    assert quick is not None
    assert quick.rewritten("127.0.0.1", 20000) == list(
        rewrite_connection(SessionDescription.parse(data), "127.0.0.1", {0: 20000}).lines())


@pytest.mark.parametrize("data", [WEBRTC_LIKE + b"m=audio 5 RTP/AVP 0\r\n",
                                  VECTORS["two streams and session-level direction"],
                                  crlf("v=0", "s=-", "t=0 0", "m=audio 5004 RTP/AVP 0"),
                                  b"v=0\r\ns=-\nc=IN IP4 10.0.0.1\r\nm=audio 5004 RTP/AVP 0\r\n"])
def test_audio_sdp_leaves_the_rest_to_the_general_model(data: bytes) -> None:
    assert AudioSdp.scan(data) is None
