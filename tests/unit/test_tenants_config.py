"""`[[tenants]]` in the configuration: each tenant's sections validated as the top level's are,
with `FILE:LINE: field: reason` naming `tenants[i]...`; what tenants must not share (domains,
DIDs); the per-tenant view every company-level part reads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b2bua.config import ConfigError, config_from_text

SERVER = """\
[server]
domain = "pbx.test"
country_code = "33"
"""

ACME = """
[[tenants]]
domain = "acme.example"
name = "ACME SARL"
limits = { users = 5, devices = 10, calls = 2 }

  [[tenants.trunks]]
  name = "carrier"
  address = "127.0.0.2:5080"
  did = { "0442000001" = "1001" }

  [[tenants.system_extensions]]
  extension = "800"
  name = "Accueil"
  members = ["1001"]

  [[tenants.users]]
  extension = "1001"
  name = "Alice ACME"
  secret = "acme-secret"
"""


def issues(text: str) -> list[tuple[int, str, str]]:
    with pytest.raises(ConfigError) as info:
        config_from_text(text, file="t.toml")
    return [(i.line, i.field, i.reason) for i in info.value.issues]


def test_single_company_file_is_one_tenant_unchanged() -> None:
    config = config_from_text(SERVER + '[[users]]\nextension = "1001"\nname = "A"\nsecret = "s"\n')
    assert config.tenants == ()
    assert config.tenant_view() is config  # the top-level company's view is the file itself


def test_tenant_sections_load_with_the_same_keys_as_the_top_level() -> None:
    config = config_from_text(SERVER + ACME)
    [acme] = config.tenants
    assert acme.domain == "acme.example" and acme.name == "ACME SARL"
    assert (acme.limits.users, acme.limits.devices, acme.limits.calls) == (5, 10, 2)
    assert acme.users[0].timezone == "UTC" and acme.users[0].language == "fr"  # server defaults
    view = config.tenant_view(acme, 0)
    assert view.server.domain == "acme.example"
    assert [u.extension for u in view.users] == ["1001"]
    assert view.trunks[0].did == {"0442000001": "1001"}
    assert view.system_extensions[0].members == ("1001",)
    assert view.tenants == ()
    # issues about the view name the tenant's lines in the file
    issue = view.problem(("users", 0, "name"), "empty")
    assert issue.field == "tenants[0].users[0].name"
    assert issue.line == 22


def test_domain_is_case_insensitive_and_must_be_a_domain() -> None:
    config = config_from_text(SERVER + ACME.replace("acme.example", "ACME.Example"))
    assert config.tenants[0].domain == "acme.example"
    found = issues(SERVER + '\n[[tenants]]\ndomain = "not a domain"\nname = "x"\n')
    assert found == [(6, "tenants[0].domain",
                      "'not a domain' is not a domain name (such as acme.example)")]


def test_duplicate_domains_and_the_server_domain() -> None:
    text = SERVER + ACME + '\n[[tenants]]\ndomain = "Acme.example"\nname = "Again"\n' \
        + '\n[[tenants]]\ndomain = "pbx.test"\nname = "Provider"\n'
    found = issues(text)
    assert (26, "tenants[1].domain",
            "domain 'Acme.example' is already the domain of tenants[0].domain") in found
    assert (30, "tenants[2].domain",
            "domain 'pbx.test' is already the domain of server.domain") in found


def test_a_did_of_two_tenants_is_refused_in_any_of_its_forms() -> None:
    text = SERVER + """
[[trunks]]
name = "carrier"
address = "127.0.0.2:5080"
did = { "0442000001" = "1001" }

[[users]]
extension = "1001"
name = "Top"
secret = "s"
""" + ACME.replace('"0442000001"', '"+33 4 42 00 00 01"')
    found = issues(text)
    assert len(found) == 1
    line, field, reason = found[0]
    assert field == "tenants[0].trunks[0].did.+33 4 42 00 00 01"
    assert reason == ("number '+33 4 42 00 00 01' is already a DID of another tenant "
                      "(trunks[0].did.0442000001)")
    assert line == 23


def test_every_company_check_applies_inside_a_tenant_with_its_own_names() -> None:
    text = SERVER + """
[[users]]
extension = "1002"
name = "Top"
secret = "s"
""" + ACME.replace('members = ["1001"]', 'members = ["1002"]').replace(
        'secret = "acme-secret"', 'secret = "acme-secret"\nhold_music = "nope"\nring_timout = 3')
    found = issues(text)
    # 1002 is a user of the top level, not of ACME: a ring group of ACME cannot name it
    assert [f[:2] for f in found] == [(23, "tenants[0].system_extensions[0].members[0]"),
                                      (29, "tenants[0].users[0].hold_music"),
                                      (30, "tenants[0].users[0].ring_timout")]
    assert found[0][2].startswith("member '1002' is not")
    assert "did you mean 'ring_timeout'" in found[2][2]


def test_limits() -> None:
    found = issues(SERVER + ACME.replace("users = 5", "users = 0").replace(
        "calls = 2", "calls = -1"))
    assert found == [(8, "tenants[0].limits.calls",
                      "expected greater than or equal to 0 (got -1)")]
    text = SERVER + ACME.replace("users = 5", "users = 1") + """
  [[tenants.users]]
  extension = "1002"
  name = "Bob"
  secret = "x"
"""
    assert issues(text) == [(8, "tenants[0].limits.users", "2 users for a limit of 1")]


def test_trunk_names_have_no_at_sign_once_tenants_exist() -> None:
    found = issues(SERVER + ACME.replace('name = "carrier"', 'name = "carrier@x"'))
    assert found == [(11, "tenants[0].trunks[0].name",
                      "'carrier@x': a trunk name has no '@' when tenants are declared")]


_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_DOMAINS = st.lists(_LABEL, min_size=1, max_size=3).map(".".join)


@given(st.lists(_DOMAINS, min_size=1, max_size=5))
def test_domains_are_refused_exactly_when_they_repeat(domains: list[str]) -> None:
    text = SERVER + "".join(f'\n[[tenants]]\ndomain = "{d.upper()}"\nname = "n"\n'
                            for d in domains)
    lowered = [d.lower() for d in domains]
    valid = [d for d in lowered if not d.replace(".", "").isdigit()]
    repeated = len(set(valid)) != len(valid) or "pbx.test" in valid
    if len(valid) == len(lowered) and not repeated:
        config = config_from_text(text)
        assert [t.domain for t in config.tenants] == lowered
    else:
        with pytest.raises(ConfigError):
            config_from_text(text)
