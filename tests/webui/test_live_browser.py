"""The live dashboard and charts in a real browser (Debian's chromium through playwright) against a
real server process (`python -m homelab serve`) on a real store: samples are stored as the cycles
store them (ServiceSample rows, the facts cycle's own ingest) while the page is open, and what is
asserted is what the page then shows without a reload: the tiles re-sorted problems first with the
keyboard focus where it was, the charts drawn (their canvas has the series' pixels) and their text
tables holding the new sample. Screenshots under var/reports/ for a person to look at."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from homelab.facts import FactsService
from homelab.settings import Settings
from homelab.store import ServiceSample, Store, utcnow

from webui_helpers import ADMIN_PASSWORD, PY, ROOT, real_catalog_env

pytestmark = pytest.mark.browser
SHOTS = ROOT / "var" / "reports"


def _site(tmp_path: Path, server_factory: Any) -> tuple[Any, Store, FactsService]:
    inventory = tmp_path / "inventory.yml"
    hostvars = {"ansible_connection": "local", "ansible_python_interpreter": PY}
    hostvars |= {"n8n_enabled": True, "n8n_domain": "n8n.page.test", "plex_enabled": True}
    hostvars |= {"plex_domain": "plex.page.test", "twingate_connector_enabled": True}
    inventory.write_text(yaml.safe_dump({"all": {"children": {"homelab": {"hosts": {"alpha": hostvars}}}}}))
    # No scheduler (real_catalog_env): no cycle of its own, the test stores every sample.
    env = real_catalog_env(tmp_path, inventory, HOMELAB_JARVIS="0")
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


def _log_in(browser: Any, url: str, width: int, init_script: str = "") -> Any:
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.set_default_timeout(60_000)
    if init_script:
        page.add_init_script(init_script)
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


# Chromium keeps the focus of a node moved with moveBefore; a browser without it (insertBefore: the
# focused node leaves the document for a moment) needs live.js to focus it again: both are tested.
MOVES = {"moveBefore": "", "insertBefore": "delete Element.prototype.moveBefore;"}


@pytest.mark.parametrize("move", list(MOVES))
def test_the_tiles_re_sort_live_problems_first_and_the_focus_stays_on_its_link(
    tmp_path: Path, server_factory: Any, browser: Any, move: str
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
    page = _log_in(browser, server.url, 1280, MOVES[move])
    assert page.evaluate("'moveBefore' in Element.prototype") == (move == "moveBefore")
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
    if move == "moveBefore":
        page.screenshot(path=str(SHOTS / "tiles-live-sorted-1280.png"), full_page=False)
    page.close()


def _series_pixels(page: Any, selector: str) -> int:
    """Pixels of the chart's series colours (#2dd4bf mean, #f472b6 slowest: the cosmic theme's, in
    static/charts.js) on its canvas, read back with getImageData: a drawn line has them, the axes and
    the grid do not (with one probe a bucket, the slowest line covers the mean's)."""
    return int(
        page.evaluate(
            """sel => {
              const c = document.querySelector(sel + ' canvas');
              if (!c) return -1;
              const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
              const near = (i, r, g, b) =>
                Math.abs(d[i] - r) < 30 && Math.abs(d[i + 1] - g) < 30 && Math.abs(d[i + 2] - b) < 30;
              let n = 0;
              for (let i = 0; i < d.length; i += 4) {
                if (d[i + 3] > 200 && (near(i, 45, 212, 191) || near(i, 244, 114, 182))) n++;
              }
              return n;
            }""",
            selector,
        )
    )


def _pixels_at_newest(page: Any, selector: str) -> int:
    """Series-coloured pixels within 6 px of where the chart puts its newest value (uPlot valToPos)."""
    return int(
        page.evaluate(
            """sel => {
              const fig = document.querySelector(sel), u = fig._plot, c = fig.querySelector('canvas');
              const n = u.data[0].length - 1;
              const x = Math.round(u.valToPos(u.data[0][n], 'x', true));
              const y = Math.round(u.valToPos(u.data[1][n], 'y', true));
              const r = Math.round(6 * (window.devicePixelRatio || 1));
              const d = c.getContext('2d').getImageData(x - r, y - r, 2 * r + 1, 2 * r + 1).data;
              let hits = 0;
              const near = (i, r, g, b) =>
                Math.abs(d[i] - r) < 40 && Math.abs(d[i + 1] - g) < 40 && Math.abs(d[i + 2] - b) < 40;
              for (let i = 0; i < d.length; i += 4) {
                if (d[i + 3] > 150 && (near(i, 45, 212, 191) || near(i, 244, 114, 182))) hits++;
              }
              return hits;
            }""",
            selector,
        )
    )


def test_a_service_chart_draws_its_samples_and_takes_a_new_one_in_without_a_reload(
    tmp_path: Path, server_factory: Any, browser: Any
) -> None:
    server, store, facts = _site(tmp_path, server_factory)
    now = utcnow()
    # an hour, every 5 minutes, but none in the last 10: the new probe comes after a gap, alone in its
    # stretch (a line needs two points; it must still show)
    seeded = [(now - dt.timedelta(minutes=5 * k), 30.0 + 5 * k) for k in range(12, 2, -1)]
    for at, ms in seeded:
        _probe(store, "n8n", "up", ms, at=at)
    facts.ingest(None, _report(("n8n", "n8n", "running")))
    server.start()
    page = _log_in(browser, server.url, 1280)
    page.goto(server.url + "/services/n8n")
    _wait(page, "document.querySelector('#service-history').dataset.loaded", "the charts' first load")
    _wait(page, "document.querySelector('#service-status').dataset.liveUpdated", "the first tiles event")

    fig = "#chart-response"
    assert _series_pixels(page, fig) > 100, "the response chart's canvas has no line drawn"
    assert page.evaluate("document.querySelector('#chart-response canvas').width") > 0
    page.click(f"{fig} summary")  # the text alternative, opened as a person would
    rows = page.locator(f"{fig} tbody[data-table] tr")
    assert rows.count() == 10
    table = page.locator(f"{fig} tbody[data-table]").inner_text()
    for _, ms in seeded:
        assert f"{ms:.1f}" in table, (ms, table)
    assert page.locator(f"{fig} [data-chart-empty]").is_hidden()
    points = int(page.get_attribute(fig, "data-points") or 0)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.__same_page = 1")

    # a new probe is stored: the stream says so, the charts fetch their range again and draw it
    _probe(store, "n8n", "up", 987.6)
    _wait(page, "document.querySelector('#chart-response tbody[data-table]').innerText.includes('987.6')", "the sample")
    assert page.evaluate("window.__same_page") == 1, "the page was reloaded"
    assert rows.count() == 11
    assert int(page.get_attribute(fig, "data-points") or 0) > points, "the chart did not take the sample in"
    newest_y = page.evaluate(
        "(() => { const u = document.querySelector('#chart-response')._plot;"
        " return u.data[1][u.data[1].length - 1]; })()"
    )
    assert newest_y == 987.6
    assert _series_pixels(page, fig) > 100
    assert _pixels_at_newest(page, fig) > 10, "the new sample is not drawn where it belongs"
    # the up chart's table (its <details> closed: read as a screen reader reads it) has the new bucket too
    up_rows = page.evaluate(
        "Array.from(document.querySelectorAll('#chart-up tbody[data-table] tr'))"
        ".map(tr => Array.from(tr.cells).map(td => td.textContent))"
    )
    assert len(up_rows) == 11 and all(r[1:] == ["1", "100", "up"] for r in up_rows), up_rows
    page.locator("#service-history").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "chart-live-1280.png"), full_page=False)

    # a phone: nothing wider than the screen, the chart redrawn to its width
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(400)  # charts.js resizes 150 ms after the last resize event
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), "sideways scroll at 390 px"
    for sel in ("#chart-response", "#chart-up", "#chart-restarts", "#chart-response canvas"):
        box = page.locator(sel).first.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, (sel, box)
    assert _series_pixels(page, fig) > 50
    page.locator("#service-history").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "chart-live-390.png"), full_page=False)
    page.close()
