"""Helpers for the Jarvis tests: a localhost "host" whose state lives in the test's own files (git
sync status and a real git repository, backup status, ddclient cache), rules files, and a real
Jarvis over a real job engine."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from homelab.testing.server import ADMIN_PASSWORD, PY, ServerProcess, csrf_from, free_port, wait_until  # noqa: F401

from drift_helpers import Receiver  # noqa: F401

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

CATALOG = HERE / "catalog.yml"


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).isoformat()


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Box:
    """The files a localhost host of the tests reports on, and the inventory that points at them."""

    def __init__(self, base: Path, hosts: tuple[str, ...] = ("alpha",)) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.hosts = hosts
        self.git_status = base / "git-sync-status.json"
        self.backup_status = base / "backup-status.json"
        self.ddclient_cache = base / "ddclient.cache"
        self.repo = base / "repos" / "site"
        self.repo.mkdir(parents=True)
        subprocess.run(["git", "init", "-q", str(self.repo)], check=True)
        self.write_git_status()
        self.inventory = base / "inventory.yml"
        self.write_inventory()

    def write_inventory(self, extra: dict[str, Any] | None = None) -> None:
        hostvars = {
            "ansible_connection": "local",
            "ansible_python_interpreter": PY,
            "jarvis_diag_docker": False,
            "jarvis_diag_git_status": str(self.git_status),
            "jarvis_diag_backup_status": str(self.backup_status),
            "jarvis_diag_ddclient_cache": str(self.ddclient_cache),
            **(extra or {}),
        }
        inv = {"all": {"children": {"homelab": {"hosts": {h: dict(hostvars) for h in self.hosts}}}}}
        self.inventory.write_text(yaml.safe_dump(inv))

    def write_git_status(self, **repo: Any) -> None:
        t = iso(now())
        data = {
            "updated_at": t,
            "repos": {
                "site": {
                    "path": str(self.repo),
                    "last_attempt": t,
                    "last_success": t,
                    "last_error": "",
                    "consecutive_failures": 0,
                    "next_attempt_after": t,
                    "head": "0" * 40,
                    **repo,
                }
            },
        }
        self.git_status.write_text(json.dumps(data))

    def stale_lock(self, name: str = "index.lock", minutes: float = 30) -> Path:
        lock = self.repo / ".git" / name
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.write_text("")
        t = time.time() - minutes * 60
        os.utime(lock, (t, t))
        return lock

    def backup(self, status: str = "ok", age_hours: float = 1, error: str = "") -> None:
        t = iso(now() - dt.timedelta(hours=age_hours))
        self.backup_status.write_text(
            json.dumps(
                {
                    "last_attempt": t,
                    "last_success": t if status == "ok" else iso(now() - dt.timedelta(days=3)),
                    "status": status,
                    "error": error,
                    "path": "/srv/backup/x",
                }
            )
        )

    def ddclient(self, status: str = "good", ip: str = "203.0.113.7", name: str = "home.example.org") -> None:
        t = int(time.time())
        self.ddclient_cache.write_text(
            "## ddclient-3.11.2\n"
            f"## last updated at Thu Nov 26 10:00:00 2026 ({t})\n"
            f"atime=0,backupmx=0,ip={ip},ipv4={ip},mtime={t},mx=,protocol=cloudflare,status={status},"
            f"status-ipv4={status},warned-min-error-interval=0,wildcard=0,wtime=30 {name}\n"
        )


# The tests' localhost is this machine: its load, memory and disk are not the test's to judge.
QUIET_HOST = {
    "load_per_cpu_warn": 10000,
    "disk_warn_percent": 101,
    "disk_critical_percent": 101,
    "memory_warn_percent": 101,
}


def write_rules(
    path: Path, rules: list[dict[str, Any]], safety: dict[str, Any] | None = None, checks: dict[str, Any] | None = None
) -> Path:
    checks = dict(checks or {})
    checks["host"] = {**QUIET_HOST, **(checks.get("host") or {})}
    checks.setdefault("from_inventory", False)  # network checks only where a test points them (loopback, its lab host)
    path.write_text(
        "---\n" + yaml.safe_dump({"rules": rules, "safety": safety or {}, "checks": checks}, sort_keys=False)
    )
    return path


class FakeOpenAI:
    """An OpenAI-compatible chat completions server on 127.0.0.1, scripted: each request gets the
    next scripted reply (tool calls or text); every request body and header is recorded."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.script: list[Any] = []
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                reply = outer.script.pop(0) if outer.script else "(script exhausted)"
                if isinstance(reply, int):
                    self.send_response(reply)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(
                        json.dumps({"error": {"message": "scripted failure", "type": "server_error"}}).encode()
                    )
                    return
                if isinstance(reply, str):
                    message = {"role": "assistant", "content": reply}
                    finish = "stop"
                else:
                    message = {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": f"call_{i}",
                                "type": "function",
                                "function": {
                                    "name": name,
                                    "arguments": args if isinstance(args, str) else json.dumps(args),
                                },
                            }
                            for i, (name, args) in enumerate(reply)
                        ],
                    }
                    finish = "tool_calls"
                out = json.dumps(
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", ""),
                        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def tool_messages(self, request: int) -> list[dict[str, Any]]:
        return [m for m in self.requests[request]["body"]["messages"] if m["role"] == "tool"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------- local network doubles
def make_ca(directory: Path, name: str = "Jarvis Test CA") -> tuple[Any, Any, Path]:
    """A CA key and certificate (PEM written to directory/<name>.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    t = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(t - dt.timedelta(days=1))
        .not_valid_after(t + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name.replace(' ', '-')}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, path


def make_leaf(
    ca: tuple[Any, Any, Path], domain: str, days: float, cert_path: Path, key_path: Path, not_before_days: float = 30
) -> None:
    """A server certificate for domain signed by ca, valid until now + days (negative: expired)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_key, ca_cert, _ = ca
    key = ec.generate_private_key(ec.SECP256R1())
    t = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(t - dt.timedelta(days=not_before_days))
        .not_valid_after(t + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class TLSServer:
    """HTTPS on 127.0.0.1 that reads its certificate files on every connection (so a test, or a
    playbook standing in for renew_certificates, can replace them) and answers 200."""

    def __init__(self, cert: Path, key: Path) -> None:
        import socket
        import ssl
        import threading

        self.cert, self.key = cert, key
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = False

        def serve() -> None:
            while not self._stop:
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    return
                self.connections += 1
                try:
                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                    ctx.load_cert_chain(str(self.cert), str(self.key))
                    conn.settimeout(5)
                    with ctx.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(4096)
                        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                except (OSError, ssl.SSLError):
                    conn.close()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self._stop = True
        self.sock.close()


class DNSServer:
    """A UDP DNS server on 127.0.0.1 (dnspython messages): A records from `records`, NXDOMAIN otherwise;
    `silent` answers nothing (a resolver that times out)."""

    def __init__(self, records: dict[str, list[str]], silent: bool = False) -> None:
        import socket
        import threading

        self.records = records
        self.queries: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"

        def serve() -> None:
            import dns.message
            import dns.rcode
            import dns.rdatatype
            import dns.rrset

            while True:
                try:
                    data, peer = self.sock.recvfrom(4096)
                except OSError:
                    return
                q = dns.message.from_wire(data)
                name = q.question[0].name.to_text().rstrip(".")
                self.queries.append(name)
                if silent:
                    continue
                r = dns.message.make_response(q)
                if name not in self.records:
                    r.set_rcode(dns.rcode.NXDOMAIN)
                elif q.question[0].rdtype == dns.rdatatype.A:
                    r.answer.append(dns.rrset.from_text(name + ".", 60, "IN", "A", *self.records[name]))
                self.sock.sendto(r.to_wire(), peer)

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.sock.close()


def lab_jarvis(inventory: Path, var: Path, rules_path: Path, hook_url: str, stage_alerts: bool = False) -> Any:
    """A real Jarvis over a started real job engine on a lab inventory, notifying hook_url; with
    stage_alerts, the engine also tells of a failed pipeline, as the web app composes them."""
    from dataclasses import replace

    from homelab.jobs import JobEngine
    from homelab.jobs.stages import StageAlerts
    from homelab.notify import Notifier
    from homelab.settings import Settings
    from jarvis.config import JarvisSettings
    from jarvis.service import Jarvis

    var.mkdir()
    settings = replace(
        Settings.from_env({"HOMELAB_VAR_DIR": str(var)}),
        inventory=inventory,
        schedules=var / "schedules.yml",
        scheduler=False,
    )
    engine = JobEngine.for_settings(settings)
    if stage_alerts:
        StageAlerts(engine, Notifier(urls={"webhook": hook_url}), "")
    engine.start()
    notifier = Notifier(urls={"webhook": hook_url})
    jarvis_settings = JarvisSettings(rules_path=rules_path, api_key="")
    return Jarvis(settings, engine.store, engine.catalog, engine.inventory, engine, notifier, jarvis_settings)
