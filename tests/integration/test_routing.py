"""Routing decisions executed for real: SIPp calls at a pinned "now" (B2BUA_TEST_NOW, the
tests-only clock override) land on office hours, closed, an exceptional period, an exception."""

from __future__ import annotations

from pathlib import Path

import pytest

from b2bua.testing.server import start_server
from tests.integration.conftest import SCENARIOS, make_config
from tests.integration.flows import call, call_records, device, uac_expect

ROUTED_USER = """
[[users]]
extension = "1006"
name = "Fanny Horaires"
secret = "secret1006"
timezone = "Europe/Paris"

  [[users.devices]]
  type = "sip"
  label = "Bureau"

  [users.schedule]
  enabled = true
  closed = {{ kind = "busy" }}

  [[users.schedule.hours]]
  start = "09:00"
  end = "17:00"
  days = ["mon", "tue", "wed", "thu", "fri"]

  [[users.schedule.exceptional]]
  name = "Noel"
  dates = ["12-25"]
  destination = {{ kind = "announcement", message = "absence" }}

  [[users.exceptions]]
  callers = "0699*"
  destination = {{ kind = "busy" }}
"""

UAC_CALL = (SCENARIOS / "uac_call.xml").read_text()


@pytest.mark.parametrize(
    ("now", "caller", "expect", "rule"),
    [
        ("2026-11-23T10:00:00+01:00", "0611223344", "devices", "office_hours"),  # Monday
        ("2026-11-23T20:00:00+01:00", "0611223344", 486, "closed"),  # Monday evening
        ("2026-12-25T10:00:00+01:00", "0611223344", "answered", "exceptional"),  # a Friday
        ("2026-11-23T10:00:00+01:00", "0699000000", 486, "exception"),
    ],
)
def test_calls_follow_the_rules_at_a_pinned_time(tmp_path: Path, sipp_required: None, now: str,
                                                 caller: str, expect: object, rule: str) -> None:
    server = start_server(make_config(tmp_path, extra=ROUTED_USER.format()),
                          env={"B2BUA_TEST_NOW": now})
    try:
        if expect == "devices":
            desk = device(server, "uas_answer", "1006", "secret1006", tmp_path / "desk",
                          pause_ms=200)
            xml = UAC_CALL.replace("sip:caller[call_number]@", f"sip:{caller}@")
            result = call(server, xml, tmp_path / "caller", service="1006")
            assert result.ok, result.describe()
            assert desk.result().ok
        elif expect == "answered":
            # The announcement answers, plays, and hangs up.
            xml = (SCENARIOS / "uac_call_then_bye_in.xml").read_text().replace(
                "sip:0611223344@", f"sip:{caller}@")
            result = call(server, xml, tmp_path / "caller", service="1006")
            assert result.ok, result.describe()
        else:
            result = call(server, uac_expect(int(expect), caller=caller), tmp_path / "caller",
                          service="1006")
            assert result.ok, result.describe()
        (record,) = call_records(server, 1)
        assert record["rule"] == rule, record
        assert record["trace"], record
    finally:
        server.stop()
