"""Header views: name-addr, Via, CSeq; header names; the Headers collection; lexical helpers."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b2bua.sip.errors import SipParseError
from b2bua.sip.grammar import is_digits, parse_params, quote, read_quoted, split_list, unquote
from b2bua.sip.headers import (
    NameAddr,
    canonical_name,
    header_key,
    parse_cseq,
    parse_name_addr,
    parse_via,
)
from b2bua.sip.message import Headers
from b2bua.sip.uri import AbsoluteUri, SipUri, parse_uri

# -- name-addr / addr-spec ----------------------------------------------------------------------

NAME_ADDRS = [
    # text, display name, URI, parameters
    ("<sip:1001@pbx.example.net>", None, "sip:1001@pbx.example.net", {}),
    ('"Front Desk" <sip:1001@pbx.example.net>;tag=a1', "Front Desk", "sip:1001@pbx.example.net", {"tag": "a1"}),
    ("Front   Desk <sip:1001@pbx.example.net>", "Front Desk", "sip:1001@pbx.example.net", {}),
    ("Desk<sip:1001@pbx.example.net>", "Desk", "sip:1001@pbx.example.net", {}),
    ('""<sip:1001@pbx.example.net>', "", "sip:1001@pbx.example.net", {}),
    ('"A \\"quoted\\" \\\\ name" <sip:a@b>', 'A "quoted" \\ name', "sip:a@b", {}),
    ('"<sip:fake@x>, ;tag=no" <sip:real@x>', "<sip:fake@x>, ;tag=no", "sip:real@x", {}),
    ('"Zoë" <sips:z@example.net>', "Zoë", "sips:z@example.net", {}),
    # URI parameters stay in the URI inside <>; after it they belong to the header.
    ("<sip:a@b;transport=tcp;lr>;expires=60;q=0.5", None, "sip:a@b;transport=tcp;lr", {"expires": "60", "q": "0.5"}),
    # addr-spec: every parameter is a header parameter (RFC 3261 §20).
    ("sip:a@b;tag=x;transport=tcp", None, "sip:a@b", {"tag": "x", "transport": "tcp"}),
    ("sip:a@b", None, "sip:a@b", {}),
    ("  < sip:a@b >  ;  tag = x  ", None, "sip:a@b", {"tag": "x"}),
    ('<sip:a@b>;+sip.instance="<urn:uuid:1>";Reg-Id=1', None, "sip:a@b", {"+sip.instance": '"<urn:uuid:1>"', "reg-id": "1"}),
    # Other schemes.
    ("<tel:+15550100>;tag=t", None, "tel:+15550100", {"tag": "t"}),
    ("isbn:0-000-00000-0", None, "isbn:0-000-00000-0", {}),
    ("<urn:service:sos>", None, "urn:service:sos", {}),
]  # fmt: skip


@pytest.mark.parametrize("text, display, uri, params", NAME_ADDRS)
def test_name_addr(text: str, display: str | None, uri: str, params: dict[str, str | None]) -> None:
    na = parse_name_addr(text)
    assert na.display_name == display
    assert str(na.uri) == uri
    assert na.params == params
    again = parse_name_addr(str(na))
    assert (again.display_name or None, str(again.uri), again.params) == (
        display or None,
        uri,
        params,
    )


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "Empty address"),
        ('"Desk <sip:a@b>', "Unterminated quoted"),
        ('"Desk" sip:a@b', "angle brackets"),
        ("<sip:a@b", "Unterminated angle bracket"),
        ("<>", "Empty URI"),
        ("Desk 7 sip:a@b", "Malformed address"),
        ('Desk "7" <sip:a@b>', "quote not at the start"),
        ("Desk@home <sip:a@b>", "Malformed address"),
        ("sip:a@b?subject=x", "angle brackets"),
        ("<sip:a@b> tag=x", "Expected ';'"),
        ("<sip:a@b>;tag", None),
        ("<sip:a@b>;tag=", "parameter"),
        ('<sip:a@b>;x="unterminated', "Unterminated quoted"),
        ("<sip:a b@c>", "Illegal character"),
    ],
)
def test_malformed_name_addr(text: str, fragment: str | None) -> None:
    if fragment is None:  # a parameter without value is fine
        assert parse_name_addr(text).params == {"tag": None}
        return
    with pytest.raises(SipParseError) as info:
        na = parse_name_addr(text)
        na.uri  # noqa: B018 - the URI is parsed on first use
    assert fragment in info.value.reason


def test_uri_is_parsed_on_first_use_and_tags_need_no_uri() -> None:
    na = parse_name_addr("<sip:bad uri>;tag=t1")
    assert na.tag == "t1"
    with pytest.raises(SipParseError):
        na.uri  # noqa: B018


def test_sip_uri_refuses_other_schemes() -> None:
    assert parse_name_addr("<sip:a@b>").sip_uri == SipUri("b", user="a")
    with pytest.raises(SipParseError) as info:
        parse_name_addr("<tel:+1>").sip_uri  # noqa: B018
    assert info.value.status == 416


def test_param_unquotes_and_names_are_case_insensitive() -> None:
    na = parse_name_addr('<sip:a@b>;Note="x \\"y\\"";Expires=5')
    assert na.param("note") == 'x "y"'
    assert na.param("EXPIRES") == "5"
    assert na.param("missing") is None


@pytest.mark.parametrize(
    "display, written",
    [
        ("Front Desk", "Front Desk <sip:a@b>"),
        ("Desk  7", '"Desk  7" <sip:a@b>'),
        (" Desk", '" Desk" <sip:a@b>'),
        ('Say "hi"', '"Say \\"hi\\"" <sip:a@b>'),
        ("back\\slash", '"back\\\\slash" <sip:a@b>'),
        ("Zoë", '"Zoë" <sip:a@b>'),
        ("nul\x00bell\x07", '"nul\\\x00bell\\\x07" <sip:a@b>'),
        ("two\r\nlines", '"two  lines" <sip:a@b>'),
        ("", "<sip:a@b>"),
        (None, "<sip:a@b>"),
    ],
)
def test_display_names_are_written_safely(display: str | None, written: str) -> None:
    na = NameAddr(SipUri("b", user="a"), display)
    assert str(na) == written
    assert "\r" not in str(na) and "\n" not in str(na)
    if display and "\r" not in display:
        assert parse_name_addr(written).display_name == display


def test_with_params_keeps_the_rest() -> None:
    na = parse_name_addr('"A" <sip:a@b;lr>;x=1')
    tagged = na.with_params(tag="t9")
    assert str(tagged) == "A <sip:a@b;lr>;x=1;tag=t9"
    assert na.tag is None
    assert str(NameAddr(parse_uri("tel:+1")).with_params(tag="x")) == "<tel:+1>;tag=x"


# -- Via ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, transport, host, port, params",
    [
        ("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1", "UDP", "192.0.2.1", 5060, {"branch": "z9hG4bK1"}),
        ("SIP/2.0/tcp pbx.example.net;branch=z9hG4bK2;rport", "TCP", "pbx.example.net", None, {"branch": "z9hG4bK2", "rport": None}),
        ("sip / 2.0 / TLS  [2001:db8::1] : 5061 ; branch = z9hG4bK3", "TLS", "[2001:db8::1]", 5061, {"branch": "z9hG4bK3"}),
        ("SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK4;received=192.0.2.9;rport=40000", "WSS", "df7jal23ls0d.invalid", None, {"branch": "z9hG4bK4", "received": "192.0.2.9", "rport": "40000"}),
        ("SIP/2.0/UDP\t10.0.0.1;received=2001:db8::9;branch=z9hG4bK5", "UDP", "10.0.0.1", None, {"received": "2001:db8::9", "branch": "z9hG4bK5"}),
        ("SIP/2.0/UDP h;maddr=239.0.0.1;ttl=16;branch=z9hG4bK6;x=\"q\"", "UDP", "h", None, {"maddr": "239.0.0.1", "ttl": "16", "branch": "z9hG4bK6", "x": '"q"'}),
    ],
)  # fmt: skip
def test_via(
    text: str, transport: str, host: str, port: int | None, params: dict[str, str | None]
) -> None:
    via = parse_via(text)
    assert (via.transport, via.host, via.port, via.params) == (transport, host, port, params)
    assert via.branch == params.get("branch")
    again = parse_via(str(via))
    assert (again.transport, again.host, again.port, again.params) == (
        transport,
        host,
        port,
        params,
    )


def test_via_rport_and_received() -> None:
    via = parse_via("SIP/2.0/UDP h;rport=5062;received=198.51.100.1;branch=z9hG4bKx")
    assert (via.rport, via.received) == (5062, "198.51.100.1")
    assert parse_via("SIP/2.0/UDP h;rport;branch=z9hG4bKx").rport is None


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "Malformed Via"),
        ("SIP/2.0/UDP", "Malformed Via"),
        ("SIP/2.0/UDP ;branch=z9hG4bK1", "Malformed Via"),
        ("SIP/2.0 UDP h", "Malformed Via"),
        ("SIP/3.0/UDP h;branch=z9hG4bK1", "Unsupported Via protocol"),
        ("HTTP/2.0/UDP h;branch=z9hG4bK1", "Unsupported Via protocol"),
        ("SIP/2.0/UDP h;branch", "Empty Via branch"),
        ("SIP/2.0/UDP h;branch=", "parameter"),
        ("SIP/2.0/UDP h:99999;branch=z9hG4bK1", "out of range"),
        ("SIP/2.0/UDP h;rport=x", "rport"),
        ("SIP/2.0/UDP h;rport=70000", "rport"),
        ("SIP/2.0/UDP h;rport=" + "9" * 5000, "rport"),
        ("SIP/2.0/UDP h_h;branch=z9hG4bK1", "Malformed host"),
        ("SIP/2.0/UDP [::1;branch=z9hG4bK1", "Malformed"),
        ("SIP/2.0/UDP h junk", "Expected ';'"),
    ],
)
def test_malformed_via(text: str, fragment: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_via(text)
    assert fragment in info.value.reason


# -- CSeq ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, number, method",
    [("1 INVITE", 1, "INVITE"), ("0009  BYE", 9, "BYE"), ("\t2147483647\tX-Y ", 2**31 - 1, "X-Y")],
)
def test_cseq(text: str, number: int, method: str) -> None:
    cseq = parse_cseq(text)
    assert (cseq.number, cseq.method) == (number, method)
    assert str(cseq) == f"{number} {method}"


@pytest.mark.parametrize(
    "text", ["", "INVITE", "1", "1INVITE", "-1 INVITE", "2147483648 INVITE", "99999999999 INVITE", "1 INV ITE", "1 INVITE;x", "\u0661 INVITE"]
)  # fmt: skip
def test_malformed_cseq(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_cseq(text)

    with pytest.raises(SipParseError):  # a refusal is not remembered as a value
        parse_cseq(text)


def test_cseq_parsed_once_per_text() -> None:
    assert parse_cseq("7 OPTIONS") is parse_cseq("7 OPTIONS")
    assert parse_cseq("7 OPTIONS") != parse_cseq("8 OPTIONS")


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=12))
def test_is_digits_is_ascii_digits_only(text: str) -> None:
    assert is_digits(text) == (re.fullmatch(r"[0-9]+", text) is not None)
    assert is_digits("0123456789" + text) == (text == "" or is_digits(text))


# -- header names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, key, canonical",
    [
        ("v", "via", "Via"),
        ("I", "call-id", "Call-ID"),
        ("CALL-ID", "call-id", "Call-ID"),
        ("cseq", "cseq", "CSeq"),
        ("m", "contact", "Contact"),
        ("l", "content-length", "Content-Length"),
        ("www-authenticate", "www-authenticate", "WWW-Authenticate"),
        ("x-custom-thing", "x-custom-thing", "X-Custom-Thing"),
        ("k", "supported", "Supported"),
    ],
)
def test_header_names(name: str, key: str, canonical: str) -> None:
    assert header_key(name) == key
    assert canonical_name(name) == canonical


# -- the Headers collection ---------------------------------------------------------------------


def make() -> Headers:
    return Headers(
        [
            ("Via", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2"),
            ("v", "SIP/2.0/UDP c;branch=z9hG4bK3"),
            ("f", "<sip:a@b>;tag=1"),
            ("Route", '<sip:r1;lr>, "R, 2" <sip:r2;lr>'),
            ("WWW-Authenticate", 'Digest realm="x", nonce="y"'),
        ]
    )


def test_reading_is_case_and_compact_insensitive() -> None:
    h = make()
    assert (
        h.get("VIA") == h.get("v") == "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2"
    )
    assert h.get_all("via") == [
        "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2",
        "SIP/2.0/UDP c;branch=z9hG4bK3",
    ]
    assert h.values("Via") == [
        "SIP/2.0/UDP a;branch=z9hG4bK1",
        "SIP/2.0/UDP b;branch=z9hG4bK2",
        "SIP/2.0/UDP c;branch=z9hG4bK3",
    ]
    assert h.values("route") == ["<sip:r1;lr>", '"R, 2" <sip:r2;lr>']
    # A header that is not a list keeps its commas.
    assert h.values("www-authenticate") == ['Digest realm="x", nonce="y"']
    assert "From" in h and "to" not in h and 3 not in h
    assert h.get("to") is None and h.get("to", "x") == "x" and h.get_all("to") == []
    assert len(h) == 5
    assert [name for name, _ in h] == ["Via", "Via", "From", "Route", "WWW-Authenticate"]


def test_changing() -> None:
    h = make()
    h.add_first("Via", "SIP/2.0/UDP top;branch=z9hG4bK0")
    assert h.values("via")[0] == "SIP/2.0/UDP top;branch=z9hG4bK0"
    assert h.pop_first("via") == "SIP/2.0/UDP top;branch=z9hG4bK0"
    assert h.pop_first("via") == "SIP/2.0/UDP a;branch=z9hG4bK1"
    assert h.get_all("via") == ["SIP/2.0/UDP b;branch=z9hG4bK2", "SIP/2.0/UDP c;branch=z9hG4bK3"]
    assert h.pop_first("to") is None
    h.set("v", "SIP/2.0/UDP only;branch=z9hG4bK9")
    assert h.get_all("Via") == ["SIP/2.0/UDP only;branch=z9hG4bK9"]
    assert next(iter(h))[0] == "Via"  # in place of the first
    h.set("Max-Forwards", "70")
    assert list(h)[-1] == ("Max-Forwards", "70")  # else at the end
    h.add("Route", "<sip:r3;lr>")
    assert h.values("route")[-1] == "<sip:r3;lr>"
    h.remove("ROUTE")
    assert "route" not in h
    h.add_first("X-New", "1")
    assert next(iter(h)) == ("X-New", "1")


def test_copy_is_independent() -> None:
    h = make()
    c = h.copy()
    c.remove("via")
    assert "via" in h and "via" not in c


@pytest.mark.parametrize(
    "name, value",
    [("X-A", "1\r\nX-Injected: 2"), ("X-A", "a\nb"), ("Bad Name", "1"), ("", "1"), ("X:Y", "1")],
)
def test_our_own_values_cannot_break_the_framing(name: str, value: str) -> None:  # fmt: skip
    with pytest.raises(ValueError):
        Headers().add(name, value)
    with pytest.raises(ValueError):
        Headers([(name, value)])


# -- lexical helpers ----------------------------------------------------------------------------


def test_split_list() -> None:
    assert split_list('a, "b, c" , <sip:d,e>;x=1,, f') == ["a", '"b, c"', "<sip:d,e>;x=1", "f"]
    assert split_list("  ") == []
    for bad in ('a, "b', "a, <b", "a, b>"):
        with pytest.raises(SipParseError):
            split_list(bad)


def test_quoted_strings() -> None:
    assert read_quoted('x"a\\"b"y', 1) == ('a"b', 7)
    assert unquote('"a\\\\b"') == "a\\b"
    assert unquote("plain") == "plain"
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    for bad in ('"abc', '"abc\\"', '"a" x'):
        with pytest.raises(SipParseError):
            unquote(bad)


def test_parse_params() -> None:
    assert parse_params(';a=1;B;c = "x;y" ; d=[::1]') == {
        "a": "1",
        "b": None,
        "c": '"x;y"',
        "d": "[::1]",
    }
    assert parse_params("") == {}
    for bad in ("a=1", ";", ";a=", ";a=<x>", ";a=1 b", ';a="x'):
        with pytest.raises(SipParseError):
            parse_params(bad)


def test_absolute_uri_in_name_addr_is_opaque() -> None:
    na = parse_name_addr("<http://example.net/a?b=c>")
    assert isinstance(na.uri, AbsoluteUri) and na.uri.rest == "//example.net/a?b=c"
