"""The settings store without HTTP: password hashes, merging stored sections over the TOML,
TOML export round trips, and what `b2bua import` stores."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from b2bua.config import config_from_text, format_path, load_config
from b2bua.settings import (
    MusicUpload,
    SettingsRejected,
    SettingsStore,
    UserOverride,
    config_to_raw,
    hash_password,
    import_rows,
    merge_raw,
    raw_to_toml,
    verify_password,
)
from b2bua.store import open_database
from tests.api.helpers import make_config

DEFAULT = Path(__file__).resolve().parents[2] / "conf" / "default.toml"


def test_password_hash_is_standard_pbkdf2_sha256():
    salt = bytes(range(16))
    encoded = hash_password("correct horse", iterations=1000, salt=salt)
    scheme, rounds, salt_text, digest_text = encoded.split("$")[1:]
    assert (scheme, rounds) == ("pbkdf2-sha256", "1000")

    def ab64(text: str) -> bytes:
        text = text.replace(".", "+")
        return base64.b64decode(text + "=" * (-len(text) % 4))

    assert ab64(salt_text) == salt
    assert ab64(digest_text) == hashlib.pbkdf2_hmac("sha256", b"correct horse", salt, 1000)
    assert verify_password("correct horse", encoded)
    assert not verify_password("correct horsf", encoded)
    assert not verify_password("correct horse", encoded.replace("$1000$", "$1001$"))
    assert not verify_password("x", "$md5$whatever")
    assert not verify_password("x", "$pbkdf2-sha256$notanumber$a$b")
    assert hash_password("same") != hash_password("same")  # a new salt every time


def test_stored_keys_replace_the_files_null_removes_and_deleted_hides():
    base = config_to_raw(load_config(DEFAULT))
    overrides = {
        "1001": UserOverride("1001", {"forward": {"kind": "busy"}, "mobile": None,
                                      "exceptions": None}),
        "1002": UserOverride("1002", {}, deleted=True),
        "1010": UserOverride("1010", {"name": "New", "secret": "s3cret-10"}, created=True),
    }
    raw = merge_raw(base, overrides, [MusicUpload("promo", ("uploads/music/promo/a.wav",),
                                                  None, None, 0.0, None)], Path("/data"))
    users = {u["extension"]: u for u in raw["users"]}
    assert {"1001", "1010"} <= set(users)
    assert "1002" not in users
    assert users["1001"]["forward"] == {"kind": "busy"}
    assert "mobile" not in users["1001"] and "exceptions" not in users["1001"]
    assert users["1001"]["secret"] == "change-me-1001"  # untouched keys come from the file
    assert users["1010"] == {"extension": "1010", "name": "New", "secret": "s3cret-10"}
    assert raw["music"] == [{"name": "promo", "files": ["/data/uploads/music/promo/a.wav"]}]


def test_the_configuration_round_trips_through_toml_export():
    config = load_config(DEFAULT)
    text = raw_to_toml(config_to_raw(config), "exported\nfor a test")
    assert text.startswith("# exported\n# for a test\n")
    again = config_from_text(text)
    assert again.model_dump() == config.model_dump()
    assert raw_to_toml(config_to_raw(again)) == raw_to_toml(config_to_raw(config))


def test_import_rows_make_the_store_equal_to_the_imported_file(tmp_path):
    base = load_config(make_config(tmp_path))
    edited = config_to_raw(base)
    edited["users"][0]["exceptions"] = [{"callers": "06*", "destination": {"kind": "busy"}}]
    edited["users"][0].pop("mobile")
    edited["users"] = [u for u in edited["users"] if u["extension"] != "1003"]
    edited["users"].append({"extension": "1020", "name": "Eve", "secret": "secret-1020"})
    source = config_from_text(raw_to_toml(edited))
    rows, notes = import_rows(base, source)
    assert notes == []
    assert rows["1001"].values == {"exceptions": edited["users"][0]["exceptions"], "mobile": None}
    assert rows["1003"].deleted and rows["1020"].created
    merged = merge_raw(config_to_raw(base), rows, [], Path(base.server.data_dir))
    assert config_from_text(raw_to_toml(merged)).model_dump()["users"] == source.model_dump()["users"]


def test_an_invalid_change_is_rejected_with_fields_relative_to_the_user(tmp_path):
    config = load_config(make_config(tmp_path))
    conn = open_database(tmp_path / "var")
    store = SettingsStore(conn, config)
    raw, _ = store.user_candidate("1002", {"ring_timeout": 0, "forward": {"kind": "mobile"}})
    with pytest.raises(SettingsRejected) as info:
        store.validate(raw, "1002")
    fields = {format_path(path) for path, _ in info.value.relative()}
    assert fields == {"ring_timeout", "forward.kind"}
    assert store.overrides() == {}
    conn.close()
