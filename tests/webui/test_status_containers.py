"""A service's status takes its containers into account (homelab.status.judge_service), over real
parts: the app factory with a real store, the real catalog and the service registry resolved by
Ansible from a real inventory (n8n and Plex with a domain, the Twingate connector without one);
probes stored as the status cycle stores them, container facts stored by the facts cycle's own
ingest (a report shaped as playbooks/ops/files/facts.py prints it), with the facts cycle's clock
moved back for a stale report. What is asserted is what a person and a script read: the API, the
dashboard's tiles, the service page and `homelab status` (a real server process and the real CLI)."""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from homelab.facts import FactsService
from homelab.settings import Settings
from homelab.store import ServiceSample, Store, utcnow
from homelab.web.auth import create_token

from webui_helpers import PY, ROOT, logged_in_app, real_catalog_settings


def _inventory(tmp_path: Path) -> Path:
    inventory = tmp_path / "inventory.yml"
    hostvars = {
        "ansible_connection": "local",
        "ansible_python_interpreter": PY,
        "n8n_enabled": True,
        "n8n_domain": "n8n.page.test",
        "plex_enabled": True,
        "plex_domain": "plex.page.test",
        "twingate_connector_enabled": True,  # a container service without a domain: nothing to probe
    }
    inventory.write_text(yaml.safe_dump({"all": {"children": {"homelab": {"hosts": {"alpha": hostvars}}}}}))
    return inventory


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with logged_in_app(real_catalog_settings(tmp_path, _inventory(tmp_path)), monkeypatch) as (app, client):
        yield app, client


def _box(name: str, service: str, state: str = "running", health: str = "") -> dict[str, Any]:
    return {"name": name, "service": service, "state": state, "health": health, "restart_count": 0, "image": "i:1"}


def _report(*boxes: dict[str, Any], error: str = "") -> dict[str, Any]:
    """One facts report from alpha, with these containers (error: docker could not be read)."""
    host = {"cpu_percent": 5.0, "cpus": 2, "mem_percent": 30.0, "mem_total": 2**30, "disk_percent": 40.0}
    return {
        "alpha": {"host": host, "errors": [], "containers": {"available": True, "error": error, "items": list(boxes)}}
    }


def _probe(store: Store, service: str, status: str = "up", error: str = "", at: dt.datetime | None = None) -> None:
    with store.session.begin() as s:
        s.add(
            ServiceSample(
                service=service,
                at=at or utcnow(),
                status=status,
                url=f"https://{service}.page.test/",
                http_status=200 if status == "up" else None,
                response_ms=20.0 if status == "up" else None,
                error=error,
            )
        )


def _rows(client: Any) -> dict[str, dict[str, Any]]:
    r = client.get("/api/v1/services", headers={"Accept": "application/json"})
    assert r.status_code == 200, r.get_data(as_text=True)
    return {x["name"]: x for x in r.get_json()}


def test_containers_make_a_probed_service_degraded_or_down_and_judge_one_without_a_domain(site: Any) -> None:
    app, client = site
    h = app.extensions["homelab"]
    _probe(h.store, "n8n")
    _probe(h.store, "plex")
    # no facts yet: the probes alone; the connector has nothing to be judged by
    rows = _rows(client)
    assert {n: r["status"] for n, r in rows.items()} == {"n8n": "up", "plex": "up", "twingate_connector": "unknown"}
    assert rows["twingate_connector"]["probed"] is False and rows["twingate_connector"]["url"] == ""
    assert rows["n8n"]["containers"] == [] and rows["n8n"]["containers_observed_at"] is None

    h.facts.ingest(
        None,
        _report(
            _box("n8n", "n8n", health="unhealthy"),
            _box("plex", "plex", state="exited"),
            _box("twingate_connector", "twingate_connector", state="restarting"),
        ),
    )
    rows = _rows(client)
    n8n, plex, tg = rows["n8n"], rows["plex"], rows["twingate_connector"]
    assert (n8n["status"], n8n["error"], n8n["probe_status"]) == ("degraded", "container n8n is unhealthy", "up")
    assert (plex["status"], plex["error"], plex["probe_status"]) == ("down", "container plex exited", "up")
    assert (tg["status"], tg["error"], tg["probe_status"]) == (
        "degraded",
        "container twingate_connector is restarting",
        None,
    )
    assert tg["observed_at"] == tg["containers_observed_at"] is not None, "no probe: its age is its facts' age"
    assert n8n["containers"] == [
        {"host": "alpha", "name": "n8n", "state": "running", "health": "unhealthy", "restart_count": 0}
    ]
    # problems first: the one order of the API, the dashboard and the stream
    r = client.get("/api/v1/services", headers={"Accept": "application/json"})
    assert [x["name"] for x in r.get_json()] == ["plex", "n8n", "twingate_connector"]
    one = client.get("/api/v1/services/plex", headers={"Accept": "application/json"}).get_json()
    assert (one["status"], one["error"]) == ("down", "container plex exited")

    # the tiles say why, in the server's order, and the connector's tile has no probe to show
    home = client.get("/").get_data(as_text=True)
    assert re.findall(r'data-status-service="([a-z0-9_]+)" data-status="([a-z]+)"', home) == [
        ("plex", "down"),
        ("n8n", "degraded"),
        ("twingate_connector", "degraded"),
    ]
    tile = home[home.index('data-status-service="plex"') :]
    tile = tile[: tile.index("</li>")]
    assert "container plex exited" in tile and "plex exited" in tile and "Open Plex" in tile
    tile = home[home.index('data-status-service="twingate_connector"') :]
    tile = tile[: tile.index("</li>")]
    assert "container twingate_connector is restarting" in tile and "none (no domain)" in tile
    assert "Open " not in tile and 'data-field="response"' not in tile
    page = client.get("/services/twingate_connector").get_data(as_text=True)
    assert 'data-tile="status" data-status="degraded"' in page and "judged from its containers alone" in page

    # a probe that fails too: both reasons, the container's first
    _probe(h.store, "plex", "down", "connection refused")
    plex = _rows(client)["plex"]
    assert (plex["status"], plex["error"]) == ("down", "container plex exited; connection refused")

    # all well again, and a container its registry entry names but the host lacks is missing: down
    h.facts.ingest(None, _report(_box("n8n", "n8n", health="healthy"), _box("plex", "plex")))
    _probe(h.store, "plex")
    rows = _rows(client)
    assert (rows["n8n"]["status"], rows["n8n"]["error"]) == ("up", "")
    assert (rows["plex"]["status"], rows["plex"]["error"]) == ("up", "")
    tg = rows["twingate_connector"]
    assert (tg["status"], tg["error"]) == ("down", "container twingate_connector is missing")

    # docker could not be read on alpha: nothing is missing for that, the probes say what they say
    h.facts.ingest(None, _report(error="docker ps failed: permission denied"))
    rows = _rows(client)
    assert rows["plex"]["status"] == "up" and rows["twingate_connector"]["status"] == "unknown"


def test_container_facts_older_than_two_facts_intervals_are_not_judged(site: Any) -> None:
    app, client = site
    h = app.extensions["homelab"]
    assert h.status.facts_fresh_seconds == 2 * h.settings.facts_interval == 600
    _probe(h.store, "plex")
    report = _report(_box("plex", "plex", state="exited"), _box("twingate_connector", "twingate_connector"))
    old = FactsService(h.settings, h.store, None, None, type("E", (), {"on_finished": []})())
    old.clock = lambda: utcnow() - dt.timedelta(seconds=660)  # 11 minutes ago
    old.ingest(None, copy.deepcopy(report))
    rows = _rows(client)
    assert rows["plex"]["status"] == "up" and rows["plex"]["containers_observed_at"] is None
    assert rows["twingate_connector"]["status"] == "unknown" and rows["twingate_connector"]["observed_at"] is None
    old.clock = lambda: utcnow() - dt.timedelta(seconds=540)  # 9 minutes ago: within the limit
    old.ingest(None, copy.deepcopy(report))
    rows = _rows(client)
    assert (rows["plex"]["status"], rows["plex"]["error"]) == ("down", "container plex exited")
    assert rows["twingate_connector"]["status"] == "up" and 530 <= rows["twingate_connector"]["age_seconds"] < 600


def test_homelab_status_exits_1_when_a_container_takes_a_service_down(tmp_path: Path, server_factory: Any) -> None:
    settings: Settings = real_catalog_settings(tmp_path, _inventory(tmp_path))
    store = Store(settings.db_url)
    server = server_factory(settings, extra_env={"HOMELAB_JARVIS": "0", "HOMELAB_SCHEDULER": "0"}).start()
    token = create_token(store, "admin", "status-test")
    _probe(store, "n8n")
    _probe(store, "plex")
    facts = FactsService(settings, store, None, None, type("E", (), {"on_finished": []})())
    facts.ingest(
        None, _report(_box("n8n", "n8n"), _box("plex", "plex"), _box("twingate_connector", "twingate_connector"))
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "HOMELAB_URL": server.url,
            "HOMELAB_TOKEN": token,
            "HOMELAB_VAR_DIR": str(settings.var_dir),
        }
        return subprocess.run(
            [PY, "-m", "homelab", "status", *args], env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=60
        )

    ok = cli()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert [ln.split()[:2] for ln in ok.stdout.splitlines()[1:]] == [
        ["n8n", "up"],
        ["plex", "up"],
        ["twingate_connector", "up"],
    ]
    facts.ingest(None, _report(_box("n8n", "n8n"), _box("plex", "plex", state="exited")))
    down = cli()
    assert down.returncode == 1, down.stdout + down.stderr
    assert [ln.split()[:2] for ln in down.stdout.splitlines()[1:]] == [
        ["plex", "down"],
        ["twingate_connector", "down"],
        ["n8n", "up"],
    ]
    assert "plex: container plex exited" in down.stderr and "down: plex, twingate_connector" in down.stderr
    assert "twingate_connector: container twingate_connector is missing" in down.stderr
    as_json = cli("--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)[0]["error"] == "container plex exited"
