"""Property tests of the SIP parser.

Generated messages (methods, URIs, display names, parameters, spacing, compact names, folding,
extra headers, bodies) round-trip exactly: `bytes(parse_message(m)) == m`, with the fields the
generator put in. Messages built through the API survive serialize-then-parse. And the error
contract: mutated valid messages and random bytes never raise anything but `SipParseError`,
through the parser, the validator, every typed accessor and the stream framer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b2bua.sip.errors import SipParseError
from b2bua.sip.framing import KEEPALIVE_PING, StreamFramer
from b2bua.sip.grammar import parse_auth_params, quote
from b2bua.sip.message import Request, Response, parse_message, validate_request
from b2bua.sip.uri import SipUri, parse_uri
from tests.unit.sip_support import exercise, exercise_stream, summary
from tests.unit.test_sip_vectors import VECTORS

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings(SETTINGS, max_examples=200)

ALPHA = "abcdefghijklmnopqrstuvwxyz"
TOKEN_CHARS = ALPHA + ALPHA.upper() + "0123456789-.!%*_+`'~"
# unreserved and user-unreserved characters of RFC 3261 §25.1 (no '%': escapes come separately).
USER_CHARS = ALPHA + ALPHA.upper() + "0123456789-_.!~*'()&=+$,;?/"

tokens = st.text(TOKEN_CHARS, min_size=1, max_size=10)
uri_tokens = st.text(TOKEN_CHARS.replace("%", ""), min_size=1, max_size=10)
lower_tokens = st.text(ALPHA + "0123456789-", min_size=1, max_size=8)
spaces = st.sampled_from(["", " ", "  ", "\t", " \t "])


hosts = st.one_of(
    st.lists(st.text(ALPHA + "0123456789", min_size=1, max_size=8), min_size=1, max_size=4).map(
        ".".join
    ),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
)
users = st.lists(
    st.one_of(
        st.sampled_from(USER_CHARS),
        st.integers(0, 255).map(lambda b: f"%{b:02x}"),
        st.integers(0, 255).map(lambda b: f"%{b:02X}"),
    ),
    min_size=1,
    max_size=12,
).map("".join)
ports = st.none() | st.integers(1, 65535)
sip_uris = st.builds(
    SipUri,
    hosts,
    user=st.none() | users,
    port=ports,
    params=st.dictionaries(lower_tokens, st.none() | uri_tokens, max_size=3),
    scheme=st.sampled_from(["sip", "sips"]),
)
texts = st.text(st.characters(blacklist_categories=["Cc", "Cs"]), max_size=24)


def _quoted(text: str) -> tuple[str, str]:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"', text


# A display name (as written, as parsed), or None.
display_names = st.one_of(
    st.none(),
    st.lists(tokens, min_size=1, max_size=3).map(lambda words: (" ".join(words),) * 2),
    texts.map(_quoted),
)
vias = st.lists(
    st.tuples(st.sampled_from(["UDP", "TCP", "TLS"]), hosts, ports, tokens), min_size=1, max_size=3
)
NAMES = {
    "via": st.sampled_from(["Via", "via", "v", "VIA"]),
    "from": st.sampled_from(["From", "f", "FROM"]),
    "to": st.sampled_from(["To", "t", "tO"]),
    "call-id": st.sampled_from(["Call-ID", "i", "call-id"]),
    "cseq": st.sampled_from(["CSeq", "cseq"]),
    "max-forwards": st.sampled_from(["Max-Forwards", "max-forwards"]),
    "contact": st.sampled_from(["Contact", "m"]),
    "content-length": st.sampled_from(["Content-Length", "l"]),
}
methods = st.sampled_from(["INVITE", "REGISTER", "BYE", "OPTIONS", "MESSAGE"]) | tokens
extra_names = st.lists(tokens.map(lambda t: "X-" + t), max_size=4, unique_by=str.lower)
folds = st.sampled_from([" ", "\t", "   "])
gaps = st.sampled_from([" ", "  ", "\t"])
bodies = st.binary(max_size=120)
VERSIONS = st.sampled_from(["SIP/2.0", "sip/2.0"])


@dataclass
class Model:
    """What a generated message holds, and its text."""

    data: bytes
    fields: dict[str, object]
    extra: dict[str, str]


def header(draw: st.DrawFn, key: str, value: str) -> str:
    name = draw(NAMES[key])
    return f"{name}{draw(spaces)}:{draw(spaces)}{value}"


@st.composite
def messages(draw: st.DrawFn, response: bool = False) -> Model:
    method = draw(methods)
    fields: dict[str, object] = {}
    if response:
        status = draw(st.integers(100, 699))
        reason = draw(texts)
        start = f"SIP/2.0 {status} {reason}"
        fields.update(status=status, reason=reason)
    else:
        uri = draw(sip_uris)
        start = f"{method} {uri} {draw(VERSIONS)}"
        fields.update(method=method, request_uri=str(uri))
    # Header lines in groups: groups are shuffled, the order inside one (Vias, Contacts) is kept.
    groups: list[list[str]] = []
    via_list = draw(vias)
    groups.append(
        [
            header(draw, "via", f"SIP/2.0/{t} {h if p is None else f'{h}:{p}'};branch=z9hG4bK{b}")
            for t, h, p, b in via_list
        ]
    )
    fields["branches"] = [f"z9hG4bK{b}" for *_, b in via_list]
    fields["via_hosts"] = [(t, h, p) for t, h, p, _ in via_list]
    for key in ("from", "to"):
        display = draw(display_names)
        uri = draw(sip_uris)
        tag = draw(st.none() | tokens)
        written = f"<{uri}>" if display is None else f"{display[0]}{draw(spaces)}<{uri}>"
        if tag is not None:
            written += f";tag={tag}"
        groups.append([header(draw, key, written)])
        fields[f"{key}_tag"] = tag
        fields[f"{key}_uri"] = str(uri)
        if key == "from":
            fields["from_display"] = None if display is None else display[1]
    call_id = draw(tokens) + draw(st.sampled_from(["", "@host.example"]))
    groups.append([header(draw, "call-id", call_id)])
    number = draw(st.integers(0, 2**31 - 1))
    groups.append([header(draw, "cseq", f"{number}{draw(gaps)}{method}")])
    fields.update(call_id=call_id, cseq=(number, method))
    max_forwards = draw(st.none() | st.integers(0, 255))
    if max_forwards is not None:
        groups.append([header(draw, "max-forwards", str(max_forwards))])
    fields["max_forwards"] = max_forwards
    contacts = draw(st.lists(sip_uris, max_size=3))
    if contacts and draw(st.booleans()):
        groups.append([header(draw, "contact", ", ".join(f"<{c}>" for c in contacts))])
    elif contacts:
        groups.append(
            [header(draw, "contact", f"<{c}>;expires={i}") for i, c in enumerate(contacts)]
        )
    fields["contacts"] = [str(c) for c in contacts]
    extra: dict[str, str] = {}
    for name in draw(extra_names):
        value = draw(texts).strip(" \t")
        words = value.split(" ")
        written = value
        if len(words) > 1 and all(words) and draw(st.booleans()):
            # Folded over two lines: reads as one SP.
            cut = draw(st.integers(1, len(words) - 1))
            written = " ".join(words[:cut]) + "\r\n" + draw(folds) + " ".join(words[cut:])
        extra[name.lower()] = value
        groups.append([f"{name}:{draw(spaces)}{written}"])
    body = draw(bodies)
    fields["body"] = body
    groups.append([header(draw, "content-length", str(len(body)))])
    lines = [start, *(line for group in draw(st.permutations(groups)) for line in group), "", ""]
    data = "\r\n".join(lines).encode("utf-8", "surrogateescape") + body
    return Model(data, fields, extra)


def check(msg: Request | Response, model: Model) -> None:
    got = summary(msg)
    for key, value in model.fields.items():
        assert got[key] == value, key
    for name, value in model.extra.items():
        assert msg.headers.get(name) == value


# -- round trips -------------------------------------------------------------------------------


def frames(stream: bytes, chunk: int) -> list[bytes | str]:
    framer = StreamFramer()
    events: list[bytes | str] = []
    for i in range(0, len(stream), chunk):
        framer.feed(stream[i : i + chunk])
        while (event := framer.next_event()) is not None:
            events.append(event)
    assert framer.buffered == 0
    return events


@SETTINGS
@given(messages(), st.integers(1, 50), st.binary(max_size=60))
def test_generated_requests_round_trip(model: Model, chunk: int, new_body: bytes) -> None:
    msg = parse_message(model.data)
    assert isinstance(msg, Request)
    check(msg, model)
    validate_request(msg)
    assert bytes(msg) == model.data
    # Framed from a stream, between keep-alives.
    stream = b"\r\n\r\n" + model.data + b"\r\n" + model.data
    assert frames(stream, chunk) == [KEEPALIVE_PING, model.data, model.data]
    # The same message built through the API from the values read, then parsed again.
    headers = [(n, v) for n, v in msg.headers if n.lower() not in ("content-length", "l")]
    uri = msg.request_uri
    built = Request(msg.method, uri, headers, msg.body)
    again = parse_message(bytes(built))
    assert isinstance(again, Request)
    assert again.request_uri == uri and str(again.request_uri) == str(uri)
    check(again, model)
    assert bytes(again) == bytes(built)
    # A changed header and body: the rest reads the same, Content-Length follows the body.
    again.headers.set("Max-Forwards", "42")
    again.body = new_body
    third = parse_message(bytes(again))
    assert third.max_forwards == 42 and third.body == new_body
    assert third.headers.get_all("content-length") == [str(len(new_body))]
    assert summary(third)["branches"] == model.fields["branches"]


@SETTINGS
@given(messages(response=True), st.integers(1, 50))
def test_generated_responses_round_trip(model: Model, chunk: int) -> None:
    msg = parse_message(model.data)
    assert isinstance(msg, Response)
    check(msg, model)
    assert bytes(msg) == model.data
    assert frames(model.data + b"\r\n\r\n", chunk) == [model.data, KEEPALIVE_PING]
    built = Response(msg.status, msg.reason, [(n, v) for n, v in msg.headers], msg.body)
    again = parse_message(bytes(built))
    check(again, model)


@SETTINGS
@given(sip_uris)
def test_uris_print_and_parse_back_equal(uri: SipUri) -> None:
    again = parse_uri(str(uri))
    assert again == uri and hash(again) == hash(uri)
    assert str(again) == str(uri)


# -- the error contract ------------------------------------------------------------------------

SEEDS = [v.data for v in VECTORS] + [
    p.read_bytes() for p in sorted((Path(__file__).parent / "torture" / "valid").glob("*.sip"))
]
NASTY = [
    b'"',
    b"<",
    b">",
    b"\\",
    b";",
    b",",
    b":",
    b"@",
    b"%",
    b"[",
    b"]",
    b"=",
    b"?",
    b"\r\n",
    b"\r\n ",
    b"\r",
    b"\n",
    b"\x00",
    b"\xff",
    b" ",
    b"\t",
    b"SIP/2.0",
    b"sip:",
    b"*",
    b"\r\n\r\n",
    b"0",
    b"-1",
    b"99999999999",
    b"9" * 5000,
    b"Content-Length: 7\r\n",
    b"l:",
    b"v:",
    b"Via: SIP/2.0/UDP [::1];branch=",
    b'"\\',
    b"%0",
    b"%%",
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["insert", "replace", "delete", "flip", "dup_line", "truncate"]))
        pos = draw(st.integers(0, len(data)))
        if op == "insert":
            data[pos:pos] = draw(st.sampled_from(NASTY) | st.binary(min_size=1, max_size=8))
        elif op == "replace":
            size = draw(st.integers(1, 20))
            data[pos : pos + size] = draw(st.sampled_from(NASTY))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 30))]
        elif op == "flip" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == "dup_line":
            start = data.rfind(b"\r\n", 0, pos) + 2
            end = data.find(b"\r\n", pos)
            if 2 <= start < end:
                data[end:end] = b"\r\n" + data[start:end]
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


@FUZZ
@given(mutated())
def test_mutated_messages_raise_only_sip_parse_errors(data: bytes) -> None:
    exercise(data)


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_raise_only_sip_parse_errors(data: bytes) -> None:
    exercise(data)
    exercise_stream(data, chunk=1)


SIPPY = st.text(alphabet='<>";,:@[]%\\ \t=?&*/.0123456789abcSIPsipz9hG4bK\x00\xff', max_size=40)


@FUZZ
@given(st.sampled_from(SEEDS[: len(VECTORS)]), st.integers(0, 20), SIPPY)
def test_random_header_values_raise_only_sip_parse_errors(
    seed: bytes, which: int, value: str
) -> None:
    """One header value (or the Request-URI) replaced by text made of SIP's separators."""
    head, sep, body = seed.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    raw = value.encode("utf-8", "surrogateescape")
    index = which % len(lines)
    if index == 0:
        parts = lines[0].split(b" ")
        if lines[0].startswith(b"SIP/"):
            lines[0] = b" ".join([*parts[:2], raw])  # the reason phrase
        else:
            lines[0] = b" ".join([parts[0], raw, parts[-1]])  # the Request-URI
    else:
        name = lines[index].split(b":", 1)[0]
        lines[index] = name + b": " + raw
    exercise(b"\r\n".join(lines) + sep + body)


_TOKENS = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~",
                  min_size=1, max_size=12)


@given(st.dictionaries(_TOKENS.map(str.lower), st.text(st.characters(min_codepoint=0x20,
       max_codepoint=0x7E), max_size=30), max_size=6), st.sampled_from([",", ", ", " ,\t"]))
def test_auth_params_written_quoted_parse_back(params: dict[str, str], comma: str) -> None:
    """What a challenge or credentials header says is what we read (RFC 7235 §2.1)."""
    text = comma.join(f"{name}={quote(value)}" for name, value in params.items())
    assert parse_auth_params(text) == params


@given(st.text(max_size=60))
def test_auth_params_raise_only_sip_parse_errors(text: str) -> None:
    try:
        params = parse_auth_params(text)
    except SipParseError:
        return
    assert all(name == name.lower() for name in params)
