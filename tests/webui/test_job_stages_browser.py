"""A delivery's Stages panel follows the run in a real browser (Debian's chromium through playwright)
against a real server process: the test catalog's `deliver` (tests/webui/playbooks/deliver.yml, a
real ansible-runner run on localhost) pauses in Verify, so the page shows Verify running with the
stages before it done, then, without a reload, Verify failed with its message and Rollback ok."""

from __future__ import annotations

from typing import Any

import pytest

from webui_helpers import ADMIN_PASSWORD, ROOT

pytestmark = [pytest.mark.browser]
SHOTS = ROOT / "var" / "reports"
STAGES = "Array.from(document.querySelectorAll('#stages li.stage')).map(e => e.dataset.stage + '=' + e.dataset.status)"


def test_the_stages_panel_shows_each_stage_live_and_the_failed_one_with_its_message(
    settings: Any, server_factory: Any, browser: Any
) -> None:
    server = server_factory(settings, extra_env={"HOMELAB_JARVIS": "0", "HOMELAB_SCHEDULER": "0"}).start()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(120_000)
    page.goto(server.url + "/login")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.goto(server.url + "/catalog/deliver")
    page.select_option("#p-service", "stream_bot")
    page.fill("#p-deliver_pause", "8")
    page.fill("#limit", "alpha")
    page.click("#run")
    page.wait_for_url("**/jobs/*")
    assert page.get_attribute("#output", "data-final") == "0", "the job page opens while the job runs"
    page.evaluate("window.__same_page = 1")

    page.wait_for_selector("#stages li[data-stage=Verify][data-status=running]")
    assert page.evaluate(STAGES) == [
        "Validate=ok",
        "Test=ok",
        "Build=ok",
        "Deploy=ok",
        "Verify=running",
    ], "Rollback is not shown before it runs"
    assert page.get_attribute("#stages li[data-stage=Verify]", "aria-current") == "step"
    assert page.inner_text("#stages li[data-stage=Verify] .badge").strip() == "running", "the status in words"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "job-stages-running.png"), full_page=True)

    page.wait_for_selector("#job-status .st-failed")
    page.wait_for_selector("#stages li[data-stage=Rollback]")
    assert page.evaluate(STAGES) == [
        "Validate=ok",
        "Test=ok",
        "Build=ok",
        "Deploy=ok",
        "Verify=failed",
        "Rollback=ok",
    ]
    why = page.inner_text("#stages li[data-stage=Verify] [data-field=failure]")
    assert "the health check of stream_bot answered HTTP 502" in why and "Wait for the health check on alpha" in why
    assert page.evaluate("window.__same_page") == 1, "the page was reloaded"
    page.screenshot(path=str(SHOTS / "job-stages-failed.png"), full_page=True)
