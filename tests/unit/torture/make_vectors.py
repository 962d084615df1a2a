"""Writes the torture vectors of `tests/unit/test_sip_torture.py` as files.

In the spirit of RFC 4475 (our own messages, not its text): `valid/*.sip` must parse, validate
and round-trip byte for byte; `invalid/*.sip` must fail with the status and reason fragment that
`invalid/expected.json` declares, and be answerable (a stateless response can be sent) or not.
Each file holds the exact bytes, CRLF included. Run from the repository root to regenerate:

    .venv/bin/python -m tests.unit.torture.make_vectors
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent


def msg(*lines: str | bytes, body: bytes = b"", length: int | str | None = "auto") -> bytes:
    """Lines joined by CRLF, then a Content-Length (unless `length` is None), CRLF CRLF, body."""
    head = [line.encode() if isinstance(line, str) else line for line in lines]
    if length == "auto":
        head.append(b"Content-Length: %d" % len(body))
    elif length is not None:
        head.append(b"Content-Length: " + str(length).encode())
    return b"\r\n".join(head) + b"\r\n\r\n" + body


# The headers every request needs, for vectors that are about something else.
def basics(
    method: str = "INVITE", *, skip: tuple[str, ...] = (), cseq: str | None = None
) -> list[str]:
    lines = {
        "via": "Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKtort1",
        "max-forwards": "Max-Forwards: 70",
        "from": "From: <sip:1001@pbx.example.net>;tag=t0rt",
        "to": "To: <sip:2001@pbx.example.net>",
        "call-id": "Call-ID: torture-0001@192.0.2.21",
        "cseq": f"CSeq: {cseq or '1 ' + method}",
    }
    return [line for key, line in lines.items() if key not in skip]


SDP = (
    b"v=0\r\no=t 1 1 IN IP4 192.0.2.21\r\ns=-\r\nc=IN IP4 192.0.2.21\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0\r\n"
)

VALID: dict[str, bytes] = {
    # Case, compact forms, white space around every separator, folding, leading zeros,
    # an unknown header with a value made of separators.
    "tortuous_invite": msg(
        "INVITE sip:2001@pbx.example.net;unknownflag SIP/2.0",
        "tO  :",
        " sip:2001@pbx.example.net  ;   tag    = 8a2f",
        'fROM   : "Desk \\"7\\" \\\\ left"   <sip:1001@pbx.example.net>',
        "  ;",
        "  tag = 91c",
        "mAx-FoRwArDs: 0070",
        "i: tortuous.33@192.0.2.21",
        "cSeQ: 0012",
        " \t INVITE",
        "Via  : SIP  /   2.0",
        "  /UDP",
        "     192.0.2.21;rport;branch=z9hG4bKt0rt",
        "v:  SIP  / 2.0  / TCP    edge.example.net   ;",
        "   branch  =   z9hG4bKedge1  ,",
        " SIP / 2.0 / UDP 198.51.100.3 ; branch=",
        " z9hG4bKedge2",
        "s :",
        "X-Odd-Header:   ;;,, ;;, ; ",
        'm:"Quoted \\"name\\"" <sip:1001@192.0.2.21> ; expires =',
        "     60 ;",
        "  flag ; q = 0.5",
        "c: application/sdp",
        body=SDP,
    ),
    # Percent-escapes across the range, in the user part, parameters and URI headers; quoted
    # strings with many escaped characters.
    "wide_range_of_escapes": msg(
        "OPTIONS sip:%00%01%1f%20%22%25%3c%3E%40%7f%80%fF-x@pbx.example.net;x-p=%41%2c SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.21;branch=z9hG4bKesc",
        "Max-Forwards: 70",
        'From: "\\a\\b\\c\\\\\\"\\~" <sip:%61%62%63@pbx.example.net>;tag=e1',
        "To: <sip:target@pbx.example.net?Subject=a%20b%26c&Priority=urgent>",
        "Call-ID: escapes-1",
        "CSeq: 3 OPTIONS",
        'Contact: <sip:1001@192.0.2.21>;note="semi;colon,comma<>\\"end"',
    ),
    # Long values: tags, Call-ID, display name, branch, many parameters and many contacts.
    "long_values": msg(
        "REGISTER sip:pbx.example.net SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.21;branch=z9hG4bK"
        + "b" * 300
        + "".join(f";p{i}=v{i}" for i in range(60)),
        "Max-Forwards: 70",
        f'From: "{"Long Display Name " * 20}" <sip:1001@pbx.example.net>;tag={"7" * 400}',
        "To: <sip:1001@pbx.example.net>",
        "Call-ID: " + "c" * 1000 + "@" + "host." * 40 + "example.net",
        "CSeq: 2147483647 REGISTER",
        "Contact: "
        + ", ".join(f"<sip:1001@10.0.{i}.1:5060;transport=udp>;q=0.{i % 10}" for i in range(40)),
        "X-Long: " + "x" * 5000,
    ),
    # Schemes nobody here understands, in From, To and Contact (only the Request-URI must be SIP).
    "unknown_schemes_in_headers": msg(
        "INVITE sip:2001@pbx.example.net SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.21;branch=z9hG4bKsch",
        "Max-Forwards: 70",
        "From: <http://www.example.net/people/1001>;tag=s1",
        "To: isbn:0-000-00000-0",
        "Call-ID: schemes-1",
        "CSeq: 1 INVITE",
        "Contact: <urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>, <mailto:desk@example.net>",
    ),
    # The same header repeated and several values in one header, mixed.
    "multiple_values": msg(
        "INVITE sip:2001@pbx.example.net SIP/2.0",
        "Via: SIP/2.0/UDP p1.example.net;branch=z9hG4bKm1, SIP/2.0/UDP p2.example.net;branch=z9hG4bKm2",
        "Via: SIP/2.0/UDP 192.0.2.21;branch=z9hG4bKm3",
        "Max-Forwards: 70",
        "Route: <sip:r1.example.net;lr>,<sip:r2.example.net;lr>",
        "Route: <sip:r3.example.net;lr>",
        "From: <sip:1001@pbx.example.net>;tag=mv",
        "To: <sip:2001@pbx.example.net>",
        "Call-ID: multi-1",
        "CSeq: 1 INVITE",
        'Contact: "A, B" <sip:ab@192.0.2.21>, sip:cd@192.0.2.22;q=0.1',
        "Allow: INVITE, ACK",
        "Allow: BYE,CANCEL ,  OPTIONS",
        "Supported: timer",
        "Supported: replaces, 100rel",
    ),
    # A status line with no reason phrase at all, and one with an empty phrase after the SP.
    "no_reason_phrase": msg(
        "SIP/2.0 180",
        "Via: SIP/2.0/UDP 192.0.2.21;branch=z9hG4bKnr",
        "From: <sip:1001@pbx.example.net>;tag=nr",
        "To: <sip:2001@pbx.example.net>;tag=nr2",
        "Call-ID: noreason-1",
        "CSeq: 1 INVITE",
    ),
    "empty_reason_phrase": msg(
        "SIP/2.0 200 ",
        "Via: SIP/2.0/UDP 192.0.2.21;branch=z9hG4bKnr",
        "From: <sip:1001@pbx.example.net>;tag=nr",
        "To: <sip:2001@pbx.example.net>;tag=nr2",
        "Call-ID: noreason-1",
        "CSeq: 1 INVITE",
    ),
    # IPv6 references in the Request-URI, Via (with received), Contact and Route.
    "ipv6_references": msg(
        "INVITE sip:2001@[2001:db8:0:0:0:0:0:10]:5070;maddr=[2001:db8::20] SIP/2.0",
        "Via: SIP/2.0/UDP [2001:db8::21]:5060;branch=z9hG4bK6;received=[2001:db8::ff]",
        "Via: SIP/2.0/TCP [::ffff:192.0.2.1];branch=z9hG4bK7",
        "Max-Forwards: 70",
        "Route: <sip:[2001:DB8::1]:5060;lr>",
        "From: <sip:1001@[2001:db8::21]>;tag=v6",
        "To: <sip:2001@[2001:db8::10]>",
        "Call-ID: ipv6-1",
        "CSeq: 1 INVITE",
        "Contact: <sip:1001@[2001:db8::21]:5060;transport=udp>",
    ),
    # Escaped NULs: a quoted-pair carrying NUL in a display name and a parameter, %00 in URIs.
    "escaped_nulls": msg(
        "MESSAGE sip:null-%00-null@pbx.example.net SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.21;branch=z9hG4bKnul",
        "Max-Forwards: 70",
        b'From: "Nul\\\x00Byte" <sip:%00@pbx.example.net>;tag=n1',
        b'To: <sip:null-%00-null@pbx.example.net>;x="a\\\x00b"',
        "Call-ID: nulls-1",
        "CSeq: 1 MESSAGE",
        "Content-Type: text/plain",
        body=b"nul: \x00 inside the body",
    ),
    # Semicolon-separated parameters in the user part (before the @).
    "semicolon_params_in_user": msg(
        "INVITE sip:1001;ext=22;ctx=a%40b@pbx.example.net;user=phone SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.21;branch=z9hG4bKsemi",
        "Max-Forwards: 70",
        "From: <sip:1001@pbx.example.net>;tag=sm",
        "To: <sip:1001;ext=22;ctx=a%40b@pbx.example.net;user=phone>",
        "Call-ID: semi-1",
        "CSeq: 1 INVITE",
    ),
    # % where it is not an escape: in a method (a token), a display name, a branch.
    "percent_not_an_escape": msg(
        "RE%53YNC sip:pbx.example.net SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.21;branch=z9hG4bK%zz%1",
        "Max-Forwards: 70",
        'From: "%Zq%" <sip:1001@pbx.example.net>;tag=pc',
        "To: <sip:pbx.example.net>",
        "Call-ID: percent-1",
        "CSeq: 8 RE%53YNC",
    ),
    # A method nobody implements: the parser accepts it, the server answers 405/501.
    "unknown_method": msg(
        "FLY sip:2001@pbx.example.net SIP/2.0",
        *basics("FLY"),
    ),
    # URI parameters and headers in odd case, SIP-Version in odd case, Via transport in lower case.
    "odd_case_everywhere": msg(
        "INVITE SIP:2001@PBX.Example.NET;TRANSPORT=TCP;LR sIp/2.0",
        "Via: sip/2.0/tcp 192.0.2.21:5060;BRANCH=z9hG4bKcase",
        "Max-Forwards: 70",
        "From: <SIPS:1001@pbx.example.net>;TAG=UpPeR",
        "To: <sip:2001@pbx.example.net?SUBJECT=Hi&priority=URGENT>",
        "Call-ID: case-1",
        "CSeq: 1 INVITE",
    ),
    # Empty header values, tabs as white space.
    "empty_values_and_tabs": msg(
        "INVITE sip:2001@pbx.example.net SIP/2.0",
        "Via:\tSIP/2.0/UDP\t192.0.2.21\t;\tbranch=z9hG4bKtab",
        "Max-Forwards:\t70",
        "From:\t<sip:1001@pbx.example.net>\t;tag=tb",
        "To: <sip:2001@pbx.example.net>",
        "Call-ID: tabs-1",
        "CSeq:\t1\tINVITE",
        "Subject:",
        "X-Empty:   \t ",
        "Organization:",
    ),
    # UTF-8 text, and bytes that are not UTF-8 in a header value: both must come back intact.
    "utf8_and_raw_bytes": msg(
        "MESSAGE sip:2001@pbx.example.net SIP/2.0",
        *basics("MESSAGE"),
        'X-Display: "Ünïcödé" <sip:1001@pbx.example.net>;tag=u',
        b"X-Raw: \xff\xfe\x80 not UTF-8 \xc3\x28",
        "Content-Type: text/plain;charset=utf-8",
        body="héllo wörld ✓".encode(),
    ),
    # CRLFs before the start line (a datagram may carry them too).
    "leading_crlfs": b"\r\n\r\n" + msg("OPTIONS sip:pbx.example.net SIP/2.0", *basics("OPTIONS")),
    # A datagram without Content-Length: the body is the rest of the datagram.
    "datagram_without_content_length": msg(
        "INVITE sip:2001@pbx.example.net SIP/2.0",
        *basics(),
        "Content-Type: application/sdp",
        body=SDP,
        length=None,
    ),
    # A multipart body with binary content.
    "multipart_body": msg(
        "SIP/2.0 200 OK",
        "Via: SIP/2.0/UDP 192.0.2.21;branch=z9hG4bKmp",
        "From: <sip:1001@pbx.example.net>;tag=mp",
        "To: <sip:2001@pbx.example.net>;tag=mp2",
        "Call-ID: multipart-1",
        "CSeq: 1 INVITE",
        'Content-Type: multipart/mixed;boundary="b-1"',
        body=b"--b-1\r\nContent-Type: application/sdp\r\n\r\n"
        + SDP
        + b"--b-1\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01\r\n\r\n\xff\r\n--b-1--\r\n",
    ),
}

# name: (bytes, status, fragment of the reason, answerable)
INVALID: dict[str, tuple[bytes, int, str, bool]] = {
    "unterminated_quoted_display_name": (
        msg(
            "INVITE sip:2001@pbx.example.net SIP/2.0",
            *basics(skip=("from",)),
            'From: "Desk 7 <sip:1001@pbx.example.net>;tag=q1',
        ),
        400,
        "Unterminated quoted",
        True,
    ),
    "content_length_larger_than_body": (
        msg("INVITE sip:2001@pbx.example.net SIP/2.0", *basics(), body=SDP, length=len(SDP) + 40),
        400,
        "Content-Length larger",
        True,
    ),
    "negative_content_length": (
        msg("INVITE sip:2001@pbx.example.net SIP/2.0", *basics(), body=SDP, length=-5),
        400,
        "Malformed Content-Length",
        True,
    ),
    "content_length_not_a_number": (
        msg("INVITE sip:2001@pbx.example.net SIP/2.0", *basics(), body=SDP, length="12abc"),
        400,
        "Malformed Content-Length",
        True,
    ),
    "conflicting_content_lengths": (
        msg("INVITE sip:2001@pbx.example.net SIP/2.0", *basics(), "l: 3", body=SDP),
        400,
        "Conflicting Content-Length",
        True,
    ),
    "body_too_large": (
        msg("INVITE sip:2001@pbx.example.net SIP/2.0", *basics(), body=SDP, length=70000),
        413,
        "Body too large",
        True,
    ),
    "message_too_large": (
        msg("INVITE sip:2001@pbx.example.net SIP/2.0", *basics(), body=b"0" * 66000),
        513,
        "Message too large",
        True,
    ),
    "cseq_method_mismatch": (
        msg("INVITE sip:2001@pbx.example.net SIP/2.0", *basics(cseq="1 BYE")),
        400,
        "CSeq method does not match",
        True,
    ),
    "cseq_out_of_range": (
        msg("INVITE sip:2001@pbx.example.net SIP/2.0", *basics(cseq="2147483648 INVITE")),
        400,
        "CSeq number out of range",
        True,
    ),
    "missing_call_id": (
        msg("INVITE sip:2001@pbx.example.net SIP/2.0", *basics(skip=("call-id",))),
        400,
        "Missing Call-ID",
        True,
    ),
    "missing_from_and_to": (
        msg("INVITE sip:2001@pbx.example.net SIP/2.0", *basics(skip=("from", "to"))),
        400,
        "Missing From",
        True,
    ),
    "duplicate_to": (
        msg(
            "INVITE sip:2001@pbx.example.net SIP/2.0",
            *basics(),
            "To: <sip:3001@pbx.example.net>",
        ),
        400,
        "Conflicting To",
        True,
    ),
    "missing_via": (
        msg("INVITE sip:2001@pbx.example.net SIP/2.0", *basics(skip=("via",))),
        400,
        "Missing Via",
        False,
    ),
    "malformed_via": (
        msg(
            "INVITE sip:2001@pbx.example.net SIP/2.0",
            "Via: SIP/2.0/UDP ;branch=z9hG4bKnohost",
            *basics(skip=("via",)),
        ),
        400,
        "Malformed Via",
        False,
    ),
    "via_with_empty_branch": (
        msg(
            "INVITE sip:2001@pbx.example.net SIP/2.0",
            "Via: SIP/2.0/UDP 192.0.2.21;branch",
            *basics(skip=("via",)),
        ),
        400,
        "Empty Via branch",
        False,
    ),
    "unsupported_version": (
        msg("INVITE sip:2001@pbx.example.net SIP/7.0", *basics()),
        505,
        "Version Not Supported",
        True,
    ),
    # RFC 4475 §3.4.1 (badvers): the other version is in the Via as well; the answer still
    # goes back to its sent-by.
    "unsupported_version_in_via_too": (
        msg("OPTIONS sip:2001@pbx.example.net SIP/7.0",
            "Via: SIP/7.0/UDP 192.0.2.21:5060;branch=z9hG4bKtort1", *basics("OPTIONS", skip=("via",))),
        505,
        "Version Not Supported",
        True,
    ),
    # RFC 3261 §8.2.2.3: an option tag we do not support in Require gets 420 + Unsupported.
    "unknown_required_extension": (
        msg("INVITE sip:2001@pbx.example.net SIP/2.0", *basics(),
            "Require: timer, nonsense-extension, 100rel"),
        420,
        "Bad Extension",
        True,
    ),
    "unknown_scheme_in_request_uri": (
        msg("INVITE isbn:0-000-00000-0 SIP/2.0", *basics()),
        416,
        "Unsupported URI scheme",
        True,
    ),
    "spaces_in_request_uri": (
        msg("INVITE sip:2001@pbx.example.net; transport=udp SIP/2.0", *basics()),
        400,
        "Malformed Request-Line",
        True,
    ),
    "request_uri_too_long": (
        msg(f"INVITE sip:{'1' * 9000}@pbx.example.net SIP/2.0", *basics()),
        414,
        "Request-URI Too Long",
        True,
    ),
    "enormous_header_line": (
        msg("INVITE sip:2001@pbx.example.net SIP/2.0", *basics(), "X-Huge: " + "h" * 10000),
        513,
        "Header line too long",
        True,
    ),
    "too_many_headers": (
        msg(
            "INVITE sip:2001@pbx.example.net SIP/2.0",
            *basics(),
            *(f"X-Many-{i}: {i}" for i in range(200)),
        ),
        513,
        "Too many headers",
        True,
    ),
    "header_section_too_large": (
        msg(
            "INVITE sip:2001@pbx.example.net SIP/2.0",
            *basics(),
            *(f"X-Big-{i}: {'b' * 5000}" for i in range(4)),
        ),
        513,
        "Header section too large",
        True,
    ),
    "max_forwards_out_of_range": (
        msg(
            "OPTIONS sip:pbx.example.net SIP/2.0",
            *basics("OPTIONS", skip=("max-forwards",)),
            "Max-Forwards: 256",
        ),
        400,
        "Malformed Max-Forwards",
        True,
    ),
    "bad_ipv6_reference": (
        msg("INVITE sip:2001@[2001:db8:::10] SIP/2.0", *basics()),
        400,
        "Malformed IPv6 reference",
        True,
    ),
    "ipv6_without_brackets": (
        msg("INVITE sip:2001@2001:db8::10 SIP/2.0", *basics()),
        400,
        "Malformed port",
        True,
    ),
    "port_out_of_range": (
        msg("INVITE sip:2001@pbx.example.net:70000 SIP/2.0", *basics()),
        400,
        "Port out of range",
        True,
    ),
    "bad_escape_in_request_uri": (
        msg("INVITE sip:20%G1@pbx.example.net SIP/2.0", *basics()),
        400,
        "Bad percent-escape",
        True,
    ),
    "header_without_colon": (
        msg("INVITE sip:2001@pbx.example.net SIP/2.0", *basics(), "This line has no colon"),
        400,
        "no colon",
        True,
    ),
    "bare_lf_in_header": (
        msg("INVITE sip:2001@pbx.example.net SIP/2.0", *basics(), "Subject: one\nX-Sneaky: two"),
        400,
        "Bare CR or LF",
        True,
    ),
    "continuation_before_any_header": (
        msg("INVITE sip:2001@pbx.example.net SIP/2.0", " folded too early", *basics()),
        400,
        "Continuation line before any header",
        True,
    ),
    "unterminated_angle_bracket": (
        msg("INVITE sip:2001@pbx.example.net SIP/2.0", *basics(), "Contact: <sip:1001@192.0.2.21"),
        400,
        "Unterminated angle bracket",
        True,
    ),
    "display_name_not_a_token": (
        msg(
            "INVITE sip:2001@pbx.example.net SIP/2.0",
            *basics(skip=("from",)),
            "From: Desk@7 <sip:1001@pbx.example.net>;tag=d7",
        ),
        400,
        "Malformed address",
        True,
    ),
    "contact_star_with_others": (
        msg(
            "REGISTER sip:pbx.example.net SIP/2.0",
            *basics("REGISTER"),
            "Contact: *, <sip:1001@192.0.2.21>",
        ),
        400,
        "Contact '*' mixed",
        True,
    ),
    "no_end_of_headers": (
        b"\r\n".join(
            s.encode() for s in ["OPTIONS sip:pbx.example.net SIP/2.0", *basics("OPTIONS")]
        ),
        400,
        "No end of headers",
        True,
    ),
    "garbage_start_line": (
        msg("HELLO", *basics()),
        400,
        "Malformed Request-Line",
        False,
    ),
    "response_with_bad_version": (
        msg(
            "SIP/7.0 200 OK",
            "Via: SIP/2.0/UDP 192.0.2.21;branch=z9hG4bKr",
            "From: <sip:1001@pbx.example.net>;tag=a",
            "To: <sip:2001@pbx.example.net>;tag=b",
            "Call-ID: r-1",
            "CSeq: 1 INVITE",
        ),
        505,
        "Unsupported SIP version",
        False,
    ),
    "response_with_bad_status_code": (
        msg(
            "SIP/2.0 2000 OK",
            "Via: SIP/2.0/UDP 192.0.2.21;branch=z9hG4bKr",
            "From: <sip:1001@pbx.example.net>;tag=a",
            "To: <sip:2001@pbx.example.net>;tag=b",
            "Call-ID: r-1",
            "CSeq: 1 INVITE",
        ),
        400,
        "Malformed status code",
        False,
    ),
}


def write(root: Path = HERE) -> None:
    for folder, vectors in (("valid", VALID), ("invalid", {k: v[0] for k, v in INVALID.items()})):
        target = root / folder
        target.mkdir(parents=True, exist_ok=True)
        for old in target.glob("*.sip"):
            old.unlink()
        for name, data in vectors.items():
            (target / f"{name}.sip").write_bytes(data)
    expected = {
        name: {"status": status, "reason": fragment, "answerable": answerable}
        for name, (_, status, fragment, answerable) in INVALID.items()
    }
    (root / "invalid" / "expected.json").write_text(
        json.dumps(expected, indent=2, sort_keys=True) + "\n"
    )


if __name__ == "__main__":
    write()
