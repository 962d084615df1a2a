"""Scale of one node over PostgreSQL (`pytest -m bench tests/cluster/test_cluster_bench.py -s`).

The provider's shape: 1,000 companies x 20 users x 3 devices = 60,000 bindings, written into a
real PostgreSQL, then:

- node start: the bindings read from PostgreSQL (`PgLocationStore.preload`) and installed
  (`Registrar.restore`), wall and CPU time;
- memory per binding in the node (tracemalloc: what the loaded bindings add);
- authenticated REGISTER refreshes per second through the async seam (`RegisterShell`: parse,
  digest, group commit in PostgreSQL with its notice, 200 built), 200 in flight at a time;
- the rule compile of one company's change (its 20 users, office hours, exceptional periods,
  caller exceptions), and, for comparison, of the whole installation at once.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import pytest

from b2bua.config import config_from_dict
from b2bua.pgstore.db import SharedDatabase
from b2bua.pgstore.location import _COLUMNS, PgLocationStore, binding_row
from b2bua.registrar import DeviceSpec, Registrar, RegistrarSettings, UserAccount
from b2bua.registrar.digest import answer_challenge
from b2bua.registrar.model import Binding
from b2bua.registrar.shell import RegisterShell
from b2bua.rules import compile_rules
from b2bua.sip.flow import Flow
from b2bua.sip.message import Request, parse_message

pytestmark = pytest.mark.bench

COMPANIES, USERS, DEVICES = 1000, 20, 3
DOMAIN = "pbx.local"
NOW = 1_700_000_000.0
AGENTS = ("Yealink SIP-T46U 108.86.0.20", "Linphone/5.2.0", "Zoiper 5")


def _ext(company: int, user: int) -> str:
    return f"{company:03d}{user:02d}"


def _accounts() -> list[UserAccount]:
    return [UserAccount(_ext(c, u), f"User {c}-{u}", f"s-{c}-{u}",
                        (DeviceSpec("sip", "Desk"), DeviceSpec("softphone", "Mobile"),
                         DeviceSpec("sip", "Meeting")))
            for c in range(COMPANIES) for u in range(USERS)]


def _bindings() -> list[Binding]:
    out: list[Binding] = []
    i = 0
    for c in range(COMPANIES):
        for u in range(USERS):
            ext = _ext(c, u)
            for d in range(DEVICES):
                i += 1
                instance = f"<urn:uuid:{uuid.uuid4()}>"
                out.append(Binding(
                    aor=ext, username=ext, key=f"{ext}|i:{instance}",
                    contact=f"sip:{ext}@192.168.{i % 200}.{i % 250 + 1}:5060;transport=udp",
                    flow=Flow("udp", "10.1.0.1", 5060), expires_at=NOW + 600 + i % 3000,
                    call_id=str(uuid.uuid4()), cseq=1 + i % 100, instance=instance,
                    user_agent=AGENTS[d], path=("<sip:10.1.0.1;lr;received=sip:"
                                                f"100.{i // 65536 % 256}.{i // 256 % 256}."
                                                f"{i % 256}:{1024 + i % 60000}>",),
                    device=d, last_seen=NOW, registered_at=NOW,
                ))
    return out


def _registrar(store: Any, users: list[UserAccount]) -> Registrar:
    return Registrar(RegistrarSettings(DOMAIN, auth_algorithms=("SHA-256",),
                                       lockout_failures=10**9, keepalive_interval=0),
                     users, store, nonce_key=b"k" * 32, random_bytes=os.urandom)


def _request(ext: str, cseq: int, call_id: str, auth: str | None) -> Request:
    lines = [
        f"REGISTER sip:{DOMAIN} SIP/2.0",
        f"Via: SIP/2.0/UDP 10.1.0.1:5060;branch=z9hG4bK{call_id[:8]}{cseq};rport",
        f"From: <sip:{ext}@{DOMAIN}>;tag=ft{cseq}",
        f"To: <sip:{ext}@{DOMAIN}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        f'Contact: <sip:{ext}@192.168.1.7:5060>;+sip.instance="<urn:uuid:{call_id}>"',
        "Path: <sip:10.1.0.1;lr;received=sip:203.0.113.9:40000>",
        "Supported: path",
        "Expires: 3600",
        "Max-Forwards: 70",
        "User-Agent: Linphone/5.2.0",
    ]
    if auth:
        lines.append(f"Authorization: {auth}")
    msg = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(msg, Request)
    return msg


async def _write(db: SharedDatabase, rows: list[Binding]) -> float:
    t = time.perf_counter()
    columns = [c.strip() for c in _COLUMNS.split(",")]
    async with db.pool.acquire() as conn:
        await conn.copy_records_to_table("registrar_bindings", columns=columns,
                                         records=[binding_row(b, "bench") for b in rows])
    return time.perf_counter() - t


async def _refresh_rate(db: SharedDatabase, users: list[UserAccount], phones: int = 4000,
                        in_flight: int = 200) -> tuple[float, float]:
    """(REGISTER/s wall, REGISTER per CPU-second) of authenticated refreshes."""
    store = PgLocationStore(db.pool, db.writer, "bench")
    reg = _registrar(store, users[:phones])
    shell = RegisterShell(reg, store, clock=lambda: NOW)
    flow = Flow("udp", "10.1.0.1", 5060)
    plan = []
    for user in users[:phones]:
        call_id = str(uuid.uuid4())
        challenge = (await shell.register(_request(user.extension, 1, call_id, None), flow)
                     ).headers.get("WWW-Authenticate")
        assert challenge
        auth = answer_challenge(challenge, username=user.extension, password=user.secret,
                                method="REGISTER", uri=f"sip:{DOMAIN}", cnonce="c", nc=1)
        plan.append(_request(user.extension, 2, call_id, auth))
    gate = asyncio.Semaphore(in_flight)

    async def one(request: Request) -> int:
        async with gate:
            return (await shell.register(request, flow)).status

    t, cpu = time.perf_counter(), time.process_time()
    statuses = await asyncio.gather(*(one(r) for r in plan))
    wall, used = time.perf_counter() - t, time.process_time() - cpu
    assert statuses.count(200) == phones, {s: statuses.count(s) for s in set(statuses)}
    return phones / wall, phones / used


def _company(c: int) -> list[dict[str, Any]]:
    """One company's 20 users, each with its own hours, holidays and caller exceptions (no two
    alike, so nothing is shared with another company's compile)."""
    users = []
    for u in range(USERS):
        month, day = 1 + (c + u) % 12, 1 + (c * 7 + u) % 28
        users.append({
            "extension": _ext(c, u), "name": f"User {c}-{u}", "secret": f"s-{c}-{u}",
            "devices": [{"type": "sip", "label": "Desk"}, {"type": "softphone", "label": "M"},
                        {"type": "sip", "label": "Meeting"}],
            "schedule": {
                "enabled": True, "closed": {"kind": "voicemail"},
                "hours": [
                    {"start": f"08:{u:02d}", "end": f"12:{c % 60:02d}",
                     "days": ["mon", "tue", "wed", "thu", "fri"], "months": "all"},
                    {"start": f"13:{(c + u) % 60:02d}", "end": "17:30",
                     "days": ["mon", "tue", "wed", "thu"], "months": [1 + c % 12, 1 + u % 12]},
                ],
                "exceptional": [
                    {"name": "Noël", "dates": ["12-24..01-01"],
                     "destination": {"kind": "voicemail"}},
                    {"name": "Fermeture", "dates": [f"2027-{month:02d}-{day:02d}"],
                     "start": "09:00", "end": f"1{u % 10}:00",
                     "destination": {"kind": "busy"}},
                ],
            },
            "exceptions": [{"callers": f"06{c % 10}{u % 10}* 07*",
                            "destination": {"kind": "devices"}}],
        })
    return users


def _config(companies: int, tmp_path: Path) -> Any:
    raw = {"server": {"domain": DOMAIN, "data_dir": str(tmp_path)},
           "users": [u for c in range(companies) for u in _company(c)]}
    return config_from_dict(raw, file="bench.toml", base_dir=tmp_path)


def test_sixty_thousand_bindings_over_postgresql(pg_url: str, tmp_path: Path) -> None:
    async def run() -> dict[str, float]:
        db = await SharedDatabase.open(pg_url)
        try:
            users = _accounts()
            rows = _bindings()
            figures = {"write_s": await _write(db, rows)}
            del rows
            gc.collect()
            # Node start: read every row, install them.
            store = PgLocationStore(db.pool, db.writer, "node")
            reg = _registrar(store, users)
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            t, cpu = time.perf_counter(), time.process_time()
            await store.preload(NOW + 1)
            loaded = reg.restore(NOW + 1)
            figures["start_s"] = time.perf_counter() - t
            figures["start_cpu_s"] = time.process_time() - cpu
            gc.collect()
            figures["bytes_per_binding"] = (tracemalloc.get_traced_memory()[0] - before) / loaded
            tracemalloc.stop()
            assert loaded == COMPANIES * USERS * DEVICES
            del reg, store
            gc.collect()
            figures["register_wall"], figures["register_cpu"] = await _refresh_rate(db, users)
            return figures
        finally:
            await db.close()

    f = asyncio.run(run())
    times = []
    for c in range(20):  # a different company each time: nothing warm from the last one
        raw = {"server": {"domain": DOMAIN, "data_dir": str(tmp_path)}, "users": _company(c)}
        one = config_from_dict(raw, file="bench.toml", base_dir=tmp_path)
        t = time.perf_counter()
        compile_rules(one)
        times.append(time.perf_counter() - t)
    times.sort()
    compile_one_ms = times[len(times) // 2] * 1000
    everyone = _config(COMPANIES, tmp_path)
    t = time.perf_counter()
    compile_rules(everyone)
    compile_all_s = time.perf_counter() - t
    print(
        f"\n60,000 bindings (1,000 x 20 x 3) in PostgreSQL: written (COPY) in {f['write_s']:.2f} s;"
        f" node start {f['start_s']:.2f} s ({f['start_cpu_s']:.2f} s CPU);"
        f" {f['bytes_per_binding']:,.0f} B per binding in the node;"
        f"\nauthenticated REGISTER refreshes through PostgreSQL: {f['register_wall']:,.0f}/s"
        f" wall, {f['register_cpu']:,.0f} per CPU-second of the node (200 in flight);"
        f"\nrule compile: one company's 20 users {compile_one_ms:.1f} ms (median of 20),"
        f" all 20,000 users at once {compile_all_s:.2f} s"
    )
    assert f["bytes_per_binding"] < 2048
    assert f["register_wall"] > 500
