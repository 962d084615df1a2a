"""Paced playback and the outgoing stream of a leg (sans-IO: no sockets, no clock of its own).

Theory of operation. Everything the B2BUA sends to one leg goes through that leg's
`OutgoingStream`: one SSRC of ours, one sequence-number space and one timestamp line. Relayed
packets are rewritten in place (sequence number and timestamp shifted by offsets fixed at the
first packet after a switch, SSRC replaced); playback frames are numbered from the same state. So
when a leg switches between relay and playback, the far end sees one continuous stream: the
sequence number goes on by one, the timestamp advances by the time that really passed, and the
first packet after the switch carries the marker bit (RFC 3551 §4.1: "the first packet of a
talkspurt").

A `Player` sends G.711 frames of 20 ms at absolute deadlines `start + n * ptime`: the n-th deadline
is computed from n, never by adding ptime to the previous one, so the pace does not drift. When
the caller wakes up late by more than `max_late`, the frames whose deadline is that old are
skipped (the timestamp still advances for them) instead of sent in a burst.

`PlaybackScheduler` keeps every player of an engine in one heap ordered by deadline, so the
asyncio shell needs one timer for all of them.
"""

from __future__ import annotations

import heapq
import math
import struct
from collections.abc import Sequence
from heapq import heappush
from math import ceil
from typing import Any

from media.rtp import RtpPacket

__all__ = ["OutgoingStream", "PacingStats", "PlaybackScheduler", "Player"]

_SEQ_TS_SSRC = struct.Struct("!HII")
_HEADER = struct.Struct("!BBHII")


class OutgoingStream:
    """The RTP stream the B2BUA sends to one leg: our SSRC, continuous seq and timestamp."""

    __slots__ = (
        "_in_ssrc",
        "_seq_offset",
        "_switched",
        "_ts_offset",
        "clock_rate",
        "last_sequence",
        "last_time",
        "last_timestamp",
        "ssrc",
    )

    def __init__(self, ssrc: int, sequence: int, timestamp: int, clock_rate: int = 8000) -> None:
        self.ssrc = ssrc & 0xFFFFFFFF
        self.clock_rate = clock_rate
        # The state of the last packet sent; the first packet is numbered `sequence`, `timestamp`.
        self.last_sequence = (sequence - 1) & 0xFFFF
        self.last_timestamp = timestamp & 0xFFFFFFFF
        self.last_time: float | None = None
        self._switched = True
        self._in_ssrc: int | None = None
        self._seq_offset = 0
        self._ts_offset = 0

    def switch(self) -> None:
        """Mark a change of source: the next packet gets the marker bit and new offsets."""
        self._switched = True
        self._in_ssrc = None

    def _timestamp_at(self, now: float) -> int:
        if self.last_time is None:
            return self.last_timestamp
        elapsed = max(0, round((now - self.last_time) * self.clock_rate))
        return (self.last_timestamp + elapsed) & 0xFFFFFFFF

    def relay(self, data: bytes, now: float) -> bytes | None:
        """Rewrite a received RTP packet for this leg; None if it is not RTP version 2."""
        if len(data) < 12 or data[0] & 0xC0 != 0x80:
            return None
        seq, ts, ssrc = _SEQ_TS_SSRC.unpack_from(data, 2)
        buf = bytearray(data)
        if self._switched or ssrc != self._in_ssrc:
            self._seq_offset = (self.last_sequence + 1 - seq) & 0xFFFF
            self._ts_offset = (self._timestamp_at(now) - ts) & 0xFFFFFFFF
            self._in_ssrc = ssrc
            self._switched = False
            buf[1] |= 0x80
        out_seq = (seq + self._seq_offset) & 0xFFFF
        out_ts = (ts + self._ts_offset) & 0xFFFFFFFF
        _SEQ_TS_SSRC.pack_into(buf, 2, out_seq, out_ts, self.ssrc)
        if (out_seq - self.last_sequence) & 0xFFFF < 0x8000:
            # Only a newer packet moves the stream on; a late (reordered) one does not.
            self.last_sequence = out_seq
            self.last_timestamp = out_ts
            self.last_time = now
        return bytes(buf)

    def frame(self, payload_type: int, payload: bytes, samples: int, when: float) -> bytes:
        """The next packet of a locally generated stream, sent at (nominal) time `when`."""
        marker = 0
        if self._switched:
            ts = self._timestamp_at(when)
            self._switched = False
            self._in_ssrc = None
            marker = 0x80
        else:
            ts = (self.last_timestamp + samples) & 0xFFFFFFFF
        seq = (self.last_sequence + 1) & 0xFFFF
        self.last_sequence = seq
        self.last_timestamp = ts
        self.last_time = when
        return _HEADER.pack(0x80, marker | payload_type, seq, ts, self.ssrc) + payload

    def skip(self, samples: int, when: float) -> None:
        """Account for a frame not sent (late wake-up): time goes on, the sequence does not."""
        if not self._switched:
            self.last_timestamp = (self.last_timestamp + samples) & 0xFFFFFFFF
            self.last_time = when


class Player:
    """Sends `frames` to `stream` at `start + n * ptime`, once or looping.

    `context` is left to the caller (the engine keeps the destination leg there).
    """

    __slots__ = (
        "_index",
        "_n",
        "cancelled",
        "context",
        "frames",
        "loop",
        "max_late",
        "payload_type",
        "ptime",
        "samples",
        "start",
        "stream",
    )

    def __init__(
        self,
        frames: Sequence[bytes],
        payload_type: int,
        stream: OutgoingStream,
        start: float,
        *,
        ptime: float = 0.02,
        loop: bool = True,
        max_late: float = 0.1,
        context: Any = None,
    ) -> None:
        self.frames = frames
        self.payload_type = payload_type
        self.stream = stream
        self.start = start
        self.ptime = ptime
        self.samples = round(ptime * stream.clock_rate)
        self.loop = loop
        self.max_late = max_late
        self.context = context
        self.cancelled = False
        self._n = 0  # deadlines consumed
        self._index = 0  # next frame
        stream.switch()

    @property
    def finished(self) -> bool:
        return self.cancelled or (not self.loop and self._index >= len(self.frames))

    @property
    def sent_all(self) -> bool:
        """A one-shot player that has sent (or skipped) its last frame."""
        return not self.loop and self._index >= len(self.frames)

    def next_deadline(self) -> float | None:
        """When the next frame is due; None once a one-shot player is done (or cancelled)."""
        if self.finished or not self.frames:
            return None
        return self.start + self._n * self.ptime

    def datagrams_due(self, now: float) -> list[bytes]:
        """The RTP datagrams whose deadline is at or before `now`, ready to send."""
        out: list[bytes] = []
        frames = self.frames
        count = len(frames)
        if self.cancelled or not count:
            return out
        start, ptime, stream, samples = self.start, self.ptime, self.stream, self.samples
        index = self._index
        deadline = start + self._n * ptime
        if index < count and deadline <= now < deadline + ptime and now - deadline <= self.max_late:
            # The usual case: exactly one frame due.
            self._n += 1
            self._index = index + 1
            return [stream.frame(self.payload_type, frames[index], samples, deadline)]
        while True:
            if self._index >= count:
                if not self.loop:
                    break
                self._index = 0
            deadline = start + self._n * ptime
            if deadline > now:
                break
            if now - deadline > self.max_late:
                stream.skip(samples, deadline)
            else:
                out.append(stream.frame(self.payload_type, frames[self._index], samples, deadline))
            self._n += 1
            self._index += 1
        return out

    def packets_due(self, now: float) -> list[RtpPacket]:
        """`datagrams_due` as parsed packets (for tests and inspection)."""
        return [RtpPacket.parse(d) for d in self.datagrams_due(now)]


class PlaybackScheduler:
    """All the players of one engine, grouped by deadline in buckets of `resolution` seconds.

    A player's bucket is the first grid time at or after its deadline; the players of one bucket
    are served together, so the heap holds one entry per bucket (about ptime / resolution of
    them), not one per player. Players started on the grid (`align`) never wait for their bucket.
    """

    __slots__ = ("_buckets", "_keys", "_players", "resolution")

    def __init__(self, resolution: float = 0.001) -> None:
        self.resolution = resolution
        self._buckets: dict[int, list[Player]] = {}
        self._keys: list[int] = []  # heap of bucket keys
        self._players: set[Player] = set()

    def __len__(self) -> int:
        return len(self._players)

    def align(self, now: float) -> float:
        """The first grid time at or after `now`: a good start for a new player."""
        return math.ceil(now / self.resolution - 1e-6) * self.resolution

    def _insert(self, player: Player, deadline: float) -> None:
        key = math.ceil(deadline / self.resolution - 1e-6)
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = [player]
            heapq.heappush(self._keys, key)
        else:
            bucket.append(player)

    def add(self, player: Player) -> None:
        deadline = player.next_deadline()
        self._players.add(player)
        if deadline is not None:
            self._insert(player, deadline)

    def remove(self, player: Player) -> None:
        """Stop a player; its bucket entry is dropped lazily."""
        player.cancelled = True
        self._players.discard(player)

    def next_deadline(self) -> float | None:
        keys, buckets = self._keys, self._buckets
        while keys:
            bucket = buckets[keys[0]]
            if any(not p.cancelled for p in bucket):
                return keys[0] * self.resolution
            del buckets[heapq.heappop(keys)]
        return None

    def due(self, now: float) -> list[tuple[Player, list[bytes], float]]:
        """Every player with frames due at `now`: the player, those frames, and the time of its
        bucket. A one-shot player whose last frame is among them has `sent_all` set and is
        forgotten."""
        keys, buckets, resolution = self._keys, self._buckets, self.resolution
        out: list[tuple[Player, list[bytes], float]] = []
        limit = now / resolution + 1e-6
        while keys and keys[0] <= limit:
            key = heapq.heappop(keys)
            when = key * resolution
            # Every player of the bucket has its deadline at most `resolution * 1e-6` after
            # `when` (see `_insert`): asking for frames up to `horizon` always yields at least
            # one, so a player never lands in the same bucket again (no endless loop).
            horizon = max(now, when + resolution * 1e-3)
            for player in buckets.pop(key):
                if player.cancelled:
                    continue
                out.append((player, player.datagrams_due(horizon), when))
                if not player.loop and player._index >= len(player.frames):
                    self._players.discard(player)
                    continue
                # _insert, inlined: this loop runs for every frame of every playback.
                next_key = ceil((player.start + player._n * player.ptime) / resolution - 1e-6)
                bucket = buckets.get(next_key)
                if bucket is None:
                    buckets[next_key] = [player]
                    heappush(keys, next_key)
                else:
                    bucket.append(player)
        return out


class PacingStats:
    """A histogram of |send time - deadline| of paced frames, in 0.1 ms buckets up to 100 ms."""

    __slots__ = ("buckets", "count", "max")

    RESOLUTION = 0.0001
    SIZE = 1001

    def __init__(self) -> None:
        self.buckets = [0] * self.SIZE
        self.count = 0
        self.max = 0.0

    def record(self, error: float, count: int = 1) -> None:
        error = abs(error)
        self.buckets[min(self.SIZE - 1, int(error / self.RESOLUTION))] += count
        self.count += count
        if error > self.max:
            self.max = error

    def percentile(self, p: float) -> float:
        """The error (seconds, bucket upper edge) below which a fraction `p` of frames fall."""
        if not self.count:
            return 0.0
        target = p * self.count
        seen = 0
        for i, n in enumerate(self.buckets):
            seen += n
            if seen >= target:
                return (i + 1) * self.RESOLUTION
        return self.max

    def reset(self) -> None:
        self.buckets = [0] * self.SIZE
        self.count = 0
        self.max = 0.0
