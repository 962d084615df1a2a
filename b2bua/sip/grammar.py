"""Low-level lexical helpers of RFC 3261 §25: tokens, quoted strings, parameters, lists.

Every function here takes `str` (header values are decoded with surrogateescape so any byte
round-trips) and raises only `SipParseError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from b2bua.sip.errors import SipParseError

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
TOKEN_RE = r"[A-Za-z0-9\-.!%*_+`'~]+"
_TOKEN = re.compile(TOKEN_RE)
WS = " \t"
# A parameter name: a token, or in a URI a paramchar ("[" / "]" / "/" / ":" / "&" / "+" / "$",
# RFC 3261 §25.1), escapes included.
_PARAM_NAME = re.compile(r"[A-Za-z0-9\-.!%*_+`'~\[\]/:&$]+")
# An unquoted parameter value: token, host (IPv6 reference included) or URI paramchars.
_PARAM_VALUE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~\[\]/:&$=?@]+")
# One parameter, the common shape: `;name=value` or `;name` with no white space.
_SIMPLE_PARAM = re.compile(
    r";([A-Za-z0-9\-.!%*_+`'~\[\]/:&$]+)(?:=([A-Za-z0-9\-.!%*_+`'~\[\]/:&$=?@]+))?"
)
_SIMPLE_PARAMS = re.compile(f"(?:{_SIMPLE_PARAM.pattern})*")
SIMPLE_PARAM = _SIMPLE_PARAM  # one parameter without quotes or white space: (name, value or "")
# auth-param = token EQUAL ( token / quoted-string ), comma-separated (RFC 7235 §2.1); names are
# read loosely (any run without white space, "=", "," or '"'): what a name may be is the caller's.
_AUTH_PARAM = re.compile(
    r'[ \t]*([^\s=,"]+)[ \t]*=[ \t]*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))[ \t]*(?:,|$)', re.S
)
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)
# quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F): CR and LF can never be escaped.
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')


def is_token(text: str) -> bool:
    return _TOKEN.fullmatch(text) is not None


def is_digits(text: str) -> bool:
    """ASCII digits only (str.isdigit alone also accepts other scripts' digits)."""
    return text.isascii() and text.isdigit()


def quote(text: str) -> str:
    """Make a quoted-string of `text`.

    `"`, `\\` and control characters become quoted-pairs; CR and LF, which no quoted-pair can
    carry, become spaces: whatever the text, the result stays on one header line.
    """
    if "\r" in text or "\n" in text:
        text = text.replace("\r", " ").replace("\n", " ")
    return '"' + _NEEDS_ESCAPE.sub(lambda m: "\\" + m.group(), text) + '"'


def read_quoted(text: str, start: int) -> tuple[str, int]:
    """Read the quoted-string that begins at `text[start] == '"'`.

    Returns the unescaped content and the index just after the closing quote.
    """
    end = text.find('"', start + 1)
    if end < 0:
        raise SipParseError("Unterminated quoted string")
    if text.find("\\", start + 1, end) < 0:
        return text[start + 1 : end], end + 1
    out: list[str] = []
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            if i + 1 >= n:
                break
            out.append(text[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise SipParseError("Unterminated quoted string")


def unquote(value: str) -> str:
    """The content of a quoted-string, or the value itself when it is not quoted."""
    if value[:1] == '"':
        content, end = read_quoted(value, 0)
        if end != len(value):
            raise SipParseError("Garbage after quoted string")
        return content
    return value


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, ignoring commas inside quotes and <...>."""
    if "," not in value:
        v = value.strip()
        return [v] if v else []
    parts: list[str] = []
    depth = 0
    start = 0
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if c == '"':
            _, i = read_quoted(value, i)
            continue
        if c == "<":
            depth += 1
        elif c == ">":
            if depth == 0:
                raise SipParseError("Unbalanced angle brackets")
            depth -= 1
        elif c == "," and depth == 0:
            part = value[start:i].strip()
            if part:
                parts.append(part)
            start = i + 1
        i += 1
    if depth:
        raise SipParseError("Unbalanced angle brackets")
    part = value[start:].strip()
    if part:
        parts.append(part)
    return parts


def parse_params(text: str, start: int = 0) -> dict[str, str | None]:
    """Parse `*(SEMI name [EQUAL value])` from `text[start:]`.

    Names are lower-cased (parameter names are case-insensitive); values are kept as written
    (a quoted value keeps its quotes, see `unquote`). A parameter without value maps to None.
    """
    if _SIMPLE_PARAMS.fullmatch(text, start):
        # The common case, no white space and no quotes: two scans in C. (A value is never
        # empty, so an empty group means a parameter without value.)
        return {name.lower(): value or None for name, value in _SIMPLE_PARAM.findall(text, start)}
    params: dict[str, str | None] = {}
    i = start
    n = len(text)
    simple = _SIMPLE_PARAM.match
    while i < n:
        m = simple(text, i)
        if m is not None:
            end = m.end()
            if end == n or text[end] == ";":
                params[m.group(1).lower()] = m.group(2)
                i = end
                continue
        i = _parse_param(text, i, params)
    return params


def _parse_param(text: str, i: int, params: dict[str, str | None]) -> int:
    """The general case of one parameter (white space around `;` and `=`, quoted values)."""
    n = len(text)
    while i < n and text[i] in WS:
        i += 1
    if i >= n:
        return i
    if text[i] != ";":
        raise SipParseError(f"Expected ';' in parameters near {text[i : i + 20]!r}")
    i += 1
    while i < n and text[i] in WS:
        i += 1
    m = _PARAM_NAME.match(text, i)
    if m is None:
        raise SipParseError("Malformed parameter name")
    name = m.group()
    i = m.end()
    while i < n and text[i] in WS:
        i += 1
    value: str | None = None
    if i < n and text[i] == "=":
        i += 1
        while i < n and text[i] in WS:
            i += 1
        if i < n and text[i] == '"':
            _, end = read_quoted(text, i)
            value = text[i:end]
            i = end
        else:
            m = _PARAM_VALUE.match(text, i)
            if m is None:
                raise SipParseError(f"Malformed value of parameter {name[:20]!r}")
            value = m.group()
            i = m.end()
    if i < n and text[i] not in ";" + WS:
        raise SipParseError(f"Malformed parameter {name[:20]!r}")
    params[name.lower()] = value
    return i


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def parse_auth_params(text: str) -> dict[str, str]:
    """The auth-params after an authentication scheme (`realm="x", nonce=y`): names lower-cased,
    quoted values unescaped. SipParseError on a parameter that breaks the grammar or comes twice
    (RFC 7616 §3.3 and §3.4 allow each at most once)."""
    params: dict[str, str] = {}
    pos, n = 0, len(text)
    while pos < n and text[pos] in " \t,":
        pos += 1
    while pos < n:
        m = _AUTH_PARAM.match(text, pos)
        if m is None:
            raise SipParseError(f"malformed parameter near {text[pos:pos + 20]!r}")
        name = m.group(1).lower()
        quoted = m.group(2)
        if quoted is None:
            value = m.group(3)
        elif "\\" in quoted:
            value = _QUOTED_PAIR.sub(r"\1", quoted)
        else:
            value = quoted
        if name in params:
            raise SipParseError(f"parameter {name!r} repeated")
        params[name] = value
        pos = m.end()
        while pos < n and text[pos] in " \t,":
            pos += 1
    return params


_Parsed = TypeVar("_Parsed")
# Texts per cache of parsed header values (name-addrs, Vias, CSeqs, URIs, start lines); a full
# cache starts again empty. In the 3-device SIPp benchmark at 300 calls a second, 38.8% of
# lookups miss with 8,192 texts, 40.4% with 2,048, 42.9% with 1,024 and 59.6% with 256 (no
# cache at all costs 6% more instructions per call). Under a fuzz flood every text is new and
# each entry weighs about 800 bytes: 8,192 of each kind took 11 MB more at the peak than 1,024
# (docs/overload.md, "Memory").
PARSED_CACHE_SIZE = 1024


def parsed_once(cache: dict[str, _Parsed], text: str, parse: Callable[[str], _Parsed]) -> _Parsed:
    """`parse(text)`, remembered by text. Only for read-only results (they are shared); what
    `parse` refuses (it raises) is not remembered."""
    value = cache.get(text)
    if value is None:
        value = parse(text)
        if len(cache) >= PARSED_CACHE_SIZE:
            cache.clear()
        cache[text] = value
    return value
