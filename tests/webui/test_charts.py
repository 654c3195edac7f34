"""The history charts over real parts: the app factory with a real store, catalog and registry (the
service page's `site` fixture), samples stored as the cycles store them (ServiceSample rows, the
facts cycle's own ingest), read back through the API (GET /api/v1/services/<name>/history and
/api/v1/hosts/<host>/history) and the pages: the vendored uPlot served from /static/vendor/uplot/,
each chart's text table holding the samples' values, "No samples yet." where there are none."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Any

from test_service_page import FACTS, site  # noqa: F401 (site is a fixture)

from homelab.store import ServiceSample

from webui_helpers import ROOT

NOW = dt.datetime(2026, 12, 2, 12, 2, 30)
VENDOR = ROOT / "webui" / "homelab" / "web" / "static" / "vendor" / "uplot"


def _plant(app: Any) -> None:
    """Fixed clocks (the cycles' own clock argument), two probes of n8n in one 5 minutes and one an
    hour before, and the facts cycle's ingest of a report from alpha."""
    h = app.extensions["homelab"]
    h.status.clock = h.facts.clock = lambda: NOW
    t = dt.datetime(2026, 12, 2, 11, 0)
    with h.store.session.begin() as s:
        for at, status, ms in (
            (t + dt.timedelta(seconds=20), "up", 42.4),
            (t + dt.timedelta(minutes=3), "down", None),
            (t - dt.timedelta(minutes=58), "up", 97.6),
        ):
            s.add(ServiceSample(service="n8n", at=at, status=status, url="https://n8n.page.test/", response_ms=ms))
    assert h.facts.ingest(None, FACTS) == 1


def test_the_service_history_api_answers_buckets_of_24h_or_7d_and_refuses_anything_else(site: Any) -> None:  # noqa: F811
    app, client = site
    _plant(app)

    r = client.get("/api/v1/services/n8n/history?range=24h")
    day = r.get_json()
    assert r.status_code == 200 and (day["service"], day["range"], day["bucket_seconds"]) == ("n8n", "24h", 300)
    assert (day["from"], day["to"]) == ("2026-12-01T12:02:30Z", "2026-12-02T12:02:30Z")
    assert day["buckets"] == [
        {
            "start": "2026-12-02T10:00:00Z",
            "samples": 1,
            "up_fraction": 1.0,
            "status": "up",
            "response_ms_mean": 97.6,
            "response_ms_max": 97.6,
        },
        {
            "start": "2026-12-02T11:00:00Z",
            "samples": 2,
            "up_fraction": 0.5,
            "status": "down",
            "response_ms_mean": 42.4,
            "response_ms_max": 42.4,
        },
    ]
    assert day["containers"] == [
        {"host": "alpha", "name": "n8n", "buckets": [{"start": "2026-12-02T12:00:00Z", "restart_count": 3}]}
    ]
    assert client.get("/api/v1/services/n8n/history").get_json() == day  # 24h when not said
    week = client.get("/api/v1/services/n8n/history?range=7d").get_json()
    assert week["bucket_seconds"] == 3600 and [b["samples"] for b in week["buckets"]] == [1, 2]
    plex = client.get("/api/v1/services/plex/history?range=7d").get_json()
    assert plex["buckets"] == [] and plex["containers"][0]["name"] == "plex"  # probed never, its container seen

    quiet = client.get("/api/v1/services/git_sync/history")  # no domain, never probed: a service all the same
    assert quiet.status_code == 200 and (quiet.get_json()["buckets"], quiet.get_json()["containers"]) == ([], [])

    for bad in ("", "1h", "24H", "7 d", "30d", "24h,7d", "%0A24h"):
        r = client.get(f"/api/v1/services/n8n/history?range={bad}")
        assert r.status_code == 400 and r.get_json()["field"] == "range", bad
        assert "24h, 7d" in r.get_json()["error"]
    for name in ("nosuch", "N8N", "{{7*7}}"):
        r = client.get(f"/api/v1/services/{name}/history?range=24h")
        assert r.status_code == 404 and "not a service of this homelab" in r.get_json()["error"], name


def test_the_host_history_api_answers_cpu_memory_and_disk_buckets(site: Any) -> None:  # noqa: F811
    app, client = site
    _plant(app)
    r = client.get("/api/v1/hosts/alpha/history?range=24h")
    assert r.status_code == 200
    assert r.get_json() == {
        "host": "alpha",
        "range": "24h",
        "bucket_seconds": 300,
        "from": "2026-12-01T12:02:30Z",
        "to": "2026-12-02T12:02:30Z",
        "buckets": [
            {
                "start": "2026-12-02T12:00:00Z",
                "samples": 1,
                "cpu_percent": 12.5,
                "mem_percent": 41.0,
                "disk_percent": 63.2,
            }
        ],
    }
    assert (
        client.get("/api/v1/hosts/alpha/history?range=7d").get_json()["buckets"][0]["start"] == "2026-12-02T12:00:00Z"
    )
    r = client.get("/api/v1/hosts/alpha/history?range=week")
    assert r.status_code == 400 and r.get_json()["field"] == "range"
    for host in ("nosuch", "ALPHA", "alpha "):
        r = client.get(f"/api/v1/hosts/{host}/history")
        assert r.status_code == 404 and "not a host of the inventory" in r.get_json()["error"], host

    doc = client.get("/api/v1/openapi.json").get_json()
    for path, schema in (
        ("/api/v1/services/{name}/history", "ServiceHistory"),
        ("/api/v1/hosts/{host}/history", "HostHistory"),
    ):
        op = doc["paths"][path]["get"]
        assert {"200", "400", "404"} <= set(op["responses"])
        assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(schema)
        [rng] = [p for p in op["parameters"] if p["name"] == "range"]
        assert rng["schema"]["enum"] == ["24h", "7d"]


def test_the_pages_draw_with_the_vendored_uplot_and_their_tables_hold_the_samples(site: Any) -> None:  # noqa: F811
    app, client = site
    _plant(app)

    page = client.get("/services/n8n").get_data(as_text=True)
    assert '<script src="/static/vendor/uplot/uPlot.iife.min.js" defer></script>' in page
    assert '<link rel="stylesheet" href="/static/vendor/uplot/uPlot.min.css">' in page
    assert '<script src="/static/charts.js" defer></script>' in page
    assert "cdn" not in page.lower() and "https://unpkg" not in page
    section = page[page.index('id="service-history"') : page.index('id="containers"')]
    assert 'data-range="24h" aria-pressed="true"' in section and 'data-range="7d" aria-pressed="false"' in section
    assert section.count('data-src="/api/v1/services/n8n/history"') == 3
    tables = {
        kind: re.search(rf'data-chart="{kind}".*?<tbody data-table>(.*?)</tbody>', section, re.S).group(1)  # type: ignore[union-attr]
        for kind in ("response", "up", "restarts")
    }
    rows = lambda html: [re.findall(r"<td>(.*?)</td>", tr) for tr in re.findall(r"<tr>(.*?)</tr>", html)]
    assert rows(tables["response"]) == [
        ["2026-12-02 10:00", "1", "97.6", "97.6"],
        ["2026-12-02 11:00", "2", "42.4", "42.4"],
    ]
    assert rows(tables["up"]) == [["2026-12-02 10:00", "1", "100", "up"], ["2026-12-02 11:00", "2", "50", "down"]]
    assert rows(tables["restarts"]) == [["2026-12-02 12:00", "n8n on alpha", "3"]]
    assert section.count("<details>") == 3 and "No samples yet." in section  # the hidden empty notes

    # a service never probed: every table says so
    plex = client.get("/services/plex").get_data(as_text=True)
    plex = plex[plex.index('id="service-history"') : plex.index('id="containers"')]
    assert plex.count('class="muted">No samples yet.</td>') == 2 and "plex on alpha" in plex

    # a service with no domain: only its containers' restarts (none seen yet)
    quiet = client.get("/services/git_sync").get_data(as_text=True)
    quiet = quiet[quiet.index('id="service-history"') : quiet.index('id="containers"')]
    assert 'data-chart="restarts"' in quiet and 'data-chart="response"' not in quiet and 'data-chart="up"' not in quiet
    assert 'class="muted">No samples yet.</td>' in quiet

    home = client.get("/").get_data(as_text=True)
    assert '<script src="/static/vendor/uplot/uPlot.iife.min.js" defer></script>' in home
    hist = home[home.index('id="platform-history"') :]
    hist = hist[: hist.index("</section>")]
    assert 'data-chart="host" data-src="/api/v1/hosts/alpha/history"' in hist and "alpha: CPU, memory, disk" in hist
    assert re.search(r"<td>2026-12-02 12:00</td><td>12.5</td><td>41.0</td><td>63.2</td>", hist)

    # the vendored files are served as they were vendored (the pinned release's, see its README)
    for name, kind in (("uPlot.iife.min.js", "javascript"), ("uPlot.min.css", "css")):
        r = client.get(f"/static/vendor/uplot/{name}")
        assert r.status_code == 200 and kind in r.headers["Content-Type"]
        assert hashlib.sha256(r.get_data()).digest() == hashlib.sha256((VENDOR / name).read_bytes()).digest()
    assert (VENDOR / "uPlot.iife.min.js").read_bytes().startswith(b"/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
    readme = (VENDOR / "README.md").read_text()
    assert "uplot@1.6.32" in readme and re.search(r"sha256: `[0-9a-f]{64}`", readme)
    assert "MIT" in (VENDOR / "LICENSE").read_text()


def test_the_chart_colours_are_readable_on_the_cosmic_theme() -> None:
    """Axis text (WCAG AA, 4.5:1) and the series' lines (non-text contrast, 3:1) of static/charts.js
    on the theme's darkest panel and backgrounds (cosmic.css)."""
    from test_webui_units import _contrast

    static = ROOT / "webui" / "homelab" / "web" / "static"
    js = (static / "charts.js").read_text()
    var = dict(re.findall(r"--([a-z0-9-]+):\s*(#[0-9a-fA-F]{6})", (static / "cosmic.css").read_text()))
    axis = re.search(r'var AXIS = "(#[0-9a-f]{6})"', js).group(1)  # type: ignore[union-attr]
    colours = re.findall(r"#[0-9a-f]{6}", re.search(r"var COLOURS = \[(.*?)\];", js).group(1))  # type: ignore[union-attr]
    assert axis == var["muted"] and len(colours) >= 4
    for bg in (var["space"], var["space-2"], var["panel-solid"]):
        assert _contrast(axis, bg) >= 4.5, (axis, bg)
        for c in [*colours, "#6ee7a8"]:  # the up bars' outline too
            assert _contrast(c, bg) >= 3.0, (c, bg)
