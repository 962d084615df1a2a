"""OPTIONS transactions per second over UDP, driven by SIPp at a rate sweep (zero failures).

Each step is bounded (rate x seconds calls) and stops by itself; the highest rate whose step had
no failed transaction is reported, with the server's CPU per transaction.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from b2bua.testing.net import free_port
from b2bua.testing.server import start_server, write_config
from b2bua.testing.sipp import run_sipp

pytestmark = pytest.mark.bench

SCENARIO = (Path(__file__).parent.parent / "integration" / "scenarios" / "options.xml").read_text()
RATES = [int(r) for r in os.environ.get("BENCH_OPTIONS_RATES", "1000,3000,5000,6000,8000").split(",")]
SECONDS = float(os.environ.get("BENCH_OPTIONS_SECONDS", "4"))


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_options_rate_sweep(tmp_path: Path) -> None:
    config = write_config(tmp_path, """
        [server]
        domain = "pbx.bench"
        listen = ["udp:127.0.0.1:5060"]
        data_dir = "var"
    """)
    server = start_server(config, extra_args=("--log-level", "WARNING"))
    best = 0
    try:
        for rate in RATES:
            calls = int(rate * SECONDS)
            cpu0 = _cpu(server.process.pid)
            t0 = time.monotonic()
            result = run_sipp(SCENARIO, tmp_path / f"r{rate}", server.sip, local_port=free_port(),
                              calls=calls, rate=rate, trace=False, timeout_s=int(SECONDS * 4) + 10,
                              wait=SECONDS * 6 + 30, extra=("-l", str(rate * 2)))
            elapsed = time.monotonic() - t0
            cpu = _cpu(server.process.pid) - cpu0
            achieved = calls / elapsed
            # Sustained: SIPp kept (nearly) the offered rate; otherwise it throttled itself.
            ok = result.ok and achieved >= 0.85 * rate
            print(f"\n[options] rate={rate}/s calls={calls}: {'PASS' if ok else 'FAIL'}, "
                  f"achieved {achieved:.0f}/s, server CPU {cpu:.2f} s "
                  f"({cpu / calls * 1e6:.0f} us per transaction)")
            if not ok:
                break
            best = rate
    finally:
        server.stop()
    print(f"[options] highest rate with zero failures: {best}/s")
    assert best > 0
