"""bencode and the ng protocol codec (rtpengine control)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.rtpengine import BencodeError, NgCodec, NgError, bdecode, bencode


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"i0e"),
        (-42, b"i-42e"),
        (b"", b"0:"),
        (b"spam", b"4:spam"),
        ("été", b"5:\xc3\xa9t\xc3\xa9"),
        ([], b"le"),
        ([1, b"a", [b"b"]], b"li1e1:al1:bee"),
        (
            {"b": 1, "a": b"x", "flags": ["trust-address"]},
            b"d1:a1:x1:bi1e5:flagsl13:trust-addressee",
        ),
    ],
)
def test_bencode_vectors(value: Any, encoded: bytes) -> None:
    assert bencode(value) == encoded


def test_bdecode_vectors() -> None:
    assert bdecode(b"d7:command4:ping6:result4:ponge") == {"command": b"ping", "result": b"pong"}
    assert bdecode(b"li-1ei0e0:e") == [-1, 0, b""]


@pytest.mark.parametrize(
    "data",
    [b"", b"i", b"ie", b"i-e", b"i01e", b"i-0e", b"i1x", b"5:abc", b"01:a", b"l", b"d1:a", b"di1ei2ee",
     b"x", b"i1ei2e", b"d2:\xff\xfei1ee", b"l" * 100 + b"e" * 100],
)  # fmt: skip
def test_bdecode_malformed(data: bytes) -> None:
    with pytest.raises(BencodeError):
        bdecode(data)


def test_bencode_refuses_what_it_cannot_encode() -> None:
    for bad in (True, 1.5, None, {1: 2}):
        with pytest.raises(TypeError):
            bencode(bad)  # type: ignore[arg-type]


values = st.recursive(
    st.integers() | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(values)
def test_round_trip(value: Any) -> None:
    assert bdecode(bencode(value)) == value


@given(st.binary(max_size=100))
def test_random_bytes_raise_only_bencode_error(data: bytes) -> None:
    try:
        bdecode(data)
    except BencodeError:
        pass


def test_ng_codec_matches_cookies_and_checks_results() -> None:
    codec = NgCodec()
    cookie, datagram = codec.request("offer", {"call-id": "abc", "sdp": b"v=0\r\n"})
    assert datagram.startswith(cookie + b" d")
    assert bdecode(datagram[len(cookie) + 1 :]) == {
        "call-id": b"abc",
        "command": b"offer",
        "sdp": b"v=0\r\n",
    }
    assert codec.response(b"othercookie d6:result2:oke") is None
    assert codec.response(cookie + b" d6:result2:ok3:sdp4:v=0!e") == (
        cookie,
        {"result": b"ok", "sdp": b"v=0!"},
    )
    assert codec.response(cookie + b" d6:result2:oke") is None  # answered already
    c2, _ = codec.request("delete", {"call-id": "abc"})
    with pytest.raises(NgError, match="Unknown call-id"):
        codec.response(c2 + b" d6:result5:error12:error-reason15:Unknown call-ide")
    c3, _ = codec.request("ping")
    with pytest.raises(NgError, match="malformed"):
        codec.response(c3 + b" d6:result")
