"""`[media] anchor = false`: bridged calls keep the phones' SDP (RTP flows between the phones), and
a call that a media destination answers still gets our media."""

from __future__ import annotations

import re
import time
from pathlib import Path

from b2bua.testing.server import start_server
from tests.integration.conftest import SCENARIOS, make_config
from tests.integration.flows import call, device
from tests.integration.test_media_destinations import CALL_THEN_BYE_IN, USERS

DIRECT = """
[media]
anchor = false
"""

UAC_CALL = (SCENARIOS / "uac_call.xml").read_text()
UAS_ANSWER = (SCENARIOS / "uas_answer.xml").read_text()


def audio_ports(trace: str) -> set[int]:
    return {int(p) for p in re.findall(r"^m=audio (\d+) ", trace, re.MULTILINE)}


def call_1001(config: Path, tmp_path: Path) -> tuple[set[int], set[int]]:
    """A trunk call to 1001 (the caller offers port 41000, the desk phone answers 41002): the
    audio ports in the SDP the caller got, and in the SDP the callee got."""
    server = start_server(config)
    try:
        callee = device(server, "uas_answer", "1001", "secret1001", tmp_path / "callee",
                        xml=UAS_ANSWER.replace("m=audio [media_port]", "m=audio 41002"))
        result = call(server, UAC_CALL.replace("m=audio [media_port]", "m=audio 41000"),
                      tmp_path / "caller")
        assert result.ok, result.describe()
        r = callee.result()
        assert r.ok, r.describe()
        return audio_ports(result.messages()), audio_ports(r.messages())
    finally:
        server.stop()


def test_bridged_call_keeps_the_phones_sdp(tmp_path: Path, sipp_required: None) -> None:
    caller_saw, callee_saw = call_1001(make_config(tmp_path, extra=DIRECT), tmp_path)
    # Each phone was told the other phone's own port: no port of ours in between.
    assert caller_saw == {41000, 41002}
    assert callee_saw == {41000, 41002}


def test_anchored_call_rewrites_the_sdp(tmp_path: Path, sipp_required: None) -> None:
    """The default, for contrast: each phone sees one of our ports instead of the other's."""
    caller_saw, callee_saw = call_1001(make_config(tmp_path), tmp_path)
    assert 41002 not in caller_saw
    assert 41000 not in callee_saw


def test_an_announcement_is_played_without_anchoring(tmp_path: Path, sipp_required: None) -> None:
    server = start_server(make_config(tmp_path, extra=USERS.format() + DIRECT))
    try:
        t0 = time.monotonic()
        # Caller 0499... matches only `*` (an announcement): we answer with our own media.
        xml = CALL_THEN_BYE_IN.replace("sip:0611223344@", "sip:0499887766@").replace(
            "m=audio [media_port]", "m=audio 41000")
        result = call(server, xml, tmp_path / "caller", service="1005")
        assert result.ok, result.describe()
        assert time.monotonic() - t0 > 1.5  # the message lasted
        ports = audio_ports(result.messages())
        assert 41000 in ports and len(ports) == 2  # the caller's offer, and our answer
    finally:
        server.stop()
