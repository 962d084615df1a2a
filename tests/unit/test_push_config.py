"""`[push]` in the configuration file: defaults, the provider sections, and FILE:LINE errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from b2bua.config import ConfigError, load_config
from b2bua.push.settings import PushSettings
from b2bua.testing.push_keys import make_apns_key, make_service_account

HEAD = """
[server]
domain = "pbx.test"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "b2bua.toml"
    path.write_text(HEAD + text)
    return path


def test_no_push_section_means_no_provider(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    settings = PushSettings.from_config(config.push)
    assert settings.providers == () and settings.wait == 10


def test_push_section_as_in_the_contract(tmp_path: Path) -> None:
    make_apns_key(tmp_path)
    make_service_account(tmp_path, "https://oauth2.googleapis.com/token")
    config = load_config(write(tmp_path, """
[push]
wait = 12

[push.fcm]
service_account = "fcm-service-account.json"
url = "http://127.0.0.1:9999"

[push.apns]
key_file = "AuthKey_ABC123DEFG.p8"
key_id = "ABC123DEFG"
team_id = "DEF123GHIJ"
url = "https://api.sandbox.push.apple.com"
"""))
    settings = PushSettings.from_config(config.push)
    assert settings.wait == 12 and settings.providers == ("apns", "fcm")
    assert settings.apns is not None and settings.fcm is not None
    assert Path(settings.apns.key_file) == tmp_path / "AuthKey_ABC123DEFG.p8"
    assert settings.apns.url == "https://api.sandbox.push.apple.com"
    assert settings.fcm.url == "http://127.0.0.1:9999"


def test_push_errors_name_file_line_and_field(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{}")
    path = write(tmp_path, """
[push]
wait = 0

[push.fcm]
service_account = "broken.json"
url = "fcm.googleapis.com"

[push.apns]
key_file = "AuthKey_MISSING.p8"
key_id = "abc"
team_id = "DEF123GHIJ"
""")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    file = str(path)
    assert any(line.startswith(f"{file}:6: push.wait: ") for line in lines), lines
    assert any(line.startswith(f"{file}:9: push.fcm.service_account: ")
               and "missing project_id" in line for line in lines), lines
    assert f"{file}:10: push.fcm.url: 'fcm.googleapis.com' is not an http:// or https:// URL" in lines
    assert any(line.startswith(f"{file}:13: push.apns.key_file: ")
               and "No such file or directory" in line for line in lines), lines
    assert any(line.startswith(f"{file}:14: push.apns.key_id: ") for line in lines), lines
    assert len(lines) == 5
