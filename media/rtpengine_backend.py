"""rtpengine as the media backend: the session interface of the built-in relay, media in rtpengine.

Theory of operation
-------------------
With `[media] backend = "rtpengine"` each call gets an `RtpengineSession` instead of a built-in
`MediaSession`. rtpengine (Debian `rtpengine-daemon`) owns the RTP ports and relays the packets;
we only drive it over its ng control socket (`media.rtpengine.NgClient`):

- The call is one rtpengine call: call-id = our call id, one monologue per leg, tagged "a" (the
  caller's side) and "b" (the callee's side). An SDP offer from leg X is an ng `offer` with
  from-tag X (and to-tag the other leg once an answer has been seen: a re-INVITE); an SDP answer
  from leg X is an ng `answer` with from-tag the other leg (the offerer) and to-tag X. rtpengine
  rewrites the body to point at its own ports, and the rewritten body is what the other leg gets.
- Every command asks rtpengine to replace the origin and the session c= line and to remove ICE
  (the far end must send to rtpengine, not to the other phone's candidates). rtpengine trusts the
  SDP address by default and latches to the source of the RTP it receives (symmetric RTP), which
  is what NATed phones need; when the SDP of a leg carries a private address that differs from the
  public address its SIP came from (a phone behind NAT without a SIP-aware router), the command
  also says `SIP-source-address` with that address in `received-from`, so rtpengine sends to the
  NAT's address from the first packet on.
- Hold: an offer that holds the call (sendonly, inactive, c=0.0.0.0) goes through rtpengine like
  any other; if the session has `hold_music`, rtpengine plays that class to the other leg with
  `play media` (the class is exported once as an 8 kHz WAV file that rtpengine reads: it must run
  on the same host or see the same path), and `stop media` when the call is taken back.
- The end of the call is an ng `delete` of the whole call.
- RTP timeout: every `rtp_timeout / 2` seconds one `query` per answered call reads the packets
  rtpengine received from each leg; a leg whose SDP says it sends and whose count has not moved
  for `rtp_timeout` seconds (counted from its last SDP, never while either leg holds) is reported
  once to `on_timeout(leg)`, as the built-in relay does. A call rtpengine no longer knows (its
  own timeout deleted it, or it restarted) is reported the same way.

Commands are coroutines: the call engine waits for them in the call's order (see
`b2bua/calls/engine.py`, `_with_sdp`). `NgError` (rtpengine refused the body) and `MediaError`
(rtpengine did not answer) are the only errors.

The mapping from a leg's SDP to ng arguments is pure (`offer_args`, `answer_args`,
`delete_args`, `play_args`, `behind_nat`) and unit-tested without rtpengine.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from media.errors import MediaError
from media.g711 import PCMU
from media.library import Sound, SoundLibrary, write_wav_atomic
from media.rtpengine import NgClient, NgError
from media.sdp import SdpError, SessionDescription, direction, first_audio, is_hold

__all__ = [
    "RtpengineMedia",
    "RtpengineSession",
    "answer_args",
    "behind_nat",
    "delete_args",
    "offer_args",
    "play_args",
    "received_packets",
    "sdp_host",
    "sends",
]

log = logging.getLogger("media.rtpengine")

LegName = Literal["a", "b"]
OTHER: dict[str, LegName] = {"a": "b", "b": "a"}
REPEAT_FOREVER = 10_000  # `play media` repeats: hold music loops for days
COMMON: dict[str, Any] = {"replace": ["origin", "session-connection"], "ICE": "remove"}

# Addresses a phone behind NAT writes into its SDP (RFC 1918, RFC 6598 shared, link-local, ULA).
_NAT_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
              "169.254.0.0/16", "fc00::/7", "fe80::/10")
)  # fmt: skip


def sdp_host(sdp: bytes) -> str | None:
    """The connection address of the first active audio section (or None)."""
    try:
        parsed = SessionDescription.parse(sdp)
    except SdpError:
        return None
    index = first_audio(parsed)
    if index is None:
        return None
    conn = parsed.connection_for(index)
    return conn.host if conn is not None else None


def sends(sdp: bytes) -> bool:
    """True if this SDP says its sender will send RTP (sendrecv or sendonly, a real address)."""
    try:
        parsed = SessionDescription.parse(sdp)
    except SdpError:
        return False
    index = first_audio(parsed)
    if index is None or direction(parsed, index) not in ("sendrecv", "sendonly"):
        return False
    conn = parsed.connection_for(index)
    return conn is not None and conn.host not in ("0.0.0.0", "::")


def received_packets(query: Mapping[str, Any]) -> dict[str, int]:
    """From an ng `query` answer: the RTP packets rtpengine received from each tag's endpoint."""
    counts: dict[str, int] = {}
    tags = query.get("tags")
    if not isinstance(tags, Mapping):
        return counts
    for tag, monologue in tags.items():
        total = 0
        for section in monologue.get("medias", []) if isinstance(monologue, Mapping) else []:
            for stream in section.get("streams", []):
                if b"RTP" in stream.get("flags", []):
                    total += int(stream.get("stats", {}).get("packets", 0))
        counts[tag] = total
    return counts


def behind_nat(sdp_address: str | None, source: str | None) -> bool:
    """True when a leg's SDP carries a NAT-side address (private, shared, link-local) that is
    not the address its SIP came from: rtpengine should send to the SIP source address."""
    if not sdp_address or not source or sdp_address == source:
        return False
    try:
        media = ipaddress.ip_address(sdp_address)
        signalling = ipaddress.ip_address(source)
    except ValueError:
        return False
    if media.is_unspecified or signalling.is_loopback or media.version != signalling.version:
        return False
    return any(media in net for net in _NAT_NETWORKS)


def _nat_args(sdp: bytes, source: str | None) -> dict[str, Any]:
    if source is None or not behind_nat(sdp_host(sdp), source):
        return {}
    family = "IP6" if ":" in source else "IP4"
    return {"flags": ["SIP-source-address"], "received-from": [family, source]}


def offer_args(
    call_id: str, from_leg: LegName, sdp: bytes, *, renegotiation: bool = False,
    source: str | None = None,
) -> dict[str, Any]:
    """The ng `offer` for an SDP offer from `from_leg`; `renegotiation` once the call has had an
    answer (a re-INVITE or UPDATE: the other leg's tag is known); `source` the address the leg's
    SIP came from."""
    args: dict[str, Any] = {"call-id": call_id, "from-tag": from_leg, "sdp": sdp, **COMMON}
    if renegotiation:
        args["to-tag"] = OTHER[from_leg]
    args.update(_nat_args(sdp, source))
    return args


def answer_args(
    call_id: str, from_leg: LegName, sdp: bytes, *, source: str | None = None
) -> dict[str, Any]:
    """The ng `answer` for an SDP answer from `from_leg` (the offer came from the other leg)."""
    args: dict[str, Any] = {
        "call-id": call_id, "from-tag": OTHER[from_leg], "to-tag": from_leg, "sdp": sdp, **COMMON,
    }  # fmt: skip
    args.update(_nat_args(sdp, source))
    return args


def delete_args(call_id: str) -> dict[str, Any]:
    """The ng `delete` of the whole call, at once (no `delete-delay`: we own both legs)."""
    return {"call-id": call_id, "delete-delay": 0}


def play_args(call_id: str, to_leg: LegName, path: Path) -> dict[str, Any]:
    """The ng `play media` that makes `to_leg` hear the file at `path`, looped."""
    return {"call-id": call_id, "from-tag": to_leg, "file": str(path),
            "repeat-times": REPEAT_FOREVER}  # fmt: skip


def _sdp_of(command: str, answer: Mapping[str, Any]) -> bytes:
    sdp = answer.get("sdp")
    if not isinstance(sdp, bytes) or not sdp:
        raise NgError(f"rtpengine {command}: the answer has no SDP")
    return sdp


def _holds(sdp: bytes) -> bool:
    try:
        return is_hold(SessionDescription.parse(sdp))
    except SdpError:
        return False


class RtpengineSession:
    """The media of one call, relayed by rtpengine. Create it with
    `RtpengineMedia.create_session`. SDP methods are coroutines."""

    remote = True

    def __init__(self, backend: RtpengineMedia, call_id: str) -> None:
        self.backend = backend
        self.call_id = call_id
        self.hold_music: Sound | str | None = None
        self.closed = False
        self.on_dtmf: Any = None  # not reported: rtpengine relays RFC 4733 events itself
        self.on_timeout: Callable[[LegName], None] | None = None
        self._answered = False
        self._held: dict[str, bool] = {"a": False, "b": False}
        self._playing: set[LegName] = set()
        # RTP timeout, as the built-in relay: per leg, does it send, since when is RTP expected,
        # the last packet count seen and when it last moved.
        self._sends: dict[LegName, bool] = {"a": False, "b": False}
        self._expect_since: dict[LegName, float] = {"a": 0.0, "b": 0.0}
        self._count: dict[LegName, int] = {"a": 0, "b": 0}
        self._moved: dict[LegName, float] = {"a": float("-inf"), "b": float("-inf")}
        self._timed_out: set[LegName] = set()
        self._lost = False  # rtpengine no longer knows the call (reported once)

    def _sdp_seen(self, leg: LegName, sdp: bytes) -> None:
        self._sends[leg] = sends(sdp)
        self._expect_since[leg] = self.backend.clock()
        self._timed_out.discard(leg)

    def watch(self, counts: Mapping[str, int] | None, now: float, timeout: float) -> list[LegName]:
        """The legs that just timed out, given rtpengine's received-packet counts per tag (None:
        rtpengine does not know the call any more)."""
        if not self._answered or any(self._held.values()):
            return []
        if counts is None:  # the whole call is gone: reported once, on leg "a"
            if self._lost:
                return []
            self._lost = True
            return ["a"]
        out: list[LegName] = []
        for leg in ("a", "b"):
            count = counts.get(leg, 0)
            if count != self._count[leg]:
                self._count[leg] = count
                self._moved[leg] = now
            if (
                self._sends[leg]
                and leg not in self._timed_out
                and now - max(self._moved[leg], self._expect_since[leg]) >= timeout
            ):
                self._timed_out.add(leg)
                out.append(leg)
        return out

    async def offer(self, from_leg: LegName, sdp: bytes, source: str | None = None) -> bytes:
        """An SDP offer from `from_leg`; returns the offer for the other leg. A hold offer plays
        `hold_music` (if set) to the other leg; the offer that takes the hold back stops it."""
        self._check_open()
        args = offer_args(self.call_id, from_leg, sdp, renegotiation=self._answered,
                          source=source)
        out = _sdp_of("offer", await self.backend.client.request("offer", args))
        self._sdp_seen(from_leg, sdp)
        held = _holds(sdp)
        if held != self._held[from_leg]:
            self._held[from_leg] = held
            await self._hold_changed(from_leg, held)
        return out

    async def answer(self, from_leg: LegName, sdp: bytes, source: str | None = None) -> bytes:
        """An SDP answer from `from_leg`; returns the answer for the other leg."""
        self._check_open()
        args = answer_args(self.call_id, from_leg, sdp, source=source)
        out = _sdp_of("answer", await self.backend.client.request("answer", args))
        self._sdp_seen(from_leg, sdp)
        self._answered = True
        return out

    def held(self, leg: LegName) -> bool:
        """True while `leg`'s last offer holds the call."""
        return self._held[leg]

    def playing(self, to_leg: LegName) -> bool:
        return to_leg in self._playing

    def local_answer(self, leg: LegName, sdp: bytes) -> bytes:
        raise MediaError("rtpengine sessions do not answer themselves (the built-in relay does)")

    async def _hold_changed(self, leg: LegName, held: bool) -> None:
        other = OTHER[leg]
        client = self.backend.client
        try:
            if held and self.hold_music is not None:
                path = await self.backend.music_file(self.hold_music)
                await client.request("play media", play_args(self.call_id, other, path))
                self._playing.add(other)
            elif not held and other in self._playing:
                self._playing.discard(other)
                await client.request("stop media", {"call-id": self.call_id, "from-tag": other})
        except MediaError as e:
            # No hold music must not fail the re-INVITE: the held party hears silence.
            log.info("call %s: no hold music for leg %s through rtpengine: %s",
                     self.call_id[:64], other, e)

    def _check_open(self) -> None:
        if self.closed:
            raise MediaError(f"media session {self.call_id[:64]} is closed")

    async def close(self) -> None:
        """Delete the call in rtpengine (its ports are freed at once)."""
        if self.closed:
            return
        self.closed = True
        self.backend._sessions.pop(self.call_id, None)
        try:
            await self.backend.client.request("delete", delete_args(self.call_id))
        except NgError as e:
            log.debug("call %s: rtpengine delete: %s", self.call_id[:64], e)
        except MediaError as e:
            log.warning("call %s: rtpengine delete failed: %s", self.call_id[:64], e)


class RtpengineMedia:
    """The rtpengine backend of the process: one ng client for every call.

    `address` is rtpengine's ng control socket (`--listen-ng`); `timeout` bounds one command,
    retransmitted every `retransmit` seconds. Hold music named by a string is looked up in
    `library` and exported as WAV into `music_dir` (rtpengine reads the file itself)."""

    def __init__(
        self,
        address: tuple[str, int],
        *,
        library: SoundLibrary | None = None,
        music_dir: Path | None = None,
        timeout: float = 3.0,
        retransmit: float = 0.5,
        rtp_timeout: float = 0.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.address = address
        self.rtp_timeout = rtp_timeout  # 0: not watched
        self._clock_arg = clock
        self.clock: Callable[[], float] = clock or (lambda: 0.0)
        self.library = library
        self.music_dir = music_dir
        self.client = NgClient(address, timeout=timeout, retransmit=retransmit)
        self._sessions: dict[str, RtpengineSession] = {}
        self._music: dict[str, tuple[Sound, Path]] = {}
        self._exports: dict[str, asyncio.Task[Path]] = {}
        self._ping: asyncio.Task[bool] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self.started = False

    async def start(self) -> None:
        """Open the control socket; a ping in the background says in the log whether rtpengine
        answers (if not, calls fail with 503 until it does)."""
        loop = asyncio.get_running_loop()
        if self._clock_arg is None:
            self.clock = loop.time
        await self.client.open()
        self.started = True
        self._ping = loop.create_task(self.check())
        if self.rtp_timeout > 0:
            self._watchdog = loop.create_task(self._watch())

    async def _watch(self) -> None:
        """Query the answered calls every `rtp_timeout / 2` seconds for their packet counts."""
        interval = max(0.5, self.rtp_timeout / 2)
        while True:
            await asyncio.sleep(interval)
            for session in list(self._sessions.values()):
                if session.closed or not session._answered or session.on_timeout is None:
                    continue
                try:
                    answer = await self.client.request("query", {"call-id": session.call_id})
                    counts: dict[str, int] | None = received_packets(answer)
                except NgError:
                    counts = None  # rtpengine forgot the call: its media is gone
                except MediaError:
                    continue  # no answer: the calls' own commands will tell
                if session.closed:
                    continue
                on_timeout = session.on_timeout
                for leg in session.watch(counts, self.clock(), self.rtp_timeout):
                    if on_timeout is None:
                        break
                    log.info("call %s: no RTP from leg %s in rtpengine for %.0f s%s",
                             session.call_id[:64], leg, self.rtp_timeout,
                             "" if counts is not None else " (rtpengine lost the call)")
                    try:
                        on_timeout(leg)
                    except Exception:  # a callback's bug must not stop the watch of others
                        log.exception("RTP timeout callback failed for %s", session.call_id[:64])

    async def check(self) -> bool:
        """Ping rtpengine; False (logged) if it does not answer."""
        try:
            await self.client.ping()
        except MediaError as e:
            log.warning("rtpengine at %s:%d does not answer (%s): calls will fail until it does",
                        *self.address, e)
            return False
        log.info("media: rtpengine at %s:%d answers", *self.address)
        return True

    async def close(self) -> None:
        """Delete every call still in rtpengine (all at once, bounded by one command's timeout)
        and close the control socket."""
        for task in (self._ping, self._watchdog):
            if task is not None:
                task.cancel()
        sessions = list(self._sessions.values())
        if sessions:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(s.close() for s in sessions)),
                                       self.client.timeout + 1.0)
        self.client.close()
        self.started = False

    @property
    def sessions(self) -> Mapping[str, RtpengineSession]:
        return self._sessions

    async def create_session(
        self,
        call_id: str,
        *,
        on_dtmf: Callable[..., None] | None = None,
        on_timeout: Callable[..., None] | None = None,
    ) -> RtpengineSession:
        """A new session (nothing is sent to rtpengine before the first offer)."""
        if not self.started:
            raise MediaError("rtpengine backend not started")
        if call_id in self._sessions:
            raise MediaError(f"a media session exists already for call {call_id[:64]}")
        session = RtpengineSession(self, call_id)
        session.on_timeout = on_timeout
        self._sessions[call_id] = session
        return session

    async def music_file(self, music: Sound | str) -> Path:
        """`music` as an 8 kHz mono WAV file rtpengine can play (exported once per sound)."""
        if isinstance(music, str):
            if self.library is None:
                raise MediaError(f"no sound library to find {music!r} in")
            sound = self.library.music(music) if self.library.has_music(music) else None
            if sound is None:
                raise MediaError(f"no music class {music!r}")
        else:
            sound = music
        known = self._music.get(sound.name)
        if known is not None and known[0] is sound:
            return known[1]
        task = self._exports.get(sound.name)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._export(sound))
            self._exports[sound.name] = task
            name = sound.name

            def forget(_task: asyncio.Task[Path]) -> None:
                self._exports.pop(name, None)

            task.add_done_callback(forget)
        return await asyncio.shield(task)

    async def _export(self, sound: Sound) -> Path:
        if self.music_dir is None:
            raise MediaError("no directory to export hold music for rtpengine")
        path = (self.music_dir / f"{sound.name}.wav").resolve()
        pcm = b"".join(PCMU.decode(frame) for frame in sound.pcmu)
        try:
            await asyncio.to_thread(_write_readable, path, pcm)
        except OSError as e:
            raise MediaError(f"cannot write {path} for rtpengine: {e.strerror}") from None
        self._music[sound.name] = (sound, path)
        return path


def _write_readable(path: Path, pcm: bytes) -> None:
    """Write the WAV file readable by rtpengine (Debian runs it as its own user)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o755)
    write_wav_atomic(path, pcm)
    path.chmod(0o644)
