"""The push service: hands pushes to the configured providers without ever making the caller wait.

Theory of operation
-------------------
`PushService.push(target, notification, on_result)` returns at once: the push runs as its own
asyncio task, bounded by `timeout` as a whole (connection, provider token, request), and its
`PushReport` (result, latency) goes to `on_result` from that task. A provider that is down or
slow therefore costs nothing to anyone else: other devices' pushes run in their own tasks, each
provider has its own HTTP client and connection pool, and nothing awaits the push on the call
path. At most `max_in_flight` pushes wait on one provider; beyond that a push fails at once
(`too many pushes in flight`) instead of piling up behind a provider that stopped answering.

Counters (for /metrics and the device card) are per provider: sent, and results by outcome.
`last(target)` is the last report for a device token. A provider's first failure after a success
is logged at WARNING, the next ones at DEBUG until it answers again (a dead provider under load
must not flood the log).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from b2bua.push.model import Notification, Outcome, PushResult, PushTarget

log = logging.getLogger("b2bua.push")

MAX_REMEMBERED = 100_000  # last reports kept (one per device token)


class PushClient(Protocol):
    provider: str

    async def send(self, target: PushTarget, notification: Notification) -> PushResult: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PushReport:
    """One push and what came of it. `sent_at` is wall-clock time (Unix seconds), `latency` the
    seconds from `push()` to the provider's answer (or the failure)."""

    target: PushTarget
    notification: Notification
    result: PushResult
    sent_at: float
    latency: float


ResultCallback = Callable[[PushReport], None]


class PushService:
    """The configured providers behind one non-blocking `push()`."""

    def __init__(
        self,
        clients: Iterable[PushClient],
        *,
        timeout: float = 5.0,
        max_in_flight: int = 500,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clients = {c.provider: c for c in clients}
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self._clock = clock
        self._monotonic = monotonic
        self._tasks: set[asyncio.Task[PushReport]] = set()
        self._in_flight = dict.fromkeys(self._clients, 0)
        self._healthy = dict.fromkeys(self._clients, True)
        self._last: OrderedDict[tuple[str, str], PushReport] = OrderedDict()
        self.counters: dict[str, int] = {}
        for provider in self._clients:
            self.counters[f"push_sent_total:{provider}"] = 0
            for outcome in Outcome:
                self.counters[f"push_results_total:{provider}:{outcome.value}"] = 0

    @property
    def providers(self) -> tuple[str, ...]:
        """The configured providers (`apns`, `fcm`), for RFC 8599's `+sip.pns`."""
        return tuple(self._clients)

    def supports(self, provider: str) -> bool:
        return provider in self._clients

    def client(self, provider: str) -> PushClient | None:
        return self._clients.get(provider)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def push(
        self,
        target: PushTarget,
        notification: Notification,
        on_result: ResultCallback | None = None,
    ) -> asyncio.Task[PushReport]:
        """Start one push and return at once; `on_result` gets its report when it is over.
        Must be called from the event loop."""
        started = self._monotonic()
        sent_at = self._clock()
        client = self._clients.get(target.provider)
        if client is not None:
            self.counters[f"push_sent_total:{target.provider}"] += 1
        coro = self._run(client, target, notification, on_result, started, sent_at)
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(
        self,
        client: PushClient | None,
        target: PushTarget,
        notification: Notification,
        on_result: ResultCallback | None,
        started: float,
        sent_at: float,
    ) -> PushReport:
        provider = target.provider
        if client is None:
            result = PushResult(Outcome.REJECTED, None, f"push provider {provider!r} not configured")
        elif self._in_flight[provider] >= self.max_in_flight:
            result = PushResult(Outcome.FAILED, None, "too many pushes in flight")
        else:
            self._in_flight[provider] += 1
            try:
                async with asyncio.timeout(self.timeout):
                    result = await client.send(target, notification)
            except TimeoutError:
                result = PushResult(Outcome.TIMEOUT, None, f"no answer within {self.timeout:g} s")
            except Exception as exc:  # a task boundary: a bug must not kill the push service
                log.exception("push to %s failed", target.short())
                result = PushResult(Outcome.FAILED, None, f"internal error: {type(exc).__name__}")
            finally:
                self._in_flight[provider] -= 1
        report = PushReport(target, notification, result, sent_at, self._monotonic() - started)
        self._record(report)
        if on_result is not None:
            try:
                on_result(report)
            except Exception:  # a task boundary
                log.exception("push result handler failed")
        return report

    def _record(self, report: PushReport) -> None:
        target, result = report.target, report.result
        provider = target.provider
        if provider in self._clients:
            self.counters[f"push_results_total:{provider}:{result.outcome.value}"] += 1
            healthy = result.outcome not in (Outcome.FAILED, Outcome.TIMEOUT)
            if healthy != self._healthy[provider]:
                self._healthy[provider] = healthy
                if healthy:
                    log.warning("push provider %s answers again", provider)
                else:
                    log.warning("push provider %s failing: %s", provider, result.describe())
            elif not healthy:
                log.debug("push to %s: %s", target.short(), result.describe())
        if result.outcome is Outcome.REJECTED:
            log.warning("push to %s rejected: %s", target.short(), result.describe())
        key = (provider, target.prid)
        self._last[key] = report
        self._last.move_to_end(key)
        if len(self._last) > MAX_REMEMBERED:
            self._last.popitem(last=False)

    def last(self, target: PushTarget) -> PushReport | None:
        """The last push to this device token, if this process sent one."""
        return self._last.get((target.provider, target.prid))

    def healthy(self, provider: str) -> bool:
        """False while the provider's last push failed or timed out."""
        return self._healthy.get(provider, False)

    async def aclose(self) -> None:
        """Stop the pushes in flight and close the providers' connections."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in self._clients.values():
            await client.aclose()
