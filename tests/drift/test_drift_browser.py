"""A real browser (Debian's chromium via playwright): the Drift page's "Run now" button starts a
check, the page then shows what drifted with its diff, and "Fix drift" converges that host."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from drift_fixtures import *  # noqa: F401,F403 (the fixtures)
from drift_helpers import ADMIN_PASSWORD, write_schedules

pytestmark = [pytest.mark.browser]


def test_run_now_shows_the_drift_with_its_diff_and_fix_drift_converges_the_host(
    drift_settings: Any, server_factory: Any, browser: Any, files_dir: Any
) -> None:
    settings = replace(drift_settings, scheduler=True)
    write_schedules(
        settings.schedules, [{"id": "files-alpha", "playbook": "files", "cron": "0 5 * * *", "limit": "alpha"}]
    )
    server = server_factory(settings, extra_env={"HOMELAB_SCHEDULES": str(settings.schedules)}).start()
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
    page.set_default_timeout(90_000)
    page.goto(server.url + "/drift")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/drift")
    assert "No drift check has run yet" in page.inner_text("#drift-state")

    page.click("button[data-run-now=files-alpha]")
    page.wait_for_url("**/jobs/*")
    page.wait_for_selector("#recap[data-status=successful]", timeout=120_000)
    page.goto(server.url + "/drift")
    page.wait_for_selector("#drift-state tr[data-host=alpha][data-state=drifted]")
    page.click("#drift-diffs summary >> nth=0")
    assert "+managed = true" in page.inner_text("#drift-diffs"), "the diff of the drifted config is shown"
    assert "s3cr3t" not in page.content()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), (
        "page scrolls sideways on a phone"
    )

    page.click("button[data-fix=alpha]")
    page.wait_for_url("**/jobs/*")
    page.wait_for_selector("#recap[data-status=successful]", timeout=120_000)
    assert (files_dir / "alpha.conf").is_file() and not (files_dir / "beta.conf").exists(), (
        "only the drifted host is converged"
    )
    page.goto(server.url + "/")
    page.wait_for_selector("#drift-panel tr[data-host=alpha]")
    for _ in range(60):  # the automatic re-check after the fix
        if page.locator("#drift-panel tr[data-host=alpha][data-state=clean]").count():
            break
        page.wait_for_timeout(1000)
        page.reload()
    assert page.locator("#drift-panel tr[data-host=alpha][data-state=clean]").count() == 1
