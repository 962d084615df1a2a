"""What the browser tests share: Debian's Chromium through Playwright (never a downloaded
browser), a page driver that knows the dashboard (sign in, the menu on a phone, the Save bar's
answer, the confirmation dialog), screenshots under test-artifacts/browser/, and axe-core
(installed by `scripts/setup --test` from the npm registry) run on every page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # A fake microphone (a beeping tone) that needs no permission prompt: MediaRecorder works.
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    "--lang=fr-FR",  # the browser's own widgets (date and time pickers) as a French office has them
]  # fmt: skip
ARTIFACTS = ROOT / "test-artifacts" / "browser"
SIZES = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
# axe rules below these impacts are reported in the artifacts but do not fail a test.
FAILING_IMPACTS = ("serious", "critical")


def axe_source() -> str:
    found = sorted(ROOT.glob(".venv/axe-core-*/node_modules/axe-core/axe.min.js"))
    if not found:
        raise RuntimeError("axe-core is missing: run scripts/setup --test (npm install axe-core)")
    return found[-1].read_text(encoding="utf-8")


@dataclass
class Dash:
    """One dashboard session in one language and one window size."""

    page: Any
    base: str
    lang: str
    size: str
    name: str
    shots: int = 0
    axe_results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        (ARTIFACTS / self.name).mkdir(parents=True, exist_ok=True)

    @property
    def phone(self) -> bool:
        return self.size == "phone"

    def t(self, fr: str, en: str) -> str:
        return fr if self.lang == "fr" else en

    # ---- navigation ------------------------------------------------------------------------

    def open(self) -> None:
        self.page.goto(self.base + "/")
        self.page.wait_for_selector("#login")
        if self.lang == "en":
            self.page.click("[data-test=lang-en]")
            self.page.wait_for_selector("html[lang=en] #login")

    def sign_in(self, login: str, password: str) -> None:
        if not self.page.locator("#login").count():
            self.open()
        self.page.fill("#login", login)
        self.page.fill("#password", password)
        self.page.click("[data-test=login-submit]")
        self.page.wait_for_selector("main[data-page][data-ready]")

    def sign_out(self) -> None:
        self.page.click("[data-test=logout]")
        self.page.wait_for_selector("#login")

    def go(self, name: str, *, leave: bool | None = None) -> None:
        """Open page `name` through the menu (the Menu button first on a phone). `leave`:
        answer the unsaved-changes question (True: discard, False: stay)."""
        if self.phone:
            self.page.click("[data-test=menu-toggle]")
        self.page.click(f"[data-test=nav-{name}]")
        if leave is not None:
            self.answer(leave)
            if not leave:
                return
        self.page.wait_for_selector(f"main[data-page={name}][data-ready]")

    def answer(self, ok: bool) -> None:
        """Answer the confirmation dialog."""
        dialog = self.page.locator("dialog[data-test=dialog]")
        dialog.wait_for()
        dialog.locator("[data-test=dialog-ok]" if ok else "[data-test=dialog-cancel]").click()
        dialog.wait_for(state="detached")

    # ---- what the page says -------------------------------------------------------------

    def result(self, scope: Any = None) -> tuple[str, str]:
        """Wait for the answer of a save beside its button: ("ok" | "warning" | "error", text)."""
        where = scope if scope is not None else self.page
        box = where.locator("[data-test=save-msg] .alert").last
        box.wait_for()
        kind = box.get_attribute("data-test")
        return {"flash": "ok", "warnings": "warning", "error": "error"}[kind or ""], box.inner_text()

    def saved(self, scope: Any = None) -> str:
        kind, text = self.result(scope)
        assert kind in ("ok", "warning"), text
        return text

    def shot(self, label: str) -> None:
        self.shots += 1
        path = ARTIFACTS / self.name / f"{self.shots:02d}-{label}.png"
        # A full-page picture: the Save bar that sticks to the bottom of the window is put
        # back in its place in the page for the picture.
        self.page.evaluate("() => document.querySelectorAll('.savebar.sticky')"
                           ".forEach((e) => { e.style.position = 'static'; })")
        self.page.screenshot(path=str(path), full_page=True)
        self.page.evaluate("() => document.querySelectorAll('.savebar.sticky')"
                           ".forEach((e) => { e.style.position = ''; })")

    def check_page(self, label: str) -> None:
        """Screenshot, nothing wider than the window, and axe-core's checks."""
        self.shot(label)
        overflow = self.page.evaluate(
            "() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{label}: the page is {overflow}px wider than the window"
        self.axe(label)

    def axe(self, label: str) -> None:
        result = self.page.evaluate(
            """async () => {
                const r = await axe.run(document, {resultTypes: ["violations"]});
                return r.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
                    nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5)}));
            }"""
        )
        self.axe_results[label] = result
        bad = [v for v in result if v["impact"] in FAILING_IMPACTS]
        assert not bad, f"{label}: axe-core: " + json.dumps(bad, ensure_ascii=False, indent=1)

    def finish(self) -> None:
        (ARTIFACTS / self.name / "axe.json").write_text(
            json.dumps(self.axe_results, ensure_ascii=False, indent=1), encoding="utf-8")
        assert not self.errors, self.errors
