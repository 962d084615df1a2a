"""Devices calling (digest-challenged INVITEs), calls through the trunk, forwards."""

from __future__ import annotations

from pathlib import Path

from b2bua.testing.net import free_port
from b2bua.testing.server import start_server
from tests.integration.conftest import make_config
from tests.integration.flows import call, carrier, device, uac_auth_call


def test_device_calls_a_colleague_after_a_digest_challenge(tmp_path: Path, sipp_required: None) -> None:
    server = start_server(make_config(tmp_path))
    try:
        callee = device(server, "uas_answer", "1001", "secret1001", tmp_path / "callee", pause_ms=200)
        result = call(server, uac_auth_call("1002"), tmp_path / "caller", service="1001",
                      local_ip="127.0.0.1", extra=("-au", "1002", "-ap", "secret1002"))
        assert result.ok, result.describe()
        r = callee.result()
        assert r.ok, r.describe()
    finally:
        server.stop()


def test_wrong_password_and_unknown_user_get_the_same_403(tmp_path: Path, sipp_required: None) -> None:
    server = start_server(make_config(tmp_path))
    try:
        for user, secret in (("1002", "wrong"), ("7777", "whatever")):
            result = call(server, uac_auth_call(user, final=403), tmp_path / f"caller-{user}",
                          service="1001", local_ip="127.0.0.3", extra=("-au", user, "-ap", secret))
            assert result.ok, result.describe()
    finally:
        server.stop()


def test_device_calls_an_external_number_through_the_trunk(tmp_path: Path, sipp_required: None) -> None:
    trunk_port = free_port(host="127.0.0.2")
    server = start_server(make_config(tmp_path, trunk_port=trunk_port))
    try:
        # 06 12 34 56 78 dialled nationally leaves in E.164, with the caller's extension shown.
        far = carrier(tmp_path / "carrier", trunk_port,
                      check_regexp=r"INVITE sip:\+33612345678@127\.0\.0\.2")
        result = call(server, uac_auth_call("1001"), tmp_path / "caller", service="0612345678",
                      local_ip="127.0.0.1", extra=("-au", "1001", "-ap", "secret1001"))
        assert result.ok, result.describe()
        r = far.result()
        assert r.ok, r.describe()
    finally:
        server.stop()


def test_manual_forward_to_an_external_number_carries_diversion(tmp_path: Path, sipp_required: None) -> None:
    trunk_port = free_port(host="127.0.0.2")
    extra = """
[[users]]
extension = "1004"
name = "Denis Forward"
secret = "secret1004"
forward = { kind = "external", number = "0699887766" }
"""
    server = start_server(make_config(tmp_path, trunk_port=trunk_port, extra=extra))
    try:
        far = carrier(tmp_path / "carrier", trunk_port,
                      check_regexp=r"Diversion: <sip:1004@pbx\.test>;reason=unconditional")
        result = call(server, (Path(__file__).parent / "scenarios" / "uac_call.xml").read_text(),
                      tmp_path / "caller", service="1004")
        assert result.ok, result.describe()
        r = far.result()
        assert r.ok, r.describe()
    finally:
        server.stop()
