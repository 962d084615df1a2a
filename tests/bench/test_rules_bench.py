"""Rules engine benchmark: 10,000 users, each with 4 office-hour ranges, 10 exceptional periods
and 15 caller-ID exceptions. Prints load and compile time, decide() latency and memory.

Targets: decide() median < 3 µs and p99 < 10 µs; compile < 2 s (asserted with a wide margin
only, the machine being shared). decide() is timed with the instant as UTC epoch seconds, the
form the call engine passes, then again (same calls, same table) as an aware datetime. The
table's memory is measured last, on a second compile under tracemalloc, so that tracing does
not change the layout of the table whose latency is measured.
Run with `scripts/bench` (or `pytest -m bench -s tests/bench/test_rules_bench.py`).
"""

from __future__ import annotations

import asyncio
import gc
import random
import resource
import statistics
import time
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from b2bua.config import config_from_dict
from b2bua.rules import compile_rules

USERS = 10_000
CALLS = 200_000
ZONES = ["Europe/Paris"] * 8 + ["America/New_York", "Asia/Tokyo"]
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _user(rng: random.Random, i: int) -> dict[str, Any]:
    ext = str(10000 + i)
    hours = [
        {"start": f"0{rng.choice([7, 8, 9])}:{rng.choice(['00', '30'])}", "end": "12:30",
         "days": DAYS[:5], "months": "all"},
        {"start": "13:30", "end": f"1{rng.choice([6, 7, 8])}:00", "days": DAYS[:4], "months": "all"},
        {"start": "13:30", "end": "16:00", "days": ["fri"], "months": rng.choice(["all", [7, 8]])},
        {"start": "22:00", "end": "06:00", "days": rng.sample(DAYS, 2), "months": [1, 2, 3, 10, 11, 12]},
    ]  # fmt: skip
    periods = []
    for j in range(10):
        first = date(2026, rng.randint(1, 12), rng.randint(1, 28))
        last = first + timedelta(days=rng.randint(1, 20))
        kind = j % 4
        if kind == 0:  # a yearly day (public holiday)
            dates = [f"{first:%m-%d}"]
        elif kind == 1:  # a yearly range, may cross New Year
            dates = [f"{first:%m-%d}..{last:%m-%d}"]
        elif kind == 2:  # a one-off day
            dates = [first.isoformat()]
        else:  # a one-off range
            dates = [f"{first.isoformat()}..{last.isoformat()}"]
        p: dict[str, Any] = {
            "name": f"P{j}",
            "dates": dates,
            "destination": {"kind": rng.choice(["voicemail", "busy"])},
        }
        if rng.random() < 0.4:
            p["start"], p["end"] = "08:00", rng.choice(["17:00", "02:00"])
        periods.append(p)
    exceptions = []
    for j in range(15):
        pattern = rng.choice(
            [f"06{rng.randint(10, 99)}*", f"0{rng.randint(100000000, 999999999)}",
             f"+33{rng.randint(1, 9)}{rng.randint(10, 99)}*", f"0{rng.randint(1, 5)}* 07*"]
        )  # fmt: skip
        if j == 14 and rng.random() < 0.3:
            pattern = "*"
        exceptions.append({"callers": pattern, "destination": {"kind": "mobile", "bounce": True}})
    return {
        "extension": ext,
        "name": f"User {i}",
        "secret": "s",
        "mobile": "0600000001",
        "timezone": rng.choice(ZONES),
        "forward": {"kind": "external", "number": "0611111111"} if i % 10 == 0 else None,
        "schedule": {
            "enabled": i % 50 != 0,
            "closed": {"kind": "voicemail"},
            "hours": hours,
            "exceptional": periods,
        },
        "exceptions": exceptions,
    }


def _config_dict() -> dict[str, Any]:
    rng = random.Random(42)
    users = [_user(rng, i) for i in range(USERS)]
    for u in users:
        if u["forward"] is None:
            del u["forward"]
    return {
        "server": {"domain": "bench", "timezone": "Europe/Paris", "country_code": "33"},
        "users": users,
    }


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


@pytest.mark.bench
def test_rules_bench() -> None:
    data = _config_dict()
    t0 = time.perf_counter()
    config = config_from_dict(data)
    load = time.perf_counter() - t0

    gc.collect()
    t0 = time.perf_counter()
    table = compile_rules(config)
    compile_s = time.perf_counter() - t0

    rng = random.Random(7)
    exts = [str(10000 + rng.randrange(USERS)) for _ in range(CALLS)]
    callers = [
        rng.choice(["0612345678", "+33 6 98 76 54 32", "0142000000", "", "0712345678",
                    f"0{rng.randint(100000000, 999999999)}"])
        for _ in range(CALLS)
    ]  # fmt: skip
    start = datetime(2026, 1, 1, tzinfo=UTC)
    whens = [start + timedelta(seconds=rng.randrange(365 * 86400)) for _ in range(CALLS)]

    clock = time.perf_counter_ns
    overhead = statistics.median(
        [-(clock() - clock()) for _ in range(10_000)]
    )  # cost of one timer read pair

    def latency(decide: Any, instants: list[Any]) -> tuple[float, float]:
        for i in range(20_000):  # warm the memo of days, offsets and numbers
            decide(exts[i], callers[i], instants[i])
        samples = []
        gc.disable()
        try:
            for ext, caller, when in zip(exts, callers, instants, strict=True):
                t = clock()
                decide(ext, caller, when)
                samples.append(clock() - t - overhead)
        finally:
            gc.enable()
        samples.sort()
        return samples[len(samples) // 2] / 1000, samples[int(len(samples) * 0.99)] / 1000

    decide = table.decide
    seconds = [w.timestamp() for w in whens]
    median, p99 = latency(decide, seconds)
    dt_median, dt_p99 = latency(decide, whens)
    # The same calls, all to one user: the cost of the code without cache misses on user data.
    hot = []
    gc.disable()
    try:
        for caller, when in zip(callers[:50_000], seconds[:50_000], strict=True):
            t = clock()
            decide(exts[0], caller, when)
            hot.append(clock() - t - overhead)
    finally:
        gc.enable()
    hot.sort()
    hot_median = hot[len(hot) // 2] / 1000
    hot_p99 = hot[int(len(hot) * 0.99)] / 1000
    t0 = time.perf_counter()
    for ext, caller, when in zip(exts, callers, seconds, strict=True):
        decide(ext, caller, when)
    throughput = CALLS / (time.perf_counter() - t0)

    rules: dict[str, int] = {}
    for i in range(5000):
        r = decide(exts[i], callers[i], whens[i]).rule
        rules[r] = rules.get(r, 0) + 1

    del table, decide
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    table2 = compile_rules(config)
    retained, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert table2.stats.users == USERS

    print()
    print(f"rules bench: {USERS} users x (4 hours, 10 periods, 15 exceptions)")
    print(f"  load+validate config : {load:.2f} s")
    print(f"  compile              : {compile_s:.2f} s   (target < 2 s)")
    print(f"  table memory         : {_mb(retained - before)} retained, {_mb(peak - before)} peak")
    print(
        f"  process max RSS      : {_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)}"
    )
    print(f"  decide() median      : {median:.2f} µs  (target < 3 µs; epoch seconds)")
    print(f"  decide() p99         : {p99:.2f} µs  (target < 10 µs)")
    print(f"  ... aware datetime   : median {dt_median:.2f} µs, p99 {dt_p99:.2f} µs")
    print(
        f"  decide() throughput  : {throughput:,.0f} calls/s (timer overhead {overhead} ns removed)"
    )
    print(f"  one user, cache-hot  : median {hot_median:.2f} µs, p99 {hot_p99:.2f} µs")
    print(f"  rule mix (5000 calls): {dict(sorted(rules.items()))}")
    assert sum(rules.values()) == 5000
    # The targets, with a wide margin: the machine is shared and its figures are noisy (the
    # lines above print the real ones). A regression by a large factor still fails here.
    assert median < 2 * 3, f"decide() median {median:.2f} µs"
    assert p99 < 3 * 10, f"decide() p99 {p99:.2f} µs"
    assert compile_s < 2.5 * 2, f"compile {compile_s:.2f} s"


async def _loop_lag_while(work: Any) -> tuple[float, float, float]:
    """(seconds `work` took, p99 and worst lateness in ms of a 1 ms sleep on the loop)."""
    lags: list[float] = []
    running = True

    async def tick() -> None:
        while running:
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - t - 0.001)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    t0 = time.perf_counter()
    await work()
    took = time.perf_counter() - t0
    running = False
    await ticker
    lags.sort()
    return took, lags[len(lags) * 99 // 100] * 1000, lags[-1] * 1000


@pytest.mark.bench
async def test_compile_in_a_thread_keeps_the_loop_serving() -> None:
    """A dashboard change compiles its table in a thread (b2bua.api.common.Dashboard.compile):
    how late the loop runs meanwhile, against compiling on the loop itself."""
    config = config_from_dict(_config_dict())

    async def on_loop() -> None:
        compile_rules(config)

    async def in_thread() -> None:
        await asyncio.to_thread(compile_rules, config)

    took, p99, worst = await _loop_lag_while(on_loop)
    print(f"\n  compile on the loop  : {took:.2f} s, loop lag p99 {p99:.1f} ms, worst {worst:.0f} ms")
    t_took, t_p99, t_worst = await _loop_lag_while(in_thread)
    print(f"  compile in a thread  : {t_took:.2f} s, loop lag p99 {t_p99:.1f} ms, "
          f"worst {t_worst:.0f} ms")
    assert t_p99 < p99 / 10, "the loop should keep running while a thread compiles"
