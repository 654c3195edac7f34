"""A real browser (Debian's chromium via playwright) on a real server process: "Diagnose now" shows
a finding and a pending approval with its parameters and check-mode diff, "Approve and run" fixes
it and the history says so; the chat (a scripted OpenAI-compatible server on loopback) shows the
proposed run with its parameters and an approve button; all of it usable on a phone."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from homelab.settings import Settings

from jarvis_helpers import ADMIN_PASSWORD, CATALOG, Box, ServerProcess, write_rules

pytestmark = [pytest.mark.browser]


def test_a_person_approves_a_fix_on_the_jarvis_page_and_sees_a_chat_proposal(
    tmp_path: Path, box: Box, browser: Any, fake_llm: Any
) -> None:
    box.backup("failed", error="disk full")
    rules = write_rules(
        tmp_path / "rules.yml",
        [{"id": "backup", "codes": ["backup.failed"], "playbook": "mark_backup_ok", "mode": "approve"}],
    )
    var = tmp_path / "var"
    var.mkdir()
    settings = Settings.from_env(
        {"HOMELAB_VAR_DIR": str(var), "HOMELAB_INVENTORY": str(box.inventory), "HOMELAB_CATALOG": str(CATALOG)}
    )
    server = ServerProcess(
        settings,
        extra_env={
            "HOMELAB_JARVIS_RULES": str(rules),
            "HOMELAB_SCHEDULER": "0",
            "HOMELAB_SCHEDULES": str(tmp_path / "schedules.yml"),
            "OPENAI_API_KEY": "sk-browser-test-key",
            "OPENAI_BASE_URL": fake_llm.url,
            "PYTHONPATH": f"{CATALOG.parents[2] / 'webui'}{os.pathsep}{CATALOG.parents[2]}",
        },
    )
    server.start()
    try:
        page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
        page.set_default_timeout(90_000)
        page.goto(server.url + "/jarvis")
        page.fill("#password", ADMIN_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/jarvis")
        page.click("#diagnose-now")
        page.wait_for_selector("#diagnose-started")
        for _ in range(120):  # the diagnosis and the check-mode run, on Jarvis's worker
            if page.locator("#jarvis-pending article[data-action]").count():
                break
            page.wait_for_timeout(1000)
            page.reload()
        card = page.locator("#jarvis-pending article[data-action]")
        assert "mark_backup_ok" in card.inner_text() and "disk full" in card.inner_text()
        assert '"status": "ok"' in card.locator("pre.diff").inner_text(), "the check-mode diff is shown"
        assert page.locator('#jarvis-findings tr[data-code="backup.failed"]').count() == 1
        wide = page.evaluate("""[...document.querySelectorAll('body *')].filter(e => !e.closest('.scroll') && e.getBoundingClientRect().right > window.innerWidth + 1)
            .map(e => e.tagName + '.' + e.className + '#' + e.id + ' ' + Math.round(e.getBoundingClientRect().right)).slice(0, 8)""")  # noqa: E501
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), (
            f"page scrolls sideways on a phone: {wide}"
        )

        card.locator("button[data-approve]").click()
        for _ in range(120):
            if page.locator('#jarvis-history tr[data-status="resolved"]').count():
                break
            page.wait_for_timeout(1000)
            page.reload()
        assert "approved by admin" in page.inner_text("#jarvis-history")
        assert json.loads(box.backup_status.read_text())["status"] == "ok"

        fake_llm.script = [
            [
                (
                    "propose_playbook",
                    {
                        "playbook": "noop",
                        "params": {"service": "caddy"},
                        "limit": "alpha",
                        "reason": "caddy looked stuck",
                    },
                )
            ],
            "Approve it if you agree.",
        ]
        page.goto(server.url + "/jarvis/chat")
        assert (
            "model gpt-4o-mini at 127.0.0.1" in page.inner_text("#llm-mode")
            and page.locator("#rules-only").count() == 0
        )
        page.fill("#message", "caddy is slow")
        page.click("#send")
        page.wait_for_selector("[data-proposal]")
        assert 'noop {"service": "caddy"}' in page.inner_text("[data-proposal]")
        assert "Approve it if you agree." in page.inner_text("#chat-log")
        assert "sk-browser-test-key" not in page.content()
    finally:
        server.stop()
    assert "sk-browser-test-key" not in server.log.read_text()
