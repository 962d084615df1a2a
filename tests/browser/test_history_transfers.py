"""The call history of the dashboard tells transfers and pickups, in French and in English, on a
desktop window and on a phone (headless Chromium, axe-core), after real calls through a real
`b2bua run`:

- a directed pickup: a carrier call rings 1001's desk phone (SIPp), 1002 dials `**1001` (SIPp,
  digest) and takes it: "intercepté par 1002" / "picked up by 1002";
- a blind transfer by pjsua2 phones: 1003 calls 1001, who transfers to 1002 (REFER):
  "transféré par 1001 vers 1002", "transfert pris par ..." / "transferred by 1001 to 1002",
  "transfer answered by ...";
- an attended transfer by pjsua2 phones (REFER with Replaces after a consultation call):
  "transfert supervisé vers 1002" on 1001's call, and on 1002's consultation call "transféré par
  1001 : mis en relation avec 1003" / "attended transfer to 1002", "transferred by 1001:
  connected to 1003".
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from b2bua.testing.audio import make_tone
from b2bua.testing.server import RunningServer
from b2bua.testing.sipp import SippResult
from tests.api.helpers import signed_in, start
from tests.browser.dash import ARGS, CHROMIUM, SIZES, Dash, axe_source
from tests.integration.conftest import SCENARIOS
from tests.integration.flows import call, device, uac_auth_call

pytestmark = pytest.mark.integration

COMBOS = [("fr", "desktop"), ("fr", "phone"), ("en", "desktop"), ("en", "phone")]


def _pickup(server: RunningServer, work: Path) -> None:
    """A carrier call rings 1001's desk phone; 1002 picks it up with **1001 and hangs up."""
    ringing = device(server, "uas_cancel_any", "1001", "secret1001", work / "ringing")
    caller: dict[str, SippResult] = {}

    def place() -> None:
        caller["result"] = call(server, (SCENARIOS / "uac_call_then_bye_in.xml").read_text(),
                                work / "caller", service="0442930600", wait=30)

    thread = threading.Thread(target=place)
    thread.start()
    time.sleep(1.5)  # ringing
    picker = call(server, uac_auth_call("1002"), work / "picker", service="**1001",
                  local_ip="127.0.0.1", pause_ms=1000, extra=("-au", "1002", "-ap", "secret1002"))
    thread.join(40)
    assert picker.ok, picker.describe()
    assert caller["result"].ok, caller["result"].describe()
    assert ringing.result().ok  # cancelled: the call was picked up elsewhere


def _pjsua(server: RunningServer, scenario: str, work: Path) -> None:
    work.mkdir()
    for ext, hz in (("1001", 600), ("1002", 880), ("1003", 440)):
        make_tone(work / f"tone-{ext}.wav", 30, hz)
    done = subprocess.run(
        [sys.executable, "-m", "b2bua.testing.pjsua", scenario, str(server.sip_port), str(work)],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert '"registered": true' in done.stdout and "transfer 200 final" in done.stdout, \
        done.stdout[-3000:]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    import shutil

    pytest.importorskip("pjsua2")
    if shutil.which("sipp") is None:
        pytest.fail("sipp is missing: scripts/test installs Debian's sip-tester")
    work = tmp_path_factory.mktemp("history")
    srv = start(work)
    try:
        _pickup(srv, work / "pickup")
        _pjsua(srv, "blind", work / "blind")
        _pjsua(srv, "attended", work / "attended")
        admin = signed_in(srv, "admin")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the recorder writes in batches
            codes = {s["code"] for ext in ("1001", "1002")
                     for c in admin.get(f"/api/users/{ext}/calls").json()["calls"]
                     for s in c["steps"]}
            if {"picked_up", "transferred", "transfer_answered", "attended_transfer",
                    "joined_call"} <= codes:
                break
            time.sleep(0.3)
        else:
            pytest.fail(f"call records without the transfers: {codes}")
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: scripts/test installs Debian's chromium")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def history(d: Dash) -> list[tuple[str, list[str]]]:
    """Each call of the history as the page shows it: its outcome, and its reasons once
    "Pourquoi ?" is opened."""
    d.go("routing")
    page = d.page
    page.wait_for_selector("#calls [data-test=call]")
    out = []
    rows = page.locator("#calls [data-test=call]")
    traces = page.locator("#calls [data-test=call-trace]")
    for i in range(rows.count()):
        summary = page.locator("#calls .trace-row summary").nth(i)
        summary.scroll_into_view_if_needed()
        summary.click()
        outcome = rows.nth(i).locator("td").nth(2).inner_text()
        out.append((outcome, traces.nth(i).locator("li").all_inner_texts()))
    return out


@pytest.mark.parametrize(("lang", "size"), COMBOS)
def test_the_history_tells_transfers_and_pickups(browser: Any, server: RunningServer, lang: str,
                                                 size: str) -> None:
    context = browser.new_context(viewport=SIZES[size], locale="fr-FR" if lang == "fr" else "en-GB",
                                  is_mobile=size == "phone", has_touch=size == "phone",
                                  timezone_id="Europe/Paris")
    context.add_init_script(axe_source())
    context.set_default_timeout(15000)
    d = Dash(context.new_page(), server.http_base, lang, size, f"history-{lang}-{size}")
    d.open()
    d.sign_in("1001", "secret1001")
    calls = history(d)
    d.check_page("history-1001")
    lines = [line for _, trace in calls for line in trace]
    answered = d.t("répondu", "answered")
    assert len(calls) == 3 and all(outcome == answered for outcome, _ in calls), calls
    # Newest first: the attended transfer, the blind one, the pickup.
    attended, blind, picked = (trace for _, trace in calls)
    assert d.t("intercepté par 1002", "picked up by 1002") in picked, picked
    assert d.t("transféré par 1001 vers 1002", "transferred by 1001 to 1002") in blind, blind
    assert any(line.startswith(d.t("transfert pris par ", "transfer answered by "))
               for line in blind), blind
    assert d.t("transféré par 1001 vers 1002", "transferred by 1001 to 1002") in attended
    assert d.t("transfert supervisé vers 1002", "attended transfer to 1002") in attended, attended
    if lang == "fr":  # nothing left in English
        english = ("picked up", "transferred by", "transfer answered", "attended transfer",
                   "decision:", "office hours")
        assert not [line for line in lines if any(w in line for w in english)], lines
    d.sign_out()

    # 1002's consultation call was joined to 1003's.
    d.sign_in("1002", "secret1002")
    calls = history(d)
    joined = d.t("transféré par 1001 : mis en relation avec 1003",
                 "transferred by 1001: connected to 1003")
    assert joined in [line for _, trace in calls for line in trace], calls
    d.check_page("history-1002")
    d.finish()
