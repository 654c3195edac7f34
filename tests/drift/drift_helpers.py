"""Helpers shared by the drift tests (a module of its own: test modules must not import `conftest`
by name, several conftest.py files share that name)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from homelab.testing import ROOT  # noqa: F401
from homelab.testing.server import ADMIN_PASSWORD, PY, ServerProcess, csrf_from, wait_until  # noqa: F401

HERE = Path(__file__).resolve().parent
SECRET_TOKEN = "s3cr3t-drift-token-value"


def write_files_inventory(
    path: Path, files_dir: Path, hosts: tuple[str, ...] = ("alpha", "beta"), unreachable: tuple[str, ...] = ()
) -> Path:
    """Hosts are localhost with a directory of managed files; `unreachable` ones point ssh at a closed loopback port."""
    lines = ["all:", "  children:", "    lab:", "      hosts:"]
    for h in hosts:
        lines.append(f"        {h}: {{ansible_connection: local, ansible_python_interpreter: {PY}}}")
    for h in unreachable:
        lines.append(
            f"        {h}: {{ansible_connection: ssh, ansible_host: 127.0.0.1, ansible_port: 9, "
            f"ansible_ssh_common_args: '-o ConnectTimeout=3 -o StrictHostKeyChecking=no', "
            f"ansible_python_interpreter: {PY}}}"
        )
    lines += ["      vars:", f"        drift_dir: {files_dir}", f"        drift_token: {SECRET_TOKEN}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_schedules(path: Path, schedules: list[dict[str, Any]]) -> Path:
    import yaml

    path.write_text("---\n" + yaml.safe_dump({"schedules": schedules}, sort_keys=False))
    return path


class Receiver:
    """A real HTTP server on 127.0.0.1 that records every POST (path, headers, body)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.lock:
                    outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(204 if self.path.startswith("/discord") else 200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def on(self, prefix: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"].startswith(prefix)]

    def json_on(self, prefix: str) -> list[Any]:
        return [json.loads(r["body"]) for r in self.on(prefix)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
