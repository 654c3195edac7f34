"""At 390 px wide (a phone) in a real browser (Debian's chromium via playwright): no page of the web
UI is wider than the screen, on the real catalog and schedules; the schedules' "Run now" buttons and
key columns are on screen; a job's skipped task results are hidden until asked for. Screenshots in
var/reports/newcomer-*.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homelab.settings import Settings

from webui_helpers import ADMIN_PASSWORD, ROOT

pytestmark = [pytest.mark.browser]
REPORTS = ROOT / "var" / "reports"
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def real_settings(tmp_path: Path) -> Settings:
    """The repository's catalog, schedules and lab inventory (as `make run` serves them), a fresh store."""
    var = tmp_path / "var"
    var.mkdir()
    return Settings.from_env(
        {
            "HOMELAB_VAR_DIR": str(var),
            "HOMELAB_INVENTORY": str(ROOT / "inventory" / "lab"),
            "HOMELAB_CATALOG": str(ROOT / "playbooks" / "catalog.yml"),
            "HOMELAB_SCHEDULES": str(ROOT / "playbooks" / "schedules.yml"),
        }
    )


QUIET = {"HOMELAB_STATUS_INTERVAL": "0", "HOMELAB_FACTS_INTERVAL": "0", "HOMELAB_SCHEDULER": "0"}


def _log_in(page: Any, url: str) -> None:
    page.goto(url + "/login")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")


def _fits(page: Any, what: str) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width == PHONE["width"], f"{what}: the page is {width} px wide on a {PHONE['width']} px screen"


def _on_screen(page: Any, selector: str) -> None:
    """Visible and inside the viewport horizontally (not cut off, not only reachable by scrolling a table)."""
    for el in page.locator(selector).all():
        assert el.is_visible(), selector
        box = el.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 0.5, (selector, box)


def test_every_page_fits_a_phone_and_the_schedules_can_be_run_from_it(
    real_settings: Settings, server_factory: Any, browser: Any
) -> None:
    server = server_factory(real_settings, extra_env=QUIET).start()
    page = browser.new_page(viewport=PHONE)
    page.set_default_timeout(60_000)
    _log_in(page, server.url)
    REPORTS.mkdir(parents=True, exist_ok=True)
    links = {"/", "/catalog", "/jobs", "/drift", "/drift/schedules", "/audit"}
    page.goto(server.url + "/")
    links |= {h for h in page.eval_on_selector_all("nav a", "els => els.map(e => e.getAttribute('href'))") if h}
    page.goto(server.url + "/catalog")
    entries = page.eval_on_selector_all("a[data-entry]", "els => els.map(e => e.getAttribute('href'))")
    assert "/catalog/create_database" in entries
    for path in sorted(links) + entries:
        if not path.startswith("/") or path.startswith("/logout"):
            continue
        page.goto(server.url + path)
        _fits(page, path)
    page.goto(server.url + "/catalog")
    card = page.locator("li.card:has(a[data-entry=create_database])")
    box, grid = card.bounding_box(), page.locator("ul.cards").first.bounding_box()
    assert box and grid and box["x"] + box["width"] <= grid["x"] + grid["width"] + 0.5, "a card overflows its grid"
    page.screenshot(path=str(REPORTS / "newcomer-catalog-390.png"), full_page=True)

    page.goto(server.url + "/drift")
    _on_screen(page, "button[data-run-now]")
    assert page.locator("button[data-run-now]").count() >= 6
    for column in ("Schedule", "When", "Next run"):
        _on_screen(page, f"#drift-schedules th:text-is('{column}')")
    page.locator("#drift-schedules").screenshot(path=str(REPORTS / "newcomer-schedules-390.png"))
    page.goto(server.url + "/drift/schedules")
    _on_screen(page, "#save")
    _on_screen(page, "input[id^=when-]")
    page.screenshot(path=str(REPORTS / "newcomer-schedule-editor-390.png"), full_page=True)
