"""The anchored RTP engine on asyncio: sockets, one timer, and the public session interface.

Theory of operation. `MediaEngine` owns a pool of even UDP ports (RTP on the even port, RTCP on
the next one) and one timer. A `MediaSession` is one call: two legs, "a" and "b", each with its
own port pair facing that leg's far end, and a sans-IO `SessionCore` (media.relay) that decides
what to do with every datagram. Sockets are non-blocking and read with `loop.add_reader`; each
wake-up drains the socket (up to `READ_BATCH` datagrams), and a relayed packet costs one header
rewrite and one `sendto`.

Every playback of the engine (hold music, prompts) is in one `PlaybackScheduler` heap; a single
`loop.call_at` handle is re-armed for the earliest frame deadline or the next housekeeping tick
(RTP timeouts, recording limits), so a thousand held calls are served by one timer. A prepared
frame costs a header pack and one `sendto`.

The engine's clock (`clock`, default `loop.time`) is only compared with itself; deadlines are
converted to the loop's time when the timer is armed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import select
import socket
from collections import deque
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import Any

from media.errors import MediaError
from media.library import Sound, SoundLibrary, write_wav_atomic
from media.player import PacingStats, PlaybackScheduler, Player
from media.relay import (
    LEGS,
    DtmfReceived,
    LegName,
    LegState,
    Recorder,
    RecordingResult,
    RtpTimedOut,
    SessionCore,
)
from media.rtp import DtmfEvent
from media.srtp import KeySource, MediaEncryption

__all__ = ["MediaEngine", "MediaSession", "Recording", "RecordingResult"]

log = logging.getLogger("media.engine")

READ_BATCH = 64
RECV_SIZE = 2048
# RTP and RTCP are read into this buffer and copied out at their size (b2bua.transport.udp says
# why: a `recvfrom(RECV_SIZE)` per packet leaves the C heap full of holes). One loop reads at a
# time, and nothing keeps the buffer past a read.
_READ_BUFFER = memoryview(bytearray(RECV_SIZE))
# Released port pairs kept open for the next calls (see _PortPool). A pair comes back after a
# quiet second: at N calls ending per second, 2*N pairs wait. 4,096 serve 2,000 a second; with
# 1,024, calls ending at 550 a second (the 3-device ceiling) already opened and closed sockets.
WARM_PAIRS = 4096

DtmfCallback = Callable[[LegName, DtmfEvent], None]
TimeoutCallback = Callable[[LegName], None]


class _PortPair:
    """An RTP/RTCP socket pair on an even port, and the session leg it serves (None while it
    waits in the warm pool)."""

    __slots__ = ("port", "quiet_since", "rtcp", "rtp", "session", "state")

    def __init__(self, port: int, rtp: socket.socket, rtcp: socket.socket) -> None:
        self.port = port
        self.rtp = rtp
        self.rtcp = rtcp
        self.session: MediaSession | None = None
        self.state: LegState | None = None
        self.quiet_since = 0.0  # released at, or when a stray datagram last came after that


def _warm_limit() -> int:
    """How many released pairs may stay open: none unless the process may open many files
    (each pair is two descriptors; a quarter of the limit is left to everything else)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 0
    if soft == resource.RLIM_INFINITY:
        return WARM_PAIRS
    return max(0, min(WARM_PAIRS, (soft * 3 // 4 - 1024) // 2))


class _PortPool:
    """Even RTP ports of a range, handed out round robin (a port just freed is reused last).

    Released socket pairs stay open in a warm pool, oldest first, up to `warm_limit`: a call
    then costs no socket, bind or close. A warm pair is handed out again only when it has been
    quiet for `quarantine` seconds (a far end still sending to it keeps it out: its datagrams
    are read and dropped), so a new call never latches onto the tail of an old one; what is
    queued on its sockets is dropped when it goes out.
    """

    def __init__(self, first: int, last: int, warm_limit: int = 0, quarantine: float = 1.0) -> None:
        if first > last or first < 1 or last > 65535:
            raise MediaError(f"bad RTP port range {first}-{last}")
        start = first + (first % 2)
        self.range = (first, last)
        self._free = deque(range(start, last, 2))  # p + 1 <= last
        self._warm: deque[_PortPair] = deque()
        self.warm_limit = warm_limit
        self.quarantine = quarantine
        self.reused = 0  # pairs handed out again from the warm pool
        self._probe = select.poll()  # is anything queued on a warm pair (see `_reuse`)

    def allocate(self, family: int, bind_ip: str, now: float) -> tuple[_PortPair, bool]:
        """A pair, and whether it is new (its sockets must be registered with the loop)."""
        warm = self._warm
        if warm and now - warm[0].quiet_since >= self.quarantine:
            return self._reuse(warm.popleft()), False
        for _ in range(len(self._free)):
            port = self._free.popleft()
            rtp = socket.socket(family, socket.SOCK_DGRAM)
            rtcp = socket.socket(family, socket.SOCK_DGRAM)
            try:
                rtp.bind((bind_ip, port))
                rtcp.bind((bind_ip, port + 1))
            except OSError:
                rtp.close()
                rtcp.close()
                self._free.append(port)  # in use by someone else: try it again later
                continue
            rtp.setblocking(False)
            rtcp.setblocking(False)
            return _PortPair(port, rtp, rtcp), True
        if warm:  # every other port is taken: better a recently used pair than no call
            return self._reuse(warm.popleft()), False
        first, last = self.range
        raise MediaError(f"no free RTP port pair in {first}-{last}")

    def _reuse(self, pair: _PortPair) -> _PortPair:
        # One poll(2) for both sockets; only one with something queued is read (an empty one
        # would cost a failed read and an exception each).
        probe = self._probe
        rtp, rtcp = pair.rtp.fileno(), pair.rtcp.fileno()
        probe.register(rtp, select.POLLIN)
        probe.register(rtcp, select.POLLIN)
        try:
            ready = probe.poll(0)
        finally:
            probe.unregister(rtp)
            probe.unregister(rtcp)
        for fd, _ in ready:
            _drain(pair.rtp if fd == rtp else pair.rtcp)
        self.reused += 1
        return pair

    def release(self, pair: _PortPair, now: float) -> _PortPair | None:
        """Take a pair back; returns a pair to close (the oldest warm one beyond the limit,
        or `pair` itself when nothing is kept warm)."""
        pair.session = None
        pair.state = None
        pair.quiet_since = now
        if self.warm_limit <= 0:
            self._free.append(pair.port)
            return pair
        self._warm.append(pair)
        if len(self._warm) > self.warm_limit:
            old = self._warm.popleft()
            self._free.append(old.port)
            return old
        return None

    def drain_warm(self) -> list[_PortPair]:
        """Every warm pair, out of the pool (to close them)."""
        pairs = list(self._warm)
        self._warm.clear()
        self._free.extend(p.port for p in pairs)
        return pairs

    @property
    def free(self) -> int:
        return len(self._free) + len(self._warm)


def _drain(sock: socket.socket) -> int:
    """Read and drop what is queued on a socket; how many datagrams that was."""
    n = 0
    while True:
        try:
            sock.recv_into(_READ_BUFFER)
        except (BlockingIOError, InterruptedError):
            return n
        except OSError:
            pass
        n += 1


class Recording:
    """A recording in progress. `await recording` (or `await recording.result()`) gives the
    `RecordingResult` once it has stopped and its file is written; `stop()` ends it now."""

    def __init__(self, session: MediaSession, leg: LegName, recorder: Recorder) -> None:
        self._session = session
        self.leg = leg
        self.recorder = recorder
        self._future: asyncio.Future[RecordingResult] = session._loop.create_future()

    def stop(self) -> None:
        self._session._stop_recording(self.recorder, "stopped")

    @property
    def done(self) -> bool:
        return self._future.done()

    async def result(self) -> RecordingResult:
        return await asyncio.shield(self._future)

    def __await__(self) -> Generator[Any, None, RecordingResult]:
        return self.result().__await__()


class MediaSession:
    """The media of one call. Create it with `MediaEngine.create_session`."""

    def __init__(
        self,
        engine: MediaEngine,
        call_id: str,
        pairs: dict[LegName, _PortPair],
        on_dtmf: DtmfCallback | None,
        on_timeout: TimeoutCallback | None,
        encryption: Mapping[LegName, MediaEncryption] | None = None,
    ) -> None:
        self.engine = engine
        self.call_id = call_id
        self.on_dtmf = on_dtmf
        self.on_timeout = on_timeout
        self.hold_music: Sound | str | None = None
        self._loop = engine._loop
        self._clock = engine._clock
        self.core = SessionCore(
            call_id,
            engine.local_ip,
            {leg: pairs[leg].port for leg in LEGS},
            engine._rng,
            rtp_timeout=engine.rtp_timeout,
            relatch_after=engine.relatch_after,
            encryption=encryption,
            key_source=engine.key_source,
        )
        self._pairs = pairs
        self._rtp: dict[LegName, socket.socket] = {leg: pairs[leg].rtp for leg in LEGS}
        self._rtcp: dict[LegName, socket.socket] = {leg: pairs[leg].rtcp for leg in LEGS}
        self._once: dict[LegName, asyncio.Future[bool]] = {}
        self._hold_player: dict[LegName, Player] = {}
        self._recordings: dict[int, Recording] = {}
        self._writes: set[asyncio.Task[None]] = set()
        self.closed = False
        for leg in LEGS:  # the engine's readers hand this leg's datagrams to us from now on
            pairs[leg].session = self
            pairs[leg].state = self.core.legs[leg]

    # ---- SDP --------------------------------------------------------------------------------

    @property
    def ports(self) -> dict[LegName, int]:
        """Our RTP port facing each leg (RTCP is the next port)."""
        return {leg: self.core.legs[leg].rtp_port for leg in LEGS}

    def offer(self, from_leg: LegName, sdp: bytes) -> bytes:
        """An SDP offer from `from_leg` (INVITE or re-INVITE); returns the offer to send to the
        other leg. A hold offer (sendonly, inactive, c=0.0.0.0) plays `hold_music`, if set, to
        the other leg; the offer that takes the hold back resumes the relay."""
        self._check_open()
        was_held = self.core.legs[from_leg].held
        out = self.core.offer(from_leg, sdp, self._clock())
        held = self.core.legs[from_leg].held
        if held != was_held:
            self._hold_changed(from_leg, held)
        return out

    def answer(self, from_leg: LegName, sdp: bytes) -> bytes | None:
        """An SDP answer from `from_leg`; returns the answer to send to the other leg, or None
        when the offer was ours (`local_offer`)."""
        self._check_open()
        return self.core.answer(from_leg, sdp, self._clock())

    def local_answer(self, leg: LegName, sdp: bytes) -> bytes:
        """Answer `leg`'s offer ourselves with G.711 (+ telephone-event); MediaError if it offers
        neither PCMU nor PCMA (answer the INVITE 488)."""
        self._check_open()
        return self.core.local_answer(leg, sdp, self._clock())

    def local_offer(self, leg: LegName) -> bytes:
        """An offer from us to `leg`; its answer goes to `answer(leg, sdp)`."""
        self._check_open()
        return self.core.local_offer(leg, self._clock())

    def set_encryption(self, leg: LegName, mode: MediaEncryption) -> None:
        """The `media_encryption` ("sdes", "optional", "none") of `leg` for the SDP exchanged
        from now on (default "optional": an SRTP offer is answered with SRTP, our offers are
        plain). An offer or answer the mode refuses raises MediaError with status 488."""
        self._check_open()
        self.core.set_encryption(leg, mode)

    def srtp(self, leg: LegName) -> str | None:
        """The SRTP suite `leg` speaks, None when its media is plain RTP."""
        context = self.core.legs[leg].srtp
        return context.suite if context is not None else None

    def held(self, leg: LegName) -> bool:
        """True while `leg`'s last offer holds the call."""
        return self.core.legs[leg].held

    def _hold_changed(self, leg: LegName, held: bool) -> None:
        other = self.core.peer[leg].name
        if held and self.hold_music is not None:
            try:
                self.play(other, self.hold_music, loop=True)
            except MediaError as e:
                # No hold music (e.g. no G.711 on that leg) must not fail the re-INVITE.
                log.info("call %s: no hold music for leg %s: %s", self.call_id[:64], other, e)
                return
            player = self.core.legs[other].player
            if player is not None:
                self._hold_player[other] = player
        elif not held:
            player = self._hold_player.pop(other, None)
            if player is not None and self.core.legs[other].player is player:
                self.resume(other)

    # ---- playback ---------------------------------------------------------------------------

    def play(self, to_leg: LegName, sound: Sound | str, *, loop: bool = True) -> None:
        """What `to_leg` hears switches from the relay to `sound` (a `Sound`, or the name of a
        music class or prompt of the engine's library), looped or once."""
        self._check_open()
        resolved = self.engine._resolve(sound)
        state = self.core.legs[to_leg]
        if state.playback is None:
            raise MediaError(f"cannot play to leg {to_leg}: no PCMU or PCMA negotiated")
        codec, payload_type = state.playback
        self._stop_player(state, False)
        player = Player(
            resolved.frames(codec),
            payload_type,
            state.out,
            self.engine._scheduler.align(self._clock()),
            loop=loop,
            context=(self, state),
        )
        state.player = player
        self.engine._scheduler.add(player)
        self.engine._arm()
        if not resolved.pcmu:
            self._player_done(state, player)

    async def play_once(self, to_leg: LegName, sound: Sound | str) -> bool:
        """Play `sound` once to `to_leg`, then return to the relay. True if it was sent to the
        end, False if interrupted (`play`, `resume`, `close`)."""
        self.play(to_leg, sound, loop=False)
        state = self.core.legs[to_leg]
        if state.player is None:
            return True
        future: asyncio.Future[bool] = self._loop.create_future()
        self._once[to_leg] = future
        return await future

    def resume(self, to_leg: LegName) -> None:
        """`to_leg` hears the other leg again."""
        self._check_open()
        self._stop_player(self.core.legs[to_leg], False)

    def playing(self, to_leg: LegName) -> bool:
        return self.core.legs[to_leg].player is not None

    def _stop_player(self, state: LegState, completed: bool) -> None:
        player = state.player
        if player is None:
            return
        self.engine._scheduler.remove(player)
        state.player = None
        state.out.switch()
        self._hold_player.pop(state.name, None)
        future = self._once.pop(state.name, None)
        if future is not None and not future.done():
            future.set_result(completed)

    def _player_done(self, state: LegState, player: Player) -> None:
        if state.player is player:
            self._stop_player(state, True)

    # ---- recording --------------------------------------------------------------------------

    def record(
        self,
        from_leg: LegName,
        path: Path | str,
        *,
        max_seconds: float = 120.0,
        silence_seconds: float | None = None,
    ) -> Recording:
        """Record what `from_leg` sends (G.711 decoded to 8 kHz 16-bit WAV, written atomically to
        `path` when it stops: after `max_seconds`, after `silence_seconds` without voice, on
        `stop()` or on `close()`)."""
        self._check_open()
        recorder = self.core.start_recording(
            from_leg, Path(path), self._clock(), max_seconds, silence_seconds
        )
        recording = Recording(self, from_leg, recorder)
        self._recordings[id(recorder)] = recording
        self.engine._arm()
        return recording

    def _stop_recording(self, recorder: Recorder, reason: str) -> None:
        recording = self._recordings.pop(id(recorder), None)
        if recording is None:
            return
        recorder.stop(reason)
        for state in self.core.legs.values():
            if state.recorder is recorder:
                state.recorder = None
        task = self._loop.create_task(self._write(recording))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, recording: Recording) -> None:
        recorder = recording.recorder
        pcm = recorder.audio()
        path: Path | None = None
        if pcm:
            try:
                await asyncio.to_thread(write_wav_atomic, recorder.path, pcm)
                path = recorder.path
            except OSError as e:
                if not recording._future.done():
                    recording._future.set_exception(
                        MediaError(f"cannot write recording {recorder.path}: {e.strerror}")
                    )
                return
        result = RecordingResult(path, len(pcm) / 16000, recorder.stop_reason or "stopped")
        if not recording._future.done():
            recording._future.set_result(result)

    # ---- I/O --------------------------------------------------------------------------------

    def _read_rtp(self, state: LegState) -> None:
        sock = self._rtp[state.name]
        out_sock = self._rtp[self.core.peer[state.name].name]
        receive = self.core.receive_rtp
        now = self._clock()
        buffer = _READ_BUFFER
        for _ in range(READ_BATCH):
            try:
                size, source = sock.recvfrom_into(buffer)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue  # e.g. an ICMP error reported on a later receive
            forward = receive(state, buffer[:size].tobytes(), source, now)
            if forward is not None:
                try:
                    out_sock.sendto(forward[0], forward[1])
                except OSError:
                    self.engine.send_errors += 1
        if self.core.events:
            self._dispatch()
        recorder = state.recorder
        if recorder is not None and recorder.stop_reason is not None:
            self._stop_recording(recorder, recorder.stop_reason)

    def _read_rtcp(self, state: LegState) -> None:
        sock = self._rtcp[state.name]
        out_sock = self._rtcp[self.core.peer[state.name].name]
        now = self._clock()
        buffer = _READ_BUFFER
        for _ in range(READ_BATCH):
            try:
                size, source = sock.recvfrom_into(buffer)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue
            forward = self.core.receive_rtcp(state, buffer[:size].tobytes(), source, now)
            if forward is not None:
                with contextlib.suppress(OSError):
                    out_sock.sendto(forward[0], forward[1])

    def _tick(self, now: float) -> None:
        for recorder in self.core.tick(now):
            self._stop_recording(recorder, recorder.stop_reason or "stopped")
        if self.core.events:
            self._dispatch()

    def _dispatch(self) -> None:
        events, self.core.events = self.core.events, []
        for event in events:
            try:
                if isinstance(event, DtmfReceived):
                    if self.on_dtmf is not None:
                        self.on_dtmf(event.leg, event.event)
                elif isinstance(event, RtpTimedOut) and self.on_timeout is not None:
                    self.on_timeout(event.leg)
            except Exception:  # a callback's bug must not stop the media of other calls
                log.exception("media callback failed for call %s", self.call_id[:64])

    def stats(self) -> dict[str, dict[str, int]]:
        """Packet counters per leg: received from it, sent to it, dropped from it (of which
        `srtp_errors` did not authenticate)."""
        return {
            leg: {"rx": s.rx_packets, "tx": s.tx_packets, "dropped": s.dropped,
                  "srtp_errors": s.srtp_errors}
            for leg, s in self.core.legs.items()
        }

    def _check_open(self) -> None:
        if self.closed:
            raise MediaError(f"media session {self.call_id[:64]} is closed")

    async def close(self) -> None:
        """Stop playback, finish recordings (their files are written), release the ports."""
        writes = self.close_now()
        if writes:
            await asyncio.gather(*writes, return_exceptions=True)

    def close_now(self) -> list[asyncio.Task[None]]:
        """Stop playback and recordings and release the ports at once; returns the recording
        writes still running (a call's end needs no task when there are none)."""
        if self.closed:
            return []
        self.closed = True
        for state in self.core.legs.values():
            self._stop_player(state, False)
            if state.recorder is not None:
                self._stop_recording(state.recorder, "closed")
        self.engine._release(self)
        # The callbacks refer to the call, which refers to this session: let go (the server
        # runs with the cyclic collector off). Nothing calls them once closed.
        self.on_dtmf = self.on_timeout = None
        return list(self._writes)


class MediaEngine:
    """Anchored RTP for every call of the process.

    `local_ip` is the address written into SDP; sockets bind to `bind_ip` (default `local_ip`).
    `clock` returns monotonic seconds (default: the loop's time); `rng` draws SSRCs, initial
    sequence numbers and timestamps (default: seeded from the OS). Strings given to
    `MediaSession.play` are looked up in `library` (music class first, then prompt in
    `language`). Released port pairs stay open for later calls (`warm_pairs` of them, by
    default as many as the open-files limit comfortably allows; 0 closes every pair at once),
    and go out again after `quarantine` quiet seconds."""

    def __init__(
        self,
        local_ip: str,
        port_range: tuple[int, int] = (20000, 29999),
        *,
        rtp_timeout: float = 60.0,
        library: SoundLibrary | None = None,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
        bind_ip: str | None = None,
        language: str | None = None,
        relatch_after: float = 2.0,
        tick_interval: float = 0.25,
        pacing_slack: float = 0.0,
        warm_pairs: int | None = None,
        quarantine: float = 1.0,
        key_source: KeySource = os.urandom,
    ) -> None:
        self.local_ip = local_ip
        self.key_source = key_source
        self.bind_ip = bind_ip or local_ip
        self.rtp_timeout = rtp_timeout
        self.library = library
        self.language = language
        self.relatch_after = relatch_after
        self.tick_interval = tick_interval
        self.pacing_slack = pacing_slack
        self._family = socket.AF_INET6 if ":" in self.bind_ip else socket.AF_INET
        self._ports = _PortPool(
            *port_range, warm_limit=_warm_limit() if warm_pairs is None else warm_pairs,
            quarantine=quarantine,
        )
        self._clock_arg = clock
        self._clock: Callable[[], float] = clock or (lambda: 0.0)
        self._rng = rng or random.Random()
        self._scheduler = PlaybackScheduler()
        self._sessions: dict[str, MediaSession] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._next_tick = float("inf")
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.send_errors = 0
        self.pacing = PacingStats()  # how far from its deadline each paced frame went out
        self.started = False

    async def start(self) -> None:
        """Bind to the running loop."""
        self._loop = asyncio.get_running_loop()
        if self._clock_arg is None:
            self._clock = self._loop.time
        self.started = True

    async def close(self) -> None:
        """Close every session (recordings are written), the warm sockets, and stop the timer."""
        for session in list(self._sessions.values()):
            await session.close()
        for pair in self._ports.drain_warm():
            self._close_pair(pair)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.started = False

    @property
    def sessions(self) -> Mapping[str, MediaSession]:
        return self._sessions

    @property
    def free_ports(self) -> int:
        """RTP port pairs left in the pool."""
        return self._ports.free

    async def create_session(
        self,
        call_id: str,
        *,
        on_dtmf: DtmfCallback | None = None,
        on_timeout: TimeoutCallback | None = None,
        encryption: Mapping[LegName, MediaEncryption] | None = None,
    ) -> MediaSession:
        """A new session with one RTP/RTCP port pair per leg; MediaError if the pool is empty
        or `call_id` already has a session. `encryption` gives legs a `media_encryption`
        other than "optional"."""
        return self.open_session(
            call_id, on_dtmf=on_dtmf, on_timeout=on_timeout, encryption=encryption
        )

    def open_session(
        self,
        call_id: str,
        *,
        on_dtmf: DtmfCallback | None = None,
        on_timeout: TimeoutCallback | None = None,
        encryption: Mapping[LegName, MediaEncryption] | None = None,
    ) -> MediaSession:
        """`create_session` without the coroutine: the session is ready on return."""
        if not self.started:
            raise MediaError("media engine not started")
        if call_id in self._sessions:
            raise MediaError(f"a media session exists already for call {call_id[:64]}")
        pairs: dict[LegName, _PortPair] = {}
        now = self._clock()
        try:
            for leg in LEGS:
                pair, new = self._ports.allocate(self._family, self.bind_ip, now)
                if new:
                    self._loop.add_reader(pair.rtp, self._rtp_ready, pair)
                    self._loop.add_reader(pair.rtcp, self._rtcp_ready, pair)
                pairs[leg] = pair
        except MediaError:
            for pair in pairs.values():
                self._give_back(pair, now)
            raise
        session = MediaSession(self, call_id, pairs, on_dtmf, on_timeout, encryption)
        self._sessions[call_id] = session
        if self._next_tick == float("inf"):
            self._next_tick = self._clock() + self.tick_interval
        self._arm()
        return session

    def _release(self, session: MediaSession) -> None:
        if self._sessions.get(session.call_id) is session:
            del self._sessions[session.call_id]
        now = self._clock()
        for pair in session._pairs.values():
            if pair.session is session:
                self._give_back(pair, now)

    def _give_back(self, pair: _PortPair, now: float) -> None:
        to_close = self._ports.release(pair, now)
        if to_close is not None:
            self._close_pair(to_close)

    def _close_pair(self, pair: _PortPair) -> None:
        for sock in (pair.rtp, pair.rtcp):
            self._loop.remove_reader(sock)
            sock.close()

    def _rtp_ready(self, pair: _PortPair) -> None:
        session = pair.session
        if session is not None and pair.state is not None:
            session._read_rtp(pair.state)
        elif _drain(pair.rtp):  # the tail of a call that ended: not for anyone
            pair.quiet_since = self._clock()

    def _rtcp_ready(self, pair: _PortPair) -> None:
        session = pair.session
        if session is not None and pair.state is not None:
            session._read_rtcp(pair.state)
        elif _drain(pair.rtcp):
            pair.quiet_since = self._clock()

    def _resolve(self, sound: Sound | str) -> Sound:
        if isinstance(sound, Sound):
            return sound
        if self.library is None:
            raise MediaError(f"no sound library to find {sound!r} in")
        if self.library.has_music(sound):
            return self.library.music(sound)
        return self.library.prompt(sound, self.language)

    # ---- the one timer ----------------------------------------------------------------------

    def _arm(self) -> None:
        deadline = self._scheduler.next_deadline()
        when = self._next_tick if self._sessions else float("inf")
        if deadline is not None and deadline < when:
            when = deadline
        if when == float("inf"):
            return
        if self._timer is not None:
            if self._timer_at <= when:
                return
            self._timer.cancel()
        self._timer_at = when
        # Fire up to `pacing_slack` early: the loop's timers tend to fire late (uvloop rounds
        # to the millisecond), and frames due within the slack are sent in this wake-up.
        when -= self.pacing_slack
        loop_when = when if self._clock_arg is None else self._loop.time() + (when - self._clock())
        self._timer = self._loop.call_at(loop_when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        clock = self._clock
        now = clock()
        pacing = self.pacing
        bucket_time, bucket_count = 0.0, 0
        for player, datagrams, when in self._scheduler.due(now + self.pacing_slack):
            if when != bucket_time:
                if bucket_count:
                    pacing.record(clock() - bucket_time, bucket_count)
                bucket_time, bucket_count = when, 0
            session, state = player.context
            if datagrams:
                dest = state.latched or state.sdp_address
                if dest is not None:
                    sendto = session._rtp[state.name].sendto
                    if state.srtp is not None:  # an SRTP leg hears the player encrypted too
                        datagrams = [state.srtp.protect(d) for d in datagrams]
                    for data in datagrams:
                        try:
                            sendto(data, dest)
                        except OSError:
                            self.send_errors += 1
                    state.tx_packets += len(datagrams)
                bucket_count += 1
            if player.sent_all:
                session._player_done(state, player)
        if bucket_count:
            pacing.record(clock() - bucket_time, bucket_count)
        if now >= self._next_tick:
            for session in list(self._sessions.values()):
                session._tick(now)
            self._next_tick = now + self.tick_interval if self._sessions else float("inf")
        self._arm()
