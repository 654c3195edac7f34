"""Catalog ids use underscores; an entry's former (hyphenated) id, listed under `aliases:`, still finds
it everywhere a caller names a playbook (schedules, Jarvis rules, API clients, old job rows), while
the catalog, the API and the UI list only the current ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homelab.catalog import Catalog, CatalogError
from homelab.settings import Settings

from webui_helpers import ADMIN_PASSWORD, ROOT, csrf_from, write_inventory

RENAMED = {
    "site-check": "site_check",
    "deploy-base": "deploy_base",
    "check-base": "check_base",
    "deploy-docker": "deploy_docker",
    "check-docker": "check_docker",
    "deploy-postgres": "deploy_postgres",
    "check-postgres": "check_postgres",
    "deploy-caddy": "deploy_caddy",
    "check-caddy": "check_caddy",
}


@pytest.fixture
def real_settings(tmp_path: Path) -> Settings:
    var = tmp_path / "var"
    var.mkdir()
    return Settings.from_env(
        {
            "HOMELAB_VAR_DIR": str(var),
            "HOMELAB_INVENTORY": str(write_inventory(tmp_path / "inventory.yml", group="homelab")),
            "HOMELAB_CATALOG": str(ROOT / "playbooks" / "catalog.yml"),
        }
    )


def _real_catalog() -> Catalog:
    from homelab.registry import Registry

    return Catalog(ROOT / "playbooks" / "catalog.yml", registry=Registry(ROOT / "inventory" / "lab"))


def test_the_real_catalog_lists_only_underscored_ids_and_its_former_ids_resolve():
    cat = _real_catalog()
    assert all("-" not in i for i in cat.entries), sorted(cat.entries)
    assert set(RENAMED.values()) <= set(cat.entries)
    assert cat.entries.aliases == RENAMED
    for old, new in RENAMED.items():
        assert old in cat.entries and old not in list(cat.entries)
        assert cat.get(old) is cat.entries[new] is cat.entries[old] is cat.entries.get(old)
        assert cat.get(old).id == new
    assert cat.entries.get("no-such-id") is None and "no-such-id" not in cat.entries


def test_a_former_id_prepares_and_submits_as_the_new_entry(real_settings, make_engine):
    from homelab.store import Job

    engine = make_engine(real_settings, start=False)
    engine.stop(timeout=1)  # a stopped engine records jobs as queued and never runs them
    spec = engine.catalog.prepare("check-caddy", {}, "alpha", inventory=engine.inventory)
    assert spec.entry.id == "check_caddy" and spec.check and spec.diff and spec.hosts == ("alpha",)
    job = engine.submit(spec, "admin", "api", requested_limit="alpha")
    assert job.playbook == "check_caddy" and job.status == "queued"
    spec = engine.catalog.prepare("deploy-caddy", {"deploy_state": "absent"}, "beta", inventory=engine.inventory)
    assert spec.entry.id == "deploy_caddy" and spec.extravars == {"deploy_state": "absent"} and not spec.check
    assert engine.submit(spec, "admin", "api").playbook == "deploy_caddy"
    # a job row from before the rename still names the former id: it runs again as the new entry
    with engine.store.session.begin() as s:
        s.get(Job, job.id).playbook = "check-caddy"
    again = engine.rerun(job.id, "admin")
    assert again.playbook == "check_caddy" and again.check and again.hosts == ["alpha"]


def test_the_api_lists_new_ids_and_accepts_a_former_one(real_settings, monkeypatch):
    from homelab.web import create_app, stop_app

    monkeypatch.setenv("HOMELAB_ADMIN_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.delenv("HOMELAB_SECRET_KEY", raising=False)
    app = create_app(real_settings)
    app.config["TESTING"] = True
    try:
        client: Any = app.test_client()
        page = client.get("/login").get_data(as_text=True)
        client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": csrf_from(page)})
        ids = [e["id"] for e in client.get("/api/v1/catalog").get_json()]
        assert "site_check" in ids and not set(RENAMED) & set(ids)
        assert all("-" not in i for i in ids)
        r = client.get("/api/v1/catalog/site-check")
        assert r.status_code == 200 and r.get_json()["id"] == "site_check"
        assert client.get("/api/v1/catalog/nope-nope").status_code == 404
        doc = client.get("/api/v1/openapi.json").get_data(as_text=True)
        assert not any(f'"{old}"' in doc for old in RENAMED)
        page = client.get("/catalog").get_data(as_text=True)
        assert "check_caddy" in page and "check-caddy" not in page
        assert client.get("/catalog/check-caddy").status_code == 200
    finally:
        stop_app(app, timeout=60)


def _write(path: Path, entries: str) -> Path:
    (path / "p.yml").write_text("- hosts: all\n  tasks: []\n")
    path.joinpath("catalog.yml").write_text("playbooks:\n" + entries)
    return path / "catalog.yml"


ENTRY = "  - {{id: {id}, title: T, category: deploy, risk: read-only, playbook: p.yml, targets: [all]{extra}}}\n"


def test_an_alias_may_not_repeat_an_id_or_another_alias(tmp_path):
    ok = _write(tmp_path, ENTRY.format(id="a_b", extra=", aliases: [a-b]") + ENTRY.format(id="c", extra=""))
    assert Catalog(ok).get("a-b").id == "a_b"
    for entries in (
        ENTRY.format(id="a_b", extra=", aliases: [c]") + ENTRY.format(id="c", extra=""),
        ENTRY.format(id="c", extra="") + ENTRY.format(id="a_b", extra=", aliases: [c]"),
        ENTRY.format(id="a_b", extra=", aliases: [x]") + ENTRY.format(id="c", extra=", aliases: [x]"),
        ENTRY.format(id="a_b", extra=", aliases: [a_b]"),
    ):
        with pytest.raises(CatalogError, match="listed twice"):
            Catalog(_write(tmp_path, entries))
    with pytest.raises(CatalogError, match="alias"):
        Catalog(_write(tmp_path, ENTRY.format(id="a_b", extra=", aliases: ['{{x}}']")))
