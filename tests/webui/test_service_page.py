"""The service page (/services/<name>) with real parts: the app factory with a real store, the
real catalog (playbooks/catalog.yml) and the service registry resolved by Ansible from a real
inventory. The engine is not started, so a button's job is created and stays queued: what is
asserted is which job the page starts (or refuses to), never a faked run. The facts are stored by
FactsService.ingest from a report shaped as playbooks/ops/files/facts.py prints it (the lab test,
test_service_lab.py, runs the real playbook)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from sqlalchemy import select

from homelab.settings import Settings
from homelab.store import DriftState, Job, ServiceSample

from webui_helpers import ADMIN_PASSWORD, PY, ROOT, csrf_from, logged_in_app, real_catalog_env, real_catalog_settings


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    inventory = tmp_path / "inventory.yml"
    hostvars = {
        "ansible_connection": "local",
        "ansible_python_interpreter": PY,
        "n8n_enabled": True,
        "n8n_domain": "n8n.page.test",
        "plex_enabled": True,
        "plex_domain": "plex.page.test",
    }
    inventory.write_text(yaml.safe_dump({"all": {"children": {"homelab": {"hosts": {"alpha": hostvars}}}}}))
    with logged_in_app(real_catalog_settings(tmp_path, inventory), monkeypatch) as (app, client):
        yield app, client


def _jobs(app: Any) -> list[Job]:
    with app.extensions["homelab"].store.session() as s:
        return list(s.scalars(select(Job).order_by(Job.id)))


def _csrf(client: Any, path: str = "/services/n8n") -> str:
    return csrf_from(client.get(path).get_data(as_text=True))


FACTS = {
    "alpha": {
        "host": {
            "cpu_percent": 12.5,
            "cpus": 4,
            "mem_percent": 41.0,
            "mem_total": 8 * 2**30,
            "disk_percent": 63.2,
            "disk_free": 120 * 2**30,
            "load1": 0.5,
            "load5": 0.4,
            "load15": 0.3,
            "uptime_seconds": 3 * 86400 + 7200,
        },
        "errors": [],
        "containers": {
            "available": True,
            "error": "",
            "items": [
                {
                    "name": "n8n",
                    "service": "n8n",
                    "state": "running",
                    "health": "healthy",
                    "restart_count": 3,
                    "image": "n8nio/n8n:1.70.1",
                },
                {
                    "name": "plex",
                    "service": "plex",
                    "state": "exited",
                    "health": "",
                    "restart_count": 0,
                    "image": "plexinc/pms-docker:latest",
                },
            ],
        },
    }
}


def test_the_service_page_shows_its_status_containers_operations_jobs_drift_and_findings(site: Any) -> None:
    app, client = site
    h = app.extensions["homelab"]
    with h.store.session.begin() as s:
        s.add(
            ServiceSample(
                service="n8n",
                status="up",
                url="https://n8n.page.test/healthz",
                http_status=200,
                response_ms=42.4,
                tls_days_left=61.2,
                error="",
            )
        )
        s.add(
            DriftState(
                host="alpha",
                playbook="site_check",
                state="drifted",
                fingerprint="f",
                tasks=[
                    {"task": "n8n : Write the compose file", "role": "n8n"},
                    {"task": "caddy : Write the Caddyfile", "role": "caddy"},
                ],
            )
        )
    assert h.facts.ingest(None, FACTS) == 1
    if h.jarvis is not None:
        from jarvis.models import JarvisFinding

        with h.store.session.begin() as s:
            s.add(
                JarvisFinding(
                    key="container.unhealthy|alpha/container:n8n",
                    code="container.unhealthy",
                    severity="critical",
                    target="alpha/container:n8n",
                    host="alpha",
                    summary="n8n is unhealthy: planted finding",
                    params={"service": "n8n"},
                )
            )
            s.add(
                JarvisFinding(
                    key="container.down|alpha/container:plex",
                    code="container.down",
                    severity="critical",
                    target="alpha/container:plex",
                    host="alpha",
                    summary="plex is exited",
                    params={"service": "plex"},
                )
            )

    r = client.get("/services/n8n")
    page = r.get_data(as_text=True)
    assert r.status_code == 200
    assert '<h1>n8n <span class="muted">(n8n)</span></h1>' in page
    assert 'data-tile="status" data-status="up"' in page and "42 ms" in page and "(HTTP 200)" in page
    assert "61 days left" in page
    # its containers, not plex's
    assert re.search(
        r'data-container="n8n" data-state="running">.*?healthy.*?<td>3</td><td class="wrap">n8nio/n8n:1.70.1',
        page,
        re.S,
    )
    assert 'data-container="plex"' not in page
    # the buttons its registry entry allows, restart and roll back marked as asking first
    assert re.findall(r'data-action="([a-z_]+)"', page) == [
        "deploy_service",
        "check_service",
        "restart_service",
        "rollback_service",
    ]
    assert page.count("asks first") == 2
    # its drift: only its own tasks
    assert "n8n : Write the compose file" in page and "Caddyfile" not in page
    if h.jarvis is not None:
        assert "planted finding" in page and "plex is exited" not in page
    assert "No logs read yet" in page

    # a job for it, one for another service, and a site run: the page lists its own and the site's
    spec = h.catalog.prepare("deploy_service", {"service": "plex"}, "", inventory=h.inventory)
    h.engine.submit(spec, "admin", "web")
    spec = h.catalog.prepare("site", {}, "", inventory=h.inventory)
    site_job = h.engine.submit(spec, "admin", "web")
    spec = h.catalog.prepare("check_service", {"service": "n8n"}, "", inventory=h.inventory)
    mine = h.engine.submit(spec, "admin", "web")
    page = client.get("/services/n8n").get_data(as_text=True)
    listed = re.findall(r'href="/jobs/(\d+)">#', page)
    assert listed == [str(mine.id), str(site_job.id)], listed

    # the dashboard's tiles and services table link to it
    home = client.get("/").get_data(as_text=True)
    assert 'href="/services/n8n"' in home and 'href="/services/plex"' in home
    # and its platform tiles say how the host is doing, from the same facts
    tile = home[home.index('data-host-facts="alpha"') :]
    tile = tile[: tile.index("</li>")]
    for text in ("12 %", "of 4 CPU(s)", "41 %", "of 8.0 GiB", "63 %", "(120 GiB free)", "0.50 0.40 0.30", "3 d 2 h"):
        assert text in tile, (text, tile)


def test_an_unknown_service_is_a_404_and_its_name_stays_data(site: Any) -> None:
    _, client = site
    for name in ("nosuch", "{{7*7}}", "N8N", "n8n%0A", "%3Cb%3Ex", "x" * 300):
        r = client.get(f"/services/{name}")
        body = r.get_data(as_text=True)
        assert r.status_code == 404 and "is not a service of this homelab" in body, name
        assert "49" not in body and "<b>x" not in body, name
    assert client.get("/services/..%2Fjobs").status_code == 404


def test_a_disruptive_button_asks_first_and_a_confirmed_one_starts_its_job(site: Any) -> None:
    app, client = site
    token = _csrf(client)
    r = client.post("/services/n8n/run", data={"entry": "restart_service", "csrf_token": token})
    page = r.get_data(as_text=True)
    assert r.status_code == 200 and 'id="confirm"' in page and "Restart n8n?" in page and "disruptive" in page
    assert _jobs(app) == [], "asking to confirm starts nothing"

    r = client.post("/services/n8n/run", data={"entry": "restart_service", "confirm": "1", "csrf_token": token})
    [job] = _jobs(app)
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/jobs/{job.id}")
    assert (job.playbook, job.params, job.source, job.created_by) == (
        "restart_service",
        {"service": "n8n"},
        "web",
        "admin",
    )

    r = client.post("/services/n8n/run", data={"entry": "check_service", "csrf_token": token})
    assert r.status_code == 302, "a read-only check starts at once"
    assert [(j.playbook, j.check) for j in _jobs(app)][-1] == ("check_service", True)


def test_a_button_the_service_does_not_have_is_refused_and_starts_nothing(site: Any) -> None:
    app, client = site
    token = _csrf(client)
    for entry in ("site", "restore", "logs", "deploy_service ", "", "../ping"):
        r = client.post("/services/n8n/run", data={"entry": entry, "confirm": "1", "csrf_token": token})
        assert r.status_code == 400, entry
    assert _jobs(app) == []


def test_a_post_without_its_csrf_token_starts_nothing(site: Any) -> None:
    app, client = site
    for path, data in (("/services/n8n/run", {"entry": "check_service"}), ("/services/n8n/logs", {"lines": "5"})):
        assert client.post(path, data=data).status_code in (400, 403)
    assert _jobs(app) == []


def test_the_logs_tail_refuses_bad_lines_or_since_with_a_400_and_starts_nothing(site: Any) -> None:
    app, client = site
    token = _csrf(client)
    for form in (
        {"lines": "0"},
        {"lines": "2001"},
        {"lines": "ten"},
        {"lines": "-5"},
        {"since": "1x"},
        {"since": "\n1h"},
        {"since": "0h"},
        {"since": "1h; rm -rf /"},
        {"since": "{{ lookup('pipe','id') }}"},
    ):
        r = client.post("/services/n8n/logs", data={**form, "csrf_token": token})
        assert r.status_code == 400 and 'id="logs-error"' in r.get_data(as_text=True), form
    assert _jobs(app) == []


def test_the_logs_tail_starts_the_read_only_logs_job_for_this_service(site: Any) -> None:
    app, client = site
    r = client.post("/services/n8n/logs", data={"lines": "50", "since": "2h", "csrf_token": _csrf(client)})
    [job] = _jobs(app)
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/services/n8n?logs={job.id}#logs")
    assert (job.playbook, job.params) == ("logs", {"service": "n8n", "lines": 50, "since": "2h"})
    assert app.extensions["homelab"].catalog.get("logs").risk == "read-only"
    page = client.get(f"/services/n8n?logs={job.id}").get_data(as_text=True)
    assert 'id="logs-wait"' in page and f'data-job-stream="/jobs/{job.id}/stream"' in page
    # another service's logs job is not shown as this one's
    assert 'id="logs-wait"' not in client.get(f"/services/plex?logs={job.id}").get_data(as_text=True)


def test_the_logs_script_masks_with_the_engine_s_secret_patterns() -> None:
    """files/logs.py runs on the host with the standard library only, so it holds its own copy of
    homelab.masking's patterns: they must stay the same."""
    import importlib.util

    from homelab import masking

    spec = importlib.util.spec_from_file_location("logs_script", ROOT / "playbooks" / "ops" / "files" / "logs.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.SECRET_KEY_RE.pattern == masking.SECRET_KEY_RE.pattern
    assert mod.INLINE_RE.pattern == masking._INLINE_RE.pattern
    assert mod.MASK == masking.MASK
    line = "10:00:00Z connecting as n8n with Swordfish-4242 (DB_POSTGRESDB_PASSWORD=Swordfish-4242) token: abcdef"
    assert (
        mod.masked(line, ["Swordfish-4242"])
        == "10:00:00Z connecting as n8n with ******** (DB_POSTGRESDB_PASSWORD=******** token: ********"
    )


def _events(chunks: Iterator[bytes], name: str, count: int) -> list[Any]:
    """The data of the next `count` events called `name` of an SSE response."""
    import json

    got: list[Any] = []
    buf = ""
    for chunk in chunks:
        buf += chunk.decode() if isinstance(chunk, bytes) else chunk
        while "\n\n" in buf:
            block, buf = buf.split("\n\n", 1)
            lines = dict(ln.split(": ", 1) for ln in block.split("\n") if ": " in ln)
            if lines.get("event") == name:
                got.append(json.loads(lines["data"]))
                if len(got) == count:
                    return got
    return got


def test_the_tiles_stream_sends_the_status_at_once_and_again_when_a_sample_changes_it(site: Any) -> None:
    app, client = site
    h = app.extensions["homelab"]
    with h.store.session.begin() as s:
        s.add(ServiceSample(service="n8n", status="up", http_status=200, response_ms=10.0, error=""))
    r = client.get("/services/stream", buffered=False)
    assert r.status_code == 200 and r.mimetype == "text/event-stream"
    chunks = iter(r.response)
    [first] = _events(chunks, "tiles", 1)
    by = {x["name"]: x for x in first["services"]}
    assert by["n8n"]["status"] == "up" and by["plex"]["status"] == "unknown" and first["hosts"] == []
    with h.store.session.begin() as s:
        s.add(ServiceSample(service="n8n", status="down", error="connection refused"))
    h.facts.ingest(None, FACTS)
    [second] = _events(chunks, "tiles", 1)
    by = {x["name"]: x for x in second["services"]}
    assert (by["n8n"]["status"], by["n8n"]["error"]) == ("down", "connection refused")
    assert [x["host"] for x in second["hosts"]] == ["alpha"] and second["hosts"][0]["cpu_percent"] == 12.5
    r.close()
    # a page with tiles says where its stream is, and loads the script that follows it
    for path in ("/", "/services/n8n"):
        page = client.get(path).get_data(as_text=True)
        assert 'data-live-stream="/services/stream"' in page and "/static/live.js" in page, path
    assert client.get("/static/live.js").status_code == 200


@pytest.mark.browser
def test_home_to_service_page_by_keyboard_at_desktop_and_phone_sizes_with_live_tiles(
    tmp_path: Path, server_factory: Any
) -> None:
    """A real browser: the dashboard at 1280 px, Tab to n8n's tile link and Enter, the service
    page; Restart asks first; at 390 px neither page scrolls sideways; a new sample turns the tile
    "down" on the open page without a reload (SSE). Screenshots under var/reports/."""
    import os
    import shutil

    from playwright.sync_api import sync_playwright

    from homelab.facts import FactsService
    from homelab.store import Store

    inventory = tmp_path / "inventory.yml"
    hostvars = {"ansible_connection": "local", "ansible_python_interpreter": PY, "n8n_enabled": True}
    hostvars |= {"n8n_domain": "n8n.page.test", "plex_enabled": True, "plex_domain": "plex.page.test"}
    inventory.write_text(yaml.safe_dump({"all": {"children": {"homelab": {"hosts": {"alpha": hostvars}}}}}))
    env = real_catalog_env(tmp_path, inventory, HOMELAB_JARVIS="0")
    settings = Settings.from_env(env)
    store = Store(settings.db_url)
    with store.session.begin() as s:
        s.add(
            ServiceSample(
                service="n8n",
                status="up",
                url="https://n8n.page.test/healthz",
                http_status=200,
                response_ms=38.0,
                tls_days_left=74.0,
                error="",
            )
        )
        s.add(
            ServiceSample(
                service="plex",
                status="degraded",
                url="https://plex.page.test/identity",
                http_status=502,
                response_ms=12.0,
                tls_days_left=74.0,
                error="answers HTTP 502",
            )
        )

    class _NoEngine:
        on_finished: list[Any] = []

    FactsService(settings, store, None, None, _NoEngine()).ingest(None, FACTS)
    server = server_factory(settings, extra_env=env).start()
    chromium = os.environ.get("HOMELAB_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
    shots = ROOT / "var" / "reports"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = b.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(60_000)
            page.goto(server.url + "/login")
            page.fill("#password", ADMIN_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector("#platform-tiles [data-host-facts=alpha]")
            page.screenshot(path=str(shots / "service-home-1280.png"), full_page=True)
            link = page.locator('#status-panel a[href="/services/n8n"]')
            for _ in range(60):  # by keyboard: Tab until n8n's tile link has the focus, then Enter
                page.keyboard.press("Tab")
                if page.evaluate("document.activeElement.getAttribute('href')") == "/services/n8n":
                    break
            assert link.evaluate("el => el === document.activeElement"), "the tile link is not reachable by Tab"
            page.keyboard.press("Enter")
            page.wait_for_url("**/services/n8n")
            assert page.locator("h1").inner_text().startswith("n8n")
            assert "42 ms" not in page.content() and "38 ms" in page.locator("#service-status").inner_text()
            assert page.locator('[data-container="n8n"]').inner_text().split("\t")[:3] == ["n8n", "alpha", "running"]
            page.screenshot(path=str(shots / "service-page-1280.png"), full_page=True)
            page.click('button[data-action="restart_service"]')
            page.wait_for_selector("#confirm")
            assert "Restart n8n?" in page.locator("#confirm").inner_text()
            page.screenshot(path=str(shots / "service-restart-confirm-1280.png"), full_page=False)
            page.click("#confirm a.btn")  # Cancel: nothing started
            page.wait_for_url("**/services/n8n")

            page.set_viewport_size({"width": 390, "height": 844})
            for path in ("/", "/services/n8n"):
                page.goto(server.url + path)
                page.wait_for_selector("[data-live-stream]")
                assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), path
            page.screenshot(path=str(shots / "service-page-390.png"), full_page=True)
            page.goto(server.url + "/")
            page.wait_for_selector("#status-panel[data-live-updated]")  # no string eval: the CSP forbids it
            page.screenshot(path=str(shots / "service-home-390.png"), full_page=False)
            page.evaluate("window.__same_page = 1")
            with store.session.begin() as s:
                s.add(
                    ServiceSample(
                        service="n8n", status="down", url="https://n8n.page.test/healthz", error="connection refused"
                    )
                )
            page.wait_for_selector('#status-panel [data-status-service="n8n"][data-status="down"]', timeout=30_000)
            assert page.evaluate("window.__same_page") == 1, "the page was reloaded"
            tile = page.locator('#status-panel [data-status-service="n8n"]')
            assert "down" in tile.inner_text() and "connection refused" in tile.inner_text()
            assert "tile-down" in (tile.get_attribute("class") or "")
            page.screenshot(path=str(shots / "service-home-live-down-390.png"), full_page=False)
        finally:
            b.close()
    with store.session() as s:
        assert list(s.scalars(select(Job))) == [], "the walk started no job"


def test_an_app_built_from_git_offers_the_pipeline_and_the_button_starts_a_deliver_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registry says which apps the pipeline delivers (ops: deliver, an app built from git): their
    page offers "Deliver (pipeline)", which starts the catalog's deliver on that app (the head of its
    branch); an app run from an image does not offer it, and the form refuses it there."""
    inventory = tmp_path / "inventory.yml"
    hostvars = {
        "ansible_connection": "local",
        "ansible_python_interpreter": PY,
        "discord_bot_enabled": True,
        "discord_bot_domain": "bot.page.test",
        "discord_bot_git_repo": "https://git.page.test/me/bot.git",
        "stream_bot_enabled": True,
        "stream_bot_domain": "stream.page.test",
        "stream_bot_source": "image",
        "stream_bot_image": "example/stream:1",
    }
    inventory.write_text(yaml.safe_dump({"all": {"children": {"homelab": {"hosts": {"alpha": hostvars}}}}}))
    with logged_in_app(real_catalog_settings(tmp_path, inventory), monkeypatch) as (app, client):
        page = client.get("/services/discord_bot").get_data(as_text=True)
        assert re.findall(r'data-action="([a-z_]+)"', page)[-1] == "deliver"
        assert "deliver" not in re.findall(
            r'data-action="([a-z_]+)"', client.get("/services/stream_bot").get_data(as_text=True)
        )
        r = client.post(
            "/services/stream_bot/run", data={"csrf_token": _csrf(client, "/services/stream_bot"), "entry": "deliver"}
        )
        assert r.status_code == 400 and not [j for j in _jobs(app) if j.playbook == "deliver"]
        r = client.post(
            "/services/discord_bot/run", data={"csrf_token": _csrf(client, "/services/discord_bot"), "entry": "deliver"}
        )
        assert r.status_code == 302
        [job] = [j for j in _jobs(app) if j.playbook == "deliver"]
        assert job.params == {"service": "discord_bot", "commit": ""} and r.headers["Location"].endswith(
            f"/jobs/{job.id}"
        )
