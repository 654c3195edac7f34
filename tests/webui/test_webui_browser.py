"""A real browser (Debian's chromium, headless, driven by playwright): log in, press a catalog
button, watch live output arrive over SSE, see the recap."""

from __future__ import annotations

import pytest

from webui_helpers import ADMIN_PASSWORD

pytestmark = [pytest.mark.browser]  # make test installs Debian's chromium (make browser); no skip


def test_log_in_press_a_catalog_button_and_watch_the_job_live(settings, server_factory, browser):
    server = server_factory(settings).start()
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
    page.set_default_timeout(90_000)
    page.goto(server.url + "/catalog")
    assert "/login" in page.url
    assert page.evaluate("document.activeElement.id") == "password", "the login form must be ready to type into"
    page.keyboard.type(ADMIN_PASSWORD)
    page.keyboard.press("Enter")  # the whole login works from the keyboard
    page.wait_for_url("**/catalog")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip", "the first Tab must reach the skip link"

    page.click("a[data-entry=sleep]")
    page.fill("#p-sleep_seconds", "4")
    page.fill("#limit", "alpha")
    page.click("#run")
    page.wait_for_url("**/jobs/*")
    assert page.get_attribute("#output", "data-final") == "0", "the job page must open while the job runs"
    page.wait_for_selector("#output .line:has-text('sleeping')")
    page.wait_for_selector("#job-status .st-running, #job-status .st-successful")
    page.wait_for_selector("#recap[data-status=successful] th[scope=row]:has-text('alpha')", timeout=120_000)
    assert page.inner_text("#job-status").strip() == "successful"
    assert page.locator("#output .ansi-fg-green").count() > 0, "ANSI colours were not rendered"
    assert page.locator("#cancel-form").is_hidden()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), (
        "page scrolls sideways on a phone"
    )


def test_cancel_and_rerun_from_the_job_page(settings, server_factory, browser):
    server = server_factory(settings).start()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(90_000)
    page.goto(server.url + "/login")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.goto(server.url + "/catalog/sleep")
    page.fill("#limit", "beta")
    page.click("#run")
    page.wait_for_url("**/jobs/*")
    job_url = page.url
    page.wait_for_selector("#output .line:has-text('sleeping')")
    page.click("#cancel-form button")
    page.wait_for_selector("#job-status .st-canceled")
    assert "canceled by admin" in page.inner_text("#job-reason")
    page.click("text=Re-run")
    page.wait_for_url(lambda url: url != job_url and "/jobs/" in url)
    assert "re-run of" in page.inner_text(".facts")
    page.click("#cancel-form button")
    page.wait_for_selector("#job-status .st-canceled")
