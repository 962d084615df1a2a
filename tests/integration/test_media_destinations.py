"""Announcement and bounce destinations, through SIPp callers and a SIPp carrier."""

from __future__ import annotations

import time
from pathlib import Path

from b2bua.testing.net import free_port
from b2bua.testing.server import start_server
from tests.integration.conftest import SCENARIOS, make_config
from tests.integration.flows import call, call_records, carrier

USERS = """
[[users]]
extension = "1005"
name = "Eve Absent"
secret = "secret1005"
mobile = "0655443322"

  [users.schedule]
  enabled = true
  closed = {{ kind = "voicemail" }}

  [[users.schedule.hours]]
  start = "00:00"
  end = "24:00"
  days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

  [[users.exceptions]]
  callers = "0611*"
  destination = {{ kind = "mobile", bounce = true }}

  [[users.exceptions]]
  callers = "*"
  destination = {{ kind = "announcement", message = "absence" }}
"""

CALL_THEN_BYE_IN = (SCENARIOS / "uac_call_then_bye_in.xml").read_text()
# A caller whose number (0611223344) matches the bounce exception.
UAC_CALL = (SCENARIOS / "uac_call.xml").read_text().replace(
    "sip:caller[call_number]@", "sip:0611223344@")


def test_announcement_is_played_then_the_call_hangs_up(tmp_path: Path, sipp_required: None) -> None:
    server = start_server(make_config(tmp_path, extra=USERS.format()))
    try:
        t0 = time.monotonic()
        # The caller 0499... matches only `*`: answered by us, the message plays, then our BYE.
        xml = CALL_THEN_BYE_IN.replace("sip:0611223344@", "sip:0499887766@")
        result = call(server, xml, tmp_path / "caller", service="1005")
        assert result.ok, result.describe()
        assert time.monotonic() - t0 > 1.5  # the message lasted
    finally:
        server.stop()


def test_bounce_calls_the_mobile_as_a_private_number(tmp_path: Path, sipp_required: None) -> None:
    trunk_port = free_port(host="127.0.0.2")
    server = start_server(make_config(tmp_path, trunk_port=trunk_port, extra=USERS.format()))
    try:
        mobile = carrier(tmp_path / "mobile", trunk_port, pause_ms=1500,
                         check_regexp=r"Privacy: id")
        # 0611223344 matches `0611*`: the caller is answered and hears "please wait" while the
        # mobile rings as a private call; it answers, the legs are bridged, the caller hangs up.
        result = call(server, UAC_CALL, tmp_path / "caller", service="1005", pause_ms=4000)
        assert result.ok, result.describe()
        r = mobile.result()
        assert r.ok, r.describe()
        assert "Anonymous" in r.messages()
    finally:
        server.stop()


def test_unanswered_bounce_ends_in_voicemail(tmp_path: Path, sipp_required: None) -> None:
    trunk_port = free_port(host="127.0.0.2")
    server = start_server(make_config(tmp_path, trunk_port=trunk_port, extra=USERS.format()))
    try:
        busy = carrier(tmp_path / "mobile", trunk_port, scenario="uas_busy")
        # The mobile is busy: "user unavailable" plays, then the voicemail greeting; the caller
        # stays on for a while and hangs up (BYE answered 200).
        result = call(server, UAC_CALL, tmp_path / "caller", service="1005", pause_ms=6000)
        assert result.ok, result.describe()
        assert busy.result().ok
        (record,) = call_records(server)
        assert record["outcome"] == "voicemail", record
        assert "bounce not answered: voicemail" in record["trace"], record
    finally:
        server.stop()
