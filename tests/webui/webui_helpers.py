"""Helpers shared by the webui tests (a module of its own: two conftest.py files cannot be imported by name)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "webui"))

from homelab.settings import Settings  # noqa: E402

ADMIN_PASSWORD = "correct horse battery staple"
PY = sys.executable


def write_inventory(path: Path, hosts: tuple[str, ...] = ("alpha", "beta"), group: str = "lab") -> Path:
    lines = ["all:", "  children:", f"    {group}:", "      hosts:"]
    for h in hosts:
        lines.append(f"        {h}: {{ansible_connection: local, ansible_python_interpreter: {PY}}}")
    path.write_text("\n".join(lines) + "\n")
    return path


def csrf_from(html: str) -> str:
    import re
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF field in the page"
    return m.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python -m homelab serve` in its own process, on a free loopback port."""

    def __init__(self, settings: Settings, extra_env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "HOMELAB_VAR_DIR": str(settings.var_dir), "HOMELAB_INVENTORY": str(settings.inventory),
            "HOMELAB_CATALOG": str(settings.catalog), "HOMELAB_PORT": str(self.port),
            "HOMELAB_ADMIN_PASSWORD": ADMIN_PASSWORD, "PYTHONPATH": str(ROOT / "webui"),
            "HOMELAB_MAX_PARALLEL_JOBS": str(settings.max_parallel_jobs),
            **(extra_env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = settings.var_dir / f"server-{self.port}.log"

    def start(self, timeout: float = 60.0) -> "ServerProcess":
        import urllib.request
        self.proc = subprocess.Popen([PY, "-m", "homelab", "serve"], env=self.env, cwd=str(ROOT),
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)  # polling for the port to open; not synchronisation on a job
        raise RuntimeError(f"server did not answer in {timeout}s: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def wait_until(predicate: Any, timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll an observable condition (a process exists, a row changed) with a generous deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
