"""The trunk, device and TLS keys of the configuration: values, defaults, and errors at the
right file, line and field."""

from __future__ import annotations

import tomllib

import pytest

from b2bua.config import ConfigError, config_from_text
from b2bua.settings import config_to_raw
from b2bua.trunks import TrunkSpec

BASE = """\
[server]
domain = "pbx.test"
tls_ca = ""
"""

FULL = BASE + """
[[trunks]]
name = "carrier"
address = "127.0.0.1:5080"
transport = "tls"
username = "0442930600"
password = "secret"
register = true
register_expires = 600
inbound_from = ["192.0.2.0/24"]
did = { "0442930600" = "1001" }
lines = 4
caller_id = "0442930600"
prefixes = ["0", "+"]
options_ping = 30
number_format = "e164"
media_encryption = "sdes"

[[trunks]]
name = "old"
address = "127.0.0.1:5090"

[[users]]
extension = "1001"
name = "Alice"
secret = "s"
  [[users.devices]]
  type = "teams"
  label = "Teams"
  contact = "sip:1001@127.0.0.1:5091"
  transport = "tls"
  media_encryption = "sdes"
"""


def issues(text: str) -> list[tuple[int, str, str]]:
    with pytest.raises(ConfigError) as info:
        config_from_text(text, file="t.toml")
    return [(i.line, i.field, i.reason) for i in info.value.issues]


def test_every_trunk_key_and_defaults() -> None:
    config = config_from_text(FULL, file="t.toml")
    assert config.server.tls_ca is None
    carrier, old = (TrunkSpec.from_config(t) for t in config.trunks)
    assert (carrier.transport, carrier.username, carrier.register, carrier.lines) == (
        "tls", "0442930600", True, 4)
    assert (carrier.prefixes, carrier.options_ping, carrier.number_format) == (
        ("0", "+"), 30, "e164")
    assert carrier.media_encryption == "sdes" and carrier.caller_id == "0442930600"
    # Today's form keeps its meaning: no registration, no ping, unlimited lines, every number.
    assert (old.transport, old.register, old.lines, old.prefixes, old.options_ping) == (
        "udp", False, 0, (), 0)
    assert old.credentials is None and old.media_encryption == "optional"
    device = config.users[0].devices[0]
    assert (device.transport, device.media_encryption) == ("tls", "sdes")
    assert "secret" not in repr(carrier)


def test_export_writes_register_under_its_own_name() -> None:
    raw = config_to_raw(config_from_text(FULL, file="t.toml"))
    assert raw["trunks"][0]["register"] is True and "register_" not in raw["trunks"][0]
    users = FULL[FULL.index("[[users]]"):]
    again = config_from_text(BASE + _toml_trunks(raw["trunks"]) + users, file="t.toml")
    assert TrunkSpec.from_config(again.trunks[0]).register


def _toml_trunks(trunks: list[dict[str, object]]) -> str:
    out = []
    for trunk in trunks:
        out.append("[[trunks]]")
        for key, value in trunk.items():
            if isinstance(value, bool):
                out.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, dict):
                inner = ", ".join(f'"{k}" = "{v}"' for k, v in value.items())
                out.append(f"{key} = {{ {inner} }}")
            elif isinstance(value, list):
                out.append(f"{key} = [{', '.join(repr(v).replace(chr(39), chr(34)) for v in value)}]")
            elif isinstance(value, str):
                out.append(f'{key} = "{value}"')
            else:
                out.append(f"{key} = {value}")
    text = "\n".join(out) + "\n"
    tomllib.loads(text)
    return text


def test_errors_name_file_line_and_field() -> None:
    found = issues(BASE + """
[[trunks]]
name = "a"
address = "127.0.0.1:5080"
transport = "sctp"
lines = -1
prefixes = ["0a"]
media_encryption = "always"
options_ping = 5000

[[trunks]]
name = "b"
address = "127.0.0.1:5081"
username = "u"

[[trunks]]
name = "c"
address = "127.0.0.1:5082"
register = true
""")
    assert (8, "trunks[0].transport", "expected 'udp', 'tcp' or 'tls' (got 'sctp')") in found
    assert (9, "trunks[0].lines", "expected greater than or equal to 0 (got -1)") in found
    assert any(f[:2] == (10, "trunks[0].prefixes[0]") and "not a dialling prefix" in f[2]
               for f in found)
    assert any(f[:2] == (11, "trunks[0].media_encryption") and "'sdes'" in f[2] for f in found)
    assert any(f[:2] == (12, "trunks[0].options_ping") for f in found)
    assert any(f[1:] == ("trunks[1].password", "required with username") for f in found)
    assert any(f[1:] == ("trunks[2].username", "required when register = true") for f in found)
