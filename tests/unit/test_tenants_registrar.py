"""The registrar with several tenants: one digest realm per tenant (its domain), each tenant's
extension 1001 its own, a REGISTER belongs to the tenant its domain names, a device limit per
tenant; and the stores keep the tenant in a column (SQLite migration, scoped names in memory)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from b2bua.registrar import (
    DeviceSpec,
    MemoryLocationStore,
    SqliteLocationStore,
    UserAccount,
    build_registrar,
)
from b2bua.registrar.digest import answer_challenge
from b2bua.registrar.sqlite_store import MIGRATIONS
from b2bua.sip.flow import Flow
from b2bua.sip.message import Request, parse_message
from b2bua.store import open_database
from tests.unit.test_registrar import T0, UDP, Phone, make_registrar

ACME, BETA = "acme.example", "beta.example"


def acme_users(secret: str = "acme-1001") -> list[UserAccount]:
    return [UserAccount("1001", "Alice ACME", secret, (DeviceSpec("sip", "Desk"),
                                                        DeviceSpec("sip", "Desk 2")))]


def two_tenants(**kw: object):  # type: ignore[no-untyped-def]
    registrar = make_registrar(**kw)
    registrar.set_tenant(ACME, ACME, acme_users())
    registrar.set_tenant(BETA, BETA, [UserAccount("1001", "Bob Beta", "beta-1001")])
    return registrar


def realm_of(response: object) -> set[str]:
    values = response.headers.get_all("WWW-Authenticate")  # type: ignore[attr-defined]
    return {v.split('realm="', 1)[1].split('"', 1)[0] for v in values}


def test_each_tenant_challenges_in_its_own_realm() -> None:
    registrar = two_tenants()
    for host, realm in ((ACME, ACME), (BETA, BETA), ("pbx.local", "pbx.local")):
        phone = Phone(registrar, "1001", host=host, password="x")
        response = registrar.handle_register(phone.request(), phone.flow, T0)
        assert response.status == 401
        assert realm_of(response) == {realm}


def test_the_same_extension_of_two_tenants_registers_apart() -> None:
    registrar = two_tenants()
    acme = Phone(registrar, "1001", host=ACME, password="acme-1001",
                 flow=Flow("udp", "192.0.2.20", 5060))
    beta = Phone(registrar, "1001", host=BETA, password="beta-1001",
                 flow=Flow("udp", "192.0.2.30", 5060))
    top = Phone(registrar, "1001")
    assert acme.register(T0).status == 200
    assert beta.register(T0).status == 200
    assert top.register(T0).status == 200
    assert [b.flow.host for b in registrar.lookup("1001@acme.example", T0)] == ["192.0.2.20"]
    assert [b.flow.host for b in registrar.lookup("1001@beta.example", T0)] == ["192.0.2.30"]
    assert [b.flow.host for b in registrar.bindings("1001")] == ["192.0.2.10"]


def test_a_tenants_secret_does_not_open_another_tenants_extension() -> None:
    registrar = two_tenants()
    thief = Phone(registrar, "1001", host=BETA, password="acme-1001")
    assert thief.register(T0).status == 401  # refused: beta's 1001 has another secret
    assert registrar.lookup("1001@beta.example", T0) == []
    # credentials computed for acme's realm, presented with beta's domain: challenged again
    acme = Phone(registrar, "1001", host=ACME, password="acme-1001")
    acme.register(T0)
    request = acme.request(authorization=acme.credentials(), ruri_host=BETA)
    response = registrar.handle_register(request, acme.flow, T0)
    assert response.status in (403, 404)


def test_the_realm_of_credentials_names_the_tenant_when_the_hosts_are_addresses() -> None:
    registrar = two_tenants()
    phone = Phone(registrar, "1001", host=ACME, password="acme-1001")
    phone.register(T0)  # learn acme's challenge
    # the same phone now puts our IP literal in the Request-URI and To: its realm decides
    phone.host = "198.51.100.1"
    response = registrar.handle_register(phone.request(authorization=phone.credentials()),
                                         phone.flow, T0)
    assert response.status == 200
    assert len(registrar.lookup("1001@acme.example", T0)) == 1


def test_device_limit_is_a_403_with_a_reason() -> None:
    registrar = make_registrar()
    registrar.set_tenant(ACME, ACME, acme_users(), max_devices=1)
    first = Phone(registrar, "1001", host=ACME, password="acme-1001",
                  flow=Flow("udp", "192.0.2.20", 5060))
    second = Phone(registrar, "1001", host=ACME, password="acme-1001",
                   flow=Flow("udp", "192.0.2.21", 5060))
    assert first.register(T0).status == 200
    refused = second.register(T0)
    assert (refused.status, refused.reason) == (403, "Device Limit Reached")
    assert first.register(T0 + 10).status == 200  # a refresh is not a new device
    assert first.register(T0 + 20, expires=0).status == 200
    assert second.register(T0 + 30).status == 200


def test_a_dropped_tenant_authenticates_no_more_and_loses_its_bindings() -> None:
    registrar = two_tenants()
    acme = Phone(registrar, "1001", host=ACME, password="acme-1001")
    assert acme.register(T0).status == 200
    registrar.drop_tenant(ACME)
    assert registrar.users_changed
    registrar.handle_deadline(T0 + 1)
    assert registrar.lookup("1001@acme.example", T0 + 1) == []
    response = registrar.handle_register(acme.request(authorization=acme.credentials()),
                                         acme.flow, T0 + 2)
    assert (response.status, response.reason) == (403, "Domain Not Served Here")


def invite(from_host: str, ruri: str = "sip:1002@198.51.100.1") -> Request:
    text = (f"INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKx\r\n"
            f"From: <sip:1001@{from_host}>;tag=a\r\nTo: <{ruri}>\r\nCall-ID: c1\r\n"
            "CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def test_an_invite_is_challenged_in_the_realm_of_its_from_domain() -> None:
    registrar = two_tenants()
    result = registrar.authenticate(invite(ACME), T0, flow=UDP)
    assert result.response is not None and result.response.status == 407
    realms = {v.split('realm="', 1)[1].split('"', 1)[0]
              for v in result.response.headers.get_all("Proxy-Authenticate")}
    assert realms == {ACME}
    assert registrar.tenant_of(invite("198.51.100.1", f"sip:1002@{BETA}")) == BETA
    assert registrar.tenant_of(invite("198.51.100.1")) == ""


def test_sqlite_rows_carry_the_tenant_and_come_back_scoped(tmp_path: Path) -> None:
    conn = open_database(tmp_path)
    registrar = two_tenants(store=SqliteLocationStore(conn))
    Phone(registrar, "1001", host=ACME, password="acme-1001").register(T0)
    Phone(registrar, "1001").register(T0)
    rows = conn.execute("SELECT tenant, aor, username FROM registrar_bindings ORDER BY tenant"
                        ).fetchall()
    assert rows == [("", "1001", "1001"), (ACME, "1001", "1001")]
    claims = conn.execute("SELECT tenant, extension FROM registrar_device_claims ORDER BY tenant"
                          ).fetchall()
    assert claims == [("", "1001"), (ACME, "1001")]
    again = two_tenants(store=SqliteLocationStore(conn))
    assert again.restore(T0 + 1) == 2
    assert [b.aor for b in again.bindings("1001@acme.example")] == ["1001@acme.example"]
    assert again.bindings("1001@acme.example")[0].device == 0
    conn.close()


def test_bindings_stored_before_tenants_are_the_top_level_companys(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "old.sqlite", isolation_level=None)
    conn.executescript("CREATE TABLE schema_versions (component TEXT PRIMARY KEY,"
                       " version INTEGER NOT NULL);"
                       "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);")
    for step in MIGRATIONS[:2]:
        conn.executescript(step)
    conn.execute("INSERT INTO schema_versions VALUES ('registrar', 2)")
    conn.execute(
        "INSERT INTO registrar_bindings (aor, key, username, contact, transport, source_host, "
        "source_port, expires_at, call_id, cseq, outbound, reachable, last_seen, registered_at) "
        "VALUES ('1001', '1001|c:sip:1001@192.0.2.10:5060', '1001', 'sip:1001@192.0.2.10:5060', "
        f"'udp', '192.0.2.10', 5060, {T0 + 3600}, 'c1', 1, 0, 1, {T0}, {T0})")
    conn.execute("INSERT INTO registrar_device_claims VALUES ('1001', 0, 'c:x', 1.0)")
    registrar = make_registrar(store=SqliteLocationStore(conn))
    assert registrar.restore(T0) == 1
    assert registrar.bindings("1001")[0].contact == "sip:1001@192.0.2.10:5060"
    assert conn.execute("SELECT tenant FROM registrar_bindings").fetchall() == [("",)]
    conn.close()


def test_build_registrar_restores_every_tenants_bindings(tmp_path: Path) -> None:
    from b2bua.config import config_from_text

    config = config_from_text('[server]\ndomain = "pbx.local"\n')
    conn = open_database(tmp_path)
    tenants = [(ACME, ACME, acme_users(), 0)]
    first = build_registrar(config, conn, now=T0, tenants=tenants)
    assert Phone(first, "1001", host=ACME, password="acme-1001").register(T0).status == 200
    again = build_registrar(config, conn, now=T0 + 1, tenants=tenants)
    assert len(again.lookup("1001@acme.example", T0 + 1)) == 1
    without = build_registrar(config, conn, now=T0 + 2)  # a server that no longer serves it
    assert without.lookup("1001@acme.example", T0 + 2) == []
    conn.close()


def test_memory_store_keeps_scoped_names() -> None:
    store = MemoryLocationStore()
    registrar = two_tenants(store=store)
    Phone(registrar, "1001", host=BETA, password="beta-1001").register(T0)
    assert {aor for aor, _ in store.rows} == {"1001@beta.example"}


def test_the_realm_is_the_realm_parameter_not_realm_text_inside_another() -> None:
    # The credentials' parameters in another order, with "realm=beta.example" inside the
    # quoted cnonce before the real realm: the tenant is the realm parameter's (acme).
    registrar = two_tenants()
    phone = Phone(registrar, "1001", host=ACME, password="acme-1001")
    phone.register(T0)  # learn acme's challenge
    assert phone.challenge is not None
    creds = answer_challenge(phone.challenge, username="1001", password="acme-1001",
                             method="REGISTER", uri=f"sip:{ACME}",
                             cnonce="realm=beta.example,x", nc=7)
    scheme, _, rest = creds.partition(" ")
    params = rest.split(", ")
    realm = next(p for p in params if p.startswith("realm="))
    reordered = f"{scheme} {', '.join([*(p for p in params if p != realm), realm])}"
    assert reordered.index("realm=beta.example") < reordered.index('realm="acme.example"')
    response = registrar.handle_register(phone.request(authorization=reordered), phone.flow, T0)
    assert response.status == 200
    assert len(registrar.lookup("1001@acme.example", T0)) == 1
