"""Shared set-up for the benchmarks: a throw-away var/ dir, a localhost inventory, a live server."""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

from homelab.settings import Settings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

PASSWORD = "bench-password-123"


def bench_settings(hosts: int = 1, **overrides: Any) -> Settings:
    tmp = Path(tempfile.mkdtemp(prefix="homelab-bench-"))
    inv = tmp / "inventory.yml"
    lines = ["all:", "  children:", "    bench:", "      hosts:"]
    for i in range(hosts):
        lines.append(
            f"        bench{i + 1}: {{ansible_connection: local, ansible_python_interpreter: {sys.executable}}}"
        )
    inv.write_text("\n".join(lines) + "\n")
    (tmp / "var").mkdir()
    return Settings.from_env(
        {
            "HOMELAB_VAR_DIR": str(tmp / "var"),
            "HOMELAB_INVENTORY": str(inv),
            "HOMELAB_CATALOG": str(HERE / "catalog.yml"),
        },
        **overrides,
    )


class LiveServer:
    """The real app (create_app) behind werkzeug's threaded server, in this process."""

    def __init__(self, settings: Settings) -> None:
        import logging

        from werkzeug.serving import make_server

        from homelab.web import create_app
        from homelab.web.auth import create_token

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        os.environ["HOMELAB_ADMIN_PASSWORD"] = PASSWORD
        self.app = create_app(settings)
        self.engine = self.app.extensions["homelab"].engine
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.token = create_token(self.app.extensions["homelab"].store, "admin", "bench")
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def api(self, method: str, path: str, body: Any = None) -> Any:
        req = urllib.request.Request(
            self.url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())

    def sse(self, job_id: int) -> Iterator[tuple[float, str, dict[str, Any]]]:
        """(arrival time, event, data) for each SSE message of a job, until `end`."""
        req = urllib.request.Request(
            f"{self.url}/api/v1/jobs/{job_id}/stream", headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=600) as r:
            event, data = None, []
            for raw in r:
                line = raw.decode().rstrip("\n")
                if not line:
                    if event:
                        yield time.perf_counter(), event, json.loads("\n".join(data))
                        if event == "end":
                            return
                    event, data = None, []
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())

    def close(self) -> None:
        self.server.shutdown()
        self.engine.stop()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def machine() -> str:
    load = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
