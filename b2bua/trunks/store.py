"""The trunks' status as the running server last saw it, kept in the shared database so that
`b2bua trunks` (another process) can read it.

The server writes one row per trunk whenever a row changes, and all rows at least every
`HEARTBEAT` seconds; a reader treats rows older than `STALE_AFTER` as "no server running".
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from b2bua.store import migrate, transaction
from b2bua.trunks.service import TrunkStatus

__all__ = ["HEARTBEAT", "STALE_AFTER", "TrunkStatusStore"]

HEARTBEAT = 30.0
STALE_AFTER = 90.0

_STEPS = [
    """
    CREATE TABLE trunk_status (
        name         TEXT PRIMARY KEY,
        registered   INTEGER,          -- NULL: the trunk does not register
        up           INTEGER NOT NULL,
        lines        INTEGER NOT NULL,
        lines_in_use INTEGER NOT NULL,
        last_error   TEXT,
        updated_at   REAL NOT NULL     -- wall clock (seconds since the epoch)
    );
    """,
]


class TrunkStatusStore:
    """Reads and writes the `trunk_status` table."""

    def __init__(self, conn: sqlite3.Connection, *, readonly: bool = False) -> None:
        self.conn = conn
        if not readonly:
            migrate(conn, "trunks", _STEPS)
        self._last: dict[str, TrunkStatus] = {}
        self._written_at = float("-inf")

    def save(self, rows: Sequence[TrunkStatus], now: float) -> bool:
        """Write the rows if one changed or the heartbeat is due (`now`: wall clock); drop rows
        of trunks no longer configured. True if it wrote."""
        current = {r.name: r for r in rows}
        if current == self._last and now - self._written_at < HEARTBEAT:
            return False
        with transaction(self.conn) as conn:
            conn.execute("DELETE FROM trunk_status")
            conn.executemany(
                "INSERT INTO trunk_status VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(r.name, None if r.registered is None else int(r.registered), int(r.up),
                  r.lines, r.lines_in_use, r.last_error, now) for r in rows],
            )
        self._last = current
        self._written_at = now
        return True

    def clear(self) -> None:
        """No server reports any more (it stopped): `b2bua trunks` says so at once."""
        with transaction(self.conn) as conn:
            conn.execute("DELETE FROM trunk_status")
        self._last = {}
        self._written_at = float("-inf")

    def load(self, now: float) -> dict[str, TrunkStatus]:
        """The rows written less than `STALE_AFTER` seconds before `now` (wall clock)."""
        try:
            cursor = self.conn.execute(
                "SELECT name, registered, up, lines, lines_in_use, last_error FROM trunk_status"
                " WHERE updated_at >= ?", (now - STALE_AFTER,))
        except sqlite3.OperationalError:  # no server has ever written the table
            return {}
        return {
            name: TrunkStatus(name, None if reg is None else bool(reg), bool(up), lines, in_use,
                              error)
            for name, reg, up, lines, in_use, error in cursor
        }
