"""CPU per call of the B2BUA's own code, over the in-memory network (no sockets, no SIPp).

This isolates what the engine costs from the kernel and the load generator; the socket-level
figures come from scripts/bench-calls (SIPp forkbench, Kamailio as the reference).

It also reports the routing decision's share of that CPU: `RuleTable.decide` and the
`Decision.trace` the call record stores, timed around each call (the routing target: under 5%).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import pytest

from b2bua.config import config_from_text
from b2bua.rules.compiler import RuleTable
from b2bua.rules.model import Decision
from b2bua.testing.memory import (
    Agent,
    MemoryNetwork,
    ack_and_bye,
    build_b2bua,
    caller_invite,
    start_media,
)
from tests.unit.test_call_engine_memory import TRUNK, config

pytestmark = pytest.mark.bench

CALLS = 2000


class _Stopwatch:
    """Seconds spent inside the wrapped callables."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        clock = time.perf_counter  # (no waiting inside: wall time is CPU time, and cheaper to read)

        def timed(*args: Any) -> Any:
            t = clock()
            try:
                return fn(*args)
            finally:
                self.seconds += clock() - t

        return timed


@pytest.mark.parametrize("media", [False, True], ids=["signalling", "anchored"])
@pytest.mark.parametrize("devices", [1, 2, 3])
async def test_cpu_per_call_in_memory(
    devices: int, media: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    routing = _Stopwatch()
    monkeypatch.setattr(RuleTable, "decide", routing.wrap(RuleTable.decide))
    trace = Decision.trace.fget
    assert trace is not None
    monkeypatch.setattr(Decision, "trace", property(routing.wrap(trace)))
    network = MemoryNetwork()
    engine = build_b2bua(config_from_text(config(devices)), network, media=media)
    if media:
        await start_media(engine)
    for i in range(devices):
        Agent(network, ("127.0.0.1", 5071 + i), "answer" if i == 0 else "lose")
    caller = Agent(network, TRUNK, "caller")
    # As `b2bua run` does: the cyclic collector off, what exists at start-up frozen.
    gc.collect()
    gc.freeze()
    gc.disable()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(CALLS):
        caller.received.clear()
        invite = caller_invite("100", TRUNK)
        caller.send(invite)
        network.pump()
        ok = next(r for r in caller.responses() if r.status == 200 and r.cseq.method == "INVITE")
        ack, bye = ack_and_bye(invite, ok, TRUNK)
        caller.send(ack)
        caller.send(bye)
        network.pump()
    total_cpu = time.process_time() - c0
    gc.enable()
    gc.unfreeze()
    cpu = total_cpu - network.agent_cpu  # the B2BUA's own share
    wall = time.perf_counter() - t0
    assert engine.counters["answered"] == CALLS
    msgs = network.sent / CALLS
    print(
        f"\n[in-memory] devices={devices} {'anchored' if media else 'signalling'}: "
        f"{cpu / CALLS * 1000:.3f} ms CPU per call "
        f"(agents {network.agent_cpu / CALLS * 1000:.3f} ms, wall {wall / CALLS * 1000:.3f} ms), "
        f"{msgs:.1f} datagrams sent per call; routing decision and trace "
        f"{routing.seconds / CALLS * 1e6:.1f} µs per call, {routing.seconds / cpu:.1%} of the CPU"
    )
    assert routing.seconds > 0, "every call asks the rules"
    assert routing.seconds < 0.05 * cpu, "the routing decision's target: under 5% of the CPU"
    if media:
        assert not engine.bridge.engine.sessions  # every call's session was closed
        await engine.bridge.engine.close()
