"""The platform administrator's Companies page in headless Chromium (French and English, desktop
and phone): every tenant with its use and limits, working on one company's users, creating a
company whose administrator then signs in and sees that company only. axe-core on each page;
screenshots in test-artifacts/browser/tenants-<lang>-<size>/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from b2bua.testing.server import RunningServer
from tests.api.helpers import ADMIN_PASSWORD, start
from tests.api.test_tenants_api import TENANTS
from tests.browser.dash import ARGS, CHROMIUM, SIZES, Dash, axe_source

pytestmark = pytest.mark.integration


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
    srv = start(tmp_path, TENANTS)
    try:
        yield srv
    finally:
        srv.stop()


def _dash(browser: Any, server: RunningServer, lang: str, size: str) -> Dash:
    context = browser.new_context(viewport=SIZES[size], locale="fr-FR" if lang == "fr" else "en-GB",
                                  is_mobile=size == "phone", has_touch=size == "phone",
                                  timezone_id="Europe/Paris")
    context.add_init_script(axe_source())
    context.set_default_timeout(15000)
    return Dash(context.new_page(), server.http_base, lang, size, f"tenants-{lang}-{size}")


@pytest.mark.parametrize(("lang", "size"), [("fr", "desktop"), ("en", "phone")])
def test_the_platform_administrator_works_on_each_company(
        browser: Any, server: RunningServer, lang: str, size: str) -> None:
    d = _dash(browser, server, lang, size)
    d.open()
    d.sign_in("admin", ADMIN_PASSWORD)
    d.go("tenants")
    table = d.page.locator("[data-test=tenants]")
    assert table.locator("[data-test='tenant-acme.example']").inner_text().count("ACME SARL") == 1
    assert "2 / 3" in table.locator("[data-test='tenant-acme.example']").inner_text()
    assert table.locator("[data-test='tenant-pbx.test']").count() == 1
    d.check_page("tenants")

    # working on ACME: its users only, the company named in the header
    d.page.locator("[data-test='tenant-acme.example'] [data-test=tenant-manage]").click()
    d.page.wait_for_selector("main[data-page=users][data-ready]")
    users = d.page.locator("[data-test=users]").inner_text()
    assert "Alice ACME" in users and "Alice Martin" not in users and "Bruno Beta" not in users
    assert "acme.example" in d.page.locator("[data-test=tenant-current]").inner_text()
    d.check_page("acme-users")

    # a new company, with its administrator's password; a bad domain is answered on its field
    d.go("tenants")
    d.page.fill("[data-test=new-domain]", "not a domain")
    d.page.fill("[data-test=new-tenant-name]", "Gamma")
    d.page.click("[data-test=tenant-create]")
    kind, text = d.result()
    assert kind == "error", text
    d.page.fill("[data-test=new-domain]", "gamma.example")
    d.page.fill("[data-test=new-tenant-password]", "gamma-admin-pw")
    d.page.click("[data-test=tenant-create]")
    d.page.wait_for_selector("[data-test='tenant-gamma.example']")
    d.check_page("created")
    d.sign_out()

    d.sign_in("admin@gamma.example", "gamma-admin-pw")
    d.go("users")
    assert d.page.locator("[data-test=nav-tenants]").count() == 0
    assert "Alice" not in d.page.locator("main").inner_text()
    d.check_page("gamma-admin")
    d.finish()
