"""The settings page (/settings): the real app factory with Jarvis on, the real catalog and rules,
notification channels and an LLM endpoint from the environment, each with a secret in it. The
page names the channels, the endpoint, the model and each rule's mode, and no secret reaches it.
A rule's mode is edited in a temporary copy of jarvis/rules.yml: that one line changes, audited,
and Jarvis reads the rules again; a refused edit leaves the file byte-identical."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from sqlalchemy import select

from homelab.store import AuditEntry
from homelab.web.settings_page import endpoint, origin

from webui_helpers import PY, ROOT, csrf_from, logged_in_app, real_catalog_settings

SECRETS = {
    "HOMELAB_NOTIFY_DISCORD_URL": "https://discord.com/api/webhooks/1234567890/Disc0rdW3bhookT0ken",
    "HOMELAB_NOTIFY_NTFY_URL": "https://ntfy.example.net/s3cret-topic-name",
    "HOMELAB_NOTIFY_NTFY_TOKEN": "tk_ntfyaccesstoken42",
    "HOMELAB_JARVIS_OPENAI_API_KEY": "sk-proj-settingspagekey",
    "HOMELAB_JARVIS_OPENAI_BASE_URL": "https://llmuser:llmpassw0rd@llm.example.net:8443/v1/?key=qu3rykey",
}
HIDDEN = ("Disc0rdW3bhookT0ken", "1234567890", "s3cret-topic-name", "tk_ntfyaccesstoken42", "sk-proj-settingspagekey")
HIDDEN += ("llmuser", "llmpassw0rd", "qu3rykey")


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    inventory = tmp_path / "inventory.yml"
    hostvars = {"ansible_connection": "local", "ansible_python_interpreter": PY, "n8n_enabled": True}
    inventory.write_text(yaml.safe_dump({"all": {"children": {"homelab": {"hosts": {"alpha": hostvars}}}}}))
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOMELAB_JARVIS_MODEL", "llama-3.1-8b-instruct")
    monkeypatch.delenv("HOMELAB_NOTIFY_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("HOMELAB_JARVIS", raising=False)
    rules = tmp_path / "rules.yml"
    shutil.copy(ROOT / "jarvis" / "rules.yml", rules)
    monkeypatch.setenv("HOMELAB_JARVIS_RULES", str(rules))
    with logged_in_app(real_catalog_settings(tmp_path, inventory), monkeypatch) as (app, c):
        yield c, app, rules


def test_the_settings_page_names_channels_endpoint_model_and_modes_and_no_secret(client: Any) -> None:
    client, _, _ = client
    home = client.get("/").get_data(as_text=True)
    assert '<a href="/settings"' in home  # in the nav
    r = client.get("/settings")
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    assert 'data-channel="discord" data-configured="yes"' in page and "https://discord.com/…" in page
    assert 'data-channel="ntfy" data-configured="yes"' in page and "https://ntfy.example.net/…" in page
    assert "access token set" in page and "environment HOMELAB_NOTIFY_DISCORD_URL" in page
    assert 'data-channel="webhook" data-configured="no"' in page
    assert "<code>https://llm.example.net:8443/v1</code>" in page
    assert "<code>llama-3.1-8b-instruct</code>" in page and "environment HOMELAB_JARVIS_OPENAI_API_KEY" in page
    rules = yaml.safe_load((ROOT / "jarvis" / "rules.yml").read_text())["rules"]
    for rule in rules:
        assert f'data-rule="{rule["id"]}" data-mode="{rule.get("mode", "approve")}"' in page
    assert "rules.yml" in page
    for secret in HIDDEN:
        assert secret not in page, secret


def test_urls_are_shown_without_their_secret_parts() -> None:
    assert origin("https://discord.com/api/webhooks/1/abc") == "https://discord.com"
    assert origin("http://u:p@ntfy.lan:8080/topic?auth=x") == "http://ntfy.lan:8080"
    assert origin("not a url") == "(not a URL)"
    assert endpoint("https://k:s@api.example/v1/?key=z#f") == "https://api.example/v1"


def test_a_rule_s_mode_is_edited_in_its_line_audited_and_jarvis_reads_it_again(client: Any) -> None:
    client, app, rules = client
    before = rules.read_text()
    page = client.get("/settings").get_data(as_text=True)
    csrf = csrf_from(page)
    assert 'data-rule="restart-container" data-mode="auto"' in page
    for path, data, status in (
        ("/settings/jarvis/rules/restart-container/mode", {"csrf_token": csrf, "mode": "sometimes"}, 400),
        ("/settings/jarvis/rules/restart-container/mode", {"csrf_token": csrf}, 400),
        ("/settings/jarvis/rules/no-such-rule/mode", {"csrf_token": csrf, "mode": "off"}, 404),
        ("/settings/jarvis/rules/restart-container/mode", {"mode": "off"}, 403),
    ):
        assert client.post(path, data=data).status_code == status, (path, data)
    assert rules.read_text() == before

    r = client.post("/settings/jarvis/rules/restart-container/mode", data={"csrf_token": csrf, "mode": "off"})
    assert r.status_code == 302 and "saved=restart-container" in r.headers["Location"]
    lines_before, lines_after = before.splitlines(), rules.read_text().splitlines()
    changed = [(a, b) for a, b in zip(lines_before, lines_after) if a != b]
    assert len(lines_before) == len(lines_after) and changed == [("    mode: auto", '    mode: "off"')]
    assert app.extensions["homelab"].jarvis.rules.rule("restart-container").mode == "off"
    page = client.get(r.headers["Location"]).get_data(as_text=True)
    assert 'data-rule="restart-container" data-mode="off"' in page and 'id="mode-saved"' in page
    with app.extensions["homelab"].store.session() as s:
        rows = list(
            s.scalars(select(AuditEntry).where(AuditEntry.action == "jarvis.rule_mode").order_by(AuditEntry.id))
        )
    assert [r.outcome.split(":")[0] for r in rows] == ["refused", "refused", "ok"]
    assert rows[-1].target == "restart-container" and rows[-1].params == {
        "before": "auto",
        "after": "off",
        "file": "rules.yml",
    }

    # and back: the file is as it was
    client.post("/settings/jarvis/rules/restart-container/mode", data={"csrf_token": csrf, "mode": "auto"})
    assert rules.read_text() == before


def test_a_rule_without_a_playbook_offers_only_notify_and_off_and_says_it_runs_nothing(client: Any) -> None:
    """The shipped notify-failed-pipeline rule (mode notify, no playbook): the mode choices are the two
    it can take, and the table says no playbook runs instead of "not in the catalog"."""
    import re

    c, _, _ = client
    page = c.get("/settings").get_data(as_text=True)
    row = page[page.index('data-rule="notify-failed-pipeline"') :]
    row = row[: row.index("</tr>")]
    assert re.findall(r'<option value="(\w+)"', row) == ["notify", "off"] and "selected>notify" in row
    assert "none: reports and notifies" in row and "not in the catalog" not in row
    row = page[page.index('data-rule="deliver-synced"') :]
    assert re.findall(r'<option value="(\w+)"', row[: row.index("</tr>")]) == ["auto", "approve", "off"]
