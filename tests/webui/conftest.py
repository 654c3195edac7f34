"""Fixtures for the job engine and web UI tests: a private var/ dir, a localhost inventory, a real
engine, the Flask app, and real server processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from homelab.jobs import JobEngine
from homelab.settings import Settings
from homelab.testing.server import server_factory  # noqa: F401 (a fixture)

from webui_helpers import ADMIN_PASSWORD, HERE, csrf_from, write_inventory


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    var = tmp_path / "var"
    var.mkdir()
    return Settings.from_env(
        {
            "HOMELAB_VAR_DIR": str(var),
            "HOMELAB_INVENTORY": str(write_inventory(tmp_path / "inventory.yml")),
            "HOMELAB_CATALOG": str(HERE / "catalog.yml"),
            "HOMELAB_MAX_PARALLEL_JOBS": "2",
        }
    )


@pytest.fixture
def make_engine() -> Iterator[Any]:
    engines: list[JobEngine] = []

    def make(settings: Settings, start: bool = True) -> JobEngine:
        engine = JobEngine.for_settings(settings)
        if start:
            engine.start()
        engines.append(engine)
        return engine

    yield make
    for e in engines:
        e.stop(timeout=60)


@pytest.fixture
def engine(settings: Settings, make_engine: Any) -> JobEngine:
    return make_engine(settings)


@pytest.fixture
def app(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from homelab.web import create_app

    monkeypatch.setenv("HOMELAB_ADMIN_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.delenv("HOMELAB_SECRET_KEY", raising=False)
    application = create_app(settings)
    application.config["TESTING"] = True
    yield application
    from homelab.web import stop_app

    stop_app(application, timeout=60)


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def logged_in(client: Any) -> Any:
    page = client.get("/login").get_data(as_text=True)
    r = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": csrf_from(page)})
    assert r.status_code == 302, r.get_data(as_text=True)
    return client
