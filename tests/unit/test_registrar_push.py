"""The registrar's room for push (RFC 8599): push-capable bindings, Feature-Caps and 555, bindings
that outlive their flow, one binding per device, `BindingAppeared`, the SQLite migration, and the
commit seam driven by an awaited store."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b2bua.push import PushTarget
from b2bua.registrar import (
    BindingAppeared,
    MemoryLocationStore,
    PendingRegister,
    Registrar,
    SqliteLocationStore,
    StoreBatch,
    StoreError,
)
from b2bua.registrar.shell import RegisterShell
from b2bua.registrar.sqlite_store import MIGRATIONS
from b2bua.sip.errors import SipParseError
from b2bua.sip.flow import Flow
from b2bua.sip.message import Response
from b2bua.store import open_database
from tests.unit.test_registrar import T0, Phone, make_registrar

TOKEN = "0a1b2c3d4e5f6789" * 4
PARAM = "DEF123GHIJ.org.example.phone.voip"
TCP = Flow("tcp", "192.0.2.10", 40001, 7, "198.51.100.1", 5060)
TCP2 = Flow("tcp", "192.0.2.10", 40002, 8, "198.51.100.1", 5060)
INSTANCE = "<urn:uuid:00000000-0000-0000-0000-000000000001>"


def push_contact(flow: Flow, *, provider: str = "apns", prid: str = TOKEN, param: str = PARAM) -> str:
    return (f"sip:1001@{flow.host}:{flow.port};transport={flow.transport};"
            f"pn-provider={provider};pn-prid={prid};pn-param={param}")


def push_registrar(store: object | None = None, **settings: object) -> Registrar:
    settings.setdefault("push_providers", ("apns", "fcm"))
    return make_registrar(store, **settings)  # type: ignore[arg-type]


def phone(reg: Registrar, flow: Flow = TCP, instance: str | None = INSTANCE, **kw: str) -> Phone:
    return Phone(reg, contact=push_contact(flow, **kw), flow=flow, instance=instance)


def test_push_binding_and_feature_caps() -> None:
    reg = push_registrar()
    resp = phone(reg).register(T0)
    assert resp.status == 200
    assert resp.headers.get("feature-caps") == '*;+sip.pns="apns,fcm"'
    [binding] = reg.bindings("1001")
    assert binding.push == PushTarget("apns", TOKEN, PARAM)
    assert reg.push_bindings("1001", T0) == [binding]


def test_no_feature_caps_without_pn_parameters() -> None:
    reg = push_registrar()
    resp = Phone(reg).register(T0)
    assert resp.status == 200 and resp.headers.get("feature-caps") is None
    assert reg.bindings("1001")[0].push is None


def test_pn_parameters_ignored_when_no_push_service_is_configured() -> None:
    reg = make_registrar()
    resp = phone(reg).register(T0)
    assert resp.status == 200 and resp.headers.get("feature-caps") is None
    assert reg.bindings("1001")[0].push is None
    assert reg.push_bindings("1001", T0) == []


def test_unsupported_push_service_gets_555() -> None:
    reg = push_registrar(push_providers=("fcm",))
    resp = phone(reg).register(T0)
    assert (resp.status, resp.reason) == (555, "Push Notification Service Not Supported")
    assert resp.headers.get("feature-caps") == '*;+sip.pns="fcm"'
    assert reg.bindings("1001") == []


def test_pn_provider_alone_registers_without_push_and_learns_what_is_supported() -> None:
    reg = push_registrar()
    p = Phone(reg, contact="sip:1001@192.0.2.10:40001;transport=tcp;pn-provider=apns", flow=TCP)
    resp = p.register(T0)
    assert resp.status == 200 and resp.headers.get("feature-caps") == '*;+sip.pns="apns,fcm"'
    assert reg.bindings("1001")[0].push is None


def test_malformed_pn_provider_is_400() -> None:
    reg = push_registrar()
    resp = phone(reg, provider="ap%20ns").register(T0)
    assert (resp.status, resp.reason) == (400, "Malformed pn-provider")


def test_push_binding_outlives_its_connection_until_it_expires() -> None:
    reg = push_registrar(unreachable_grace=120)
    phone(reg).register(T0, expires=600)
    reg.connection_closed(TCP.connection_id or 0, T0 + 10)
    [binding] = reg.bindings("1001")
    assert not binding.reachable
    assert reg.lookup("1001", T0 + 11) == [b for b in reg.lookup("1001", T0 + 11) if b.static]
    assert [b.reachable for b in reg.push_bindings("1001", T0 + 11)] == [False]
    reg.handle_deadline(T0 + 10 + 121)  # past the grace of an ordinary binding: kept
    assert reg.bindings("1001") == [binding]
    removed = reg.handle_deadline(T0 + 601)
    assert removed == [binding] and reg.bindings("1001") == []


def test_ordinary_tcp_binding_still_goes_with_its_connection() -> None:
    reg = push_registrar()
    Phone(reg, contact="sip:1001@192.0.2.10:40001;transport=tcp", flow=TCP).register(T0)
    reg.connection_closed(TCP.connection_id or 0, T0 + 10)
    assert reg.bindings("1001") == []


def test_woken_device_replaces_its_binding_and_appears() -> None:
    reg = push_registrar()
    seen: list[BindingAppeared] = []
    reg.on_binding_appeared = seen.append
    first = phone(reg)
    first.register(T0)
    assert [e.binding.flow for e in seen] == [TCP]
    first.register(T0 + 30)  # a refresh on the same flow: nothing appeared
    assert len(seen) == 1
    reg.connection_closed(TCP.connection_id or 0, T0 + 40)
    woken = phone(reg, flow=TCP2)
    woken.register(T0 + 50)
    [binding] = reg.bindings("1001")
    assert binding.flow == TCP2 and binding.reachable
    assert [e.binding.flow for e in seen] == [TCP, TCP2]
    assert seen[-1] == BindingAppeared("1001", binding)
    assert reg.lookup("1001", T0 + 51)[0] is binding


def test_same_push_token_without_instance_replaces_the_old_binding() -> None:
    reg = push_registrar()
    phone(reg, instance=None).register(T0)
    reg.connection_closed(TCP.connection_id or 0, T0 + 10)
    phone(reg, flow=TCP2, instance=None).register(T0 + 20)
    [binding] = reg.bindings("1001")
    assert binding.flow == TCP2
    assert len(reg.push_bindings("1001", T0 + 21)) == 1


def test_dead_token_removes_push_data_then_the_unreachable_binding() -> None:
    reg = push_registrar(unreachable_grace=120)
    phone(reg).register(T0, expires=3600)
    reg.connection_closed(TCP.connection_id or 0, T0 + 10)
    [binding] = reg.bindings("1001")
    reg.record_push(binding, T0 + 20, "invalid_token (410 Unregistered)", token_invalid=True)
    assert binding.push is None and binding.last_push_result == "invalid_token (410 Unregistered)"
    assert reg.push_bindings("1001", T0 + 21) == []
    reg.handle_deadline(T0 + 20 + 121)
    assert reg.bindings("1001") == []


def test_udp_push_binding_not_answering_keepalives_stays() -> None:
    udp = Flow("udp", "192.0.2.10", 5062, None, "198.51.100.1", 5060)
    reg = push_registrar(keepalive_interval=30, unreachable_grace=60)
    phone(reg, flow=udp).register(T0, expires=3600)
    [binding] = reg.keepalive_due(T0 + 31)
    reg.keepalive_result(binding, False, T0 + 40)
    reg.handle_deadline(T0 + 200)
    assert reg.bindings("1001") == [binding] and not binding.reachable


def test_push_data_survives_a_restart(tmp_path: Path) -> None:
    conn = open_database(tmp_path)
    reg = push_registrar(SqliteLocationStore(conn))
    phone(reg).register(T0, expires=3600)
    [binding] = reg.bindings("1001")
    reg.record_push(binding, T0 + 5, "delivered", token_invalid=False)
    conn.close()
    conn = open_database(tmp_path)
    again = push_registrar(SqliteLocationStore(conn))
    assert again.restore(T0 + 300) == 1
    [restored] = again.bindings("1001")
    assert restored.push == PushTarget("apns", TOKEN, PARAM)
    assert (restored.last_push_at, restored.last_push_result) == (T0 + 5, "delivered")
    assert not restored.reachable  # its TCP connection did not survive
    again.handle_deadline(T0 + 300 + 1000)
    assert again.bindings("1001") == [restored]  # still a push away
    conn.close()


def test_migration_keeps_bindings_stored_before_push(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "old.sqlite", isolation_level=None)
    conn.executescript("CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL);"
                       "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);")
    conn.executescript(MIGRATIONS[0])
    conn.execute("INSERT INTO schema_versions VALUES ('registrar', 1)")
    conn.execute(
        "INSERT INTO registrar_bindings (aor, key, username, contact, transport, source_host, "
        "source_port, expires_at, call_id, cseq, outbound, reachable, last_seen, registered_at) "
        "VALUES ('1001', '1001|c:sip:1001@192.0.2.10:5060', '1001', 'sip:1001@192.0.2.10:5060', "
        f"'udp', '192.0.2.10', 5060, {T0 + 3600}, 'c1', 1, 0, 1, {T0}, {T0})")
    reg = push_registrar(SqliteLocationStore(conn))
    assert reg.restore(T0) == 1
    assert reg.bindings("1001")[0].push is None
    version = conn.execute("SELECT version FROM schema_versions WHERE component = 'registrar'")
    assert version.fetchone()[0] == len(MIGRATIONS)


# -- the commit seam ----------------------------------------------------------------------------------
class NetworkStore:
    """A store whose commit takes a while (as one across the network does): the registrar's
    memory store behind an awaited commit."""

    def __init__(self, inner: MemoryLocationStore, delay: float) -> None:
        self.inner = inner
        self.delay = delay
        self.fail = False
        self.committed: list[StoreBatch] = []

    async def commit(self, batch: StoreBatch) -> None:
        await asyncio.sleep(self.delay)
        if self.fail:
            raise StoreError("connection reset")
        self.inner.apply(batch.upserts, batch.deletes, batch.claims)
        self.committed.append(batch)


def test_begin_register_returns_the_batch_to_commit() -> None:
    reg = push_registrar()
    p = phone(reg)
    p.take_challenge(reg.handle_register(p.request(expires=3600), TCP, T0))
    pending = reg.begin_register(p.request(expires=3600, authorization=p.credentials()), TCP, T0)
    assert isinstance(pending, PendingRegister)
    assert [b.push for b in pending.batch.upserts] == [PushTarget("apns", TOKEN, PARAM)]
    assert reg.bindings("1001") == []  # nothing visible before the commit
    resp = reg.finish_register(pending, None, T0)
    assert resp.status == 200 and len(reg.bindings("1001")) == 1


async def test_shell_answers_after_the_commit_and_500_when_it_fails() -> None:
    inner = MemoryLocationStore()
    reg = push_registrar(inner)
    store = NetworkStore(inner, 0.05)
    shell = RegisterShell(reg, store, clock=lambda: T0)
    p = phone(reg)
    first = await shell.register(p.request(expires=3600), TCP)
    assert first.status == 401
    p.take_challenge(first)
    ok = await shell.register(p.request(expires=3600, authorization=p.credentials()), TCP)
    assert ok.status == 200 and len(store.committed) == 1 and len(inner.rows) == 1
    store.fail = True
    p2 = phone(reg, flow=TCP2, instance="<urn:uuid:00000000-0000-0000-0000-000000000002>",
               prid="f" * 64)
    p2.challenge, p2.nc = p.challenge, p.nc
    p2.auth_user = p.auth_user
    failed = await shell.register(p2.request(expires=3600, authorization=p2.credentials()), TCP2)
    assert (failed.status, failed.reason) == (500, "Location Store Failure")
    assert len(reg.bindings("1001")) == 1 and len(inner.rows) == 1


async def test_shell_serializes_registers_of_one_address() -> None:
    inner = MemoryLocationStore()
    reg = push_registrar(inner)
    store = NetworkStore(inner, 0.02)
    shell = RegisterShell(reg, store, clock=lambda: T0)
    phones = [phone(reg, flow=Flow("tcp", "192.0.2.10", 41000 + i, 100 + i, "198.51.100.1", 5060),
                    instance=f"<urn:uuid:00000000-0000-0000-0000-00000000010{i}>",
                    prid=f"{i:02d}" * 32) for i in range(5)]
    for p in phones:  # one nonce each (a nonce-count may not be used twice)
        p.take_challenge(await shell.register(p.request(expires=3600), p.flow))
    responses: list[Response] = await asyncio.gather(*(
        shell.register(p.request(expires=3600, authorization=p.credentials()), p.flow)
        for p in phones))
    assert [r.status for r in responses] == [200] * 5
    assert len(reg.bindings("1001")) == 5 == len(inner.rows)
    # Each 200 lists the bindings committed so far: they were processed one after the other.
    assert sorted(len(r.headers.values("contact")) for r in responses) == [1, 2, 3, 4, 5]


def test_store_failure_on_the_synchronous_path_changes_nothing() -> None:
    store = MemoryLocationStore()
    reg = push_registrar(store)
    p = phone(reg)
    p.register(T0)
    store.fail_next = True
    p2 = phone(reg, flow=TCP2, instance=None, prid="e" * 64)
    p2.challenge, p2.nc = p.challenge, p.nc
    resp = reg.handle_register(p2.request(expires=3600, authorization=p2.credentials()), TCP2, T0)
    assert resp.status == 500
    assert len(reg.bindings("1001")) == 1


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_push_bindings_one_per_device(transport: str) -> None:
    reg = push_registrar()
    a = Flow(transport, "192.0.2.10", 40001, 7 if transport == "tcp" else None, "198.51.100.1", 5060)
    b = Flow(transport, "192.0.2.11", 40001, 9 if transport == "tcp" else None, "198.51.100.1", 5060)
    phone(reg, flow=a).register(T0)
    phone(reg, flow=b, instance="<urn:uuid:00000000-0000-0000-0000-000000000009>",
          provider="fcm", prid="fcm-token", param="b2bua-test").register(T0 + 1)
    assert [x.push.provider for x in reg.push_bindings("1001", T0 + 2) if x.push] == ["apns", "fcm"]


# -- what the softphone is told, and what the device card shows ---------------------------------------
PROVISIONING = """
[server]
domain = "pbx.local"
listen = ["udp:127.0.0.1:15060"]

[[users]]
extension = "1001"
name = "Alice Martin"
secret = "secret"

  [[users.devices]]
  type = "softphone"
  label = "Mobile"
"""


def test_provisioning_tells_the_softphone_about_push(tmp_path: Path) -> None:
    from b2bua.config import config_from_text
    from b2bua.registrar.provisioning import device_settings, linphone_xml
    from b2bua.testing.push_keys import make_apns_key

    make_apns_key(tmp_path)
    with_push = config_from_text(PROVISIONING + """
[push.apns]
key_file = "AuthKey_ABC123DEFG.p8"
key_id = "ABC123DEFG"
team_id = "DEF123GHIJ"
""", base_dir=tmp_path)
    settings = device_settings(with_push, "1001", 0)
    assert settings.as_json()["push"] == ["apns"]
    assert '<entry name="push_notification_allowed" overwrite="true">1</entry>' in linphone_xml(settings)
    plain = device_settings(config_from_text(PROVISIONING, base_dir=tmp_path), "1001", 0)
    assert plain.as_json()["push"] == []
    assert '<entry name="push_notification_allowed" overwrite="true">0</entry>' in linphone_xml(plain)


def test_device_report_shows_how_a_device_is_woken(tmp_path: Path) -> None:
    from b2bua.config import config_from_text
    from b2bua.registrar.report import device_report

    config = config_from_text(PROVISIONING, base_dir=tmp_path)
    reg = push_registrar()
    phone(reg).register(T0)
    [binding] = reg.bindings("1001")
    [row] = device_report(config, reg.bindings("1001"), T0 + 1)[0]["devices"]
    assert row["push"] == {"provider": "apns", "last_push_at": None, "last_push_result": None}
    reg.record_push(binding, T0 + 2, "timeout (no answer within 5 s)", token_invalid=False)
    [row] = device_report(config, reg.bindings("1001"), T0 + 3)[0]["devices"]
    assert row["push"] == {"provider": "apns", "last_push_at": T0 + 2,
                           "last_push_result": "timeout (no answer within 5 s)"}


def test_binding_registered_in_another_worker_appears_on_reload(tmp_path: Path) -> None:
    conn_a, conn_b = open_database(tmp_path), open_database(tmp_path)
    a = push_registrar(SqliteLocationStore(conn_a))
    b = push_registrar(SqliteLocationStore(conn_b))
    seen: list[BindingAppeared] = []
    b.on_binding_appeared = seen.append
    phone(a).register(T0)
    b.reload("1001", T0 + 1)
    assert [e.binding.flow for e in seen] == [TCP]
    b.reload("1001", T0 + 2)  # nothing new
    assert len(seen) == 1
    a.connection_closed(TCP.connection_id or 0, T0 + 3)
    phone(a, flow=TCP2).register(T0 + 4)
    b.reload("1001", T0 + 5)
    assert [e.binding.flow for e in seen] == [TCP, TCP2]
    conn_a.close()
    conn_b.close()


PN_VALUES = st.one_of(st.none(), st.text(
    alphabet=st.sampled_from("abcAPNSfcm019.:&-_%~"), max_size=12))


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(provider=PN_VALUES, prid=PN_VALUES, param=PN_VALUES)
def test_any_pn_parameters_get_an_answer(
    provider: str | None, prid: str | None, param: str | None
) -> None:
    reg = push_registrar()
    uri = "sip:1001@192.0.2.10:40001;transport=tcp"
    for name, value in (("pn-provider", provider), ("pn-prid", prid), ("pn-param", param)):
        if value is not None:
            uri += f";{name}={value}" if value else f";{name}"
    p = Phone(reg, contact=uri, flow=TCP, instance=INSTANCE)
    try:
        p.request(expires=3600)
    except SipParseError:
        return  # not even a SIP message: the stack answers it
    resp = p.register(T0)
    assert resp.status in (200, 400, 555)
    bindings = reg.bindings("1001")
    if resp.status != 200:
        assert bindings == []
    else:
        [binding] = bindings
        if binding.push is not None:
            assert binding.push.provider in ("apns", "fcm") and binding.push.prid
