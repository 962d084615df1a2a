"""Does the dashboard slow SIP down? SIP OPTIONS round-trip latency against `b2bua run`, alone
and while another process loads the REST API (reads, routing tests, week pictures, and a settings
change now and then, which recompiles and swaps the rules).

Run: .venv/bin/python -m pytest -m bench tests/api/test_http_sip_bench.py -s
Bounded: each phase lasts PHASE_SECONDS; the load process stops by itself.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import time

import pytest

from tests.api.helpers import start

pytestmark = pytest.mark.bench

PHASE_SECONDS = 8.0
LOAD = r"""
import asyncio, sys, time, json
import aiohttp

BASE, SECONDS, CONCURRENCY = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])

async def worker(session, csrf, n, counts, stop):
    paths = ["/api/users/1001", "/api/users/1001/devices", "/api/options",
             "/api/users/1001/trace?caller=0611223344", "/api/users/1001/calls",
             "/api/users/1001/voicemail", "/api/music"]
    i = n
    while time.monotonic() < stop:
        i += 1
        if i % 97 == 0:
            method, path, body = "PATCH", "/api/users/1001", {"ring_timeout": 15 + i % 10}
        elif i % 41 == 0:
            method, path, body = "GET", "/api/users/1001/week", None
        else:
            method, path, body = "GET", paths[i % len(paths)], None
        async with session.request(method, BASE + path, json=body,
                                   headers={"X-CSRF-Token": csrf}) as r:
            await r.read()
            counts[r.status] = counts.get(r.status, 0) + 1

async def main():
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as s:
        async with s.post(BASE + "/api/login", json={"login": "1001", "password": "secret1001"}) as r:
            csrf = (await r.json())["csrf_token"]
        counts = {}
        t0 = time.monotonic()
        stop = t0 + SECONDS
        await asyncio.gather(*(worker(s, csrf, n, counts, stop) for n in range(CONCURRENCY)))
        print(json.dumps({"seconds": time.monotonic() - t0, "counts": counts}))

asyncio.run(main())
"""


def _options_rtts(target: tuple[str, int], seconds: float) -> list[float]:
    """Sequential OPTIONS for `seconds`: one in flight at a time, every reply timed."""
    rtts: list[float] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(2.0)
        port = s.getsockname()[1]
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            n += 1
            probe = (
                f"OPTIONS sip:{target[0]}:{target[1]} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKbench{n};rport\r\n"
                f"From: <sip:bench@127.0.0.1>;tag=b{n}\r\nTo: <sip:{target[0]}>\r\n"
                f"Call-ID: bench-{n}-{port}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode()
            t0 = time.perf_counter()
            s.sendto(probe, target)
            try:
                s.recvfrom(65535)
            except TimeoutError:
                rtts.append(2.0)
                continue
            rtts.append(time.perf_counter() - t0)
            time.sleep(0.002)  # about 400 probes a second, not a flood
    return rtts


def _summary(rtts: list[float]) -> dict[str, float]:
    ms = sorted(x * 1000 for x in rtts)
    return {
        "n": len(ms),
        "p50": statistics.median(ms),
        "p99": ms[int(len(ms) * 0.99) - 1],
        "max": ms[-1],
    }


def test_sip_options_latency_with_and_without_http_load(tmp_path):
    server = start(tmp_path)
    try:
        _options_rtts(server.sip, 1.0)  # warm up
        idle = _summary(_options_rtts(server.sip, PHASE_SECONDS))
        load = subprocess.Popen(
            [sys.executable, "-c", LOAD, server.http_base, str(PHASE_SECONDS + 1), "8"],
            stdout=subprocess.PIPE, text=True,
        )
        time.sleep(0.5)
        busy = _summary(_options_rtts(server.sip, PHASE_SECONDS))
        out, _ = load.communicate(timeout=PHASE_SECONDS + 30)
    finally:
        server.stop()
    import json

    stats = json.loads(out.strip().splitlines()[-1])
    requests = sum(stats["counts"].values())
    rate = requests / stats["seconds"]
    print(f"\nSIP OPTIONS RTT, idle:      n={idle['n']} p50={idle['p50']:.2f} ms "
          f"p99={idle['p99']:.2f} ms max={idle['max']:.2f} ms")
    print(f"SIP OPTIONS RTT, HTTP load: n={busy['n']} p50={busy['p50']:.2f} ms "
          f"p99={busy['p99']:.2f} ms max={busy['max']:.2f} ms")
    print(f"HTTP load: {requests} requests in {stats['seconds']:.1f} s ({rate:.0f}/s), "
          f"statuses {stats['counts']}")
    assert set(stats["counts"]) == {"200"}, stats
    assert rate > 100
    assert busy["p99"] < 25.0, busy
    assert busy["max"] < 2000, busy  # no OPTIONS lost
