"""Push benchmarks (run with `pytest -m bench tests/bench/test_push_bench.py -s`).

- 1,000 pushes at 20 per second through the push service to the APNs stand-in (HTTP/2 over TLS)
  and the FCM stand-in, alternately: how long `push()` holds the caller, and the time from
  `push()` to the provider's answer; every push delivered once;
- wake-up: a softphone registered over TCP with push parameters drops its connection; a push
  reaches the APNs stand-in, which wakes it; it connects again and REGISTERs (answering the
  digest challenge) to a real `b2bua run`: the time from the push leaving the push service to
  the 200 of that REGISTER, and one binding left at the end.

Both bounded in count and time, on loopback only.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from b2bua.push import CallEvent, Notification, PushTarget
from b2bua.push.apns import ApnsClient, ApnsCredentials
from b2bua.push.fcm import FcmClient, ServiceAccount
from b2bua.push.service import PushReport, PushService
from b2bua.testing.push_apns import ApnsStandIn, ReceivedPush
from b2bua.testing.push_fcm import FcmStandIn
from b2bua.testing.push_keys import make_apns_key, make_certificate, make_service_account
from b2bua.testing.push_phone import PushPhone
from b2bua.testing.server import start_server, write_config

pytestmark = pytest.mark.bench

TOPIC = "org.example.phone.voip"
PARAM = f"DEF123GHIJ.{TOPIC}"
N_PUSHES = int(os.environ.get("B2BUA_BENCH_PUSHES", "1000"))
RATE = 20.0
N_WAKES = int(os.environ.get("B2BUA_BENCH_WAKES", "50"))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def test_pushes_at_20_per_second(tmp_path: Path) -> None:
    key = make_apns_key(tmp_path)
    cert = make_certificate(tmp_path)
    apns = ApnsStandIn(key, certificate=cert)
    fcm = FcmStandIn()
    await apns.start()
    await fcm.start()
    fcm.trust(make_service_account(tmp_path, fcm.token_uri))
    assert fcm.account is not None
    tokens = [f"{i:064x}" for i in range(N_PUSHES)]
    for t in tokens:
        apns.add_device(t, TOPIC)
        fcm.add_device(t)
    service = PushService([
        ApnsClient(ApnsCredentials.load(key.key_file, key.key_id, key.team_id), url=apns.url,
                   verify=ssl.create_default_context(cafile=str(cert.cert_file))),
        FcmClient(ServiceAccount.load(fcm.account.path), url=fcm.url),
    ])
    handoff: list[float] = []
    reports: list[PushReport] = []
    tasks = []
    start = time.monotonic()
    try:
        for i, token in enumerate(tokens):
            await asyncio.sleep(max(0.0, start + i / RATE - time.monotonic()))
            target = (PushTarget("apns", token, PARAM) if i % 2 == 0
                      else PushTarget("fcm", token, "b2bua-test"))
            note = Notification(CallEvent.INCOMING, f"call-{i}@pbx", "0600000001", "Bench")
            t0 = time.perf_counter()
            tasks.append(service.push(target, note, reports.append))
            handoff.append(time.perf_counter() - t0)
        await asyncio.gather(*tasks)
    finally:
        await service.aclose()
        await apns.stop()
        await fcm.stop()
    assert all(r.result.delivered for r in reports) and len(reports) == N_PUSHES
    call_ids = [p.payload["call_id"] for p in apns.received] + [m.data["call_id"] for m in fcm.received]
    assert len(call_ids) == len(set(call_ids)) == N_PUSHES
    for provider in ("apns", "fcm"):
        lat = [r.latency * 1000 for r in reports if r.target.provider == provider]
        print(f"\n{provider}: {len(lat)} pushes, answer after p50 {pct(lat, .5):.1f} ms, "
              f"p99 {pct(lat, .99):.1f} ms, max {max(lat):.1f} ms")
    h = [x * 1e6 for x in handoff]
    print(f"push() returns after p50 {pct(h, .5):.0f} us, p99 {pct(h, .99):.0f} us, "
          f"max {max(h):.0f} us; {time.monotonic() - start:.1f} s for {N_PUSHES} pushes")


async def test_push_wakes_a_phone_that_registers_again(tmp_path: Path) -> None:
    key = make_apns_key(tmp_path)
    make_service_account(tmp_path, "http://127.0.0.1:9/token")
    apns = ApnsStandIn(key)
    await apns.start()
    config = write_config(tmp_path, f"""
        [server]
        domain = "pbx.test"
        data_dir = "var"
        auth_algorithms = ["SHA-256"]

        [registrar]
        keepalive_interval = 0

        [push.apns]
        key_file = "{key.key_file.name}"
        key_id = "{key.key_id}"
        team_id = "{key.team_id}"
        url = "{apns.url}"

        [[users]]
        extension = "1001"
        name = "Alice Martin"
        secret = "secret1001"

          [[users.devices]]
          type = "softphone"
          label = "Mobile"
    """)
    server = start_server(config)
    token = "ab" * 32
    apns.add_device(token, TOPIC)
    phone = PushPhone(server.sip, "1001", "secret1001", domain="pbx.test",
                      push=PushTarget("apns", token, PARAM))
    service = PushService([ApnsClient(
        ApnsCredentials.load(key.key_file, key.key_id, key.team_id), url=apns.url)])
    woken: asyncio.Queue[ReceivedPush] = asyncio.Queue()
    apns.on_push = woken.put_nowait
    push_to_ok: list[float] = []
    push_to_arrival: list[float] = []
    try:
        assert (await phone.register()).status == 200
        for i in range(N_WAKES):
            await phone.close()
            sent = time.monotonic()
            service.push(PushTarget("apns", token, PARAM),
                         Notification(CallEvent.INCOMING, f"wake-{i}", "0600000001", "Bench"))
            push = await asyncio.wait_for(woken.get(), 5)
            push_to_arrival.append(push.at - sent)
            response = await phone.register()
            assert response.status == 200 and len(response.headers.values("contact")) == 1
            push_to_ok.append(time.monotonic() - sent)
        out = subprocess.run(
            [sys.executable, "-m", "b2bua", "devices", "--config", str(config), "--json"],
            capture_output=True, text=True, timeout=30, check=True)
        rows = [r for r in json.loads(out.stdout)[0]["devices"] if r["state"] != "offline"]
        assert len(rows) == 1 and rows[0]["state"] == "registered"  # no leaked binding
    finally:
        await phone.close()
        await service.aclose()
        server.stop()
        await apns.stop()
    a = [x * 1000 for x in push_to_arrival]
    w = [x * 1000 for x in push_to_ok]
    print(f"\n{N_WAKES} wake-ups: push() to APNs stand-in p50 {pct(a, .5):.1f} ms, "
          f"p99 {pct(a, .99):.1f} ms; push() to the 200 of the re-REGISTER (new TCP connection, "
          f"401 + REGISTER) p50 {pct(w, .5):.1f} ms, p99 {pct(w, .99):.1f} ms, "
          f"mean {statistics.mean(w):.1f} ms")
