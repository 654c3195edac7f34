"""What one status cycle (homelab.status) costs on the controller: wall time and CPU time for N
services, against a stand-in for Caddy on 127.0.0.1 (HTTPS, a certificate from a CA made here,
one route per service). 8 services is inventory/production's one host; 80 projects ten such hosts.

The stand-in runs in a child process, so the CPU figures are the controller's alone (the probes,
the judging, the store write); the child's CPU per cycle is what the host's Caddy would spend
answering (a TLS handshake and a GET per probe). Loopback hides network latency: a real cycle's
wall time is about one round trip of the slowest service, since the probes run in parallel.

    .venv/bin/python bench/status_cycle.py [--services 8 80] [--cycles 10]
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from homelab.registry import check_entry
from homelab.settings import Settings
from homelab.status import StatusService
from homelab.store import Store

from _common import machine


def _certs(directory: Path, names: list[str]) -> tuple[Path, Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    t = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "status bench CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(t - dt.timedelta(days=1))
        .not_valid_after(t + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(t - dt.timedelta(days=1))
        .not_valid_after(t + dt.timedelta(days=60))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "leaf.crt", directory / "leaf.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def _serve(cert: str, key: str, port_out: Any, cpu_out: Any, stop: Any) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *a: Any) -> None:
            pass

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    port_out.put(httpd.server_address[1])
    import threading

    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    while True:
        cmd = stop.get()
        cpu_out.put(time.process_time())
        if cmd == "stop":
            httpd.shutdown()
            return


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, nargs="+", default=[8, 80])
    ap.add_argument("--cycles", type=int, default=10)
    args = ap.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        most = max(args.services)
        names = [f"svc{i}.bench.test" for i in range(most)]
        ca, crt, key = _certs(d, names)
        port_q, cpu_q, cmd_q = mp.Queue(), mp.Queue(), mp.Queue()
        child = mp.Process(target=_serve, args=(str(crt), str(key), port_q, cpu_q, cmd_q), daemon=True)
        child.start()
        port = port_q.get(timeout=30)
        for n in args.services:
            services = [
                check_entry({"name": f"svc{i}", "enabled": True, "domains": [names[i]], "health": {"path": "/hz"}})
                for i in range(n)
            ]
            settings = Settings.from_env(
                {
                    "HOMELAB_VAR_DIR": str(d),
                    "HOMELAB_STATUS_CONNECT": f"127.0.0.1:{port}",
                    "HOMELAB_STATUS_CA_FILE": str(ca),
                }
            )
            store = Store(f"sqlite:///{d / f'status-{n}.db'}")
            status = StatusService(settings, store, lambda s=services: s)
            status.cycle()  # warm: imports, the store's first write
            walls, cpus = [], []
            cmd_q.put("mark")
            host_before = cpu_q.get(timeout=30)
            for _ in range(args.cycles):
                c0, w0 = time.process_time(), time.perf_counter()
                samples = status.cycle()
                walls.append(time.perf_counter() - w0)
                cpus.append(time.process_time() - c0)
                assert all(s.status == "up" for s in samples), [
                    (s.service, s.error) for s in samples if s.status != "up"
                ]
            cmd_q.put("mark")
            host_cpu = (cpu_q.get(timeout=30) - host_before) / args.cycles
            print(
                f"{n:>4} services: wall {statistics.median(walls) * 1000:7.1f} ms (median of {args.cycles}), "
                f"controller CPU {statistics.median(cpus) * 1000:7.1f} ms, stand-in's CPU {host_cpu * 1000:7.1f} ms "
                f"per cycle; at one cycle a minute: {statistics.median(cpus) / 60 * 100:.2f}% of one core"
            )
        cmd_q.put("stop")
        child.join(10)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HOMELAB_JARVIS", "0")
    sys.exit(main())
