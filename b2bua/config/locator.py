"""Line numbers for key paths: tomllib and pydantic know none, so `Locator` scans the text once
and records the line of every key path (`users[0].schedule.hours[1].start`), following `[table]`
and `[[array.of.tables]]` headers, dotted keys, inline tables and multi-line arrays. A path that
is not in the file (a missing required field) falls back to its closest recorded ancestor,
typically the table header (`line_for`)."""

from __future__ import annotations

import re
import tomllib
from bisect import bisect_left
from collections.abc import Mapping

from b2bua.config.issues import KeyPath

__all__ = ["Locator", "line_for"]


def line_for(lines: Mapping[KeyPath, int], path: KeyPath) -> int:
    for n in range(len(path), 0, -1):
        line = lines.get(path[:n])
        if line is not None:
            return line
    return 1


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR = re.compile(r"[^,\]}\n#]*")


class Locator:
    """Maps key paths to line numbers by scanning TOML text that tomllib already accepted."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.newlines = [m.start() for m in re.finditer("\n", text)]
        self.lines: dict[KeyPath, int] = {}
        self.array_tables: dict[KeyPath, int] = {}
        try:
            self._document()
        except (IndexError, ValueError, tomllib.TOMLDecodeError):
            pass  # best effort: whatever was recorded so far still helps

    def _line(self) -> int:
        return bisect_left(self.newlines, self.pos) + 1

    def _mark(self, path: KeyPath, line: int) -> None:
        self.lines.setdefault(path, line)

    def _skip(self, newlines: bool) -> None:
        text = self.text
        n = len(text)
        while self.pos < n:
            c = text[self.pos]
            if c in " \t\r" or (newlines and c == "\n"):
                self.pos += 1
            elif c == "#" and newlines:
                end = text.find("\n", self.pos)
                self.pos = n if end < 0 else end
            else:
                break

    def _document(self) -> None:
        table: KeyPath = ()
        text = self.text
        while True:
            self._skip(newlines=True)
            if self.pos >= len(text):
                return
            line = self._line()
            if text[self.pos] == "[":
                array = text.startswith("[[", self.pos)
                self.pos += 2 if array else 1
                keys = self._key()
                self._skip(newlines=False)
                self.pos += 2 if array else 1
                table = self._resolve(keys, array)
                self._mark(table, line)
            else:
                keys = self._key()
                self._skip(newlines=False)
                self.pos += 1  # '='
                self._skip(newlines=False)
                for n in range(1, len(keys) + 1):
                    self._mark(table + keys[:n], line)
                self._value(table + keys)
            # rest of the line (comment)
            self._skip(newlines=False)
            if self.pos < len(text) and text[self.pos] == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end

    def _resolve(self, keys: KeyPath, array: bool) -> KeyPath:
        resolved: KeyPath = ()
        for i, key in enumerate(keys):
            resolved += (key,)
            if array and i == len(keys) - 1:
                count = self.array_tables.get(resolved, 0)
                self.array_tables[resolved] = count + 1
                resolved += (count,)
            elif resolved in self.array_tables:
                resolved += (self.array_tables[resolved] - 1,)
        return resolved

    def _key(self) -> KeyPath:
        parts: list[str] = []
        text = self.text
        while True:
            self._skip(newlines=False)
            c = text[self.pos]
            if c in "\"'":
                start = self.pos
                self._string()
                parts.append(tomllib.loads("k = " + text[start : self.pos])["k"])
            else:
                m = _BARE_KEY.match(text, self.pos)
                if m is None:
                    raise ValueError("key expected")
                parts.append(m.group())
                self.pos = m.end()
            self._skip(newlines=False)
            if self.pos < len(text) and text[self.pos] == ".":
                self.pos += 1
                continue
            return tuple(parts)

    def _value(self, path: KeyPath) -> None:
        text = self.text
        c = text[self.pos]
        if c == "{":
            self.pos += 1
            while True:
                self._skip(newlines=True)
                if text[self.pos] == "}":
                    self.pos += 1
                    return
                if text[self.pos] == ",":
                    self.pos += 1
                    continue
                line = self._line()
                keys = self._key()
                self._skip(newlines=False)
                self.pos += 1  # '='
                self._skip(newlines=False)
                for n in range(1, len(keys) + 1):
                    self._mark(path + keys[:n], line)
                self._value(path + keys)
        elif c == "[":
            self.pos += 1
            index = 0
            while True:
                self._skip(newlines=True)
                if text[self.pos] == "]":
                    self.pos += 1
                    return
                if text[self.pos] == ",":
                    self.pos += 1
                    continue
                self._mark((*path, index), self._line())
                self._value((*path, index))
                index += 1
        elif c in "\"'":
            self._string()
        else:
            m = _SCALAR.match(text, self.pos)
            assert m is not None
            self.pos = m.end()

    def _string(self) -> None:
        text = self.text
        for quote in ('"""', "'''"):
            if text.startswith(quote, self.pos):
                i = self.pos + 3
                while True:
                    if quote == '"""' and text[i] == "\\":
                        i += 2
                        continue
                    if text.startswith(quote, i):
                        i += 3
                        while i < len(text) and text[i] == quote[0]:
                            i += 1  # up to two quotes may end the content
                        self.pos = i
                        return
                    i += 1
        quote = text[self.pos]
        i = self.pos + 1
        while text[i] != quote:
            i += 2 if (quote == '"' and text[i] == "\\") else 1
        self.pos = i + 1
