"""SIP URIs: parsing, printing, and comparison as RFC 3261 §19.1.4 defines it."""

from __future__ import annotations

import pytest

from b2bua.sip.errors import SipParseError
from b2bua.sip.uri import AbsoluteUri, SipUri, parse_hostport, parse_sip_uri, parse_uri


def sip(text: str) -> SipUri:
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    return uri


# -- parsing ------------------------------------------------------------------------------------


def test_all_parts() -> None:
    uri = sip("sips:desk%207:s3cret@PBX.Example.net:5061;transport=TLS;lr;x=1?subject=hi&to=a%40b")
    assert uri.scheme == "sips"
    assert (uri.user, uri.user_unescaped, uri.password) == ("desk%207", "desk 7", "s3cret")
    assert (uri.host, uri.port, uri.hostport) == ("PBX.Example.net", 5061, "PBX.Example.net:5061")
    assert uri.params == {"transport": "TLS", "lr": None, "x": "1"}
    assert uri.transport == "tls"
    assert uri.headers == "subject=hi&to=a%40b"
    assert uri.header_fields() == {"subject": "hi", "to": "a@b"}


def test_minimal_and_scheme_case() -> None:
    uri = sip("SIP:pbx.example.net")
    assert (uri.scheme, uri.user, uri.host, uri.port, uri.params) == (
        "sip",
        None,
        "pbx.example.net",
        None,
        {},
    )
    assert str(uri) == "SIP:pbx.example.net"  # printed as written


def test_telephone_subscriber_with_password_like_part() -> None:
    uri = sip("sip:+1-555-0100:77@gw.example.net;user=phone")
    assert (uri.user, uri.password, uri.params) == ("+1-555-0100", "77", {"user": "phone"})


@pytest.mark.parametrize(
    "text, host, port",
    [
        ("sip:[2001:db8::1]", "[2001:db8::1]", None),
        ("sip:u@[2001:db8::1]:5070", "[2001:db8::1]", 5070),
        ("sip:[::ffff:192.0.2.1]:5060", "[::ffff:192.0.2.1]", 5060),
        ("sip:192.0.2.1:0", "192.0.2.1", 0),
    ],
)
def test_hosts(text: str, host: str, port: int | None) -> None:
    uri = sip(text)
    assert (uri.host, uri.port) == (host, port)
    assert uri.host_for_socket == host.strip("[]")


def test_user_part_may_hold_semicolons_question_marks_and_hash() -> None:
    uri = sip("sip:1001;ext=2?x#9@pbx.example.net;lr")
    assert (uri.user, uri.host, uri.params) == ("1001;ext=2?x#9", "pbx.example.net", {"lr": None})


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("pbx.example.net", "Malformed URI"),
        (":x", "Malformed URI"),
        ("sip:", "Missing host"),
        ("sip:@pbx.example.net", "Empty user part"),
        ("sip:u@", "Missing host"),
        ("sip:u@pbx example.net", "Illegal character"),
        ("sip:u@<pbx>", "Illegal character"),
        ("sip:u%4@pbx.example.net", "percent-escape"),
        ("sip:u%zz@pbx.example.net", "percent-escape"),
        ("sip:pbx.example.net;x=%g0", "percent-escape"),
        ("sip:pbx.example.net?a=%", "percent-escape"),
        ("sip:pbx.example.net:", "Malformed port"),
        ("sip:pbx.example.net:50a", "Malformed port"),
        ("sip:pbx.example.net:123456", "Malformed port"),
        ("sip:pbx.example.net:65536", "Port out of range"),
        ("sip:[2001:db8::1", "Unterminated IPv6"),
        ("sip:[2001:db8:::1]", "Malformed IPv6"),
        ("sip:[fe80::1%25eth0]", "Malformed IPv6"),
        ("sip:[]", "Malformed IPv6"),
        ("sip:[2001:db8::1]x", "Malformed port"),
        ("sip:pbx_1.example.net", "Malformed host"),
        ("sip:pbx.example.net;", "parameter"),
        ("sip:pbx.example.net;=x", "parameter"),
        ("sip:pbx.example.net;a=", "parameter"),
        ("1sip:x", "Malformed URI scheme"),
        ("tel:", "Malformed URI"),
        ("tel:+1 555", "Malformed URI"),
    ],
)
def test_malformed(text: str, fragment: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_uri(text)
    assert fragment in info.value.reason
    assert info.value.status == 400


def test_other_schemes_are_kept_opaque_and_refused_where_sip_is_needed() -> None:
    uri = parse_uri("TEL:+1-555-0100;phone-context=example.net")
    assert isinstance(uri, AbsoluteUri)
    assert (uri.scheme, uri.rest) == ("tel", "+1-555-0100;phone-context=example.net")
    assert str(uri) == "tel:+1-555-0100;phone-context=example.net"
    assert uri == parse_uri("tel:+1-555-0100;phone-context=example.net")
    with pytest.raises(SipParseError) as info:
        parse_sip_uri("urn:service:sos")
    assert info.value.status == 416


def test_replace_prints_canonically_and_leaves_the_original() -> None:
    uri = sip("SIP:Desk@PBX.example.net;Transport=UDP")
    moved = uri.replace(host="192.0.2.9", port=5080)
    assert str(moved) == "sip:Desk@192.0.2.9:5080;transport=UDP"
    assert str(uri) == "SIP:Desk@PBX.example.net;Transport=UDP"
    assert (
        str(SipUri("[2001:db8::1]", user="a", password="p", headers="x=1"))
        == "sip:a:p@[2001:db8::1]?x=1"
    )


def test_parse_hostport() -> None:
    assert parse_hostport("example.net") == ("example.net", None)
    assert parse_hostport("[::1]:5060") == ("[::1]", 5060)
    with pytest.raises(SipParseError):
        parse_hostport("")


# -- comparison (RFC 3261 §19.1.4) --------------------------------------------------------------

EQUAL = [
    # Escaped and unescaped characters are equivalent; host, scheme and parameter names and
    # the transport value compare without case.
    ("sip:%62ob@Example.COM;transport=TLS", "SIP:bob@example.com;TRANSPORT=tls"),
    # A parameter present in one URI only is ignored, unless it is one of the five below.
    ("sip:dave@pbx.example.net", "sip:dave@pbx.example.net;color=blue"),
    ("sip:dave@pbx.example.net;color=blue;lr", "sip:dave@pbx.example.net;lr;color=blue"),
    # Parameter values, escaped or not.
    ("sip:pbx.example.net;x=%41b", "sip:pbx.example.net;x=ab"),
    # URI headers: order does not matter, escapes do not either.
    ("sip:pbx.example.net?a=1&b=x%20y", "sip:pbx.example.net?b=x y&a=1".replace(" ", "%20")),
    # IPv6 references without case.
    ("sip:u@[2001:DB8::A]:5060", "sip:u@[2001:db8::a]:5060"),
    ("sip:u:pw@h", "sip:u:%70w@h"),
]

NOT_EQUAL = [
    # The user part is case-sensitive.
    ("sip:Dave@pbx.example.net", "sip:dave@pbx.example.net"),
    # sip and sips differ.
    ("sip:dave@pbx.example.net", "sips:dave@pbx.example.net"),
    # A default value is not the same as an omitted one.
    ("sip:dave@pbx.example.net", "sip:dave@pbx.example.net:5060"),
    ("sip:dave@pbx.example.net", "sip:dave@pbx.example.net;transport=udp"),
    # user, ttl, method, maddr and transport must match if present in either.
    ("sip:5550100@gw.example.net", "sip:5550100@gw.example.net;user=phone"),
    ("sip:gw.example.net;ttl=1", "sip:gw.example.net"),
    ("sip:gw.example.net;method=INVITE", "sip:gw.example.net;method=BYE"),
    ("sip:gw.example.net;maddr=239.1.1.1", "sip:gw.example.net"),
    # Any parameter present in both must match.
    ("sip:dave@pbx.example.net;color=blue", "sip:dave@pbx.example.net;color=red"),
    # Header components must be present in both and match.
    ("sip:pbx.example.net?subject=a", "sip:pbx.example.net"),
    ("sip:pbx.example.net?subject=a", "sip:pbx.example.net?subject=b"),
    # Passwords, escapes that mean different octets, hosts.
    ("sip:u:pw1@h", "sip:u:pw2@h"),
    ("sip:u:pw@h", "sip:u@h"),
    ("sip:%ff@h", "sip:%fe@h"),
    ("sip:u@h1.example.net", "sip:u@h2.example.net"),
    ("sip:u@h:5060", "sip:u@h:5070"),
]


@pytest.mark.parametrize("a, b", EQUAL)
def test_equal(a: str, b: str) -> None:
    assert sip(a) == sip(b) and sip(b) == sip(a)
    assert hash(sip(a)) == hash(sip(b))


@pytest.mark.parametrize("a, b", NOT_EQUAL)
def test_not_equal(a: str, b: str) -> None:
    assert sip(a) != sip(b) and sip(b) != sip(a)


def test_a_sip_uri_never_equals_another_kind() -> None:
    assert sip("sip:a@b") != parse_uri("tel:+15550100")
    assert sip("sip:a@b") != "sip:a@b"


def test_a_uri_text_is_parsed_once_and_a_refusal_every_time() -> None:
    text = "sip:1001@pbx.example.net:5070;transport=tcp"
    assert parse_uri(text) is parse_uri(text)
    for _ in range(2):
        with pytest.raises(SipParseError):
            parse_uri("sip:1001@pbx example.net")
