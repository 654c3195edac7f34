"""Helpers shared by the webui tests (a module of its own: two conftest.py files cannot be imported by name).
The server process and polling helpers come from homelab.testing.server, which the benchmarks share."""

from __future__ import annotations

from pathlib import Path

from homelab.testing import ROOT  # noqa: F401
from homelab.testing.server import ADMIN_PASSWORD, PY, ServerProcess, csrf_from, free_port, wait_until  # noqa: F401

HERE = Path(__file__).resolve().parent


def write_inventory(path: Path, hosts: tuple[str, ...] = ("alpha", "beta"), group: str = "lab") -> Path:
    lines = ["all:", "  children:", f"    {group}:", "      hosts:"]
    for h in hosts:
        lines.append(f"        {h}: {{ansible_connection: local, ansible_python_interpreter: {PY}}}")
    path.write_text("\n".join(lines) + "\n")
    return path
