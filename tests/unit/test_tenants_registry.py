"""Which tenant a domain, a DID, a trunk or a scoped name belongs to (b2bua.tenants.registry),
against a naive reference, and the call engine's single-tenant fast path."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from b2bua.calls.directory import Directory
from b2bua.config import config_from_dict
from b2bua.rules import RuleBook, compile_rules
from b2bua.rules.numbers import normalize_number
from b2bua.tenants.model import Tenant, TenantLimits
from b2bua.tenants.names import parse_login, scoped, split, tenant_of
from b2bua.tenants.registry import Tenants

SERVER = {"domain": "pbx.test", "country_code": "33"}


def tenants_of(raw: dict[str, Any]) -> Tenants:
    config = config_from_dict(raw)
    out = []
    top = config.tenant_view()
    out.append(Tenant("", "pbx.test", "pbx.test", top, Directory(top),
                      RuleBook(compile_rules(top))))
    for i, section in enumerate(config.tenants):
        view = config.tenant_view(section, i)
        out.append(Tenant(section.domain, section.domain, section.name, view,
                          Directory(view, section.domain), RuleBook(compile_rules(view)),
                          TenantLimits.from_config(section.limits)))
    return Tenants(out)


def company(number: str, host: str = "127.0.0.2") -> dict[str, Any]:
    return {
        "trunks": [{"name": "carrier", "address": f"{host}:5080", "inbound_from": [f"{host}/32"],
                    "did": {number: "1001"}}],
        "users": [{"extension": "1001", "name": "U", "secret": "s"}],
    }


@given(st.text(alphabet="0123456789abcdefABCDEF_", min_size=1, max_size=12),
       st.sampled_from(["", "acme.example", "a-b.c.example"]))
def test_scoped_names_round_trip(name: str, tenant: str) -> None:
    assert split(scoped(name, tenant)) == (tenant, name)
    assert tenant_of(scoped(name, tenant)) == tenant
    assert scoped(name, "") == name  # the top-level company's names are as they always were


def test_logins() -> None:
    assert parse_login("admin") == ("admin", None)
    assert parse_login("admin@ACME.example") == ("admin", "acme.example")
    assert parse_login("1001@acme.example") == ("1001", "acme.example")


def test_domain_did_and_trunk_lookups() -> None:
    raw = {"server": SERVER, **company("0442000000"), "tenants": [
        {"domain": "acme.example", "name": "ACME", **company("0442000001")},
        {"domain": "beta.example", "name": "Beta", **company("0442000002", "127.0.0.3")},
    ]}
    tenants = tenants_of(raw)
    assert tenants.only is None and len(tenants) == 3
    acme, beta = tenants.get("acme.example"), tenants.get("beta.example")
    assert acme is not None and beta is not None
    assert tenants.for_domain("ACME.example") is acme
    assert tenants.for_domain("unknown.example") is None
    assert tenants.did_owner("0442000002") is beta
    assert tenants.of("1001@beta.example") is beta and tenants.of("1001") is tenants.default
    assert {t.name for t in tenants.trunks} == {"carrier", "carrier@acme.example",
                                                 "carrier@beta.example"}
    # a carrier at 127.0.0.2 is the trunk of the top level and of ACME: a DID decides
    came = tenants.trunk_for_source("127.0.0.2")
    assert came is not None and came.name == "carrier"
    tenant, trunk = tenants.inbound(came, "+33442000001", "127.0.0.2")
    assert tenant is acme and trunk.name == "carrier@acme.example"
    tenant, trunk = tenants.inbound(came, "0442000000", "127.0.0.2")
    assert tenant is tenants.default and trunk is came
    # beta's DID through the carrier of the others: beta has no trunk from there
    tenant, trunk = tenants.inbound(came, "0442000002", "127.0.0.2")
    assert tenant is tenants.default and "0442000002" not in trunk.did


def test_single_tenant_takes_the_fast_path() -> None:
    tenants = tenants_of({"server": SERVER, **company("0442000000")})
    assert tenants.only is tenants.default
    trunk = tenants.trunk_for_source("127.0.0.2")
    assert trunk is not None
    assert tenants.inbound(trunk, "0442999999") == (tenants.default, trunk)
    assert tenants.of("anything@else") is tenants.default


def test_install_updates_in_place_and_remove() -> None:
    raw = {"server": SERVER, "tenants": [{"domain": "acme.example", "name": "ACME",
                                          **company("0442000001")}]}
    tenants = tenants_of(raw)
    acme = tenants.get("acme.example")
    assert acme is not None
    acme.calls = 3
    renamed = tenants_of({**raw, "tenants": [{**raw["tenants"][0], "name": "ACME 2",
                                              **company("0442000009")}]}).get("acme.example")
    assert renamed is not None
    served = tenants.install(renamed)
    assert served is acme and acme.name == "ACME 2" and acme.calls == 3
    assert tenants.did_owner("0442000009") is acme and tenants.did_owner("0442000001") is None
    assert tenants.remove("acme.example") is acme
    assert tenants.only is tenants.default and tenants.did_owner("0442000009") is None
    with pytest.raises(ValueError):
        tenants.remove("")


_NUMBERS = st.sampled_from(["0442000001", "0442000002", "0442000003", "0611223344"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_NUMBERS, max_size=3, unique=True), min_size=1, max_size=4),
       _NUMBERS)
def test_did_owner_matches_a_naive_reference(dids: list[list[str]], wanted: str) -> None:
    # DIDs distinct across tenants (the configuration check guarantees it)
    seen: set[str] = set()
    sections = []
    for i, numbers in enumerate(dids):
        mine = [n for n in numbers if n not in seen]
        seen.update(mine)
        sections.append({"domain": f"t{i}.example", "name": f"T{i}", "users": [
            {"extension": "1001", "name": "U", "secret": "s"}],
            "trunks": [{"name": "c", "address": "127.0.0.2:5080",
                        "did": dict.fromkeys(mine, "1001")}]})
    tenants = tenants_of({"server": SERVER, "tenants": sections})
    expected = next((f"t{i}.example" for i, s in enumerate(sections)
                     if wanted in s["trunks"][0]["did"]), None)
    owner = tenants.did_owner(normalize_number(wanted, "33"))
    assert (owner.key if owner is not None else None) == expected
    for section in sections:
        found = tenants.for_domain(section["domain"].upper())
        assert found is not None and found.key == section["domain"]
