"""CPU-heavy dashboard work in a separate process, so that it never holds the GIL the SIP loop
needs.

A thread is not enough: pure-Python work in a worker thread (validating a whole configuration,
deciding 10,080 minutes of a week) makes the event loop wait for the GIL at every system call,
up to the 5 ms switch interval each time; SIP OPTIONS p99 went from about 4 ms to 50+ ms under a
load that asked for week pictures. One spawned process (started at the first use, reused) takes
that work; the loop only pickles the configuration across.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

from b2bua.config import Config, ConfigError, ConfigIssue, config_from_dict


class Worker:
    """A one-process pool, created lazily, shut down with the app."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn")
            )
        return self._pool

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(), fn, *args)

    def warm_up(self) -> None:
        """Start the process now (it imports the configuration models once)."""
        if self._pool is None:
            self._executor().submit(_ping)

    def close(self) -> None:
        """Stop the process and wait for it: `b2bua run` ends with `os._exit`, and a pool
        left running then leaves its semaphores to the resource tracker, which warns about
        them ("leaked semaphore objects"). Queued work is cancelled; at most the call running
        is waited for."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _ping() -> bool:
    import b2bua.rules.week  # noqa: F401  (import what later calls need)

    return True


def validate(
    raw: Mapping[str, Any], file: str, base_dir: Path
) -> tuple[Config | None, list[ConfigIssue]]:
    """`config_from_dict` in the worker: (config, []) or (None, issues)."""
    try:
        return config_from_dict(raw, file=file, base_dir=base_dir), []
    except ConfigError as exc:
        return None, exc.issues


def week(
    config: Config, extension: str, caller: str, monday: date, lang: str = "en"
) -> dict[str, Any]:
    from b2bua.api.users import week_json
    from b2bua.rules import compile_rules

    return week_json(compile_rules(config), extension, caller, monday, lang)


def week_svg(
    config: Config, extension: str, caller: str, monday: date, lang: str = "en"
) -> str:
    from b2bua.rules import compile_rules
    from b2bua.rules.week import render_svg, sample_week

    return render_svg(sample_week(compile_rules(config), extension, caller, monday), lang)
