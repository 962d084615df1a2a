"""The location store's contract, run against both backends: SQLite (one host) and PostgreSQL
(shared by several nodes, a real server). REGISTERs go through the async seam
(`RegisterShell`), as a multi-node server runs them; two "nodes" are two registrars over the
same store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from b2bua.registrar import Registrar, SqliteLocationStore, StoreBatch
from b2bua.registrar.model import Binding, StoreError
from b2bua.registrar.shell import RegisterShell
from b2bua.sip.flow import Flow
from b2bua.sip.message import Response
from b2bua.store import open_database
from tests.unit.test_registrar import INSTANCE, T0, UDP, Phone, make_registrar


class SqliteAsync:
    """The SQLite store behind the async seam (what RegisterShell awaits)."""

    def __init__(self, store: SqliteLocationStore) -> None:
        self.store = store

    async def commit(self, batch: StoreBatch) -> None:
        self.store.apply(batch.upserts, batch.deletes, batch.claims)


@dataclass
class Backend:
    """One backend; `node(name)` is a registrar of a node over the shared store."""

    kind: str
    path: Path
    url: str | None = None
    opened: list[Any] = field(default_factory=list)

    async def node(self, name: str, now: float) -> tuple[Registrar, Any]:
        if self.kind == "sqlite":
            store = SqliteLocationStore(open_database(self.path))
            reg = make_registrar(store)
            reg.restore(now)
            return reg, SqliteAsync(store)
        from b2bua.pgstore.db import SharedDatabase
        from b2bua.pgstore.location import PgLocationStore

        assert self.url is not None
        db = await SharedDatabase.open(self.url)
        self.opened.append(db)
        pg = PgLocationStore(db.pool, db.writer, name)
        await pg.preload(now)
        reg = make_registrar(pg)
        reg.restore(now)
        return reg, pg

    async def settle(self) -> None:
        for db in self.opened:
            await db.writer.flush()

    async def reload(self, reg: Registrar, seam: Any, aor: str, now: float) -> None:
        """What a node does on another's notice: read the address of record back."""
        if self.kind == "sqlite":
            reg.reload(aor, now)
        else:
            rows, claims = await seam.fetch_aor(aor)
            reg.install(aor, rows, claims, now)

    async def close(self) -> None:
        for db in self.opened:
            await db.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    b = Backend(request.param, tmp_path, url)
    try:
        yield b
    finally:
        await b.close()


async def register(phone: Phone, seam: Any, now: float, expires: int = 3600,
                   **kwargs: Any) -> Response:
    """A REGISTER answered through RegisterShell (one challenge first)."""
    shell = RegisterShell(phone.registrar, seam, clock=lambda: now)
    resp = Response(0, "")
    for _ in range(3):
        auth = phone.credentials() if phone.challenge else None
        resp = await shell.register(phone.request(expires=expires, authorization=auth, **kwargs),
                                    phone.flow)
        if resp.status != 401:
            return resp
        phone.take_challenge(resp)
    return resp


def snapshot(b: Binding) -> tuple[Any, ...]:
    return (b.aor, b.username, b.key, b.contact, b.flow.transport, b.flow.host, b.flow.port,
            b.expires_at, b.call_id, b.cseq, b.instance, b.reg_id, b.user_agent, b.q, b.path,
            b.device, b.outbound, b.push)


async def test_bindings_survive_a_restart_with_every_field(backend: Backend) -> None:
    reg, seam = await backend.node("a", T0)
    nat = Flow("udp", "203.0.113.5", 40001, None, "198.51.100.1", 5060)
    phone = Phone(reg, flow=nat, contact="sip:1001@192.168.1.20:5060", instance=INSTANCE)
    assert (await register(phone, seam, T0)).status == 200
    short = Phone(reg, "1001-2", contact="sip:m@192.0.2.20:5060")
    assert (await register(short, seam, T0, expires=100)).status == 200
    edge = Flow("udp", "127.0.0.9", 5060, None, "198.51.100.1", 5060)
    pathed = Phone(reg, "1002", password="other", flow=edge, contact="sip:1002@10.0.0.7:5062")
    path = "<sip:127.0.0.9;lr;received=sip:203.0.113.7:5062>"
    assert (await register(pathed, seam, T0, extra=[("Path", path)])).status == 200
    before = sorted(snapshot(b) for ext in ("1001", "1002") for b in reg.bindings(ext))
    await backend.settle()

    again, _ = await backend.node("a", T0 + 200)  # the 100 s binding expired meanwhile
    after = sorted(snapshot(b) for ext in ("1001", "1002") for b in again.bindings(ext))
    assert after == [s for s in before if s[2] != short.registrar.bindings("1001")[-1].key
                     or s[7] > T0 + 200]
    assert len(after) == 2
    (p,) = again.bindings("1002")
    assert p.path == (path,)


async def test_device_claims_survive_a_restart(backend: Backend) -> None:
    reg, seam = await backend.node("a", T0)
    for name in ("a", "b"):
        phone = Phone(reg, "1002", password="other", instance=f"<urn:uuid:{name}>",
                      contact=f"sip:1002@192.0.2.4{ord(name) - 96}:5060")
        assert (await register(phone, seam, T0, expires=60)).status == 200
    await backend.settle()
    again, seam2 = await backend.node("a", T0 + 1000)
    assert len(again) == 0
    b = Phone(again, "1002", password="other", instance="<urn:uuid:b>",
              contact="sip:1002@192.0.2.99:5060")
    assert (await register(b, seam2, T0 + 1001)).status == 200
    assert again.bindings("1002")[0].device == 1


async def test_a_binding_registered_on_one_node_is_seen_on_the_other(backend: Backend) -> None:
    a, seam_a = await backend.node("a", T0)
    b, seam_b = await backend.node("b", T0)
    phone = Phone(a, flow=UDP, instance=INSTANCE)
    assert (await register(phone, seam_a, T0)).status == 200
    assert [x for x in b.lookup("1001", T0 + 1) if not x.static] == []
    await backend.reload(b, seam_b, "1001", T0 + 1)
    (seen,) = [x for x in b.lookup("1001", T0 + 1) if not x.static]
    assert (seen.contact, seen.instance, seen.device) == (phone.contact, INSTANCE, 0)
    # B unregisters it (same Call-ID, next CSeq, as a phone whose REGISTER reached B).
    phone.registrar = b
    assert (await register(phone, seam_b, T0 + 2, expires=0)).status == 200
    await backend.reload(a, seam_a, "1001", T0 + 3)
    assert [x for x in a.lookup("1001", T0 + 3) if not x.static] == []


async def test_housekeeping_never_undoes_a_newer_registration(backend: Backend) -> None:
    a, seam_a = await backend.node("a", T0)
    b, seam_b = await backend.node("b", T0)
    phone = Phone(a, flow=UDP, instance=INSTANCE)
    assert (await register(phone, seam_a, T0, expires=60)).status == 200
    await backend.reload(b, seam_b, "1001", T0)
    # The phone refreshes through A; B, not told yet, sees the old binding expire.
    assert (await register(phone, seam_a, T0 + 50, expires=3600)).status == 200
    removed = b.handle_deadline(T0 + 61)
    assert [r.aor for r in removed] == ["1001"]
    # ...and a keep-alive on B finds the old binding dead: neither touches A's newer row.
    await backend.settle()
    again, _ = await backend.node("c", T0 + 62)
    (kept,) = [x for x in again.bindings("1001")]
    assert kept.expires_at == T0 + 50 + 3600 and kept.reachable


async def test_unreachable_and_push_results_are_stored(backend: Backend) -> None:
    a, seam = await backend.node("a", T0)
    phone = Phone(a, flow=UDP, contact="sip:1001@192.0.2.10:5060")
    assert (await register(phone, seam, T0)).status == 200
    (binding,) = a.bindings("1001")
    a.keepalive_result(binding, False, T0 + 5)
    a.record_push(binding, T0 + 6, "delivered", token_invalid=False)
    await backend.settle()
    again, _ = await backend.node("b", T0 + 7)
    (b,) = again.bindings("1001")
    assert not b.reachable and b.unreachable_since == T0 + 5
    assert (b.last_push_at, b.last_push_result) == (T0 + 6, "delivered")


async def test_a_failed_commit_is_a_500_that_changes_nothing(backend: Backend) -> None:
    a, seam = await backend.node("a", T0)
    phone = Phone(a, flow=UDP)
    assert (await register(phone, seam, T0)).status == 200

    class Broken:
        async def commit(self, batch: StoreBatch) -> None:
            raise StoreError("disk full")

    resp = await register(phone, Broken(), T0 + 1, expires=0)
    assert resp.status == 500
    assert len(a.bindings("1001")) == 1
    await backend.settle()
    again, _ = await backend.node("b", T0 + 2)
    assert len(again.bindings("1001")) == 1

