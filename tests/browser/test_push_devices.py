"""The device card of push-capable softphones (RFC 8599, docs/push.md) in headless Chromium,
against a real `b2bua run` whose APNs and FCM are the local stand-ins speaking Apple's and
Google's protocols: scripted softphones register over TCP with push parameters and drop their
connection as a suspended app does, real SIPp calls from the carrier make the server push, and the
card then says how the device is woken and what the last push gave, in French and in English, on
a desktop window and on a phone, checked by axe-core.

- 1005's iPhone (APNs, asleep): "En veille", "Réveil par notification (APNs)", last push remise;
- 1005's Android (FCM, a token Google no longer knows): the push answers invalid_token, the
  server forgets the token, the card says notifications stopped until it registers again;
- 1005's Pixel (FCM, connected): connected, woken by push, never pushed (its connection lives);
- 1006's tablet (APNs) while Apple fails (503), refuses (400 BadTopic) and does not answer in
  time: "service indisponible", "refusée", "pas de réponse du service".
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from b2bua.push import PushTarget
from b2bua.testing.push_apns import ApnsStandIn
from b2bua.testing.push_fcm import FcmStandIn
from b2bua.testing.push_keys import make_apns_key, make_service_account
from b2bua.testing.push_phone import PushPhone
from b2bua.testing.server import RunningServer
from tests.api.helpers import signed_in, start
from tests.browser.dash import ARGS, CHROMIUM, SIZES, Dash, axe_source
from tests.integration.flows import call, uac_expect

pytestmark = pytest.mark.integration

T = TypeVar("T")
TOPIC = "org.example.phone.voip"
IPHONE, TABLET = "1a" * 32, "2b" * 32
ANDROID, PIXEL = "android-token-forgotten-by-google", "pixel-registration-token"
COMBOS = [("fr", "desktop"), ("fr", "phone"), ("en", "desktop"), ("en", "phone")]

USERS = """
[[users]]
extension = "1005"
name = "Eve Mobile"
secret = "secret1005"
ring_timeout = 20
no_answer = {{ kind = "busy" }}

  [[users.devices]]
  type = "softphone"
  label = "iPhone"

  [[users.devices]]
  type = "softphone"
  label = "Android"

  [[users.devices]]
  type = "softphone"
  label = "Pixel"

[[users]]
extension = "1006"
name = "Franck Tablette"
secret = "secret1006"
ring_timeout = 20
no_answer = {{ kind = "busy" }}

  [[users.devices]]
  type = "softphone"
  label = "Tablette"

[push]
wait = 2

[push.apns]
key_file = "{key_file}"
key_id = "{key_id}"
team_id = "{team_id}"
url = "{apns_url}"

[push.fcm]
service_account = "{account}"
url = "{fcm_url}"
"""


class LoopThread:
    """An asyncio loop in a thread of its own, for the stand-ins and the scripted phones (the
    Playwright sync API owns the test's thread)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Platform:
    server: RunningServer
    apns: ApnsStandIn
    fcm: FcmStandIn
    loop: LoopThread
    phones: list[PushPhone]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    directory = tmp_path_factory.mktemp("push-cards")
    loop = LoopThread()
    key = make_apns_key(directory)
    apns, fcm = ApnsStandIn(key), FcmStandIn()
    loop.run(apns.start())
    loop.run(fcm.start())
    account = make_service_account(directory, fcm.token_uri)
    fcm.trust(account)
    apns.add_device(IPHONE, TOPIC)
    apns.add_device(TABLET, TOPIC)
    fcm.add_device(PIXEL)  # ANDROID is unknown to Google: its push is refused for its token
    server = start(directory, USERS.format(
        key_file=key.key_file.name, key_id=key.key_id, team_id=key.team_id, apns_url=apns.url,
        account=account.path.name, fcm_url=fcm.url))
    p = Platform(server, apns, fcm, loop, [])
    try:
        yield p
    finally:
        for phone in p.phones:
            loop.run(phone.close())
        server.stop()
        loop.run(apns.stop())
        loop.run(fcm.stop())
        loop.close()


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


def phone(p: Platform, ext: str, target: PushTarget, *, asleep: bool) -> None:
    """A softphone of `ext` registered over TCP with push parameters; `asleep`: its connection
    then drops (the binding stays)."""
    softphone = PushPhone(p.server.sip, ext, f"secret{ext}", domain="pbx.test", push=target,
                          algorithm="MD5")
    p.phones.append(softphone)
    assert p.loop.run(softphone.register(expires=600)).status == 200
    if asleep:
        p.loop.run(softphone.close())


def devices(p: Platform, ext: str) -> dict[str, dict[str, Any]]:
    rows = signed_in(p.server, "admin").get(f"/api/users/{ext}/devices").json()["devices"]
    return {row["label"]: row for row in rows}


def wait_for_push(p: Platform, ext: str, label: str, outcome: str, timeout: float = 12) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        push = devices(p, ext)[label]["push"]
        if push and str(push["last_push_result"]).startswith(outcome):
            return
        time.sleep(0.2)
    raise AssertionError(f"{ext} {label}: no {outcome} push: {devices(p, ext)[label]}")


def ring(p: Platform, ext: str, workdir: Path) -> None:
    """A call from the carrier to `ext`, whose devices sleep: pushed, nobody comes, busy."""
    result = call(p.server, uac_expect(486, caller="0611223344"), workdir, service=ext, wait=30)
    assert result.ok, result.describe() + p.server.log()[-2000:]


def dash(browser: Any, p: Platform, lang: str, size: str, name: str) -> Dash:
    context = browser.new_context(viewport=SIZES[size], locale="fr-FR" if lang == "fr" else "en-GB",
                                  is_mobile=size == "phone", has_touch=size == "phone",
                                  timezone_id="Europe/Paris")
    context.add_init_script(axe_source())
    context.set_default_timeout(15000)
    return Dash(context.new_page(), p.server.http_base, lang, size, name)


def card(d: Dash, label: str) -> Any:
    return d.page.locator("[data-test=device]").filter(
        has=d.page.locator("[data-test=device-label]", has_text=label))


@pytest.fixture(scope="module")
def pushed(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Platform:
    """1005's three softphones, then a call that wakes the two asleep."""
    p = platform
    phone(p, "1005", PushTarget("apns", IPHONE, f"DEF123GHIJ.{TOPIC}"), asleep=True)
    phone(p, "1005", PushTarget("fcm", ANDROID, "b2bua-test"), asleep=True)
    phone(p, "1005", PushTarget("fcm", PIXEL, "b2bua-test"), asleep=False)
    time.sleep(0.3)  # the server notices the dropped connections
    before = devices(p, "1005")
    assert before["iPhone"]["state"] == "unreachable"
    assert before["iPhone"]["push"]["provider"] == "apns"
    assert before["iPhone"]["push"]["last_push_at"] is None
    ring(p, "1005", tmp_path_factory.mktemp("ring-1005"))
    wait_for_push(p, "1005", "iPhone", "delivered")
    wait_for_push(p, "1005", "Android", "invalid_token")
    after = devices(p, "1005")
    assert after["Android"]["push"]["provider"] is None  # the dead token is forgotten
    assert after["Pixel"]["state"] == "registered" and after["Pixel"]["push"]["last_push_at"] is None
    return p


@pytest.mark.parametrize(("lang", "size"), COMBOS)
def test_push_devices_read_as_asleep_and_wakeable(browser: Any, pushed: Platform, lang: str,
                                                  size: str) -> None:
    d = dash(browser, pushed, lang, size, f"push-{lang}-{size}")
    d.open()
    d.sign_in("1005", "secret1005")
    d.go("lines")
    page = d.page
    page.wait_for_selector("[data-test=device-push]")

    iphone = card(d, "iPhone")
    state = iphone.locator("[data-test=device-state]")
    assert state.inner_text() == d.t("En veille : réveillé à chaque appel",
                                     "Asleep: woken up for every call")
    assert "asleep" in (state.get_attribute("class") or "")
    assert iphone.locator("[data-test=device-push]").inner_text() == d.t(
        "Réveil par notification (APNs)", "Woken by push notification (APNs)")
    last = iphone.locator("[data-test=device-push-last]")
    assert last.get_attribute("data-result") == "delivered"
    text = last.inner_text()
    assert text.startswith(d.t("Dernière notification : ", "Last notification: "))
    assert text.endswith(d.t(" — remise", " — delivered")), text
    assert "T" not in text.split(":", 1)[1] and "+" not in text  # a date for people, not ISO

    android = card(d, "Android")
    assert android.locator("[data-test=device-state]").inner_text() == d.t(
        "Injoignable : l'appareil ne répond plus", "Unreachable: the device stopped answering")
    assert android.locator("[data-test=device-push]").inner_text() == d.t(
        "Notifications arrêtées pour cet appareil jusqu'à ce qu'il se reconnecte",
        "Push notifications stopped for this device until it registers again")
    assert android.locator("[data-test=device-push-last]").inner_text().endswith(d.t(
        " — jeton invalide, notifications désactivées", " — invalid token, notifications turned off"))
    # The service's own words are in the folded technical details only.
    detail = android.locator("[data-test=device-push-detail]")
    assert not detail.is_visible()
    android.locator("[data-test=device-tech] summary").click()
    assert detail.inner_text().startswith("invalid_token (4")

    pixel = card(d, "Pixel")
    assert pixel.locator("[data-test=device-state]").inner_text().startswith(
        d.t("Connecté depuis", "Connected since"))
    assert pixel.locator("[data-test=device-push]").inner_text() == d.t(
        "Réveil par notification (FCM)", "Woken by push notification (FCM)")
    assert pixel.locator("[data-test=device-push-last]").count() == 0
    d.check_page("devices-push")
    d.finish()


def test_failed_refused_and_unanswered_pushes_in_both_languages(
        browser: Any, platform: Platform, tmp_path: Path) -> None:
    p = platform
    phone(p, "1006", PushTarget("apns", TABLET, f"DEF123GHIJ.{TOPIC}"), asleep=True)
    time.sleep(0.3)
    views = {lang: dash(browser, p, lang, "desktop", f"push-results-{lang}") for lang in ("fr", "en")}
    for d in views.values():
        d.open()
        d.sign_in("1006", "secret1006")
    expected = {
        "failed": ("service indisponible", "service unavailable"),
        "rejected": ("refusée", "refused"),
        "timeout": ("pas de réponse du service", "no answer from the service"),
    }
    for outcome, (fr, en) in expected.items():
        p.apns.fail_with = {"failed": (503, "ServiceUnavailable"), "rejected": (400, "BadTopic"),
                            "timeout": None}[outcome]
        p.apns.delay = 6.0 if outcome == "timeout" else 0.0  # the service waits 5 s at most
        ring(p, "1006", tmp_path / outcome)
        wait_for_push(p, "1006", "Tablette", outcome)
        for lang, d in views.items():
            d.page.goto(p.server.http_base + "/#lines")
            d.page.reload()
            d.page.wait_for_selector("main[data-page=lines][data-ready] [data-test=device]")
            tablet = card(d, "Tablette")
            last = tablet.locator("[data-test=device-push-last]")
            assert last.get_attribute("data-result") == outcome
            assert last.inner_text().endswith(" — " + (fr if lang == "fr" else en))
            # Still woken by push: a provider's trouble does not forget the token.
            assert tablet.locator("[data-test=device-push]").inner_text() == d.t(
                "Réveil par notification (APNs)", "Woken by push notification (APNs)")
            d.check_page(f"push-{outcome}")
    p.apns.fail_with, p.apns.delay = None, 0.0
    for d in views.values():
        d.finish()
