"""A scripted media port for call-engine tests without sockets.

It takes the engine's media commands (b2bua.commands) and answers them as the built-in relay
would, in form: the rewritten SDP points at 10.9.9.N for the N-th step, a local answer or offer
is a fixed G.711 body, an application runs until the test finishes it. With `immediate` (the
default) answers come back at once, inside the same drain, as the built-in relay's do; without
it they wait until the test releases them, in any order, as rtpengine's may come.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from b2bua.calls.events import AppFinished, MediaFailed, MediaOpened, SdpReady
from b2bua.commands import (
    Command,
    MediaClose,
    MediaLocalAnswer,
    MediaLocalOffer,
    MediaOpen,
    MediaPlay,
    MediaResume,
    MediaRewrite,
    MediaRunApp,
)

LOCAL_SDP = (
    b"v=0\r\no=b2bua 1 1 IN IP4 10.9.9.99\r\ns=-\r\nc=IN IP4 10.9.9.99\r\nt=0 0\r\n"
    b"m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)
SECURE_LINE = b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + b"A" * 40 + b"\r\n"


class ScriptedMedia:
    """A media port (b2bua.stack.MediaPort) that the test drives."""

    anchor = True

    def __init__(self, immediate: bool = True) -> None:
        self.immediate = immediate
        self.post: Callable[[object], None] | None = None
        self.commands: list[Command] = []
        self.steps: list[tuple[str, str]] = []  # (from leg, kind) of each rewrite
        self.pending: dict[int, Command] = {}  # rewrite number -> its command
        self.apps: dict[str, MediaRunApp] = {}  # running applications, by call
        self.played: list[MediaPlay] = []
        self.resumed: list[MediaResume] = []
        self.open: set[str] = set()  # calls with a session
        self.closed: list[str] = []

    def execute(self, command: Command) -> None:
        self.commands.append(command)
        post = self._post
        if isinstance(command, MediaOpen):
            self.open.add(command.call)
            offer = command.offer.replace(b"127.0.0.1", b"10.9.9.0")
            secure = b""
            if command.secure_offer and offer:  # the relay's SRTP form of it, in shape
                secure = offer.replace(b"RTP/AVP", b"RTP/SAVP") + SECURE_LINE
            post(MediaOpened(command.call, offer, secure))
        elif isinstance(command, MediaRewrite | MediaLocalAnswer | MediaLocalOffer):
            step = len(self.steps)
            kind = command.kind.value if isinstance(command, MediaRewrite) else "local"
            self.steps.append((command.leg, kind))
            self.pending[step] = command
            self.open.add(command.call)
            if self.immediate:
                self.release(step)
        elif isinstance(command, MediaRunApp):
            self.apps[command.call] = command
        elif isinstance(command, MediaPlay):
            self.played.append(command)
        elif isinstance(command, MediaResume):
            self.resumed.append(command)
        elif isinstance(command, MediaClose):
            self.open.discard(command.call)
            self.apps.pop(command.call, None)
            self.closed.append(command.call)

    def _post(self, event: object) -> None:
        assert self.post is not None, "build the B2BUA with this port: it sets `post`"
        self.post(event)

    def release(self, step: int, fail: bool = False) -> None:
        """Answer rewrite number `step` (or fail it, as rtpengine not answering would)."""
        command: Any = self.pending.pop(step)
        if fail:
            self._post(MediaFailed(command.call, 503, "rtpengine did not answer in 3.0 s",
                                   command.ticket))
        elif isinstance(command, MediaRewrite):
            body = command.body.replace(b"127.0.0.1", f"10.9.9.{step}".encode())
            self._post(SdpReady(command.call, command.ticket, body))
        else:
            self._post(SdpReady(command.call, command.ticket, LOCAL_SDP))

    def finish(self, call: str, outcome: str | None = None) -> None:
        """The application running on `call` is over."""
        self.apps.pop(call)
        self._post(AppFinished(call, outcome))

    def app(self) -> MediaRunApp:
        """The one application running."""
        (app,) = self.apps.values()
        return app
