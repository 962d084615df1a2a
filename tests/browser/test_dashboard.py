"""The dashboard in headless Chromium (Debian's package, driven by Playwright), against a real
`b2bua run`: an admin uploads hold music; a user adds a line and scans its QR code, chooses the
music, adds office hours, an exceptional period and a caller exception, tests a call, reads the
history and a voicemail; then a real SIPp call from the trunk follows the new rule (486).

One browser session for the whole flow keeps it fast. Screenshots of every page go to
test-artifacts/browser/.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from b2bua.settings import add_voicemail, voicemail_dir
from b2bua.testing.server import RunningServer
from tests.api.helpers import ADMIN_PASSWORD, signed_in, start, tone_wav

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--lang=fr-FR",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
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
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _sign_in(page, base: str, login: str, password: str) -> None:
    page.goto(base + "/")
    page.fill("#login", login)
    page.fill("#password", password)
    page.click("[data-test=login-submit]")
    page.wait_for_selector("nav")


def _go(page, name: str) -> None:
    page.click(f"[data-test=nav-{name}]")
    page.wait_for_selector(f"main[data-page={name}]")


def _saved(page) -> None:
    flash = page.locator("[data-test=flash], [data-test=error]").last
    flash.wait_for()
    assert flash.get_attribute("data-test") == "flash", flash.inner_text()
    page.evaluate("document.querySelectorAll('.flash').forEach((e) => e.replaceChildren())")


def test_the_dashboard_flow_then_a_real_call_follows_the_new_rule(server, browser, tmp_path):
    base = server.http_base
    context = browser.new_context(viewport={"width": 1200, "height": 900}, locale="fr-FR")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # -- sign-in page, French by default; a wrong password is refused -------------------------
    page.goto(base + "/")
    page.wait_for_selector("#login")
    assert page.locator("h1").inner_text() == "Connexion"
    _shot(page, "01-login")
    page.fill("#login", "1001")
    page.fill("#password", "wrong")
    page.click("[data-test=login-submit]")
    page.wait_for_selector("[data-test=error]")

    # -- admin: upload hold music (and see a bad file refused) ---------------------------------
    _sign_in(page, base, "admin", ADMIN_PASSWORD)
    _go(page, "music")
    bad = tmp_path / "notes.mp3"
    bad.write_bytes(b"not audio at all " * 200)
    page.fill("[data-test=upload-name]", "broken")
    page.set_input_files("[data-test=upload-file]", str(bad))
    page.click("[data-test=upload-submit]")
    error = page.locator("form [data-test=error]")
    error.wait_for()
    assert "ce n'est pas un fichier audio lisible" in error.inner_text()
    _shot(page, "02-music-upload-refused")
    good = tmp_path / "promo.wav"
    good.write_bytes(tone_wav(2.0))
    page.fill("[data-test=upload-name]", "promo")
    page.set_input_files("[data-test=upload-file]", str(good))
    page.click("[data-test=upload-submit]")
    page.wait_for_selector("[data-test=music-promo]")
    assert "promo" in page.locator("[data-test=flash]").inner_text()
    _shot(page, "03-music-admin")
    _go(page, "users")
    page.wait_for_selector("main table")
    _shot(page, "03-users-admin")
    page.click("[data-test=logout]")
    page.wait_for_selector("#login")

    # -- user 1001: lines ------------------------------------------------------------------------
    _sign_in(page, base, "1001", "secret1001")
    page.wait_for_selector("[data-test=device]")
    assert page.locator("[data-test=nav-lines]").inner_text() == "Lignes"
    page.select_option("[data-test=new-device-type]", "softphone")
    page.fill("[data-test=new-device-label]", "Portable perso")
    page.click("[data-test=device-add]")
    page.wait_for_selector("[data-device='3']")
    card = page.locator("[data-device='3']")
    card.locator("[data-test=device-label]").fill("Mon portable")
    card.locator("[data-test=device-save]").click()
    _saved(page)
    card.locator("[data-test=device-qr]").click()
    qr = page.locator("[data-test=qr-image]")
    qr.wait_for()
    png = tmp_path / "qr.png"
    qr.screenshot(path=str(png))
    decoded = subprocess.run(["zbarimg", "--raw", "-q", str(png)], capture_output=True,
                             text=True, timeout=30)
    url = decoded.stdout.strip()
    assert url.startswith(base + "/provision/"), decoded
    with urllib.request.urlopen(url + ".json", timeout=10) as response:
        settings = json.load(response)
    assert settings["username"] == "1001" and settings["password"] == "secret1001"
    _shot(page, "04-lines")

    # -- hold music: choose the uploaded class, play it -----------------------------------------
    _go(page, "music")
    page.locator("[data-test=music-promo] [data-test=music-choice]").check()
    page.click("[data-test=music-save]")
    _saved(page)
    page.locator("[data-test=music-promo] [data-test=music-play]").click()
    page.wait_for_function(
        "() => document.getElementById('music-player').src.endsWith('/api/music/promo/audio')")
    page.wait_for_function("() => document.getElementById('music-player').readyState >= 2")
    _shot(page, "05-music")

    # -- schedules: "+" office hours, an exceptional period ------------------------------------
    _go(page, "schedule")
    page.click("[data-test=tab-hours]")
    rows_before = page.locator("[data-test=hours-row]").count()
    page.click("[data-test=hours-add]")
    row = page.locator("[data-test=hours-row]").nth(rows_before)
    row.locator("[data-test=hours-start]").fill("09:00")
    row.locator("[data-test=hours-end]").fill("12:00")
    for day in ("mon", "tue", "wed", "thu", "fri"):
        row.locator(f"[data-test=hours-days] input[value={day}]").uncheck()
    row.locator("[data-test=hours-days] input[value=sat]").check()
    row.locator("[data-test=allmonths]").uncheck()
    row.locator("input[value='6']").check()
    page.click("[data-test=schedule-save]")
    _saved(page)
    _shot(page, "06-schedule-hours")
    page.click("[data-test=tab-exceptional]")
    page.click("[data-test=exc-add]")
    exc = page.locator("[data-test=exc-row]").last
    exc.locator("[data-test=exc-name]").fill("Pont de l'Ascension")
    exc.locator("[data-test=exc-dates]").fill("2026-05-15")
    exc.locator("[data-test=exc-dest-kind]").select_option("extension")
    exc.locator("[data-test=exc-dest-colleague]").select_option("1002")
    exc.locator("[data-test=exc-dest-straightvm]").check()
    page.click("[data-test=exc-save]")
    _saved(page)
    _shot(page, "07-schedule-exceptional")

    # -- caller exception: busy for CALLER ----------------------------------------------------
    _go(page, "exceptions")
    page.click("[data-test=exception-add]")
    rule = page.locator("[data-test=exception-row]").last
    rule.locator("[data-test=exception-callers]").fill(CALLER)
    rule.locator("[data-test=exception-dest-kind]").select_option("busy")
    page.click("[data-test=exceptions-save]")
    _saved(page)
    kinds = rule.locator("[data-test=exception-dest-kind] option").all_inner_texts()
    assert "Mon mobile" in kinds  # 1001 has a mobile number
    _shot(page, "08-exceptions")

    _go(page, "forward")
    assert "prioritaires" in page.locator("[data-test=forward-note]").inner_text()
    _shot(page, "09-forward")

    # The API sees what the pages saved.
    stored = signed_in(server, "1001").get("/api/users/1001").json()["settings"]
    assert stored["hold_music"] == "promo"
    assert stored["devices"][2] == {"type": "softphone", "label": "Mon portable"}
    assert {"start": "09:00", "end": "12:00", "days": ["sat"], "months": [6]} in stored["schedule"]["hours"]
    assert stored["schedule"]["exceptional"][-1] == {
        "name": "Pont de l'Ascension", "dates": ["2026-05-15"],
        "destination": {"kind": "extension", "extension": "1002", "voicemail": True}}
    assert stored["exceptions"][-1] == {"callers": CALLER, "destination": {"kind": "busy"}}

    # -- where calls go: the week picture and "test a call" -------------------------------------
    _go(page, "routing")
    page.wait_for_selector("#week-svg")
    assert page.locator("#week-svg rect").count() == 7 * 48
    page.fill("[data-test=test-caller]", CALLER)
    page.fill("[data-test=test-date]", "2026-01-07")
    page.fill("[data-test=test-time]", "10:00")
    page.click("[data-test=test-run]")
    dest = page.locator("[data-test=test-destination]")
    dest.wait_for()
    assert dest.get_attribute("data-kind") == "busy"
    assert page.locator("[data-test=test-rule]").get_attribute("data-rule") == "exception"
    _shot(page, "10-routing")

    # -- a real call from the trunk now gets 486 -------------------------------------------------
    from tests.integration.flows import call, uac_expect

    result = call(server, uac_expect(486, caller=CALLER), tmp_path / "caller")
    assert result.ok, result.describe()

    # -- the call is in the history, with its trace ----------------------------------------------
    _go(page, "routing")
    page.wait_for_selector("[data-test=call]")
    assert CALLER in page.locator("[data-test=call]").first.inner_text()
    page.locator("details summary").first.click()
    assert "exception n° 1" in page.locator("[data-test=call-trace]").first.inner_text()
    _shot(page, "11-history")

    # -- voicemail: list, unread count, play ------------------------------------------------------
    folder = voicemail_dir(server.config.parent / "var", "1001")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vm1.wav").write_bytes(tone_wav(1.0, 8000))
    import sqlite3

    with sqlite3.connect(server.config.parent / "var" / "b2bua.sqlite", isolation_level=None) as db:
        add_voicemail(db, "1001", "0755555555", 1767776400.0, 1.0, "vm1.wav")
    _go(page, "voicemail")
    page.wait_for_selector("[data-test=vm]")
    assert page.locator("[data-test=unread]").inner_text() == "1"
    _shot(page, "12-voicemail")
    page.locator("[data-test=vm-audio]").first.evaluate("(a) => a.play()")
    page.wait_for_function("() => document.getElementById('unread').hidden === true")
    assert page.locator("[data-test=vm-download]").get_attribute("href").endswith("?download=1")

    _go(page, "account")
    _shot(page, "12-account")

    # -- English -----------------------------------------------------------------------------------
    page.click("[data-test=lang-en]")
    page.wait_for_selector("[data-test=nav-lines]")
    assert page.locator("[data-test=nav-lines]").inner_text() == "Lines"
    _shot(page, "13-english")
    assert not errors, errors
    context.close()
