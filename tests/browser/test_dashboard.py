"""The dashboard in headless Chromium (Debian's package, driven by Playwright), against a real
`b2bua run`: an admin uploads hold music; a user adds a softphone and scans its QR code, chooses
the music, adds a caller exception, tests a call; then a real SIPp call from the trunk follows the
new rule (486) and shows in the history with its reason.

One browser session for the whole flow keeps it fast. Screenshots of every page go to
test-artifacts/browser/flow/ (tests/browser/test_guides.py walks the user guides).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from b2bua.testing.server import RunningServer
from tests.api.helpers import ADMIN_PASSWORD, signed_in, start, tone_wav
from tests.browser.dash import ARGS, CHROMIUM, SIZES, Dash, axe_source

pytestmark = pytest.mark.integration

CALLER = "0611223344"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    for tool, package in (("sipp", "sip-tester"), ("zbarimg", "zbar-tools")):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: scripts/test installs Debian's {package}")
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: scripts/test installs Debian's chromium")
    srv = start(tmp_path_factory.mktemp("browser"))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def test_the_dashboard_flow_then_a_real_call_follows_the_new_rule(server, browser, tmp_path):
    context = browser.new_context(viewport=SIZES["desktop"], locale="fr-FR", timezone_id="Europe/Paris")
    context.add_init_script(axe_source())
    context.set_default_timeout(15000)
    d = Dash(context.new_page(), server.http_base, "fr", "desktop", "flow")
    page = d.page

    # -- admin: upload hold music -----------------------------------------------------------
    d.open()
    d.sign_in("admin", ADMIN_PASSWORD)
    d.go("music")
    good = tmp_path / "promo.wav"
    good.write_bytes(tone_wav(2.0))
    page.fill("[data-test=upload-name]", "promo")
    page.set_input_files("[data-test=upload-file]", str(good))
    page.click("[data-test=upload-submit]")
    page.wait_for_selector("[data-test=music-promo]")
    assert "Promo" in page.locator("main > .flash").inner_text()
    d.check_page("music-admin")
    d.sign_out()

    # -- user 1001: a softphone and its QR code ------------------------------------------------
    d.sign_in("1001", "secret1001")
    d.go("lines")
    page.select_option("[data-test=new-device-type]", "softphone")
    page.fill("[data-test=new-device-label]", "Mon portable")
    page.click("[data-test=device-add]")
    page.wait_for_selector("[data-device='3']")
    page.locator("[data-device='3'] [data-test=device-qr]").click()
    qr = page.locator("[data-test=qr-image]")
    qr.wait_for()
    png = tmp_path / "qr.png"
    qr.screenshot(path=str(png))
    decoded = subprocess.run(["zbarimg", "--raw", "-q", str(png)], capture_output=True,
                             text=True, timeout=30)
    url = decoded.stdout.strip()
    assert url.startswith(server.http_base + "/provision/"), decoded
    with urllib.request.urlopen(url + ".json", timeout=10) as response:
        settings = json.load(response)
    assert settings["username"] == "1001" and settings["password"] == "secret1001"
    d.check_page("lines")

    # -- hold music: the uploaded class ----------------------------------------------------------
    d.go("music")
    page.locator("[data-test=music-promo] [data-test=music-choice]").check()
    page.click("[data-test=music-save]")
    d.saved()

    # -- caller exception: busy for CALLER, then test a call ------------------------------------
    d.go("exceptions")
    page.click("[data-test=exception-add]")
    rule = page.locator("[data-test=exception-row]").last
    rule.locator("[data-test=exception-callers]").fill(CALLER)
    rule.locator("[data-test=exception-dest-kind]").select_option("busy")
    rule.locator("[data-test=item-done]").click()
    page.click("[data-test=exceptions-save]")
    d.saved()
    stored = signed_in(server, "1001").get("/api/users/1001").json()["settings"]
    assert stored["hold_music"] == "promo"
    assert stored["devices"][2] == {"type": "softphone", "label": "Mon portable"}
    assert stored["exceptions"][-1] == {"callers": CALLER, "destination": {"kind": "busy"}}
    d.go("routing")
    page.fill("[data-test=test-caller]", CALLER)
    page.fill("[data-test=test-date]", "2026-01-07")
    page.fill("[data-test=test-time]", "10:00")
    page.click("[data-test=test-run]")
    dest = page.locator("[data-test=test-destination]")
    dest.wait_for()
    assert dest.get_attribute("data-kind") == "busy"
    assert page.locator("[data-test=test-rule]").get_attribute("data-rule") == "exception"

    # -- a real call from the trunk now gets 486, and the history says why ----------------------
    from tests.integration.flows import call, uac_expect

    result = call(server, uac_expect(486, caller=CALLER), tmp_path / "caller")
    assert result.ok, result.describe()
    d.go("voicemail")
    d.go("routing")
    page.wait_for_selector("[data-test=call]")
    assert "06 11 22 33 44" in page.locator("[data-test=call]").first.inner_text()
    page.locator("[data-test=call] + tr details summary").first.click()
    assert "exception n° 1" in page.locator("[data-test=call-trace]").first.inner_text()
    d.check_page("history")
    d.finish()
    context.close()
