"""Network-side checks against real servers on loopback: TLS (expiry, chain, name, expired, refused),
DNS through dnspython at a local resolver (match, mismatch, NXDOMAIN, a resolver that never answers),
HTTP (ok, bad status, refused, a server that accepts and never answers). A check that fails is a
finding, never an exception, and a batch of checks never outlives its budget."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from jarvis.config import Checks
from jarvis.netchecks import Target, check_dns, check_http, check_tls, run_all

from jarvis_helpers import DNSServer, TLSServer, make_ca, make_leaf


@pytest.fixture
def ca(tmp_path: Path) -> Any:
    return make_ca(tmp_path)


def tls_server(tmp_path: Path, ca: Any, domain: str, days: float, name: str) -> TLSServer:
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    make_leaf(ca, domain, days, cert, key)
    return TLSServer(cert, key)


def test_tls_reports_expiry_chain_name_and_expired_certificates(tmp_path: Path, ca: Any) -> None:
    ca_file = str(ca[2])
    servers = {
        n: tls_server(tmp_path, ca, "good.test", d, n)
        for n, d in (("fresh", 60), ("soon", 3), ("late", 15), ("old", -2))
    }
    try:

        def run(name: str, domain: str = "good.test", cafile: str = ca_file) -> list[Any]:
            return check_tls(domain, f"127.0.0.1:{servers[name].port}", 3, cafile, 21, 7)

        assert run("fresh") == []
        [soon] = run("soon")
        assert (soon.code, soon.severity, soon.target, soon.params) == (
            "tls.expiring",
            "critical",
            "tls:good.test",
            {"domain": "good.test"},
        )
        assert 2.9 < soon.evidence["days_left"] < 3.1
        [late] = run("late")
        assert (late.code, late.severity) == ("tls.expiring", "warning")
        [old] = run("old")
        assert old.code == "tls.expired" and old.evidence["days_left"] < 0
        [untrusted] = run("fresh", cafile="")  # the system's CAs do not know the test CA
        assert untrusted.code == "tls.invalid" and "certificate" in untrusted.evidence["error"]
        assert untrusted.evidence["days_left"] > 59, "an invalid certificate's expiry is still reported"
        [wrong] = run("fresh", domain="other.test")
        assert wrong.code == "tls.invalid" and "other.test" in wrong.summary
    finally:
        for s in servers.values():
            s.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    [refused] = check_tls("good.test", f"127.0.0.1:{closed}", 3, ca_file, 21, 7)
    assert refused.code == "tls.error" and refused.severity == "warning"


def test_dns_compares_each_domain_with_the_servers_address_through_the_configured_resolver() -> None:
    server = DNSServer({"ok.test": ["203.0.113.7"], "moved.test": ["198.51.100.9"]})
    silent = DNSServer({}, silent=True)
    try:
        resolvers = (server.address,)
        assert check_dns("ok.test", ("203.0.113.7",), resolvers, 2) == []
        [moved] = check_dns("moved.test", ("203.0.113.7",), resolvers, 2)
        assert moved.code == "dns.mismatch" and moved.evidence["addresses"] == ["198.51.100.9"]
        assert moved.params == {"domain": "moved.test"}
        [gone] = check_dns("gone.test", ("203.0.113.7",), resolvers, 2)
        assert gone.code == "dns.missing"
        assert {"ok.test", "moved.test", "gone.test"} <= set(server.queries), "the configured resolver was not asked"
        [quiet] = check_dns("ok.test", ("203.0.113.7",), (silent.address,), 0.5)
        assert quiet.code == "dns.error" and quiet.evidence["error"] == "timeout" and silent.queries
    finally:
        server.close()
        silent.close()


def test_http_health_reports_bad_status_refused_and_a_server_that_never_answers() -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200 if self.path == "/ok" else 502)
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(1)  # accepts into the backlog, never answers
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        assert check_http("app", base + "/ok", (200,), 2, "") == []
        [bad] = check_http("app", base + "/broken", (200,), 2, "")
        assert bad.code == "http.bad_status" and bad.evidence["status"] == 502 and bad.params == {"service": "app"}
        [stuck] = check_http("app", f"http://127.0.0.1:{hang.getsockname()[1]}/", (200,), 0.5, "")
        assert stuck.code == "http.down" and "timed out" in stuck.evidence["error"]
    finally:
        srv.shutdown()
        srv.server_close()
        port = hang.getsockname()[1]
        hang.close()
    [refused] = check_http("app", f"http://127.0.0.1:{port}/", (200,), 2, "")
    assert refused.code == "http.down" and "refused" in refused.evidence["error"].lower()


def test_a_check_that_crashes_or_hangs_is_a_finding_and_the_batch_returns() -> None:
    release = threading.Event()

    def runner(t: Target, checks: Checks) -> list[Any]:
        if t.name == "crash":
            raise RuntimeError("boom")
        if t.name == "hang":
            release.wait()
        return []

    from jarvis.netchecks import run_target

    [crash] = run_target(Target("nosuchkind", "crash", {}), Checks())
    assert crash.code == "check.error" and "unknown check kind" in crash.evidence["error"]
    try:
        found, scopes = run_all(
            [Target("http", "hang", {}), Target("http", "fine", {})], Checks(timeout=0.1), runner=runner
        )
    finally:
        release.set()
    assert [(f.code, f.target) for f in found] == [("check.error", "http:hang")]
    assert "did not finish" in found[0].evidence["error"] and scopes == {"http:hang", "http:fine"}


def test_an_expiring_certificate_is_renewed_through_the_catalog_and_the_tls_check_alone_verifies_it(
    build: Any, box: Any, tmp_path: Path, ca: Any
) -> None:
    served_cert, served_key = tmp_path / "served.crt", tmp_path / "served.key"
    make_leaf(ca, "home.test", 3, served_cert, served_key)
    new_cert, new_key = tmp_path / "new.crt", tmp_path / "new.key"
    make_leaf(ca, "home.test", 90, new_cert, new_key)
    box.write_inventory(
        {
            "renew_cert_src": str(new_cert),
            "renew_cert_dest": str(served_cert),
            "renew_key_src": str(new_key),
            "renew_key_dest": str(served_key),
        }
    )
    server = tls_server_for(served_cert, served_key)
    try:
        j = build(
            [
                {
                    "id": "renew",
                    "codes": ["tls.expiring"],
                    "playbook": "renew_certificates",
                    "params": {"domain": "{domain}"},
                    "mode": "auto",
                    "limit": "alpha",
                }
            ],
            checks={
                "tls": {
                    "domains": [{"domain": "home.test", "connect": f"127.0.0.1:{server.port}"}],
                    "ca_file": str(ca[2]),
                }
            },
        )
        d = j.cycle("test")
        assert [(f.code, f.target) for f in d.findings] == [("tls.expiring", "tls:home.test")]
        [a] = j.actions()
        assert (a.playbook, a.params, a.limit, a.status) == (
            "renew_certificates",
            {"domain": "home.test"},
            "alpha",
            "resolved",
        ), a.as_dict()
        assert a.verify_job_id is None, "a network finding is verified by its own check, not a host diagnosis"
        assert new_cert.read_bytes() == served_cert.read_bytes()
        assert [r.status for r in j.findings(include_resolved=True)] == ["resolved"]
    finally:
        server.close()


def tls_server_for(cert: Path, key: Path) -> TLSServer:
    return TLSServer(cert, key)
