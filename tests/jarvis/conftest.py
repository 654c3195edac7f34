"""Fixtures for the Jarvis tests: a localhost box of state files, a local HTTP receiver for
notifications, and Jarvis over a real job engine (actions run inline unless the worker is started)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from homelab.jobs import JobEngine
from homelab.notify import Notifier
from homelab.settings import Settings

from jarvis_helpers import ADMIN_PASSWORD, CATALOG, Box, Receiver, csrf_from, write_rules


@pytest.fixture
def box(tmp_path: Path) -> Box:
    return Box(tmp_path / "box")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def build(tmp_path: Path, box: Box, receiver: Receiver) -> Iterator[Any]:
    """build(rules, safety, checks, start_worker=False, **JarvisSettings) -> a Jarvis on a real engine."""
    from jarvis.config import JarvisSettings
    from jarvis.service import Jarvis

    made: list[Any] = []

    def make(
        rules: list[dict[str, Any]] = (),
        safety: dict[str, Any] | None = None,
        checks: dict[str, Any] | None = None,
        start_worker: bool = False,
        **js: Any,
    ) -> Any:
        n = len(made)
        var = tmp_path / f"var{n}"
        var.mkdir()
        settings = Settings.from_env(
            {
                "HOMELAB_VAR_DIR": str(var),
                "HOMELAB_INVENTORY": str(box.inventory),
                "HOMELAB_CATALOG": str(CATALOG),
                "HOMELAB_SCHEDULER": "0",
            }
        )
        engine = JobEngine.for_settings(settings)
        store, catalog, inventory = engine.store, engine.catalog, engine.inventory
        engine.start()
        path = write_rules(tmp_path / f"rules{n}.yml", list(rules), safety, checks)
        notifier = Notifier(urls={"webhook": receiver.url + "/hook"})
        j = Jarvis(
            settings,
            store,
            catalog,
            inventory,
            engine,
            notifier,
            JarvisSettings(rules_path=path, **{"api_key": "", **js}),
        )
        assert not j.rules_error, j.rules_error
        if start_worker:
            j.start()
        made.append(j)
        return j

    yield make
    for j in made:
        j.stop()
        j.engine.stop(timeout=60)


@pytest.fixture
def web_app(tmp_path: Path, box: Box, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The real app (create_app) with Jarvis on the box, its worker running; rules in tmp_path/rules.yml."""
    from homelab.web import create_app, stop_app

    var = tmp_path / "var-web"
    var.mkdir()
    rules = tmp_path / "rules.yml"
    if not rules.exists():
        write_rules(rules, [])
    monkeypatch.setenv("HOMELAB_ADMIN_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.delenv("HOMELAB_SECRET_KEY", raising=False)
    monkeypatch.setenv("HOMELAB_JARVIS_RULES", str(rules))
    monkeypatch.setenv("HOMELAB_NOTIFY_WEBHOOK_URL", receiver.url + "/hook")
    for k in ("OPENAI_API_KEY", "HOMELAB_JARVIS_OPENAI_API_KEY", "OPENAI_BASE_URL", "HOMELAB_JARVIS_OPENAI_BASE_URL"):
        monkeypatch.delenv(k, raising=False)
    settings = Settings.from_env(
        {
            "HOMELAB_VAR_DIR": str(var),
            "HOMELAB_INVENTORY": str(box.inventory),
            "HOMELAB_CATALOG": str(CATALOG),
            "HOMELAB_SCHEDULER": "0",
            "HOMELAB_SCHEDULES": str(tmp_path / "schedules.yml"),
        }
    )
    application = create_app(settings)
    application.config["TESTING"] = True
    yield application
    stop_app(application, timeout=60)


def login(client: Any) -> Any:
    page = client.get("/login").get_data(as_text=True)
    r = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": csrf_from(page)})
    assert r.status_code == 302, r.get_data(as_text=True)
    return client


@pytest.fixture
def web(web_app: Any) -> Any:
    return login(web_app.test_client())


@pytest.fixture
def fake_llm() -> Iterator[Any]:
    from jarvis_helpers import FakeOpenAI

    server = FakeOpenAI()
    yield server
    server.close()
