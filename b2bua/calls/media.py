"""The media port: the call engine's media commands, carried out by the built-in relay or
rtpengine, answered with events.

Theory of operation
-------------------
The engine asks (b2bua.commands: MediaOpen, MediaRewrite, MediaLocalAnswer, MediaLocalOffer,
MediaPlay, MediaResume, MediaRunApp, MediaClose) and this port answers through `post`
(b2bua.calls.events: MediaOpened, SdpReady, MediaFailed, AppFinished), and reports what the
relay sees (RtpTimedOut, DtmfReceived). The engine never holds a media object: sessions are
kept here, by call key.

- The built-in relay answers at once: `post` is called before `execute` returns, and the
  stack handles the answer in the same drain.
- rtpengine answers after an ng round trip. The commands of one call are carried out in order,
  one at a time (a 183's SDP before its 200's, a re-INVITE's offer before its answer): each call
  has a queue, drained by one task while it is not empty. A command rtpengine does not answer
  within its timeout is a `MediaFailed` (the engine ends the call cleanly).

Every call gets a session facing the caller (leg "a") and the callee side (leg "b"). A hold
offer plays the callee's hold music to the other leg until the call is taken back.

The media applications run as tasks: voicemail (greeting, beep, recording written atomically
and indexed), an announcement (played once), and "user unavailable" then voicemail (a bounce
that was not answered). When a call we answered reaches one of them with rtpengine, the built-in
relay takes the call over for its remaining life (prompts and recordings need our own RTP).

With `[media] anchor = false` the engine sends no MediaOpen and no MediaRewrite: the phones'
SDP crosses unchanged; a call that a media destination answers gets a built-in session then.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

from b2bua.calls.events import (
    AppFinished,
    DtmfReceived,
    MediaFailed,
    MediaOpened,
    RtpTimedOut,
    SdpReady,
)
from b2bua.commands import (
    AppKind,
    Command,
    MediaClose,
    MediaEncrypt,
    MediaLocalAnswer,
    MediaLocalOffer,
    MediaOpen,
    MediaPlay,
    MediaResume,
    MediaRewrite,
    MediaRunApp,
    SdpKind,
)
from b2bua.tenants.names import split
from media.engine import MediaEngine, MediaSession
from media.errors import MediaError
from media.library import Sound, SoundLibrary
from media.rtpengine import NgError
from media.rtpengine_backend import RtpengineMedia, RtpengineSession

log = logging.getLogger(__name__)

VOICEMAIL_SILENCE_SECONDS = 10.0
Session = MediaSession | RtpengineSession


async def _settled(tasks: list[asyncio.Task[None]]) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)


def _open_failure_status(exc: MediaError) -> int:
    """The caller's final response: the error's own status when it has one (488 for an SRTP
    offer we refuse, docs/trunks.md), else 488 for an SDP we cannot use, 503 otherwise."""
    if exc.status is not None:
        return exc.status
    text = str(exc)
    return 488 if "SDP" in text or "codec" in text else 503


class MediaBridge:
    """The engine's media port (b2bua.stack.MediaPort)."""

    def __init__(
        self,
        engine: MediaEngine,
        library: SoundLibrary,
        data_dir: Path,
        db: Any,
        voicemail_max_seconds: float,
        remote: RtpengineMedia | None = None,
        anchor: bool = True,
    ) -> None:
        self.engine = engine
        # False: bridged calls keep the phones' SDP and their RTP flows between them; a session
        # is made only for a call that a media destination answers.
        self.anchor = anchor
        self.remote = remote  # rtpengine relays the calls' media; `engine` serves destinations
        self.library = library
        self.data_dir = data_dir
        self.db = db
        self.voicemail_max_seconds = voicemail_max_seconds
        self.post: Callable[[object], None] = _nowhere  # the stack's: events for the engine
        self.on_voicemail: Callable[[str], None] | None = None  # a message was left in a box
        self.sessions: dict[str, Session] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self._queues: dict[str, deque[Command]] = {}  # rtpengine: each call's commands, in order
        self._music_known: dict[str, Sound | str] = {}
        # A tenant's sounds (`NAME@DOMAIN` in commands, b2bua.tenants.names) are its library's:
        # its uploads, then the shipped sounds. Set by the server.
        self.tenant_library: Callable[[str], SoundLibrary] | None = None

    def sounds_changed(self) -> None:
        """Stored sounds changed in another process: forget what was looked up and loaded."""
        self._music_known.clear()
        self.library.forget()
        if self.tenant_library is not None:
            forget = getattr(self.tenant_library, "forget", None)
            if forget is not None:
                forget()

    def _library_of(self, name: str) -> tuple[SoundLibrary, str, str]:
        """(library, bare name, tenant) of a box or sound named as the engine names them."""
        tenant, bare = split(name)
        if tenant and self.tenant_library is not None:
            return self.tenant_library(tenant), bare, tenant
        return self.library, bare, ""

    def _prompt(self, name: str, language: str | None) -> Sound | str:
        """A prompt by the engine's name: a tenant's is looked up in its library."""
        library, bare, tenant = self._library_of(name)
        return library.prompt(bare, language) if tenant else name

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- commands --------------------------------------------------------------------------
    def execute(self, command: Command) -> None:
        call = getattr(command, "call", "")
        queue = self._queues.get(call)
        if queue is not None:  # rtpengine is busy with this call: after what came first
            queue.append(command)
            return
        if self.remote is not None and self._remote_work(command):
            self._queues[call] = deque([command])
            self._spawn(self._drain(call))
            return
        self._now(command)

    def _remote_work(self, command: Command) -> bool:
        """Whether `command` needs an rtpengine round trip."""
        if isinstance(command, MediaOpen):
            return True
        if isinstance(command, MediaRewrite):
            return isinstance(self.sessions.get(command.call), RtpengineSession)
        return False

    async def _drain(self, call: str) -> None:
        queue = self._queues[call]
        try:
            while queue:
                command = queue[0]
                try:
                    if self._remote_work(command):
                        await self._remote(command)
                    else:
                        self._now(command)
                except Exception:  # a task boundary: one broken call must not stop the others
                    log.exception("call %s: a media step failed", call)
                    self.post(MediaFailed(call, 500, "internal error",
                                          getattr(command, "ticket", 0)))
                queue.popleft()
        finally:
            self._queues.pop(call, None)

    def _now(self, command: Command) -> None:
        """Carry out a command that needs no round trip."""
        if isinstance(command, MediaRewrite):
            self._rewrite(command)
        elif isinstance(command, MediaOpen):
            self._open(command)
        elif isinstance(command, MediaLocalAnswer):
            self._local_answer(command)
        elif isinstance(command, MediaLocalOffer):
            self._local_offer(command)
        elif isinstance(command, MediaPlay):
            self._play(command)
        elif isinstance(command, MediaResume):
            session = self.sessions.get(command.call)
            if isinstance(session, MediaSession) and not session.closed:
                session.resume(command.leg)  # type: ignore[arg-type]
        elif isinstance(command, MediaRunApp):
            self._spawn(self._run_app(command))
        elif isinstance(command, MediaEncrypt):
            session = self.sessions.get(command.call)
            if isinstance(session, MediaSession) and not session.closed:
                session.set_encryption(command.leg, command.mode)  # type: ignore[arg-type]
        elif isinstance(command, MediaClose):
            self._close(command.call)

    # -- sessions --------------------------------------------------------------------------
    def _hold_music(self, music: str) -> Sound | str:
        """A callee's hold music, or "default" when that class does not exist. A tenant's own
        class is given as its sound (named `DOMAIN.NAME`: rtpengine exports it by name)."""
        known = self._music_known.get(music)
        if known is None:  # looked up on disk once per name, not once per call
            library, bare, tenant = self._library_of(music)
            if not tenant:
                known = music if library.has_music(music) else "default"
            elif (library.data_dir / "music" / bare).is_dir():
                try:
                    known = replace(library.music(bare), name=f"{tenant}.{bare}")
                except MediaError as exc:
                    log.warning("hold music %s unreadable: %s", music, exc)
                    known = "default"
            else:
                known = bare if self.library.has_music(bare) else "default"
            self._music_known[music] = known
        return known

    def _builtin_session(self, call: str) -> MediaSession:
        post = self.post
        session = self.engine.open_session(
            call,
            on_timeout=lambda leg: post(RtpTimedOut(call, leg)),
            on_dtmf=lambda leg, event: post(DtmfReceived(
                call, leg, getattr(event, "digit", None) or str(getattr(event, "event", "?")))),
        )
        self.sessions[call] = session
        return session

    def _open(self, command: MediaOpen) -> None:
        secure = b""
        try:
            session = self._builtin_session(command.call)
            session.hold_music = self._hold_music(command.music)
            if command.encryption != "optional":
                session.set_encryption("a", command.encryption)  # type: ignore[arg-type]
            offer = session.offer("a", command.offer) if command.offer else b""
            if offer and command.secure_offer:
                secure = _secure_offer(session, command.offer)
        except MediaError as exc:
            self._close(command.call)
            self.post(MediaFailed(command.call, _open_failure_status(exc), str(exc)))
            return
        self.post(MediaOpened(command.call, offer, secure))

    def _rewrite(self, command: MediaRewrite) -> None:
        session = self.sessions.get(command.call)
        body = command.body
        if isinstance(session, MediaSession) and not session.closed and body:
            try:
                if command.kind is SdpKind.OFFER:
                    body = session.offer(command.leg, body)  # type: ignore[arg-type]
                else:
                    body = session.answer(command.leg, body) or body  # type: ignore[arg-type]
            except MediaError as exc:
                if exc.status is not None:  # refused, not merely unreadable: the call fails
                    log.info("call %s: SDP from leg %s refused: %s", command.call, command.leg,
                             exc)
                    self.post(MediaFailed(command.call, exc.status, str(exc), command.ticket))
                    return
                log.info("call %s: SDP from leg %s not usable: %s", command.call, command.leg,
                         exc)
        self.post(SdpReady(command.call, command.ticket, body))

    async def _remote(self, command: Command) -> None:
        assert self.remote is not None
        if isinstance(command, MediaOpen):
            call = command.call
            post = self.post
            try:
                session = await self.remote.create_session(
                    call, on_timeout=lambda leg: post(RtpTimedOut(call, leg)))
                self.sessions[call] = session
                session.hold_music = self._hold_music(command.music)
                offer = (await session.offer("a", command.offer, command.source)
                         if command.offer else b"")
            except MediaError as exc:
                self.post(MediaFailed(call, _open_failure_status(exc), str(exc)))
                return
            except NgError as exc:
                self.post(MediaFailed(call, 488, f"rtpengine refused the offer: {exc}"))
                return
            self.post(MediaOpened(call, offer))
            return
        assert isinstance(command, MediaRewrite)
        current = self.sessions.get(command.call)
        body = command.body
        if isinstance(current, RtpengineSession) and not current.closed:
            leg: Any = command.leg
            try:
                if command.kind is SdpKind.OFFER:
                    body = await current.offer(leg, body, command.source)
                else:
                    body = await current.answer(leg, body, command.source)
            except NgError as exc:  # rtpengine refused this body: relayed as it is
                log.warning("call %s: rtpengine refused the SDP from leg %s: %s", command.call,
                            command.leg, exc)
            except MediaError as exc:
                self.post(MediaFailed(command.call, 503, str(exc), command.ticket))
                return
        self.post(SdpReady(command.call, command.ticket, body))

    def _local_session(self, call: str, music: str) -> MediaSession:
        """The built-in session a call we answer ourselves needs: its own, made now when media
        is not anchored, or taken over from rtpengine."""
        session = self.sessions.get(call)
        if isinstance(session, MediaSession) and not session.closed:
            return session
        if isinstance(session, RtpengineSession):
            log.info("call %s: media destination: the built-in relay takes the call over from "
                     "rtpengine", call)
            self._spawn(session.close())
        local = self._builtin_session(call)
        local.hold_music = (session.hold_music if session is not None and
                            isinstance(session.hold_music, str) else self._hold_music(music))
        return local

    def _local_answer(self, command: MediaLocalAnswer) -> None:
        try:
            session = self._local_session(command.call, command.music)
            sdp = session.local_answer(command.leg, command.offer)  # type: ignore[arg-type]
        except MediaError as exc:
            self.post(MediaFailed(command.call, 488 if "PCMU" in str(exc) else 500, str(exc),
                                  command.ticket))
            return
        self.post(SdpReady(command.call, command.ticket, sdp))

    def _local_offer(self, command: MediaLocalOffer) -> None:
        session = self.sessions.get(command.call)
        try:
            if not isinstance(session, MediaSession):
                raise MediaError("no session to make an offer from")
            sdp = session.local_offer(command.leg)  # type: ignore[arg-type]
        except MediaError as exc:
            self.post(MediaFailed(command.call, 500, str(exc), command.ticket))
            return
        self.post(SdpReady(command.call, command.ticket, sdp))

    def _play(self, command: MediaPlay) -> None:
        session = self.sessions.get(command.call)
        if not isinstance(session, MediaSession) or session.closed:
            return
        try:
            sound: Sound | str
            if command.music:
                sound = self._hold_music(command.prompt)
            elif command.prompt == "locate":
                library, extension, _ = self._library_of(command.extension)
                sound = library.locate_prompt(extension, command.language)
            else:
                sound = self.library.prompt(command.prompt, command.language)
            session.play(command.leg, sound, loop=True)  # type: ignore[arg-type]
        except MediaError as exc:
            log.warning("call %s: cannot play %s: %s", command.call, command.prompt, exc)

    def _close(self, call: str) -> None:
        session = self.sessions.pop(call, None)
        if session is None or session.closed:
            return
        if isinstance(session, MediaSession):
            writes = session.close_now()  # no task per call unless a recording is being written
            if writes:
                self._spawn(_settled(writes))
        else:
            self._spawn(session.close())

    # -- applications ----------------------------------------------------------------------
    async def _run_app(self, command: MediaRunApp) -> None:
        call = command.call
        try:
            session = self.sessions.get(call)
            if not isinstance(session, MediaSession) or session.closed:
                return  # the call is over
            leg: Any = command.leg
            if command.app is AppKind.VOICEMAIL:
                outcome = await self._voicemail(session, leg, command.extension, command.caller,
                                                command.language)
            elif command.app is AppKind.ANNOUNCEMENT:
                await session.play_once(leg, self._prompt(command.message or "",
                                                          command.language))
                outcome = None
            else:  # UNAVAILABLE (then voicemail) or GOODBYE (then the end)
                outcome = None
                library = self._library_of(command.extension)[0]
                unavailable = library.prompt("unavailable", command.language)
                if await session.play_once(leg, unavailable) and \
                        command.app is AppKind.UNAVAILABLE:
                    outcome = await self._voicemail(session, leg, command.extension,
                                                    command.caller, command.language)
        except MediaError as exc:
            if not session_closed(self.sessions.get(call)):
                log.warning("call %s: media destination failed: %s", call, exc)
                self.post(MediaFailed(call, 488 if "PCMU" in str(exc) else 500, str(exc)))
            return
        except Exception:  # a task boundary: one broken call must not stop the others
            log.exception("call %s: media destination crashed", call)
            self.post(MediaFailed(call, 500, "media destination crashed"))
            return
        self.post(AppFinished(call, outcome))

    async def _voicemail(self, session: MediaSession, leg: Any, box: str, caller: str,
                         language: str | None) -> str:
        """Greeting, beep, then the caller's message until hang-up, silence or the limit."""
        greeting = self._greeting(box, language)
        if not await session.play_once(leg, greeting) or session.closed:
            return "voicemail"
        if not await session.play_once(leg, self._library_of(box)[0].prompt("beep", language)):
            return "voicemail"
        from b2bua.settings import add_voicemail, voicemail_dir

        folder = voicemail_dir(self.data_dir, box)
        folder.mkdir(parents=True, exist_ok=True)
        name = time.strftime("%Y%m%d-%H%M%S") + f"-{secrets.token_hex(3)}.wav"
        started = time.time()
        recording = session.record(
            leg, folder / name, max_seconds=self.voicemail_max_seconds,
            silence_seconds=VOICEMAIL_SILENCE_SECONDS,
        )
        result = await recording.result()
        if result.path is not None and result.duration >= 0.5:
            add_voicemail(self.db, box, caller, started, result.duration, result.path.name)
            log.info("call %s: voicemail for %s, %.1f s (%s)", session.call_id, box,
                     result.duration, result.reason)
            if self.on_voicemail is not None:
                self.on_voicemail(box)
        return "voicemail"

    def _greeting(self, box: str, language: str | None) -> Sound:
        from b2bua.settings import greeting_file

        custom = greeting_file(self.data_dir, box)
        if custom.exists():
            try:
                return Sound.from_wav(f"greeting {box}", custom)
            except (MediaError, OSError, ValueError) as exc:
                log.warning("greeting of %s unreadable (%s): the default one plays", box, exc)
        return self._library_of(box)[0].prompt("voicemail_greeting", language)


def _secure_offer(session: MediaSession, offer: bytes) -> bytes:
    """The caller's offer as an SRTP callee gets it, beside the plain one just made: our key
    for leg b, RTP/SAVP. Leg b keeps its "optional" mode, so a plain answer (from a branch that
    got the plain offer) and an SRTP answer to this one are both taken; the branch that wins
    sets the leg's own mode (MediaEncrypt) before its answer is read."""
    session.set_encryption("b", "sdes")
    try:
        return session.offer("a", offer)
    finally:
        session.set_encryption("b", "optional")


def session_closed(session: Session | None) -> bool:
    return session is None or session.closed


def _nowhere(event: object) -> None:
    raise RuntimeError("the media port is not wired to a stack")
