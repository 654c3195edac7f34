"""A service switched on or off from its page (/services/<name>): the app factory with a real store,
the real catalog and a temporary copy of the production inventory (vault.yml.example as its vault),
its service registry resolved by Ansible. What is asserted is what lands in the inventory file,
the audit log and the registry read back from that inventory; a refused request leaves every file
of the inventory byte-identical."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlalchemy import select

from homelab.registry import Registry
from homelab.store import AuditEntry, Job, TaskResult
from homelab.switch import SwitchError, edited

from labenv import inventory_copy
from webui_helpers import PY, ROOT, csrf_from, logged_in_app, real_catalog_settings


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    inventory = inventory_copy(ROOT / "inventory" / "production", tmp_path / "production")
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    settings = real_catalog_settings(tmp_path, inventory, HOMELAB_JARVIS="0")
    with logged_in_app(settings, monkeypatch) as (app, client):
        yield app, client, inventory


def _files(inventory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(inventory)): p.read_bytes() for p in sorted(inventory.rglob("*")) if p.is_file()}


def _audits(app: Any) -> list[AuditEntry]:
    with app.extensions["homelab"].store.session() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.action == "service.switch").order_by(AuditEntry.id)))


def test_switching_a_service_off_writes_its_inventory_file_audits_and_the_registry_reads_it_back(site: Any) -> None:
    app, client, inventory = site
    n8n = inventory / "group_vars" / "all" / "n8n.yml"
    before = n8n.read_text()
    page = client.get("/services/n8n").get_data(as_text=True)
    assert 'id="switch-form"' in page and "n8n_enabled" in page and "group_vars/all/n8n.yml" in page
    csrf = csrf_from(page)

    # "off" asks first, saying what stops and what stays; nothing is written yet
    r = client.post("/services/n8n/enabled", data={"csrf_token": csrf, "value": "false"})
    assert r.status_code == 200
    ask = r.get_data(as_text=True)
    assert 'id="confirm-off"' in ask and "n8n.evindrake.net" in ask and "/opt/homelab/n8n" in ask
    assert n8n.read_text() == before

    r = client.post("/services/n8n/enabled", data={"csrf_token": csrf, "value": "false", "confirm": "1"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/services/n8n?switched=off")
    after = n8n.read_text()
    assert after == before.replace("n8n_enabled: true", "n8n_enabled: false")  # that line only, comments kept
    assert Registry(inventory).union()["n8n"].enabled is False
    (row,) = _audits(app)
    assert row.target == "n8n off" and row.outcome == "ok" and row.actor == "admin"
    assert row.params["variable"] == "n8n_enabled" and row.params["value"] is False and row.params["before"] is True
    assert row.params["file"] == "group_vars/all/n8n.yml"

    # the page says so and offers the deploy that applies it (the site converge: deploy_service refuses a disabled one)
    page = client.get(r.headers["Location"]).get_data(as_text=True)
    assert 'id="switched"' in page and 'href="/catalog/site"' in page and "is <strong>off</strong>" in page

    # and on again: the one-service deploy is offered, and it starts a deploy_service job for n8n
    r = client.post("/services/n8n/enabled", data={"csrf_token": csrf_from(page), "value": "true"})
    assert r.status_code == 302
    assert n8n.read_text() == before
    page = client.get(r.headers["Location"]).get_data(as_text=True)
    assert 'id="switch-deploy"' in page and 'name="entry" value="deploy_service"' in page
    r = client.post("/services/n8n/run", data={"csrf_token": csrf_from(page), "entry": "deploy_service"})
    assert r.status_code == 302
    with app.extensions["homelab"].store.session() as s:
        job = s.scalars(select(Job).order_by(Job.id.desc())).first()
    assert job is not None and job.playbook == "deploy_service" and job.params == {"service": "n8n"}
    assert [a.target for a in _audits(app)] == ["n8n off", "n8n on"]


def test_a_refused_switch_is_a_4xx_and_leaves_the_inventory_byte_identical(site: Any) -> None:
    app, client, inventory = site
    files = _files(inventory)
    csrf = csrf_from(client.get("/services/n8n").get_data(as_text=True))
    cases = [
        ("/services/nosuch/enabled", {"csrf_token": csrf, "value": "false", "confirm": "1"}, 404),
        ("/services/n8n/enabled", {"csrf_token": csrf, "value": "maybe", "confirm": "1"}, 400),
        ("/services/n8n/enabled", {"csrf_token": csrf, "value": "{{ 7*7 }}", "confirm": "1"}, 400),
        ("/services/n8n/enabled", {"csrf_token": csrf, "confirm": "1"}, 400),
        ("/services/n8n/enabled", {"value": "false", "confirm": "1"}, 403),
        ("/services/n8n/enabled", {"csrf_token": "forged", "value": "false", "confirm": "1"}, 403),
        ("/services/postgres/enabled", {"csrf_token": csrf, "value": "false", "confirm": "1"}, 409),
        ("/services/caddy/enabled", {"csrf_token": csrf, "value": "false", "confirm": "1"}, 409),
    ]
    for path, data, status in cases:
        r = client.post(path, data=data)
        assert r.status_code == status, (path, data, r.get_data(as_text=True)[:300])
        assert "{{" not in r.get_data(as_text=True) or status == 403
    assert _files(inventory) == files
    assert all(a.outcome.startswith("refused") for a in _audits(app))
    page = client.get("/services/postgres").get_data(as_text=True)
    assert 'id="switch-why"' in page and "platform service" in page and 'id="switch-form"' not in page


def test_a_service_whose_switch_is_also_set_elsewhere_is_refused_naming_the_file(site: Any) -> None:
    app, client, inventory = site
    vault = inventory / "group_vars" / "all" / "vault.yml"
    vault.write_text(vault.read_text() + "plex_enabled: true\n")
    files = _files(inventory)
    csrf = csrf_from(client.get("/services/plex").get_data(as_text=True))
    r = client.post("/services/plex/enabled", data={"csrf_token": csrf, "value": "false", "confirm": "1"})
    assert r.status_code == 409
    assert "group_vars/all/vault.yml" in r.get_data(as_text=True)
    assert _files(inventory) == files
    (row,) = _audits(app)
    assert row.outcome.startswith("refused") and "vault.yml" in row.outcome


def test_an_encrypted_file_that_cannot_be_read_is_refused_rather_than_guessed(site: Any) -> None:
    app, client, inventory = site
    (inventory / "host_vars").mkdir()
    (inventory / "host_vars" / "homelab-server.yml").write_text("$ANSIBLE_VAULT;1.1;AES256\n6162636465\n")
    files = _files(inventory)
    from homelab.switch import conflicts

    svc = Registry(inventory).union()["plex"]
    assert conflicts(inventory, svc, inventory / "group_vars" / "all" / "plex.yml") == [
        "host_vars/homelab-server.yml (encrypted, and it cannot be read here to tell)"
    ]
    assert _files(inventory) == files


def test_the_edit_changes_one_line_or_appends_one_and_refuses_an_expression() -> None:
    text = "---\n# a comment\nn8n_domain: x.test\nn8n_enabled: yes   # on\nn8n_port: 5678\n"
    assert edited(text, "n8n_enabled", False) == (
        "---\n# a comment\nn8n_domain: x.test\nn8n_enabled: false   # on\nn8n_port: 5678\n",
        True,
    )
    assert edited("---\nn8n_domain: x.test", "n8n_enabled", True) == (
        "---\nn8n_domain: x.test\nn8n_enabled: true\n",
        None,
    )
    for bad in ('n8n_enabled: "{{ other }}"\n', "n8n_enabled: true\nn8n_enabled: false\n", "- a\n", "a: [\n"):
        with pytest.raises(SwitchError):
            edited(bad, "n8n_enabled", False)


def test_deploy_service_refuses_a_switched_off_service_so_the_page_offers_the_site_deploy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why a switched-off service's page offers "Deploy site" and not "Deploy <service>": the
    deploy_service playbook refuses a service the inventory disables before its role runs, so its
    uninstall path (roles/<svc>/tasks/uninstall.yml, `when: not <svc>_enabled`) is reached only by
    the site converge. A real deploy_service job through the engine, on the production inventory
    with its one host run locally (nothing on it is reached: the refusal comes first)."""
    inventory = inventory_copy(ROOT / "inventory" / "production", tmp_path / "production")
    (inventory / "host_vars").mkdir()
    (inventory / "host_vars" / "homelab-server.yml").write_text(
        f"ansible_connection: local\nansible_python_interpreter: {PY}\nansible_become: false\n"
    )
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    quiet = {"HOMELAB_JARVIS": "0", "HOMELAB_STATUS_INTERVAL": "0", "HOMELAB_FACTS_INTERVAL": "0"}
    settings = real_catalog_settings(tmp_path, inventory, **quiet)
    with logged_in_app(settings, monkeypatch, start_engine=True, stop_timeout=60) as (app, client):
        h = app.extensions["homelab"]
        csrf = csrf_from(client.get("/services/n8n").get_data(as_text=True))
        r = client.post("/services/n8n/enabled", data={"csrf_token": csrf, "value": "false", "confirm": "1"})
        assert r.status_code == 302 and Registry(inventory).union()["n8n"].enabled is False

        # the page offers the site converge, not the one-service deploy, and its run route refuses that
        page = client.get(r.headers["Location"]).get_data(as_text=True)
        assert 'id="switch-deploy" href="/catalog/site"' in page and 'value="deploy_service"' not in page
        r = client.post("/services/n8n/run", data={"csrf_token": csrf_from(page), "entry": "deploy_service"})
        assert r.status_code == 400

        # from the catalog it starts, and the playbook refuses before any task of the n8n role
        page = client.get("/catalog/deploy_service").get_data(as_text=True)
        r = client.post("/catalog/deploy_service", data={"csrf_token": csrf_from(page), "service": "n8n"})
        assert r.status_code == 302, r.get_data(as_text=True)[:500]
        job = h.engine.wait(int(r.headers["Location"].rsplit("/", 1)[1]), 300)
        assert job.playbook == "deploy_service" and job.params == {"service": "n8n"}
        assert job.status == "failed", job.reason
        with h.store.session() as s:
            results = list(s.scalars(select(TaskResult).where(TaskResult.job_id == job.id).order_by(TaskResult.seq)))
        failed = [(t.task, t.message) for t in results if t.status == "failed"]
        assert [name for name, _ in failed] == ["Refuse a service the inventory disables"], failed
        assert "n8n_enabled is false" in failed[0][1]
        assert not [t.task for t in results if t.role == "n8n" or "ninstall" in t.task]
