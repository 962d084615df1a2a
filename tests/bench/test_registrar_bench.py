"""Registrar benchmarks (run with `pytest -m bench tests/bench/test_registrar_bench.py -s`).

- authenticated REGISTER handled per second on one core, in-process (parse + digest check +
  binding update + SQLite commit + 200 built and serialized; no sockets);
- memory per binding with 100,000 bindings loaded;
- restart time: a new registrar loading 100,000 bindings from SQLite.
"""

from __future__ import annotations

import gc
import itertools
import time
import tracemalloc
import uuid
from pathlib import Path

import pytest

from b2bua.registrar import (
    Binding,
    DeviceSpec,
    MemoryLocationStore,
    Registrar,
    RegistrarSettings,
    SqliteLocationStore,
    UserAccount,
)
from b2bua.registrar.digest import answer_challenge
from b2bua.registrar.model import LocationStore
from b2bua.sip.flow import Flow
from b2bua.sip.message import Request, parse_message
from b2bua.store import open_database

pytestmark = pytest.mark.bench

DOMAIN = "pbx.local"
N_BINDINGS = 100_000
USER_AGENTS = ("Yealink SIP-T46U 108.86.0.20", "Linphone/5.2.0", "baresip v3.10", "Zoiper 5")


def _random(n: int) -> bytes:
    return uuid.uuid4().bytes[:n] if n <= 16 else uuid.uuid4().bytes * (n // 16 + 1)


def _users(count: int) -> list[UserAccount]:
    return [
        UserAccount(
            str(10000 + i),
            f"User {i}",
            f"secret-{i}",
            (
                DeviceSpec("sip", "Desk"),
                DeviceSpec("softphone", "Mobile"),
                DeviceSpec("sip", "Meeting"),
                DeviceSpec("other", "Spare"),
            ),
        )
        for i in range(count)
    ]


def _registrar(
    store: LocationStore, users: list[UserAccount], algorithms: tuple[str, ...]
) -> Registrar:
    return Registrar(
        RegistrarSettings(DOMAIN, auth_algorithms=algorithms, lockout_failures=10**9),
        users,
        store,
        nonce_key=b"b" * 32,
        random_bytes=_random,
    )


def _request(ext: str, src: tuple[str, int], cseq: int, call_id: str, auth: str | None) -> bytes:
    host, port = src
    lines = [
        f"REGISTER sip:{DOMAIN} SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{call_id[:8]}{cseq};rport",
        f"From: <sip:{ext}@{DOMAIN}>;tag=ft{cseq}",
        f"To: <sip:{ext}@{DOMAIN}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{ext}@192.168.1.{cseq % 250}:5060;transport=udp>;"
        f'+sip.instance="<urn:uuid:{call_id}>"',
        "Expires: 3600",
        "Max-Forwards: 70",
        "User-Agent: Linphone/5.2.0",
        "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO",
    ]
    if auth:
        lines.append(f"Authorization: {auth}")
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


def _register_rate(
    store: LocationStore, algorithm: str, phones: int = 500, rounds: int = 10
) -> float:
    users = _users(phones)
    reg = _registrar(store, users, (algorithm,))
    now = 1_700_000_000.0
    batches: list[list[tuple[bytes, Flow]]] = []
    plan: list[tuple[str, Flow, str, str]] = []
    for i, user in enumerate(users):
        flow = Flow("udp", f"203.0.{i // 250}.{i % 250 + 1}", 40000 + i)
        call_id = str(uuid.uuid4())
        first = parse_message(_request(user.extension, flow.remote, 1, call_id, None))
        assert isinstance(first, Request)
        challenge = reg.handle_register(first, flow, now).headers.get("WWW-Authenticate")
        assert challenge
        plan.append((user.extension, flow, call_id, challenge))
    for r in range(rounds):
        batch = []
        for ext, flow, call_id, challenge in plan:
            auth = answer_challenge(
                challenge,
                username=ext,
                password=f"secret-{int(ext) - 10000}",
                method="REGISTER",
                uri=f"sip:{DOMAIN}",
                cnonce="abc",
                nc=r + 1,
            )
            batch.append((_request(ext, flow.remote, r + 2, call_id, auth), flow))
        batches.append(batch)
    count = 0
    start = time.process_time()
    for batch in batches:
        for data, flow in batch:
            msg = parse_message(data)
            assert isinstance(msg, Request)
            resp = reg.handle_register(msg, flow, now + 1)
            bytes(resp)
            count += 1
    elapsed = time.process_time() - start
    assert reg.counters["register_ok"] == count
    return count / elapsed


def test_register_rate(tmp_path: Path) -> None:
    sqlite_rate = _register_rate(SqliteLocationStore(open_database(tmp_path)), "SHA-256")
    memory_rate = _register_rate(MemoryLocationStore(), "SHA-256")
    md5_rate = _register_rate(SqliteLocationStore(open_database(tmp_path / "md5")), "MD5")
    print(
        f"\nauthenticated REGISTER per CPU-second: SHA-256 + SQLite {sqlite_rate:,.0f}, "
        f"MD5 + SQLite {md5_rate:,.0f}, SHA-256 + memory store {memory_rate:,.0f}"
    )
    assert sqlite_rate > 1000


def _synthetic_bindings(count: int, now: float) -> list[Binding]:
    out = []
    seq = itertools.count()
    for i in range(count):
        ext = str(10000 + i // 4)
        call_id = str(uuid.uuid4())
        instance = f"<urn:uuid:{uuid.uuid4()}>" if i % 2 else None
        contact = f"sip:{ext}@192.168.{i % 200}.{i % 250 + 1}:5060;transport=udp"
        key = (
            f"{ext}|i:{instance}"
            if instance
            else f"{ext}|c:sip:{ext}@192.168.{i % 200}.{i % 250 + 1}:5060;transport=udp"
        )
        out.append(
            Binding(
                aor=ext,
                username=ext,
                key=key,
                contact=contact,
                flow=Flow(
                    "udp",
                    f"100.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
                    1024 + next(seq) % 60000,
                    None,
                    "198.51.100.1",
                    5060,
                ),
                expires_at=now + 600 + i % 3000,
                call_id=call_id,
                cseq=1 + i % 100,
                instance=instance,
                user_agent=USER_AGENTS[i % 4],
                device=i % 4,
                last_seen=now,
                registered_at=now,
            )
        )
    return out


def test_load_and_memory_at_100k(tmp_path: Path) -> None:
    now = 1_700_000_000.0
    users = _users(N_BINDINGS // 4)
    conn = open_database(tmp_path)
    store = SqliteLocationStore(conn)
    t = time.perf_counter()
    rows = _synthetic_bindings(N_BINDINGS, now)
    for i in range(0, len(rows), 10_000):
        store.apply(rows[i : i + 10_000], [])
    write_s = time.perf_counter() - t
    del rows
    conn.close()
    gc.collect()

    # Restart time: users (HA1 precomputation included separately) then the bindings.
    conn = open_database(tmp_path)
    reg = _registrar(SqliteLocationStore(conn), users, ("SHA-256", "MD5"))
    t, cpu = time.perf_counter(), time.process_time()
    loaded = reg.restore(now + 1)
    load_s, load_cpu = time.perf_counter() - t, time.process_time() - cpu
    assert loaded == N_BINDINGS
    del reg
    conn.close()
    gc.collect()

    # Memory: what the loaded bindings add to a registrar that already has its users.
    conn = open_database(tmp_path)
    reg = _registrar(SqliteLocationStore(conn), users, ("SHA-256", "MD5"))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    reg.restore(now + 1)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    per_binding = (after - before) / N_BINDINGS

    t = time.perf_counter()
    for i in range(1000):
        reg.lookup(str(10000 + i), now + 2)
    lookup_us = (time.perf_counter() - t) / 1000 * 1e6
    print(
        f"\n100,000 bindings: written in {write_s:.2f} s, restart load {load_s:.2f} s "
        f"({load_cpu:.2f} s CPU), "
        f"{per_binding:,.0f} B per binding, lookup {lookup_us:.1f} us"
    )
    assert load_cpu < 3.0  # CPU time: other tenants of the machine do not count
    assert per_binding < 2048
