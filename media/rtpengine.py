"""The rtpengine control protocol ("ng"): bencode and a UDP client.

rtpengine (Debian `rtpengine-daemon`) takes commands as datagrams `<cookie> <bencoded dict>` on its
ng port and answers `<cookie> <bencoded dict>` with the same cookie; a lost datagram is simply
sent again with the same cookie (rtpengine caches answers by cookie, so a retransmitted `offer` is
not applied twice). This module is the first step of an rtpengine backend behind the media
interface: the codec (`bencode`, `bdecode`), the sans-IO `NgCodec` (build requests, match and
check responses) and an asyncio `NgClient` with retransmissions. The backend that maps the
media session interface to commands is `media/rtpengine_backend.py`.

Only `BencodeError` escapes `bdecode`, on any input.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from media.errors import MediaError

__all__ = ["BencodeError", "NgClient", "NgCodec", "NgError", "bdecode", "bencode"]

Bencodable = bytes | str | int | list[Any] | tuple[Any, ...] | Mapping[Any, Any]
MAX_DEPTH = 64


class BencodeError(ValueError):
    """Malformed bencoded data."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NgError(MediaError):
    """rtpengine answered `result: error` (or something unusable)."""


def bencode(value: Bencodable) -> bytes:
    """Encode str (as UTF-8), bytes, int, list/tuple and dict (keys sorted, as bencode requires)."""
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def _encode(value: object, out: list[bytes]) -> None:
    if isinstance(value, bool):
        raise TypeError("bencode has no booleans")
    if isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, bytes | bytearray):
        out.append(b"%d:" % len(value))
        out.append(bytes(value))
    elif isinstance(value, str):
        data = value.encode()
        out.append(b"%d:" % len(data))
        out.append(data)
    elif isinstance(value, list | tuple):
        out.append(b"l")
        for item in value:
            _encode(item, out)
        out.append(b"e")
    elif isinstance(value, Mapping):
        items = []
        for k, v in value.items():
            key = k.encode() if isinstance(k, str) else k
            if not isinstance(key, bytes):
                raise TypeError(f"bencode dictionary keys are strings, not {type(k).__name__}")
            items.append((key, v))
        items.sort(key=lambda kv: kv[0])
        out.append(b"d")
        for key, v in items:
            out.append(b"%d:" % len(key))
            out.append(key)
            _encode(v, out)
        out.append(b"e")
    else:
        raise TypeError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes) -> Any:
    """Decode one bencoded value that spans all of `data`: byte strings stay bytes, dict keys
    become str (UTF-8, or BencodeError)."""
    value, end = _decode(data, 0, 0)
    if end != len(data):
        raise BencodeError(f"trailing data at offset {end}")
    return value


def _decode(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    if depth > MAX_DEPTH:
        raise BencodeError("nested too deeply")
    if pos >= len(data):
        raise BencodeError("truncated")
    c = data[pos]
    if c == 0x69:  # i<digits>e
        end = data.find(b"e", pos + 1)
        if end < 0:
            raise BencodeError("unterminated integer")
        text = data[pos + 1 : end]
        body = text[1:] if text.startswith(b"-") else text
        if not body.isdigit() or (body.startswith(b"0") and len(text) > 1):
            raise BencodeError(f"bad integer {text[:20]!r}")
        return int(text), end + 1
    if c == 0x6C:  # l ... e
        items: list[Any] = []
        pos += 1
        while True:
            if pos >= len(data):
                raise BencodeError("unterminated list")
            if data[pos] == 0x65:
                return items, pos + 1
            item, pos = _decode(data, pos, depth + 1)
            items.append(item)
    if c == 0x64:  # d ... e
        result: dict[str, Any] = {}
        pos += 1
        while True:
            if pos >= len(data):
                raise BencodeError("unterminated dictionary")
            if data[pos] == 0x65:
                return result, pos + 1
            key, pos = _decode(data, pos, depth + 1)
            if not isinstance(key, bytes):
                raise BencodeError("dictionary key is not a string")
            try:
                name = key.decode()
            except UnicodeDecodeError:
                raise BencodeError("dictionary key is not UTF-8") from None
            result[name], pos = _decode(data, pos, depth + 1)
    if 0x30 <= c <= 0x39:  # <length>:<bytes>
        colon = data.find(b":", pos)
        if colon < 0 or not data[pos:colon].isdigit() or colon - pos > 10:
            raise BencodeError("bad string length")
        if data[pos] == 0x30 and colon - pos > 1:
            raise BencodeError("string length with a leading zero")
        end = colon + 1 + int(data[pos:colon])
        if end > len(data):
            raise BencodeError("string longer than the data")
        return bytes(data[colon + 1 : end]), end
    raise BencodeError(f"unexpected byte {c:#x} at offset {pos}")


@dataclass
class NgCodec:
    """Requests and responses of the ng protocol, without I/O."""

    pending: dict[bytes, str] = field(default_factory=dict)  # cookie -> command

    def request(self, command: str, args: Mapping[str, Any] | None = None) -> tuple[bytes, bytes]:
        """A new request: (cookie, datagram)."""
        cookie = secrets.token_hex(8).encode()
        body = dict(args or {})
        body["command"] = command
        self.pending[cookie] = command
        return cookie, cookie + b" " + bencode(body)

    def response(self, data: bytes) -> tuple[bytes, dict[str, Any]] | None:
        """Match a datagram to a pending request: (cookie, answer dict), or None if it is not
        one of ours. Raises NgError for an error answer or a malformed one."""
        cookie, sep, payload = data.partition(b" ")
        if not sep or cookie not in self.pending:
            return None
        command = self.pending.pop(cookie)
        try:
            answer = bdecode(payload)
        except BencodeError as e:
            raise NgError(f"rtpengine {command}: malformed answer ({e.reason})") from None
        if not isinstance(answer, dict):
            raise NgError(f"rtpengine {command}: answer is not a dictionary")
        result = answer.get("result")
        if result == b"error":
            reason = answer.get("error-reason", b"no reason given")
            text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
            raise NgError(f"rtpengine {command}: {text}")
        if result not in (b"ok", b"pong"):
            raise NgError(f"rtpengine {command}: unexpected result {result!r}")
        return cookie, answer


class _NgProtocol(asyncio.DatagramProtocol):
    def __init__(self, client: NgClient) -> None:
        self.client = client

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.client._received(data)


class NgClient:
    """Sends ng commands to rtpengine at `address` and waits for the answers, retransmitting
    every `retransmit` seconds until `timeout`."""

    def __init__(
        self, address: tuple[str, int], *, timeout: float = 5.0, retransmit: float = 0.5
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.retransmit = retransmit
        self.codec = NgCodec()
        self._transport: asyncio.DatagramTransport | None = None
        self._waiters: dict[bytes, asyncio.Future[dict[str, Any]]] = {}

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _NgProtocol(self), remote_addr=self.address
        )

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(MediaError("rtpengine client closed"))
        self._waiters.clear()

    def _received(self, data: bytes) -> None:
        cookie = data.partition(b" ")[0]
        future = self._waiters.get(cookie)
        if future is None or future.done():
            return
        try:
            matched = self.codec.response(data)
        except NgError as e:
            future.set_exception(e)
            return
        if matched is not None:
            future.set_result(matched[1])

    async def command(self, command: str, **args: Any) -> dict[str, Any]:
        """Send one command (argument names with '-' are written with '_': call_id=...)."""
        return await self.request(command, {k.replace("_", "-"): v for k, v in args.items()})

    async def request(self, command: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Send one command with its arguments as rtpengine names them ("call-id", "ICE"...);
        the answer dictionary, `NgError` for an error answer, `MediaError` without one."""
        if self._transport is None:
            raise MediaError("rtpengine client is not open")
        cookie, datagram = self.codec.request(command, body)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[cookie] = future
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.timeout
            while True:
                self._transport.sendto(datagram)
                wait = min(self.retransmit, deadline - loop.time())
                if wait <= 0:
                    raise MediaError(f"rtpengine did not answer {command} in {self.timeout} s")
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(future), wait)
        finally:
            self._waiters.pop(cookie, None)
            self.codec.pending.pop(cookie, None)

    async def ping(self) -> bool:
        return (await self.command("ping")).get("result") == b"pong"
