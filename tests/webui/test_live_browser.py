"""The live dashboard and charts in a real browser (Debian's chromium through playwright) against a
real server process (`python -m homelab serve`) on a real store: samples are stored as the cycles
store them (ServiceSample rows, the facts cycle's own ingest) while the page is open, and what is
asserted is what the page then shows without a reload: the tiles re-sorted problems first with the
keyboard focus where it was, the charts drawn (their canvas has the series' pixels) and their text
tables holding the new sample. Screenshots under var/reports/ for a person to look at."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from homelab.facts import FactsService
from homelab.settings import Settings
from homelab.store import ServiceSample, Store, utcnow

from webui_helpers import ADMIN_PASSWORD, PY, ROOT

pytestmark = pytest.mark.browser
SHOTS = ROOT / "var" / "reports"


def _site(tmp_path: Path, server_factory: Any) -> tuple[Any, Store, FactsService]:
    inventory = tmp_path / "inventory.yml"
    hostvars = {"ansible_connection": "local", "ansible_python_interpreter": PY}
    hostvars |= {"n8n_enabled": True, "n8n_domain": "n8n.page.test", "plex_enabled": True}
    hostvars |= {"plex_domain": "plex.page.test", "twingate_connector_enabled": True}
    inventory.write_text(yaml.safe_dump({"all": {"children": {"homelab": {"hosts": {"alpha": hostvars}}}}}))
    var = tmp_path / "var"
    var.mkdir()
    (tmp_path / "schedules.yml").write_text("schedules: []\n")
    env = {
        "HOMELAB_VAR_DIR": str(var),
        "HOMELAB_INVENTORY": str(inventory),
        "HOMELAB_CATALOG": str(ROOT / "playbooks" / "catalog.yml"),
        "HOMELAB_SCHEDULES": str(tmp_path / "schedules.yml"),
        "HOMELAB_SCHEDULER": "0",  # no cycle of its own: the test stores every sample
        "HOMELAB_JARVIS": "0",
    }
    settings = Settings.from_env(env)
    store = Store(settings.db_url)
    facts = FactsService(settings, store, None, None, type("NoEngine", (), {"on_finished": []})())
    return server_factory(settings, extra_env=env), store, facts


def _probe(store: Store, service: str, status: str, ms: float | None, error: str = "", at: Any = None) -> None:
    with store.session.begin() as s:
        s.add(
            ServiceSample(
                service=service,
                at=at or utcnow(),
                status=status,
                url=f"https://{service}.page.test/",
                http_status=200 if status == "up" else None,
                response_ms=ms,
                error=error,
            )
        )


def _report(*boxes: tuple[str, str, str]) -> dict[str, Any]:
    items = [
        {"name": n, "service": s, "state": st, "health": "", "restart_count": 0, "image": "i:1"} for n, s, st in boxes
    ]
    host = {"cpu_percent": 5.0, "cpus": 2, "mem_percent": 30.0, "mem_total": 2**30, "disk_percent": 40.0}
    return {"alpha": {"host": host, "errors": [], "containers": {"available": True, "error": "", "items": items}}}


def _log_in(browser: Any, url: str, width: int) -> Any:
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.set_default_timeout(60_000)
    page.goto(url + "/login")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")
    return page


def _wait(page: Any, expression: str, what: str, timeout: float = 30.0) -> None:
    """Poll a page expression from here (page.wait_for_function evaluates a string in the page with
    eval, which the server's Content-Security-Policy forbids, as it should)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        page.wait_for_timeout(100)


TILE_ORDER = (
    "Array.from(document.querySelectorAll('#status-panel [data-live-sort] > li')).map(e => e.dataset.statusService)"
)


def test_the_tiles_re_sort_live_problems_first_and_the_focus_stays_on_its_link(
    tmp_path: Path, server_factory: Any, browser: Any
) -> None:
    server, store, facts = _site(tmp_path, server_factory)
    for name in ("n8n", "plex"):
        _probe(store, name, "up", 20.0)
    facts.ingest(
        None,
        _report(
            ("n8n", "n8n", "running"),
            ("plex", "plex", "running"),
            ("twingate_connector", "twingate_connector", "running"),
        ),
    )
    server.start()
    page = _log_in(browser, server.url, 1280)
    _wait(page, "document.querySelector('#status-panel').dataset.liveUpdated", "the first tiles event")
    assert page.evaluate(TILE_ORDER) == ["n8n", "plex", "twingate_connector"], "all up: by name"
    page.evaluate("window.__same_page = 1")

    # by keyboard: Tab until Plex's tile link has the focus
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.getAttribute('href')") == "/services/plex":
            break
    assert page.evaluate("document.activeElement.getAttribute('href')") == "/services/plex"

    # Plex goes down: its tile moves first, and the focus is still on its link
    _probe(store, "plex", "down", None, "connection refused")
    _wait(page, TILE_ORDER + "[0] === 'plex'", "Plex's tile first")
    assert page.evaluate(TILE_ORDER) == ["plex", "n8n", "twingate_connector"]
    assert page.evaluate("document.activeElement.getAttribute('href')") == "/services/plex", "the focus was lost"
    assert page.evaluate("window.__same_page") == 1, "the page was reloaded"
    assert page.locator("[data-live-announce]").inner_text() == "Plex is now down: connection refused"
    tile = page.locator('#status-panel [data-status-service="plex"]')
    assert "down" in tile.inner_text() and "connection refused" in tile.inner_text()

    # the connector's container exits (judged from its containers alone): it moves up, before n8n
    page.keyboard.press("Tab")  # on to Plex's "Open" link, still in the moved tile
    facts.ingest(
        None,
        _report(
            ("n8n", "n8n", "running"),
            ("plex", "plex", "running"),
            ("twingate_connector", "twingate_connector", "exited"),
        ),
    )
    _wait(page, TILE_ORDER + "[1] === 'twingate_connector'", "the connector's tile second")
    assert page.evaluate(TILE_ORDER) == ["plex", "twingate_connector", "n8n"]
    connector = page.locator('#status-panel [data-status-service="twingate_connector"]').inner_text()
    assert "container twingate_connector exited" in connector
    assert page.evaluate("document.activeElement.getAttribute('href')") == "https://plex.page.test/"
    # the order is the server's: what the first render of the same store shows
    page.reload()
    assert page.evaluate(TILE_ORDER) == ["plex", "twingate_connector", "n8n"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "tiles-live-sorted-1280.png"), full_page=False)
    page.close()
