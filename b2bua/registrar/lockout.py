"""Brute-force lockout: failed authentications counted per source address (docs/registrar.md,
"Lockout").

Sans-IO: `now` is passed in. `lockout_failures` failures within `lockout_window` seconds lock the
source out for `lockout_seconds`. The tables are bounded (`MAX_TRACKED_SOURCES`) and swept by
`purge(now)`, which the registrar calls from its deadline handler.
"""

from __future__ import annotations

import logging
from collections import deque

log = logging.getLogger("b2bua.registrar")

MAX_TRACKED_SOURCES = 50_000


class Lockout:
    def __init__(self, failures: int, window: float, seconds: float) -> None:
        self.failures = failures
        self.window = window
        self.seconds = seconds
        self._failures: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}
        self.lockouts = 0  # sources locked out so far

    def is_locked(self, host: str, now: float) -> bool:
        until = self._locked_until.get(host)
        if until is None:
            return False
        if until <= now:
            del self._locked_until[host]
            return False
        return True

    def record_failure(self, host: str, now: float) -> bool:
        """Count a failed authentication from `host`; True when this one locks it out."""
        window = self._failures.get(host)
        if window is None:
            if len(self._failures) >= MAX_TRACKED_SOURCES:
                self.purge(now)
                if len(self._failures) >= MAX_TRACKED_SOURCES:
                    del self._failures[next(iter(self._failures))]
            window = self._failures[host] = deque()
        window.append(now)
        while window and window[0] <= now - self.window:
            window.popleft()
        if len(window) < self.failures:
            return False
        del self._failures[host]
        self._locked_until[host] = now + self.seconds
        self.lockouts += 1
        log.warning(
            "source %s locked out for %d s after %d failed authentications in %d s",
            host, self.seconds, self.failures, self.window,
        )
        return True

    def purge(self, now: float) -> None:
        """Forget failure windows that are over and lockouts that ended."""
        limit = now - self.window
        for host in [h for h, w in self._failures.items() if not w or w[-1] <= limit]:
            del self._failures[host]
        for host in [h for h, t in self._locked_until.items() if t <= now]:
            del self._locked_until[host]

    @property
    def tracking(self) -> bool:
        """Whether anything is left for `purge` to forget."""
        return bool(self._failures or self._locked_until)

    def locked_sources(self, now: float) -> dict[str, float]:
        """Locked-out source addresses and when each lockout ends."""
        return {h: t for h, t in self._locked_until.items() if t > now}

    def unlock(self, host: str) -> None:
        self._locked_until.pop(host, None)
        self._failures.pop(host, None)
