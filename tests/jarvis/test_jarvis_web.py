"""The Jarvis pages through the real app (create_app, Jarvis's worker running): the dashboard
panel, "Diagnose now", findings, a pending approval with its parameters and check-mode diff,
approve and reject buttons (CSRF-protected), remediation history, breakers, the chat page saying
rules only without a key, and the JSON API."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from jarvis_helpers import Box, csrf_from, write_rules

BACKUP_RULE = {"id": "backup", "codes": ["backup.failed"], "playbook": "mark_backup_ok", "mode": "approve"}
LOCK_RULE = {
    "id": "locks",
    "codes": ["gitsync.stale_lock"],
    "playbook": "clear_git_locks",
    "params": {"max_age_minutes": "{max_age_minutes}"},
    "mode": "auto",
}


def _web(request: pytest.FixtureRequest, tmp_path: Path, rules: list[dict[str, Any]], **safety: Any) -> tuple[Any, Any]:
    write_rules(tmp_path / "rules.yml", rules, safety or None)
    return request.getfixturevalue("web"), request.getfixturevalue("web_app").extensions["homelab"].jarvis


def _post(web: Any, path: str, page: str = "/jarvis", **data: Any) -> Any:
    token = csrf_from(web.get(page).get_data(as_text=True))
    return web.post(path, data={**data, "csrf_token": token})


def test_diagnose_now_then_approve_a_pending_fix_on_the_jarvis_page(
    request: pytest.FixtureRequest, tmp_path: Path, box: Box
) -> None:
    box.stale_lock()
    box.backup("failed", error="disk full")
    web, jarvis = _web(request, tmp_path, [BACKUP_RULE, LOCK_RULE])
    dash = web.get("/").get_data(as_text=True)
    assert (
        'id="jarvis-panel"' in dash and "Not built yet" not in dash and "no diagnosis since this server started" in dash
    )

    r = _post(web, "/jarvis/diagnose")
    assert r.status_code == 302 and "started=1" in r.headers["Location"]
    jarvis.wait_idle(300)
    page = web.get("/jarvis").get_data(as_text=True)
    assert 'data-code="backup.failed"' in page and 'data-target="alpha/backup"' in page
    assert 'data-code="gitsync.stale_lock"' not in page, "the auto rule should have fixed the lock already"
    [pending] = jarvis.actions(("pending",))
    card = page[page.index(f'id="action-{pending.id}"') :]
    card = card[: card.index("</article>")]
    assert "mark_backup_ok" in card and "disk full" in card and f'data-approve="{pending.id}"' in card
    assert "What it would change (check mode)" in card and "&#34;status&#34;: &#34;ok&#34;" in card
    assert re.search(r'data-action="\d+" data-status="resolved"', page), "the auto fix is in the history"
    dash = web.get("/").get_data(as_text=True)
    assert 'data-pending="1"' in dash and "backup.failed" in dash

    assert web.post(f"/jarvis/actions/{pending.id}/approve", data={"csrf_token": "forged"}).status_code == 403
    assert json.loads(box.backup_status.read_text())["status"] == "failed"
    r = _post(web, f"/jarvis/actions/{pending.id}/approve")
    assert r.status_code == 302
    jarvis.wait_idle(300)
    done = (
        jarvis.actions()[0]
        if jarvis.actions()[0].id == pending.id
        else next(a for a in jarvis.actions() if a.id == pending.id)
    )
    assert done.status == "resolved" and done.decided_by == "admin"
    assert json.loads(box.backup_status.read_text())["status"] == "ok"
    page = web.get("/jarvis").get_data(as_text=True)
    assert "Nothing is waiting." in page and "approved by admin" in page
    audit = web.get("/audit").get_data(as_text=True)
    assert "jarvis.approve" in audit and "jarvis.outcome" in audit
    assert _post(web, f"/jarvis/actions/{pending.id}/approve").status_code == 409


def test_reject_from_the_api_and_the_chat_page_says_rules_only(
    request: pytest.FixtureRequest, tmp_path: Path, box: Box
) -> None:
    box.backup("failed")
    web, jarvis = _web(request, tmp_path, [{**BACKUP_RULE, "check_first": False}])
    jarvis.cycle("test")
    [a] = jarvis.actions(("pending",))
    token = csrf_from(web.get("/jarvis").get_data(as_text=True))
    state = web.get("/api/v1/jarvis").get_json()
    assert state["pending"] == 1 and [f["code"] for f in state["findings"]] == ["backup.failed"]
    assert state["llm"].startswith("rules only")
    r = web.post(
        f"/api/v1/jarvis/actions/{a.id}/reject", json={"why": "I will do it by hand"}, headers={"X-CSRF-Token": token}
    )
    assert r.status_code == 200 and r.get_json()["status"] == "rejected", r.get_data(as_text=True)
    assert (
        web.get("/api/v1/jarvis/actions?status=rejected").get_json()[0]["reason"]
        == "rejected by admin: I will do it by hand"
    )

    chat = web.get("/jarvis/chat").get_data(as_text=True)
    assert 'id="rules-only"' in chat
    r = _post(web, "/jarvis/chat", "/jarvis/chat", message="what is wrong?")
    assert r.status_code == 302
    chat = web.get("/jarvis/chat").get_data(as_text=True)
    assert "what is wrong?" in chat and "Jarvis runs rules only" in chat


def test_an_open_breaker_is_shown_and_a_person_resets_it(
    request: pytest.FixtureRequest, tmp_path: Path, box: Box
) -> None:
    box.backup("failed")
    web, jarvis = _web(
        request,
        tmp_path,
        [
            {
                "id": "hopeless",
                "codes": ["backup.failed"],
                "playbook": "always_fail",
                "params": {"service": "backup"},
                "mode": "auto",
            }
        ],
        breaker={"failures": 1, "window": "1h"},
    )
    jarvis.cycle("test")
    jarvis.wait_idle(300)
    page = web.get("/jarvis").get_data(as_text=True)
    assert 'data-reset="hopeless"' in page and "1 failed remediations" in page
    assert "Stopped rules: hopeless" in web.get("/").get_data(as_text=True)
    assert _post(web, "/jarvis/breakers/hopeless/reset").status_code == 302
    assert jarvis.breakers() == [] and 'data-reset="hopeless"' not in web.get("/jarvis").get_data(as_text=True)
    assert _post(web, "/jarvis/breakers/hopeless/reset").status_code == 409
