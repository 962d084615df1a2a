"""A scripted mobile softphone for tests: registers over TCP with RFC 8599 push parameters and a
`+sip.instance`, drops its connection as a suspended app does, and comes back on a new
connection (a new flow) when it is woken.

It speaks SIP over a real TCP socket (asyncio streams, `b2bua.sip` to frame and parse), answers
401 challenges with digest (MD5 or SHA-256), and queues the requests it receives (`requests`) so a
test can see the INVITE that reaches the woken phone.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Sequence

from b2bua.push.model import PushTarget
from b2bua.registrar.digest import answer_challenge
from b2bua.sip.framing import StreamFramer
from b2bua.sip.message import Request, Response, make_response, parse_message

_ids = itertools.count(1)


class PushPhone:
    def __init__(
        self,
        server: tuple[str, int],
        user: str,
        password: str,
        *,
        domain: str,
        push: PushTarget | None,
        instance: str | None = None,
        host: str = "127.0.0.1",
        algorithm: str = "SHA-256",
    ) -> None:
        self.server = server
        self.user = user
        self.password = password
        self.domain = domain
        self.push = push
        self.instance = instance or f"<urn:uuid:{os.urandom(16).hex()[:8]}-0000-4000-8000-{os.urandom(6).hex()}>"
        self.host = host
        self.algorithm = algorithm
        self.call_id = f"push-phone-{next(_ids)}-{os.urandom(4).hex()}"
        self.cseq = 0
        self.requests: asyncio.Queue[Request] = asyncio.Queue()
        self._responses: asyncio.Queue[Response] = asyncio.Queue()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self.local_port = 0

    @property
    def connected(self) -> bool:
        return self._writer is not None

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(
            *self.server, local_addr=(self.host, 0))
        self.local_port = self._writer.get_extra_info("sockname")[1]
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def close(self) -> None:
        """Drop the connection without unregistering (the OS suspended the app)."""
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except OSError:
                pass
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._reader = self._writer = self._task = None

    def contact(self) -> str:
        uri = f"sip:{self.user}@{self.host}:{self.local_port};transport=tcp"
        if self.push is not None:
            uri += f";pn-provider={self.push.provider};pn-prid={self.push.prid}"
            if self.push.param:
                uri += f";pn-param={self.push.param}"
        return f'<{uri}>;+sip.instance="{self.instance}"'

    async def register(self, expires: int = 600, timeout: float = 5.0) -> Response:
        """REGISTER on the current connection (connecting first if needed), answering one 401."""
        if self._writer is None:
            await self.connect()
        response = await self._transact(self._register_request(expires), timeout)
        if response.status != 401:
            return response
        challenge = next(v for v in response.headers.get_all("WWW-Authenticate")
                         if f"algorithm={self.algorithm}" in v)
        credentials = answer_challenge(
            challenge, username=self.user, password=self.password, method="REGISTER",
            uri=f"sip:{self.domain}", cnonce=os.urandom(6).hex(), nc=1)
        return await self._transact(
            self._register_request(expires, [("Authorization", credentials)]), timeout)

    async def wake(self, expires: int = 600) -> Response:
        """What a woken app does: a new connection, a new REGISTER."""
        await self.close()
        return await self.register(expires)

    def send(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data)

    def respond(self, request: Request, status: int, to_tag: str | None = None) -> None:
        """Answer a request received on the current connection (no body)."""
        self.send(bytes(make_response(request, status, to_tag=to_tag)))

    def _register_request(self, expires: int, extra: Sequence[tuple[str, str]] = ()) -> bytes:
        self.cseq += 1
        via = (f"SIP/2.0/TCP {self.host}:{self.local_port};"
               f"branch=z9hG4bK{os.urandom(6).hex()};rport")
        lines = [
            f"REGISTER sip:{self.domain} SIP/2.0",
            f"Via: {via}",
            "Max-Forwards: 70",
            f"From: <sip:{self.user}@{self.domain}>;tag={os.urandom(4).hex()}",
            f"To: <sip:{self.user}@{self.domain}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
            f"Contact: {self.contact()}",
            f"Expires: {expires}",
            "User-Agent: PushPhone/1.0",
            *(f"{name}: {value}" for name, value in extra),
            "Content-Length: 0",
            "",
            "",
        ]
        return "\r\n".join(lines).encode()

    async def _transact(self, data: bytes, timeout: float) -> Response:
        self.send(data)
        while True:
            response = await asyncio.wait_for(self._responses.get(), timeout)
            if response.status >= 200:
                return response

    async def _read(self) -> None:
        assert self._reader is not None
        framer = StreamFramer()
        while True:
            data = await self._reader.read(65536)
            if not data:
                return
            framer.feed(data)
            while (event := framer.next_event()) is not None:
                if not isinstance(event, bytes):
                    continue  # a keep-alive ping
                message = parse_message(event)
                if isinstance(message, Response):
                    self._responses.put_nowait(message)
                else:
                    self.requests.put_nowait(message)
