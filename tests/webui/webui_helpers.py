"""Helpers shared by the webui tests (a module of its own: two conftest.py files cannot be imported by name).
The server process and polling helpers come from homelab.testing.server, which the benchmarks share."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

from homelab.settings import Settings
from homelab.testing import ROOT  # noqa: F401
from homelab.testing.server import ADMIN_PASSWORD, PY, ServerProcess, csrf_from, free_port, wait_until  # noqa: F401

HERE = Path(__file__).resolve().parent


def write_inventory(path: Path, hosts: tuple[str, ...] = ("alpha", "beta"), group: str = "lab") -> Path:
    lines = ["all:", "  children:", f"    {group}:", "      hosts:"]
    for h in hosts:
        lines.append(f"        {h}: {{ansible_connection: local, ansible_python_interpreter: {PY}}}")
    path.write_text("\n".join(lines) + "\n")
    return path


def real_catalog_env(tmp_path: Path, inventory: Path, **env: str) -> dict[str, str]:
    """The environment of a server on the repository's catalog and `inventory`, with a fresh var dir
    and an empty schedules file, no scheduler (a test's own env entries are added or win)."""
    var = tmp_path / "var"
    var.mkdir()
    (tmp_path / "schedules.yml").write_text("schedules: []\n")
    base = {
        "HOMELAB_VAR_DIR": str(var),
        "HOMELAB_INVENTORY": str(inventory),
        "HOMELAB_CATALOG": str(ROOT / "playbooks" / "catalog.yml"),
        "HOMELAB_SCHEDULES": str(tmp_path / "schedules.yml"),
        "HOMELAB_SCHEDULER": "0",
    }
    return {**base, **env}


def real_catalog_settings(tmp_path: Path, inventory: Path, **env: str) -> Settings:
    """Settings.from_env of real_catalog_env."""
    return Settings.from_env(real_catalog_env(tmp_path, inventory, **env))


@contextmanager
def logged_in_app(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, start_engine: bool = False, stop_timeout: float = 30
) -> Iterator[tuple[Any, Any]]:
    """An app on these settings (TESTING) and a test client logged in as admin; the app stops after."""
    from homelab.web import create_app, stop_app

    monkeypatch.setenv("HOMELAB_ADMIN_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.delenv("HOMELAB_SECRET_KEY", raising=False)
    app = create_app(settings, start_engine=start_engine)
    app.config["TESTING"] = True
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    r = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": csrf_from(page)})
    assert r.status_code == 302
    try:
        yield app, client
    finally:
        stop_app(app, timeout=stop_timeout)
