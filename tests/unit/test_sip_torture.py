"""Torture messages (in the spirit of RFC 4475), kept as files under `torture/`.

Valid ones parse, pass `validate_request`, read through every accessor and serialize back byte
for byte. Invalid ones fail with the declared status and reason fragment; those declared
answerable can get a stateless response built from `SipParseError.partial`, the others are
dropped. `torture/make_vectors.py` writes the files; a test checks they are up to date.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from b2bua.sip.errors import SipParseError
from b2bua.sip.message import (
    Request,
    Response,
    can_respond,
    check_extensions,
    make_response,
    parse_message,
    validate_request,
)
from b2bua.sip.uri import SipUri
from tests.unit.sip_support import check_reason, exercise, exercise_message, summary
from tests.unit.torture import make_vectors

TORTURE = Path(__file__).parent / "torture"
VALID = sorted((TORTURE / "valid").glob("*.sip"))
INVALID = sorted((TORTURE / "invalid").glob("*.sip"))
EXPECTED = json.loads((TORTURE / "invalid" / "expected.json").read_text())


def test_files_are_what_the_generator_writes(tmp_path: Path) -> None:
    make_vectors.write(tmp_path)
    for folder in ("valid", "invalid"):
        written = {p.name: p.read_bytes() for p in (tmp_path / folder).iterdir()}
        stored = {p.name: p.read_bytes() for p in (TORTURE / folder).iterdir()}
        assert written == stored, f"run: python -m tests.unit.torture.make_vectors ({folder})"


def test_every_invalid_vector_declares_its_outcome() -> None:
    assert sorted(EXPECTED) == sorted(p.stem for p in INVALID)
    assert len(VALID) >= 15 and len(INVALID) >= 30


# -- valid --------------------------------------------------------------------------------------


def _tortuous(msg: Request | Response) -> None:
    s = summary(msg)
    assert s["to_tag"] == "8a2f" and s["from_tag"] == "91c"
    assert msg.from_.display_name == 'Desk "7" \\ left'
    assert s["max_forwards"] == 70 and s["cseq"] == (12, "INVITE")
    assert s["branches"] == ["z9hG4bKt0rt", "z9hG4bKedge1", "z9hG4bKedge2"]
    assert s["via_hosts"] == [
        ("UDP", "192.0.2.21", None),
        ("TCP", "edge.example.net", None),
        ("UDP", "198.51.100.3", None),
    ]
    (contact,) = msg.contacts
    assert contact.display_name == 'Quoted "name"'
    assert contact.params == {"expires": "60", "flag": None, "q": "0.5"}
    assert msg.headers.get("subject") == "" and msg.headers.get("x-odd-header") == ";;,, ;;, ;"
    assert msg.content_type == "application/sdp"


def _escapes(msg: Request | Response) -> None:
    assert isinstance(msg, Request)
    uri = msg.request_uri
    assert isinstance(uri, SipUri)
    assert uri.user_unescaped is not None
    assert uri.user_unescaped.startswith('\x00\x01\x1f "%<>@\x7f')
    assert uri.params["x-p"] == "%41%2c"
    assert msg.from_.display_name == 'abc\\"~'
    assert str(msg.from_.uri) == "sip:%61%62%63@pbx.example.net"
    assert msg.from_.sip_uri == SipUri("pbx.example.net", user="abc")
    to = msg.to.sip_uri
    assert to.header_fields() == {"subject": "a b&c", "priority": "urgent"}
    assert msg.contacts[0].param("note") == 'semi;colon,comma<>"end'


def _long(msg: Request | Response) -> None:
    assert len(msg.call_id) > 1000
    assert msg.from_.tag == "7" * 400
    assert msg.cseq.number == 2**31 - 1
    assert len(msg.contacts) == 40
    assert len(msg.via.params) == 61


def _schemes(msg: Request | Response) -> None:
    assert str(msg.from_.uri) == "http://www.example.net/people/1001"
    assert str(msg.to.uri) == "isbn:0-000-00000-0"
    assert [c.uri.scheme for c in msg.contacts] == ["urn", "mailto"]
    with pytest.raises(SipParseError) as info:
        msg.to.sip_uri  # noqa: B018
    assert info.value.status == 416


def _multiple(msg: Request | Response) -> None:
    assert [v.branch for v in msg.vias] == ["z9hG4bKm1", "z9hG4bKm2", "z9hG4bKm3"]
    assert [str(r.uri) for r in msg.name_addrs("Route")] == [
        "sip:r1.example.net;lr",
        "sip:r2.example.net;lr",
        "sip:r3.example.net;lr",
    ]
    assert [c.display_name for c in msg.contacts] == ["A, B", None]
    assert msg.contacts[1].params == {"q": "0.1"}
    assert msg.headers.values("allow") == ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"]
    assert msg.headers.values("k") == ["timer", "replaces", "100rel"]


def _no_reason(msg: Request | Response) -> None:
    assert isinstance(msg, Response) and msg.reason == ""


def _ipv6(msg: Request | Response) -> None:
    assert isinstance(msg, Request)
    uri = msg.request_uri
    assert isinstance(uri, SipUri)
    assert (uri.host, uri.port, uri.params["maddr"]) == (
        "[2001:db8:0:0:0:0:0:10]",
        5070,
        "[2001:db8::20]",
    )
    assert uri.host_for_socket == "2001:db8:0:0:0:0:0:10"
    assert msg.via.received == "[2001:db8::ff]"
    assert [v.host for v in msg.vias] == ["[2001:db8::21]", "[::ffff:192.0.2.1]"]
    assert msg.name_addrs("route")[0].sip_uri == SipUri(
        "[2001:db8::1]", port=5060, params={"lr": None}
    )


def _nulls(msg: Request | Response) -> None:
    assert msg.from_.display_name == "Nul\x00Byte"
    assert msg.to.param("x") == "a\x00b"
    assert msg.to.sip_uri.user_unescaped == "null-\x00-null"
    assert msg.body == b"nul: \x00 inside the body"


def _semicolons(msg: Request | Response) -> None:
    assert isinstance(msg, Request)
    uri = msg.request_uri
    assert isinstance(uri, SipUri)
    assert (uri.user, uri.host, uri.params) == (
        "1001;ext=22;ctx=a%40b",
        "pbx.example.net",
        {"user": "phone"},
    )
    assert msg.to.sip_uri == uri


def _percent(msg: Request | Response) -> None:
    assert isinstance(msg, Request)
    assert msg.method == "RE%53YNC" != "RESYNC"
    assert msg.from_.display_name == "%Zq%"
    assert msg.via.branch == "z9hG4bK%zz%1"


def _odd_case(msg: Request | Response) -> None:
    assert isinstance(msg, Request)
    uri = msg.request_uri
    assert isinstance(uri, SipUri)
    assert (uri.scheme, uri.transport, uri.params) == (
        "sip",
        "tcp",
        {"transport": "TCP", "lr": None},
    )
    assert uri == SipUri("pbx.example.net", user="2001", params={"transport": "tcp", "lr": None})
    assert msg.via.transport == "TCP" and msg.via.branch == "z9hG4bKcase"
    assert msg.from_.tag == "UpPeR" and msg.from_.uri.scheme == "sips"
    assert msg.to.sip_uri.header_fields() == {"subject": "Hi", "priority": "URGENT"}


def _tabs(msg: Request | Response) -> None:
    assert msg.via.branch == "z9hG4bKtab" and msg.max_forwards == 70 and msg.from_.tag == "tb"
    assert msg.cseq.number == 1
    assert [msg.headers.get(n) for n in ("subject", "x-empty", "organization")] == ["", "", ""]


def _raw_bytes(msg: Request | Response) -> None:
    assert msg.headers.get("x-display") == '"Ünïcödé" <sip:1001@pbx.example.net>;tag=u'
    raw = msg.headers.get("x-raw")
    assert raw is not None
    assert raw.encode("utf-8", "surrogateescape") == b"\xff\xfe\x80 not UTF-8 \xc3\x28"
    assert msg.body.decode() == "héllo wörld ✓"


def _multipart(msg: Request | Response) -> None:
    assert msg.content_type == "multipart/mixed"
    assert msg.body.endswith(b"\xff\r\n--b-1--\r\n")


CHECKS: dict[str, Callable[[Request | Response], None]] = {
    "tortuous_invite": _tortuous,
    "wide_range_of_escapes": _escapes,
    "long_values": _long,
    "unknown_schemes_in_headers": _schemes,
    "multiple_values": _multiple,
    "no_reason_phrase": _no_reason,
    "empty_reason_phrase": _no_reason,
    "ipv6_references": _ipv6,
    "escaped_nulls": _nulls,
    "semicolon_params_in_user": _semicolons,
    "percent_not_an_escape": _percent,
    "odd_case_everywhere": _odd_case,
    "empty_values_and_tabs": _tabs,
    "utf8_and_raw_bytes": _raw_bytes,
    "multipart_body": _multipart,
}


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_valid(path: Path) -> None:
    data = path.read_bytes()
    msg = parse_message(data)
    if isinstance(msg, Request):
        validate_request(msg)
    summary(msg)  # every typed field reads
    CHECKS.get(path.stem, lambda m: None)(msg)
    # The message's own bytes: what came, less the CRLFs before the start line.
    assert bytes(msg) == data.lstrip(b"\r\n")
    exercise_message(parse_message(data))


# -- invalid ------------------------------------------------------------------------------------


def outcome(data: bytes) -> SipParseError:
    """The error a server meets handling this datagram: parsing, then validating a request."""
    with pytest.raises(SipParseError) as info:
        msg = parse_message(data)
        if isinstance(msg, Request) and msg.method != "ACK":
            validate_request(msg)
            check_extensions(msg)
    return info.value


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid(path: Path) -> None:
    want = EXPECTED[path.stem]
    exc = outcome(path.read_bytes())
    check_reason(exc)
    assert exc.status == want["status"]
    assert want["reason"] in exc.reason
    request = exc.partial if isinstance(exc.partial, Request) else None
    answerable = request is not None and can_respond(request)
    assert answerable == want["answerable"]
    if request is not None and answerable:
        answer = parse_message(bytes(make_response(request, exc.status, exc.reason, to_tag="x1")))
        assert isinstance(answer, Response)
        assert (answer.status, answer.reason) == (exc.status, exc.reason)
        assert answer.headers.get_all("via") == request.headers.get_all("via")
        assert answer.headers.get("cseq") == request.headers.get("cseq")
    if exc.status == 420:
        assert dict(exc.headers) == {"Unsupported": "nonsense-extension, 100rel"}


@pytest.mark.parametrize("path", VALID + INVALID, ids=[p.stem for p in VALID + INVALID])
def test_under_the_contract(path: Path) -> None:
    exercise(path.read_bytes())
