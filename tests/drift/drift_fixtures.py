"""Fixtures for the drift tests (test modules import them with `from drift_fixtures import *`: a
conftest.py here would shadow tests/conftest.py, which the root test modules import by name): a
private store and var/, a localhost inventory whose hosts are directories of managed files (fast to
check, drift and fix), a local HTTP receiver standing in for Discord, ntfy and a webhook, the web app
with the drift service, and server processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from drift_helpers import ADMIN_PASSWORD, HERE, Receiver, csrf_from, write_files_inventory, write_schedules

__all__ = ["files_dir", "drift_settings", "receiver", "drift_app", "web", "server_factory"]

from homelab.settings import Settings
from homelab.testing.server import server_factory  # noqa: F401 (a fixture)


@pytest.fixture
def files_dir(tmp_path: Path) -> Path:
    d = tmp_path / "managed"
    d.mkdir()
    return d


@pytest.fixture
def drift_settings(tmp_path: Path, files_dir: Path) -> Settings:
    var = tmp_path / "var"
    var.mkdir()
    return Settings.from_env(
        {
            "HOMELAB_VAR_DIR": str(var),
            "HOMELAB_INVENTORY": str(
                write_files_inventory(tmp_path / "inventory.yml", files_dir, unreachable=("gamma",))
            ),
            "HOMELAB_CATALOG": str(HERE / "catalog.yml"),
            "HOMELAB_SCHEDULES": str(
                write_schedules(
                    tmp_path / "schedules.yml",
                    [{"id": "files-hourly", "playbook": "files", "interval": "1h", "limit": "", "enabled": True}],
                )
            ),
            "HOMELAB_MAX_PARALLEL_JOBS": "2",
            "HOMELAB_SCHEDULER": "0",
        }
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def drift_app(drift_settings: Settings, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from homelab.web import create_app, stop_app

    monkeypatch.setenv("HOMELAB_ADMIN_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.delenv("HOMELAB_SECRET_KEY", raising=False)
    monkeypatch.setenv("HOMELAB_NOTIFY_DISCORD_URL", receiver.url + "/discord/api/webhooks/1/SECRETWEBHOOKTOKEN")
    monkeypatch.setenv("HOMELAB_NOTIFY_NTFY_URL", receiver.url + "/ntfy/homelab-drift")
    monkeypatch.setenv("HOMELAB_NOTIFY_WEBHOOK_URL", receiver.url + "/hook")
    application = create_app(drift_settings)
    application.config["TESTING"] = True
    yield application
    stop_app(application, timeout=60)


@pytest.fixture
def web(drift_app: Any) -> Any:
    client = drift_app.test_client()
    page = client.get("/login").get_data(as_text=True)
    r = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": csrf_from(page)})
    assert r.status_code == 302, r.get_data(as_text=True)
    return client
