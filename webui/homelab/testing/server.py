"""Real server processes for the tests: `python -m homelab serve` on a free loopback port, and the
`server_factory` fixture that stops every server a test started."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any, Callable, Iterator

import pytest

from homelab.settings import Settings
from homelab.testing import ROOT

ADMIN_PASSWORD = "correct horse battery staple"
PY = sys.executable


def csrf_from(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF field in the page"
    return m.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll an observable condition (a process exists, a row changed) with a generous deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class ServerProcess:
    """`python -m homelab serve` in its own process, on a free loopback port."""

    def __init__(self, settings: Settings, extra_env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "HOMELAB_VAR_DIR": str(settings.var_dir),
            "HOMELAB_INVENTORY": str(settings.inventory),
            "HOMELAB_CATALOG": str(settings.catalog),
            "HOMELAB_PORT": str(self.port),
            "HOMELAB_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "HOMELAB_MAX_PARALLEL_JOBS": str(settings.max_parallel_jobs),
            **(extra_env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = settings.var_dir / f"server-{self.port}.log"

    def start(self, timeout: float = 60.0) -> "ServerProcess":
        self.proc = subprocess.Popen(
            [PY, "-m", "homelab", "serve"],
            env=self.env,
            cwd=str(ROOT),
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
        )
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


@pytest.fixture
def server_factory() -> Iterator[Callable[..., ServerProcess]]:
    """make(settings, extra_env=...) -> a ServerProcess (not started); every one is stopped afterwards."""
    servers: list[ServerProcess] = []

    def make(settings: Settings, **kw: Any) -> ServerProcess:
        s = ServerProcess(settings, **kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()
