"""Every task of the two user guides (b2bua/api/static/guides/), done in headless Chromium as
a person would, in French and in English, on a desktop window and on a 390x844 phone, with each
bad input a person makes along the way. Every page is checked by axe-core (no serious or
critical violation) and is no wider than the window; screenshots and axe reports go to
test-artifacts/browser/<guide>-<lang>-<size>/.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from b2bua.settings import add_voicemail, voicemail_dir
from b2bua.testing.net import free_port
from b2bua.testing.server import RunningServer
from tests.api.helpers import ADMIN_PASSWORD, signed_in, start, tone_wav
from tests.browser.dash import ARGS, CHROMIUM, SIZES, Dash, axe_source

pytestmark = pytest.mark.integration

COMBOS = [("fr", "desktop"), ("fr", "phone"), ("en", "desktop"), ("en", "phone")]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: scripts/test installs Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    (tmp_path / "srv").mkdir()
    srv = start(tmp_path / "srv")
    try:
        yield srv
    finally:
        srv.stop()


def _dash(browser: Any, server: RunningServer, guide: str, lang: str, size: str) -> Dash:
    context = browser.new_context(viewport=SIZES[size], locale="fr-FR" if lang == "fr" else "en-GB",
                                  is_mobile=size == "phone", has_touch=size == "phone",
                                  timezone_id="Europe/Paris")
    context.add_init_script(axe_source())
    context.set_default_timeout(15000)
    return Dash(context.new_page(), server.http_base, lang, size, f"{guide}-{lang}-{size}")


def _stored(server: RunningServer, ext: str = "1001") -> dict[str, Any]:
    settings: dict[str, Any] = signed_in(server, "admin").get(f"/api/users/{ext}").json()["settings"]
    return settings


def _row(d: Dash, test: str, n: int) -> Any:
    return d.page.locator(f"[data-test={test}-row][data-index='{n}']")


# ---- the user guide ---------------------------------------------------------------------


@pytest.mark.parametrize(("lang", "size"), COMBOS)
def test_user_guide(browser: Any, server: RunningServer, tmp_path: Path, lang: str, size: str) -> None:
    d = _dash(browser, server, "user", lang, size)
    page = d.page

    # 1. Sign in: a wrong password is refused, then the right one.
    d.open()
    assert page.locator("h1").inner_text() == d.t("Connexion", "Sign in")
    page.fill("#login", "1001")
    page.fill("#password", "wrong")
    page.click("[data-test=login-submit]")
    page.wait_for_selector("[data-test=error]")
    d.check_page("login-refused")
    d.sign_in("1001", "secret1001")
    if d.phone:  # a compact header: the menu is folded, the header is a small part of the screen
        assert not page.locator("nav#menu").is_visible()
        header = page.locator("header.top").bounding_box()
        assert header["height"] < 844 / 8, header

    # 2. My devices: they ring together; one is connected; rename (empty refused); add a
    # softphone (empty name refused); its QR code; delete it.
    from tests.integration.flows import register

    reg = register(server, "1001", "secret1001", free_port(), tmp_path / "reg")
    assert reg.ok, reg.describe()
    page.reload()
    page.wait_for_selector("[data-test=device]")
    assert d.t("Vos 2 appareils sonnent en même temps", "Your 2 devices ring at the same time") in \
        page.locator("[data-test=ring-banner]").inner_text()
    states = page.locator("[data-test=device-state]").all_inner_texts()
    assert any(s.startswith(d.t("Connecté depuis", "Connected since")) for s in states), states
    tech = page.locator("[data-test=device-source]").first
    assert not tech.is_visible()  # the address is folded away
    assert page.locator("[data-test=device-type]").all_inner_texts()[:2] == [
        d.t("Téléphone de bureau", "Desk phone"), d.t("Softphone (application)", "Softphone (app)")]
    # The QR code is offered on softphones only.
    assert page.locator("[data-device='1'] [data-test=device-qr]").count() == 0
    assert page.locator("[data-device='2'] [data-test=device-qr]").count() == 1
    d.check_page("devices")
    first = page.locator("[data-device='1']")
    first.locator("[data-test=device-rename]").click()
    first.locator("[data-test=device-label-input]").fill("  ")
    first.locator("[data-test=device-1-save]").click()
    error = first.locator("[data-test=row-error]")
    error.wait_for()
    assert d.t("Donnez un nom", "Give the device a name") in error.inner_text()
    d.check_page("device-rename-empty")
    first.locator("[data-test=device-label-input]").fill("Bureau principal")
    first.locator("[data-test=device-1-save]").click()
    page.wait_for_selector("[data-device='1'] [data-test=device-label]:text('Bureau principal')")
    page.click("[data-test=device-add]")
    page.locator("[data-test=row-error]").first.wait_for()
    page.select_option("[data-test=new-device-type]", "softphone")
    page.fill("[data-test=new-device-label]", "Portable perso")
    page.click("[data-test=device-add]")
    page.wait_for_selector("[data-device='3']")
    assert d.t("Vos 3 appareils", "Your 3 devices") in page.locator("[data-test=ring-banner]").inner_text()
    page.locator("[data-device='3'] [data-test=device-qr]").click()
    page.wait_for_selector("[data-test=qr-image]")
    d.check_page("device-qr")
    page.locator("[data-device='3'] [data-test=device-delete]").click()
    d.answer(True)
    page.wait_for_selector("[data-device='3']", state="detached")
    devices = _stored(server)["devices"]
    assert [x["label"] for x in devices] == ["Bureau principal", "Mobile"]

    # 3. Office hours: one summary line per range; edit, add, delete; an unsaved change is
    # guarded; a range with no day is pointed out beside its row and beside Save.
    d.go("schedule")
    page.click("[data-test=tab-hours]")
    summary = _row(d, "hours", 1).locator("[data-test=item-summary]")
    assert summary.inner_text() == d.t("Lun-Ven 08:00-18:00, tous les mois",
                                       "Mon-Fri 08:00-18:00, every month")
    _row(d, "hours", 1).locator("[data-test=item-edit]").click()
    _row(d, "hours", 1).locator("[data-test=hours-start]").fill("08:30")
    _row(d, "hours", 1).locator("[data-test=hours-end]").fill("12:30")
    _row(d, "hours", 1).locator("[data-test=item-done]").click()
    assert summary.inner_text().startswith(d.t("Lun-Ven 08:30-12:30", "Mon-Fri 08:30-12:30"))
    page.click("[data-test=hours-add]")
    row2 = _row(d, "hours", 2)
    row2.locator("[data-test=hours-start]").fill("14:00")
    row2.locator("[data-test=hours-end]").fill("18:00")
    row2.locator("[data-test=item-done]").click()
    assert page.locator("[data-test=unsaved]").is_visible()
    # Leaving the tab with an unsaved range asks first; staying keeps it.
    page.click("[data-test=tab-exceptional]")
    d.answer(False)
    assert page.locator("[data-test=hours-row]").count() == 2
    d.check_page("hours-unsaved")
    page.locator("[data-test=closed-kind]").select_option("extension")
    page.locator("[data-test=closed-colleague]").select_option("1002")
    page.click("[data-test=schedule-save]")
    d.saved()
    stored = _stored(server)["schedule"]
    assert [(r["start"], r["end"]) for r in stored["hours"]] == [("08:30", "12:30"), ("14:00", "18:00")]
    assert stored["closed"] == {"kind": "extension", "extension": "1002"}
    # Bad inputs: an end before the start (shown as running to the next day) and no day.
    page.click("[data-test=hours-add]")
    row3 = _row(d, "hours", 3)
    row3.locator("[data-test=hours-start]").fill("09:00")
    row3.locator("[data-test=hours-end]").fill("08:00")
    for day in ("mon", "tue", "wed", "thu", "fri"):
        row3.locator(f"[data-test=hours-days] input[value={day}]").uncheck()
    row3.locator("[data-test=item-done]").click()
    assert d.t("(jusqu'au lendemain)", "(until the next day)") in row3.inner_text()
    assert d.t("aucun jour", "no day") in row3.inner_text().lower()
    page.click("[data-test=schedule-save]")
    kind, text = d.result()
    assert kind == "warning", text
    row3 = _row(d, "hours", 3)
    row3.locator("[data-code=hours_over_midnight]").wait_for()
    row3.locator("[data-code=hours_no_days]").wait_for()
    assert d.t("passe minuit", "past midnight") in text
    assert d.t("Plage n° 3", "Range no. 3") in text
    d.check_page("hours-warning")
    _row(d, "hours", 3).locator("[data-test=item-delete]").first.click()
    d.answer(True)
    page.click("[data-test=schedule-save]")
    assert d.result()[0] == "ok"
    # An added range is lost only after saying so when leaving for another page.
    page.click("[data-test=hours-add]")
    d.go("exceptions", leave=True)
    d.go("schedule")
    assert page.locator("[data-test=hours-row]").count() == 2

    # 4. Holidays: a yearly period with the date picker and "every year", a one-off sick
    # leave; an empty name and a reversed range are refused on their field; reordered with
    # the keyboard (and by dragging on a desktop).
    page.click("[data-test=tab-exceptional]")
    page.click("[data-test=exc-add]")
    new = _row(d, "exc", 1)
    new.locator("[data-test=item-done]").click()
    new.locator("[data-test=row-error]").first.wait_for()
    assert d.t("Donnez un nom", "Give the period a name") in new.inner_text()
    new.locator("[data-test=exc-name]").fill(d.t("Vacances de fin d'année", "Year-end holidays"))
    new.locator("[data-test=exc-from]").fill("2026-12-20")
    new.locator("[data-test=exc-to]").fill("2027-01-05")
    new.locator("[data-test=exc-yearly]").check()
    new.locator("[data-test=exc-dest-kind]").select_option("announcement")
    new.locator("[data-test=exc-dest-message]").select_option("absence")
    new.locator("[data-test=item-done]").click()
    assert d.t("20/12 → 05/01, chaque année", "20/12 → 05/01, every year") in new.inner_text()
    page.click("[data-test=exc-add]")
    sick = _row(d, "exc", 2)
    sick.locator("[data-test=exc-name]").fill(d.t("Congé maladie", "Sick leave"))
    sick.locator("[data-test=exc-from]").fill("2027-01-09")
    sick.locator("[data-test=exc-to]").fill("2027-01-05")
    sick.locator("[data-test=item-done]").click()
    sick.locator("[data-test=row-error]").first.wait_for()
    assert d.t("avant la date de début", "before the start date") in sick.inner_text()
    d.check_page("period-reversed")
    sick.locator("[data-test=exc-from]").fill("2027-01-05")
    sick.locator("[data-test=exc-to]").fill("2027-01-09")
    # Only in the evening, by mistake from 18:00 to 08:00: saved, but pointed out.
    sick.locator("[data-test=exc-wholeday]").uncheck()
    sick.locator("[data-test=exc-start]").fill("18:00")
    sick.locator("[data-test=exc-end]").fill("08:00")
    sick.locator("[data-test=exc-dest-kind]").select_option("extension")
    sick.locator("[data-test=exc-dest-colleague]").select_option("1002")
    sick.locator("[data-test=item-done]").click()
    # Keyboard: Alt+Up on the sick leave's line moves it up, and the focus follows it.
    _row(d, "exc", 2).locator("[data-test=item-summary]").focus()
    page.keyboard.press("Alt+ArrowUp")
    assert d.t("Congé maladie", "Sick leave") in _row(d, "exc", 1).inner_text()
    assert page.evaluate("() => document.activeElement.closest('[data-index]').dataset.index") == "1"
    if not d.phone:
        _row(d, "exc", 2).locator("[data-test=drag-handle]").drag_to(_row(d, "exc", 1))
        assert d.t("Congé maladie", "Sick leave") in _row(d, "exc", 2).inner_text()
    else:
        _row(d, "exc", 1).locator("[data-test=move-down]").click()
    page.click("[data-test=exc-save]")
    kind, text = d.result()
    assert kind == "warning", text
    page.locator("[data-code=window_over_midnight]").wait_for()
    d.check_page("periods")
    periods = _stored(server)["schedule"]["exceptional"]
    assert [p["dates"] for p in periods] == [["12-20..01-05"], ["2027-01-05..2027-01-09"]]
    assert periods[0]["destination"] == {"kind": "announcement", "message": "absence"}
    assert periods[1]["destination"] == {"kind": "extension", "extension": "1002"}
    assert page.locator("[data-test=ics-export]").get_attribute("href").endswith("/exceptional.ics")

    # 5. Caller exceptions: "*" first makes the next one useless (pointed out on its row);
    # moving it up fixes it; the count is said in words; 15 at most; an empty pattern refused.
    d.go("exceptions")
    assert page.locator("[data-test=exceptions-count]").inner_text() == d.t(
        "Aucune exception sur 15 possibles.", "No exception out of 15 possible.")
    page.click("[data-test=exception-add]")
    rule = _row(d, "exception", 1)
    rule.locator("[data-test=item-done]").click()
    rule.locator("[data-test=row-error]").first.wait_for()
    rule.locator("[data-test=exception-callers]").fill("*")
    rule.locator("[data-test=exception-dest-kind]").select_option("busy")
    rule.locator("[data-test=item-done]").click()
    page.click("[data-test=exception-add]")
    rule2 = _row(d, "exception", 2)
    rule2.locator("[data-test=exception-callers]").fill("06*")
    options = rule2.locator("[data-test=exception-dest-kind] option").all_inner_texts()
    assert d.t("Mon mobile", "My mobile") in options  # 1001 has a mobile number
    rule2.locator("[data-test=exception-dest-kind]").select_option("mobile")
    rule2.locator("[data-test=item-done]").click()
    assert page.locator("[data-test=exceptions-count]").inner_text() == d.t(
        "2 exceptions sur 15 possibles.", "2 exceptions out of 15 possible.")
    page.click("[data-test=exceptions-save]")
    kind, text = d.result()
    assert kind == "warning", text
    _row(d, "exception", 2).locator("[data-code=exception_unreachable]").wait_for()
    d.check_page("exceptions-never")
    _row(d, "exception", 2).locator("[data-test=move-up]").focus()
    page.keyboard.press("Enter")
    assert _row(d, "exception", 1).locator("[data-test=exception-callers]").input_value() == "06*"
    page.click("[data-test=exceptions-save]")
    assert d.result()[0] == "ok"
    assert [e["callers"] for e in _stored(server)["exceptions"]] == ["06*", "*"]
    # The limit, visible without hovering.
    full = [{"callers": f"0{n:02d}*", "destination": {"kind": "busy"}} for n in range(10, 25)]
    assert signed_in(server, "1001").patch("/api/users/1001", {"exceptions": full}).status == 200
    d.go("routing")
    d.go("exceptions")
    assert page.locator("[data-test=exceptions-count]").inner_text() == d.t(
        "15 exceptions sur 15 : c'est le maximum. Supprimez-en une pour en ajouter une autre.",
        "15 exceptions out of 15: that is the limit. Delete one to add another.")
    assert page.locator("[data-test=exception-add]").is_disabled()
    d.check_page("exceptions-full")
    assert signed_in(server, "1001").patch("/api/users/1001", {"exceptions": [
        {"callers": "06*", "destination": {"kind": "mobile"}}]}).status == 200

    # 6. My absence message (recorded with the microphone) and my voicemail greeting
    # (uploaded; a file that is not audio is refused on its field).
    d.go("announcements")
    labels = page.locator("[data-test=ann-label]").all_inner_texts()
    assert d.t("Absence - retour prochainement", "Away - back soon") in labels
    assert "absence" not in labels
    own = page.locator("[data-test=own-absence]")
    own.locator("[data-test=record-start]").click()
    own.locator("[data-test=record-stop]").wait_for()
    time.sleep(1.5)
    own.locator("[data-test=record-stop]").click()
    own.locator("[data-test=record-use]").click()
    page.wait_for_selector("[data-test=own-absence-play]")
    greeting = page.locator("[data-test=own-greeting]")
    junk = tmp_path / "message.mp3"
    junk.write_bytes(b"this is not audio " * 50)
    greeting.locator("[data-test=own-greeting-file]").set_input_files(str(junk))
    greeting.locator("[data-test=own-greeting-upload]").click()
    greeting.locator("[data-test=row-error]").first.wait_for()
    assert d.t("pas un fichier audio", "not a readable audio") in greeting.inner_text()
    assert "/" not in greeting.locator("[data-test=row-error]").first.inner_text()
    d.check_page("announcements-refused")
    good = tmp_path / "annonce.wav"
    good.write_bytes(tone_wav(2.0))
    greeting.locator("[data-test=own-greeting-file]").set_input_files(str(good))
    greeting.locator("[data-test=own-greeting-upload]").click()
    page.wait_for_selector("[data-test=own-greeting-play]")
    d.check_page("announcements")
    # The holiday period now plays my own absence message.
    d.go("schedule")
    page.click("[data-test=tab-exceptional]")
    _row(d, "exc", 1).locator("[data-test=item-edit]").click()
    _row(d, "exc", 1).locator("[data-test=exc-dest-message]").select_option("absence.1001")
    _row(d, "exc", 1).locator("[data-test=item-done]").click()
    assert d.t("Mon message d'absence", "My absence message") in _row(d, "exc", 1).inner_text()
    page.click("[data-test=exc-save]")
    d.saved()
    assert _stored(server)["schedule"]["exceptional"][0]["destination"] == {
        "kind": "announcement", "message": "absence.1001"}

    # 7. Forwarding: a mobile number that is not one is refused on its field.
    d.go("forward")
    page.fill("[data-test=mobile]", "mon portable")
    page.click("[data-test=mobile-save]")
    page.locator("[data-test=row-error]").first.wait_for()
    d.check_page("forward-refused")
    page.fill("[data-test=mobile]", "0611111111")
    page.click("[data-test=mobile-save]")
    page.wait_for_selector("[data-test=flash]")
    page.check("[data-test=forward-enabled]")
    page.select_option("[data-test=forward-kind]", "external")
    page.fill("[data-test=forward-number]", "n'importe quoi")
    page.click("[data-test=forward-save]")
    assert d.result()[0] == "error"
    page.fill("[data-test=forward-number]", "0622222222")
    page.click("[data-test=forward-save]")
    d.saved()
    assert _stored(server)["forward"] == {"kind": "external", "number": "0622222222"}

    # 8. Hold music: names as people read them.
    d.go("music")
    assert page.locator("[data-test=music-default] [data-test=music-name]").inner_text() == d.t(
        "Musique par défaut", "Default music")
    page.locator("[data-test=music-default] [data-test=music-play]").click()
    page.wait_for_function("() => document.getElementById('player').src.endsWith('/api/music/default/audio')")
    page.click("[data-test=music-save]")
    d.saved()
    d.check_page("music")

    # 9. Where calls go: the week opens on today; day by day on a phone; a test caller that is
    # not a number is refused; a real test explains itself.
    d.go("routing")
    page.wait_for_selector("[data-test=week-day]", state="attached")
    days = page.locator("[data-test=week-day] h3").all_inner_texts()
    today = datetime.now(ZoneInfo("Europe/Paris")).strftime("%d/%m")
    assert today in days[0], (today, days)
    if d.phone:
        assert page.locator("[data-test=week-list]").is_visible()
        assert not page.locator("#week-svg").is_visible()
    else:
        assert page.locator("#week-svg").is_visible()
        assert page.locator("#week-svg rect").count() == 7 * 48
    page.click("[data-test=week-next]")
    page.wait_for_function(f"() => !document.querySelector('[data-test=week-day] h3').textContent.includes('{today}')")
    page.fill("[data-test=test-caller]", "<script>alert(1)</script>")
    page.click("[data-test=test-run]")
    page.locator("[data-test=row-error]").first.wait_for()
    d.check_page("routing-refused")
    page.fill("[data-test=test-caller]", "0699999999")
    page.fill("[data-test=test-date]", "2026-12-24")
    page.fill("[data-test=test-time]", "10:00")
    page.click("[data-test=test-run]")
    dest = page.locator("[data-test=test-destination]")
    dest.wait_for()
    assert dest.get_attribute("data-kind") == "announcement"
    text = dest.inner_text()
    assert text.startswith(d.t("L'appel va vers : ", "The call goes to: ")), text
    assert d.t("Mon message d'absence", "My absence message") in text
    d.check_page("routing")

    # 10. Voicemail: "1 message non lu", played, then read.
    folder = voicemail_dir(server.config.parent / "var", "1001")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vm1.wav").write_bytes(tone_wav(1.0, 8000))
    with sqlite3.connect(server.config.parent / "var" / "b2bua.sqlite", isolation_level=None) as db:
        add_voicemail(db, "1001", "0755555555", 1767776400.0, 1.0, "vm1.wav")
    d.go("voicemail")
    assert page.locator("[data-test=vm-unread]").inner_text() == d.t("1 message non lu", "1 unread message")
    d.check_page("voicemail")
    page.locator("[data-test=vm-audio]").first.evaluate("(a) => a.play()")
    page.wait_for_function("() => document.getElementById('unread').hidden === true")
    assert page.locator("[data-test=vm-download]").get_attribute("href").endswith("?download=1")
    page.click("[data-test=vm-delete]")
    d.answer(True)
    page.wait_for_selector("[data-test=vm]", state="detached")

    # My account: a new password too short is refused on its field. Help: the guide.
    d.go("account")
    page.fill("[data-test=pw-current]", "secret1001")
    page.fill("[data-test=pw-new]", "court")
    page.click("[data-test=password-save]")
    page.locator("[data-test=row-error]").first.wait_for()
    d.check_page("account-refused")
    page.fill("[data-test=pw-new]", "mon-nouveau-mot-de-passe")
    page.click("[data-test=password-save]")
    d.saved()
    d.go("help")
    page.wait_for_selector("[data-test=guide] h2")
    assert page.locator("[data-test=guide] h2").first.inner_text() == d.t("Guide de l'utilisateur", "User guide")
    d.check_page("help")
    d.sign_out()
    d.sign_in("1001", "mon-nouveau-mot-de-passe")
    d.finish()
    page.context.close()


# ---- the administrator guide ----------------------------------------------------------


@pytest.mark.parametrize(("lang", "size"), COMBOS)
def test_admin_guide(browser: Any, server: RunningServer, tmp_path: Path, lang: str, size: str) -> None:
    d = _dash(browser, server, "admin", lang, size)
    page = d.page
    d.open()
    d.sign_in("admin", ADMIN_PASSWORD)
    d.check_page("devices-of-1001")

    # 2. Users: bad extension, a taken one, a short secret, then a good one; manage it; its
    # dashboard password; delete it.
    d.go("users")
    d.check_page("users")
    # The trunks, live, below the users: the test's carrier, no call, no line cap.
    trunk = page.locator("[data-test=trunks] [data-test=trunk-carrier]")
    assert trunk.locator("[data-test=trunk-lines]").inner_text() == d.t("0 / illimité",
                                                                       "0 / unlimited")
    assert d.t("en service", "up") in trunk.inner_text()
    page.fill("[data-test=new-ext]", "12 34")
    page.fill("[data-test=new-name]", "Denise Roux")
    page.fill("[data-test=new-secret]", "court")
    page.click("[data-test=user-create]")
    kind, text = d.result()
    assert kind == "error" and len(page.locator("[data-test=row-error]").all()) == 2, text
    page.fill("[data-test=new-ext]", "1002")
    page.fill("[data-test=new-secret]", "secret-denise")
    page.click("[data-test=user-create]")
    kind, text = d.result()
    assert kind == "error", text
    d.check_page("users-refused")
    page.fill("[data-test=new-ext]", "1004")
    page.click("[data-test=user-create]")
    page.wait_for_selector("main[data-page=users][data-ready] > .flash [data-test=flash]")
    assert page.locator("[data-test=ext-select]").input_value() == "1004"
    page.locator("[data-test=user-1004] [data-test=user-manage]").click()
    page.wait_for_selector("main[data-page=lines] [data-test=device]")
    d.go("users")
    page.locator("[data-test=user-1004] details.pw summary").click()
    page.locator("[data-test=user-1004] [data-test=user-password]").fill("denise-pw-1")
    page.locator("[data-test=user-1004] details.pw button[type=submit]").click()
    page.wait_for_selector("[data-test=flash]")
    page.locator("[data-test=user-1004] [data-test=user-delete]").click()
    d.answer(True)
    page.wait_for_selector("[data-test=user-1004]", state="detached")

    # 3. Hold music: a file that is not audio is refused with the reason (no server path).
    d.go("music")
    junk = tmp_path / "notes.mp3"
    junk.write_bytes(b"not audio at all " * 200)
    page.fill("[data-test=upload-name]", "mauvaise musique")
    page.set_input_files("[data-test=upload-file]", str(junk))
    page.click("[data-test=upload-submit]")
    page.locator("[data-test=row-error]").first.wait_for()
    page.fill("[data-test=upload-name]", "broken")
    page.click("[data-test=upload-submit]")
    refused = page.locator("[data-test=row-error][data-field=file]")
    refused.wait_for()
    assert "/" not in refused.inner_text(), refused.inner_text()  # no server path
    d.check_page("music-refused")
    good = tmp_path / "promo.wav"
    good.write_bytes(tone_wav(2.0))
    page.fill("[data-test=upload-name]", "jazz_doux")
    page.set_input_files("[data-test=upload-file]", str(good))
    page.click("[data-test=upload-submit]")
    page.wait_for_selector("[data-test=music-jazz_doux]")
    assert page.locator("[data-test=music-jazz_doux] [data-test=music-name]").inner_text() == "Jazz doux"
    d.check_page("music")

    # 4. Announcements: a display name is required; then everyone may choose it.
    d.go("announcements")
    page.fill("[data-test=ann-upload-name]", "fermeture-ete")
    page.set_input_files("[data-test=ann-upload-file]", str(good))
    page.click("[data-test=ann-upload-submit]")
    page.locator("[data-test=row-error][data-field=label]").wait_for()
    page.fill("[data-test=ann-upload-label]", d.t("Fermeture estivale", "Summer closing"))
    page.click("[data-test=ann-upload-submit]")
    page.wait_for_selector("[data-test=ann-fermeture-ete]")
    d.check_page("announcements")

    # 5. Set up 1002's extension: the new announcement as the closed destination.
    page.select_option("[data-test=ext-select]", "1002")
    page.wait_for_selector("[data-test=who], [data-test=ext-select]")
    d.go("schedule")
    page.click("[data-test=tab-hours]")
    page.locator("[data-test=closed-kind]").select_option("announcement")
    options = page.locator("[data-test=closed-message] option").all_inner_texts()
    assert d.t("Fermeture estivale", "Summer closing") in options, options
    page.locator("[data-test=closed-message]").select_option("fermeture-ete")
    page.click("[data-test=schedule-save]")
    d.saved()
    closed = _stored(server, "1002")["schedule"]["closed"]
    assert closed == {"kind": "announcement", "message": "fermeture-ete"}
    d.check_page("schedule-1002")
    # An announcement in use cannot be deleted.
    d.go("announcements")
    page.locator("[data-test=ann-fermeture-ete] [data-test=ann-delete]").click()
    d.answer(True)
    page.wait_for_selector("[data-test=error]")
    # 1002 back to the file's settings: the announcement is no longer used, and goes.
    d.go("users")
    page.locator("[data-test=user-1002] [data-test=user-reset]").click()
    d.answer(True)
    page.wait_for_selector("[data-test=user-1002] [data-test=user-reset]", state="detached")
    assert "closed" not in (_stored(server, "1002").get("schedule") or {})
    d.go("announcements")
    page.locator("[data-test=ann-fermeture-ete] [data-test=ann-delete]").click()
    d.answer(True)
    page.wait_for_selector("[data-test=ann-fermeture-ete]", state="detached")
    d.go("help")
    page.wait_for_selector("[data-test=guide] h2")
    assert page.locator("[data-test=guide] h2").first.inner_text() == d.t(
        "Guide de l'administrateur", "Administrator guide")
    d.check_page("help")
    d.finish()
    page.context.close()
