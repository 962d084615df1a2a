"""Low-level lexical helpers of RFC 3261 §25: tokens, quoted strings, parameters, lists.

Every function here takes `str` (header values are decoded with surrogateescape so any byte
round-trips) and raises only `SipParseError`.
"""

from __future__ import annotations

from b2bua.sip.errors import SipParseError

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
)
WS = " \t"


def is_token(text: str) -> bool:
    return bool(text) and all(c in TOKEN_CHARS for c in text)


def is_digits(text: str) -> bool:
    """ASCII digits only (str.isdigit also accepts other scripts' digits)."""
    return bool(text) and all("0" <= c <= "9" for c in text)


def quote(text: str) -> str:
    """Make a quoted-string (escaping `"` and `\\`)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def read_quoted(text: str, start: int) -> tuple[str, int]:
    """Read the quoted-string that begins at `text[start] == '"'`.

    Returns the unescaped content and the index just after the closing quote.
    """
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
    if len(value) >= 2 and value[0] == '"':
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
            depth = max(0, depth - 1)
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
    params: dict[str, str | None] = {}
    i = start
    n = len(text)
    while i < n:
        while i < n and text[i] in WS:
            i += 1
        if i >= n:
            break
        if text[i] != ";":
            raise SipParseError(f"Expected ';' in parameters near {text[i:i + 20]!r}")
        i += 1
        while i < n and text[i] in WS:
            i += 1
        j = i
        while j < n and text[j] not in "=;" + WS:
            j += 1
        name = text[i:j]
        if not name:
            raise SipParseError("Empty parameter name")
        i = j
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
                j = i
                while j < n and text[j] not in ";" + WS:
                    j += 1
                value = text[i:j]
                i = j
        params[name.lower()] = value
    return params


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())
