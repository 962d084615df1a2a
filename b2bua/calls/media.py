"""Between the call engine and the RTP engine: anchored SDP, and the destinations that need
media (voicemail, announcements, bounce).

Theory of operation
-------------------
Every call gets a `MediaSession` with one port pair facing the caller (leg "a") and one facing
the callee side (leg "b"). The engine hands each SDP body that crosses the B2BUA to `sdp()`,
which returns the body rewritten to point at our ports (RFC 3264 offer/answer, codecs passed
through). A hold offer (sendonly, inactive, c=0.0.0.0) makes the session play the callee's hold
music to the other leg until the call is taken back.

The media destinations answer the caller ourselves (`MediaSession.local_answer`), then run as a
task: voicemail (greeting, beep, recording written atomically and indexed), an announcement
(played once, then BYE), and bounce (the caller hears "please wait while we locate extension X"
while the number is called as a private call; answered: the legs are bridged; not answered:
"user unavailable, redirecting to voicemail", then voicemail).

With `[media] anchor = false`, bridged calls are not anchored: `attach` is not called, the SDP
crosses unchanged and the phones send RTP to each other (no hold music from us, no NAT help); a
call that a media destination answers gets a built-in session at that moment.

With `[media] backend = "rtpengine"`, a call's session is an `RtpengineSession`
(media/rtpengine_backend.py): `sdp()` then returns a coroutine (one ng round trip) instead of
bytes, and the call engine waits for it in the call's order. The media destinations need our own
RTP endpoint (prompts, recording): when a call reaches one, the built-in relay takes over the
call (a built-in session replaces the rtpengine one, which is deleted) for the rest of the call.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from media.engine import MediaEngine, MediaSession
from media.errors import MediaError
from media.library import SoundLibrary
from media.rtpengine import NgError
from media.rtpengine_backend import RtpengineMedia, RtpengineSession

if TYPE_CHECKING:
    from b2bua.calls.engine import Call, CallEngine

log = logging.getLogger(__name__)

VOICEMAIL_SILENCE_SECONDS = 10.0


async def _settled(tasks: list[asyncio.Task[None]]) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)


class MediaBridge:
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
        self.calls: CallEngine | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self._music_known: dict[str, bool] = {}

    def sounds_changed(self) -> None:
        """Stored sounds changed in another process: forget what was looked up and loaded."""
        self._music_known.clear()
        self.library.forget()

    # -- sessions --------------------------------------------------------------------------
    def attach(self, call: Call) -> Awaitable[None] | None:
        """Create the call's session; the caller's offer becomes the offer the branches get.

        The built-in relay does it at once (None); rtpengine returns a coroutine to await.
        MediaError when the call cannot be anchored."""
        music = self._hold_music(call)
        if self.remote is not None:
            return self._attach_remote(call, self.remote, music)
        session = self._builtin_session(call)
        call.media = session
        session.hold_music = music
        if call.a_request.body:
            call.b_offer = session.offer("a", call.a_request.body)
        return None

    async def _attach_remote(self, call: Call, remote: RtpengineMedia, music: str) -> None:
        session = await remote.create_session(
            call.id, on_timeout=lambda leg: self._rtp_timeout(call, leg))
        call.media = session
        session.hold_music = music
        if call.a_request.body:
            call.b_offer = await session.offer("a", call.a_request.body, call.a_flow.host)

    def _hold_music(self, call: Call) -> str:
        """The callee's hold music, or "default" when that class does not exist."""
        assert self.calls is not None
        user = self.calls.directory.user(call.callee)
        music = getattr(user, "hold_music", None) or "default"
        known = self._music_known.get(music)
        if known is None:  # looked up on disk once per name, not once per call
            known = self._music_known[music] = self.library.has_music(music)
        return str(music) if known else "default"

    def _builtin_session(self, call: Call) -> MediaSession:
        return self.engine.open_session(
            call.id,
            on_timeout=lambda leg: self._rtp_timeout(call, leg),
            on_dtmf=lambda leg, event: self._dtmf(call, leg, event),
        )

    def sdp(self, call: Call, from_leg: str, body: bytes, kind: str) -> bytes | Awaitable[bytes]:
        """`body` (an offer or answer from `from_leg`) as the other leg must see it: bytes from
        the built-in relay, a coroutine (to await in the call's order) with rtpengine."""
        session: MediaSession | RtpengineSession | None = call.media
        if session is None or not body or session.closed:
            return body
        if isinstance(session, RtpengineSession):
            return self._remote_sdp(call, session, from_leg, body, kind)
        try:
            if kind == "offer":
                return session.offer(from_leg, body)  # type: ignore[arg-type]
            out = session.answer(from_leg, body)  # type: ignore[arg-type]
            return body if out is None else out
        except MediaError as exc:
            log.info("call %s: SDP from leg %s not usable: %s", call.id, from_leg, exc)
            return body

    async def _remote_sdp(
        self, call: Call, session: RtpengineSession, from_leg: str, body: bytes, kind: str
    ) -> bytes:
        current = call.media
        if current is not session:  # the built-in relay took the call over meanwhile
            result = self.sdp(call, from_leg, body, kind)
            return result if isinstance(result, bytes) else await result
        if session.closed:
            return body
        source = self._source(call, from_leg)
        try:
            if kind == "offer":
                return await session.offer(from_leg, body, source)  # type: ignore[arg-type]
            return await session.answer(from_leg, body, source)  # type: ignore[arg-type]
        except NgError as exc:  # rtpengine refused this body: relayed as it is (not anchored)
            log.warning("call %s: rtpengine refused the SDP from leg %s: %s", call.id, from_leg,
                        exc)
            return body

    @staticmethod
    def _source(call: Call, leg: str) -> str | None:
        """The address leg `leg`'s SIP comes from (for NAT detection)."""
        if leg == "a":
            return call.a_flow.host
        if call.b_leg is not None:
            return call.b_leg.flow.host
        return None

    def ended(self, call: Call) -> None:
        session: MediaSession | RtpengineSession | None = call.media
        if session is None or session.closed:
            return
        if isinstance(session, MediaSession):
            writes = session.close_now()  # no task per call unless a recording is being written
            if writes:
                self._spawn(_settled(writes))
        else:
            self._spawn(session.close())

    def cancel(self, call: Call) -> None:
        self.ended(call)

    def _dtmf(self, call: Call, leg: str, event: Any) -> None:
        """A DTMF digit (RFC 4733) from a leg: handed to the engine (menus, voicemail keys)."""
        assert self.calls is not None
        self.calls.dtmf_received(call, leg, event)

    def _rtp_timeout(self, call: Call, leg: str) -> None:
        assert self.calls is not None
        log.info("call %s: no RTP from leg %s: ending the call", call.id, leg)
        call.notes.append(f"RTP timeout on leg {leg}")
        self.calls.hangup(call, "failed")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- destinations ----------------------------------------------------------------------
    def __call__(self, call: Call, what: str, ext: str, dest: Any) -> None:
        """The engine's media hook: run destination `what` for `ext`."""
        if what == "voicemail":
            runner = self._voicemail(call, ext)
        elif what == "announcement":
            runner = self._announcement(call, dest.message)
        elif what == "bounce":
            runner = self._bounce(call, ext, dest)
        else:  # pragma: no cover - the engine only asks for these
            raise ValueError(what)
        self._spawn(self._guard(call, runner))

    async def _guard(self, call: Call, runner: Any) -> None:
        assert self.calls is not None
        try:
            await runner
        except MediaError as exc:
            log.warning("call %s: media destination failed: %s", call.id, exc)
            self.calls.media_failed(call, 488 if "PCMU" in str(exc) else 500)
        except Exception:  # a task boundary: one broken call must not stop the others
            log.exception("call %s: media destination crashed", call.id)
            self.calls.media_failed(call, 500)

    async def _answer(self, call: Call) -> MediaSession | None:
        """Answer the caller ourselves (once); None if the call is gone."""
        assert self.calls is not None
        session: MediaSession | RtpengineSession | None = call.media
        if call.state == "ENDED":
            return None
        if session is None:
            if self.anchor:
                return None  # the call lost its media (ports exhausted): nothing to answer with
            # Media not anchored: this call gets a session now that we answer it ourselves.
            session = self._builtin_session(call)
            session.hold_music = self._hold_music(call)
            call.media = session
            if call.state == "ENDED":
                self._spawn(session.close())
                return None
        if isinstance(session, RtpengineSession):
            # Prompts and recordings need our own RTP endpoint: the built-in relay takes over.
            log.info("call %s: media destination: the built-in relay takes the call over "
                     "from rtpengine", call.id)
            local = self._builtin_session(call)
            local.hold_music = session.hold_music
            call.media = local
            self._spawn(session.close())
            if call.state == "ENDED":
                self._spawn(local.close())
                return None
            session = local
        assert isinstance(session, MediaSession)
        if call.a_leg is None:
            offer = call.a_request.body
            if not offer:
                raise MediaError("the caller sent no SDP offer: cannot answer with media")
            sdp = session.local_answer("a", offer)
            self.calls.answer_locally(call, sdp)
        return session

    async def _voicemail(self, call: Call, box: str) -> None:
        assert self.calls is not None
        session = await self._answer(call)
        if session is None:
            return
        call.notes.append(f"voicemail of {box}")
        call.outcome = "voicemail"
        user = self.calls.directory.user(box)
        language = getattr(user, "language", None)
        greeting = self._greeting(box, language)
        if not await session.play_once("a", greeting) or call.state == "ENDED":
            return
        if not await session.play_once("a", self.library.prompt("beep", language)):
            return
        from b2bua.settings import add_voicemail, voicemail_dir

        folder = voicemail_dir(self.data_dir, box)
        folder.mkdir(parents=True, exist_ok=True)
        name = time.strftime("%Y%m%d-%H%M%S") + f"-{secrets.token_hex(3)}.wav"
        started = time.time()
        recording = session.record(
            "a", folder / name, max_seconds=self.voicemail_max_seconds,
            silence_seconds=VOICEMAIL_SILENCE_SECONDS,
        )
        result = await recording.result()
        if result.path is not None and result.duration >= 0.5:
            add_voicemail(self.db, box, call.caller, started, result.duration, result.path.name)
            log.info("call %s: voicemail for %s, %.1f s (%s)", call.id, box, result.duration,
                     result.reason)
            self.calls.voicemail_left(box)
        if call.state != "ENDED":
            self.calls.hangup(call, "voicemail")

    def _greeting(self, box: str, language: str | None) -> Any:
        custom = Path(self.data_dir) / "greetings" / f"{box}.wav"
        if custom.exists():
            try:
                from media.library import Sound

                return Sound.from_wav(f"greeting {box}", custom)
            except (MediaError, OSError, ValueError) as exc:
                log.warning("greeting of %s unreadable (%s): the default one plays", box, exc)
        return self.library.prompt("voicemail_greeting", language)

    async def _announcement(self, call: Call, message: str) -> None:
        assert self.calls is not None
        session = await self._answer(call)
        if session is None:
            return
        call.notes.append(f"announcement {message}")
        await session.play_once("a", message)
        if call.state != "ENDED":
            self.calls.hangup(call, "answered")

    async def _bounce(self, call: Call, ext: str, dest: Any) -> None:
        assert self.calls is not None
        session = await self._answer(call)
        if session is None:
            return
        user = self.calls.directory.user(ext)
        language = getattr(user, "language", None)
        number = dest.number if dest.kind == "external" else getattr(user, "mobile", None)
        call.notes.append(f"bounce to {number}")
        session.play("a", self.library.locate_prompt(ext, language), loop=True)
        answered = await self.calls.dial_bounce(call, number, ext, session.local_offer("b"))
        if call.state == "ENDED":
            return
        if answered:
            session.resume("a")
            return
        call.notes.append("bounce not answered: voicemail")
        if await session.play_once("a", self.library.prompt("unavailable", language)):
            if call.state != "ENDED":
                await self._voicemail(call, ext)
