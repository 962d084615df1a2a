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
import itertools
import struct
from collections.abc import Sequence
from typing import Any

from media.rtp import RtpPacket

__all__ = ["OutgoingStream", "PlaybackScheduler", "Player"]

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
    """All the players of one engine, in one heap by next deadline."""

    __slots__ = ("_counter", "_heap", "_players")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Player]] = []
        self._counter = itertools.count()
        self._players: set[Player] = set()

    def __len__(self) -> int:
        return len(self._players)

    def add(self, player: Player) -> None:
        deadline = player.next_deadline()
        self._players.add(player)
        if deadline is not None:
            heapq.heappush(self._heap, (deadline, next(self._counter), player))

    def remove(self, player: Player) -> None:
        """Stop a player; its heap entry is dropped lazily."""
        player.cancelled = True
        self._players.discard(player)

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def due(self, now: float) -> list[tuple[Player, list[bytes]]]:
        """Every player with frames due at `now`, with those frames. A one-shot player that has
        sent its last frame is returned once more with `sent_all` set and then forgotten."""
        heap = self._heap
        out: list[tuple[Player, list[bytes]]] = []
        while heap and heap[0][0] <= now:
            _, _, player = heapq.heappop(heap)
            if player.cancelled:
                continue
            datagrams = player.datagrams_due(now)
            out.append((player, datagrams))
            deadline = player.next_deadline()
            if deadline is None:
                self._players.discard(player)
            else:
                heapq.heappush(heap, (deadline, next(self._counter), player))
        return out
