"""The services' status (homelab.status) against a real HTTPS server on 127.0.0.1, standing in for
Caddy: one address for every domain, a certificate per name (SNI) from a CA made here. The service
registry comes from a real inventory (the roles' own registry entries, resolved by Ansible). A
probe cycle stores samples; the server's scheduler runs the cycle by itself; the API, the dashboard
and `homelab status` say what it saw: up, a route answering 502 degraded, a certificate that
expires within 14 days degraded, a name the certificate does not cover down, a stopped server down.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from sqlalchemy import select

from homelab.registry import Registry, check_entry
from homelab.settings import Settings
from homelab.status import StatusService, status_targets
from homelab.store import ServiceSample, Store
from homelab.web.auth import create_token

from webui_helpers import PY, ROOT, csrf_from, wait_until

UP, BROKEN, SOON, WRONG = "n8n.status.test", "plex.status.test", "dash.status.test", "wrong.status.test"


def _ca(directory: Path) -> tuple[Any, Any, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "homelab status test CA")])
    t = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(t - dt.timedelta(days=1))
        .not_valid_after(t + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = directory / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, path


def _leaf(ca: tuple[Any, Any, Path], names: list[str], days: float, directory: Path, stem: str) -> ssl.SSLContext:
    """A server context with a certificate for names, signed by ca, valid for `days` more."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_key, ca_cert, _ = ca
    key = ec.generate_private_key(ec.SECP256R1())
    t = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(t - dt.timedelta(days=30))
        .not_valid_after(t + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    crt, pem = directory / f"{stem}.crt", directory / f"{stem}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(crt), str(pem))
    return ctx


class Caddyish:
    """HTTPS on 127.0.0.1 for every domain, like Caddy on the server: the certificate by SNI, the
    answer by Host (the plex route answers 502, as Caddy does when its upstream is gone)."""

    def __init__(self, default: ssl.SSLContext, by_name: dict[str, ssl.SSLContext]) -> None:
        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                host = (self.headers.get("Host") or "").split(":")[0]
                outer.requests.append((host, self.path))
                code = 502 if host == BROKEN else 200
                body = b"bad gateway" if code == 502 else b"ok"
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a: Any) -> None:
                pass

        def pick(sock: ssl.SSLSocket, name: str | None, _ctx: ssl.SSLContext) -> None:
            if name in by_name:
                sock.context = by_name[name]

        default.sni_callback = pick
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = default.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[dict[str, Any]]:
    ca = _ca(tmp_path)
    default = _leaf(ca, [UP, BROKEN], 60, tmp_path, "main")
    soon = _leaf(ca, [SOON], 5, tmp_path, "soon")
    server = Caddyish(default, {SOON: soon})
    inventory = tmp_path / "inventory.yml"
    hostvars = {
        "ansible_connection": "local",
        "ansible_python_interpreter": PY,
        "n8n_enabled": True,
        "n8n_domain": UP,
        "plex_enabled": True,
        "plex_domain": BROKEN,
        "dashboard_enabled": True,
        "dashboard_domain": SOON,
    }
    inventory.write_text(yaml.safe_dump({"all": {"children": {"homelab": {"hosts": {"alpha": hostvars}}}}}))
    var = tmp_path / "var"
    var.mkdir()
    env = {
        "HOMELAB_VAR_DIR": str(var),
        "HOMELAB_INVENTORY": str(inventory),
        "HOMELAB_CATALOG": str(Path(__file__).parent / "catalog.yml"),
        "HOMELAB_SCHEDULES": str(tmp_path / "schedules.yml"),
        "HOMELAB_STATUS_CONNECT": f"127.0.0.1:{server.port}",
        "HOMELAB_STATUS_CA_FILE": str(ca[2]),
        "HOMELAB_STATUS_TIMEOUT": "3",
    }
    (tmp_path / "schedules.yml").write_text("schedules: []\n")
    try:
        yield {"server": server, "env": env, "settings": Settings.from_env(env), "inventory": inventory}
    finally:
        server.stop()


def _by_name(samples: list[ServiceSample]) -> dict[str, ServiceSample]:
    return {s.service: s for s in samples}


def test_a_probe_cycle_stores_what_each_service_answers(lab: dict[str, Any]) -> None:
    settings: Settings = lab["settings"]
    store = Store(settings.db_url)
    registry = list(Registry(lab["inventory"]).union().values())
    wrong = check_entry({"name": "elsewhere", "enabled": True, "domains": [WRONG], "health": {"path": "/ok"}})
    status = StatusService(settings, store, lambda: [*registry, wrong])
    assert [t.name for t in status.targets()] == ["dashboard", "elsewhere", "n8n", "plex"]
    assert [r["status"] for r in status.current()] == ["unknown"] * 4, "never probed is unknown"

    started = time.monotonic()
    samples = _by_name(status.cycle())
    seconds = time.monotonic() - started

    up, broken, soon, elsewhere = samples["n8n"], samples["plex"], samples["dashboard"], samples["elsewhere"]
    assert (up.status, up.http_status, up.error) == ("up", 200, "")
    assert up.response_ms is not None and 0 < up.response_ms < 3000
    assert up.tls_days_left is not None and 59 < up.tls_days_left < 61
    assert (broken.status, broken.http_status) == ("degraded", 502) and "502" in broken.error
    assert (soon.status, soon.http_status) == ("degraded", 200) and "expires in 5.0 days" in soon.error
    assert (
        elsewhere.status == "down" and elsewhere.http_status is None and "certificate verify failed" in elsewhere.error
    )
    assert (UP, "/healthz") in lab["server"].requests and (BROKEN, "/identity") in lab["server"].requests
    with store.session() as s:
        stored = {r.service: r for r in s.scalars(select(ServiceSample))}
    assert {n: r.status for n, r in stored.items()} == {n: r.status for n, r in samples.items()}
    assert stored["n8n"].url == f"https://{UP}/healthz"
    assert [r["name"] for r in status.current()] == ["elsewhere", "dashboard", "plex", "n8n"], "problems first"
    assert seconds < 5, f"one cycle of 4 services took {seconds:.2f}s"
    print(f"\nstatus cycle: 4 services in {seconds * 1000:.0f} ms")

    # retention: a sample older than the retention is gone after the next cycle, the fresh ones stay
    old = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(days=settings.status_retention_days + 1)
    with store.session.begin() as s:
        s.add(ServiceSample(service="n8n", at=old, status="down", error="long ago"))
    status.cycle()
    with store.session() as s:
        assert s.scalar(select(ServiceSample).where(ServiceSample.error == "long ago")) is None
        assert len(list(s.scalars(select(ServiceSample)))) == 8

    lab["server"].stop()
    after = _by_name(status.cycle())
    assert {n: s.status for n, s in after.items()} == dict.fromkeys(samples, "down")
    assert "refused" in after["n8n"].error.lower()


def _api(url: str, token: str) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "homelab", "status", *args],
        env={**os.environ, **env},
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_server_probes_on_its_schedule_and_the_api_page_and_cli_say_so(
    lab: dict[str, Any], server_factory: Any
) -> None:
    settings: Settings = lab["settings"]
    server = server_factory(
        settings,
        extra_env={**lab["env"], "HOMELAB_JARVIS": "0", "HOMELAB_STATUS_INTERVAL": "10"},
    ).start()
    token = create_token(Store(settings.db_url), "admin", "status-test")
    base = f"{server.url}/api/v1/services"

    def probed() -> Any:
        code, rows = _api(base, token)
        return rows if code == 200 and all(r["observed_at"] for r in rows) else None

    rows = wait_until(probed, 60, "the scheduler's first status cycle")  # it runs when the scheduler starts
    by = {r["name"]: r for r in rows}
    assert [r["name"] for r in rows] == ["dashboard", "plex", "n8n"], "problems first, then by name"
    assert (by["n8n"]["status"], by["n8n"]["http_status"], by["n8n"]["url"]) == ("up", 200, f"https://{UP}/")
    assert by["plex"]["status"] == "degraded" and by["plex"]["http_status"] == 502
    assert by["dashboard"]["status"] == "degraded" and 4 < by["dashboard"]["tls_days_left"] < 6
    assert all(isinstance(r["age_seconds"], int) and r["age_seconds"] >= 0 for r in rows)

    code, one = _api(f"{base}/n8n?history=1h", token)
    assert code == 200 and one["status"] == "up" and one["history"]
    assert all(h["service"] == "n8n" and h["status"] == "up" for h in one["history"])
    assert _api(f"{base}/n8n", token)[1].get("history") is None
    code, err = _api(f"{base}/nosuch", token)
    assert code == 404 and "nosuch" in err["error"]
    for bad in ("forever", "0h", "24", "1h%0A", "%D9%A1h"):
        code, err = _api(f"{base}/n8n?history={bad}", token)
        assert code == 400 and err["field"] == "history", bad
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(urllib.request.Request(base, headers={"Accept": "application/json"}), timeout=30)
    assert anonymous.value.code == 401

    cli_env = {"HOMELAB_URL": server.url, "HOMELAB_TOKEN": token, "HOMELAB_VAR_DIR": str(settings.var_dir)}
    ok = _cli(cli_env)
    assert ok.returncode == 0, ok.stdout + ok.stderr  # degraded is not down
    lines = ok.stdout.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["SERVICE", "STATUS", "AGE", "RESPONSE", "TLS DAYS", "URL"]
    assert lines[1].split()[:2] == ["dashboard", "degraded"] and f"https://{UP}/" in lines[3]

    # the dashboard: a tile per service, problems first, status in words with the age
    client_page = _page(server.url)
    tiles = re.findall(r'data-status-service="([a-z0-9_]+)" data-status="([a-z]+)"', client_page)
    assert tiles == [("dashboard", "degraded"), ("plex", "degraded"), ("n8n", "up")]
    assert f'href="https://{UP}/"' in client_page and " ago</time>" in client_page and "days left" in client_page

    first = by["n8n"]["observed_at"]
    lab["server"].stop()

    def down() -> Any:
        code, rows = _api(base, token)
        return rows if code == 200 and all(r["status"] == "down" and r["observed_at"] != first for r in rows) else None

    rows = wait_until(down, 60, "a status cycle after the server stopped")
    assert all(r["response_ms"] is None and r["http_status"] is None and r["error"] for r in rows)
    failed = _cli(cli_env)
    assert failed.returncode == 1 and "down: " in failed.stderr, failed.stdout + failed.stderr
    assert [ln.split()[1] for ln in failed.stdout.splitlines()[1:]] == ["down"] * 3


def _page(url: str) -> str:
    """The dashboard, logged in (a real session: the login form with its CSRF token)."""
    import http.cookiejar
    import urllib.parse
    import urllib.request

    from webui_helpers import ADMIN_PASSWORD

    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with opener.open(f"{url}/login", timeout=30) as r:
        csrf = csrf_from(r.read().decode())
    data = urllib.parse.urlencode({"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": csrf}).encode()
    with opener.open(f"{url}/login", data=data, timeout=30):
        pass
    with opener.open(f"{url}/", timeout=30) as r:
        return str(r.read().decode())


def test_homelab_status_says_when_there_is_nothing_to_show(tmp_path: Path, server_factory: Any) -> None:
    from webui_helpers import write_inventory

    var = tmp_path / "var"
    var.mkdir()
    (tmp_path / "schedules.yml").write_text("schedules: []\n")
    env = {
        "HOMELAB_VAR_DIR": str(var),
        "HOMELAB_INVENTORY": str(write_inventory(tmp_path / "inventory.yml")),
        "HOMELAB_CATALOG": str(Path(__file__).parent / "catalog.yml"),
        "HOMELAB_SCHEDULES": str(tmp_path / "schedules.yml"),
    }
    settings = Settings.from_env(env)
    server = server_factory(settings, extra_env={**env, "HOMELAB_JARVIS": "0", "HOMELAB_SCHEDULER": "0"}).start()
    token = create_token(Store(settings.db_url), "admin", "status-test")
    out = _cli({"HOMELAB_URL": server.url, "HOMELAB_TOKEN": token})
    assert out.returncode == 0 and "no service to show" in out.stdout, out.stdout + out.stderr


def test_the_status_targets_are_the_registry_s_enabled_services_with_a_domain() -> None:
    services = [
        check_entry({"name": "web", "enabled": True, "domains": ["web.example.org"], "health": {"path": "/hz"}}),
        check_entry({"name": "front", "enabled": True, "domains": ["a.example.org", "b.example.org"]}),
        check_entry({"name": "off", "enabled": False, "domains": ["off.example.org"]}),
        check_entry({"name": "timer", "kind": "host", "enabled": True}),
    ]
    [front, web] = status_targets(services)
    assert (web.probe_url, web.url, web.expect) == ("https://web.example.org/hz", "https://web.example.org/", (200,))
    assert (front.probe_url, front.domain) == ("https://a.example.org/", "a.example.org")
    assert 302 in front.expect and 401 in front.expect, "a front page may redirect to its login"


@pytest.mark.browser
def test_the_status_tiles_read_on_a_phone_and_say_the_state_in_words(lab: dict[str, Any], server_factory: Any) -> None:
    """At 390 px: no sideways scrolling, the tiles one above the other, problems first, each state
    in text (the colour and the symbol only repeat it); a screenshot for a person to look at."""
    import shutil

    from playwright.sync_api import sync_playwright

    from webui_helpers import ADMIN_PASSWORD

    settings: Settings = lab["settings"]
    server = server_factory(settings, extra_env={**lab["env"], "HOMELAB_JARVIS": "0"}).start()
    token = create_token(Store(settings.db_url), "admin", "status-test")
    wait_until(
        lambda: all(r["observed_at"] for r in _api(f"{server.url}/api/v1/services", token)[1]), 60, "a status cycle"
    )
    chromium = os.environ.get("HOMELAB_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
    shots = ROOT / "var" / "reports"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = b.new_page(viewport={"width": 390, "height": 844})
            page.goto(server.url + "/login")
            page.fill("#password", ADMIN_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector("#status-panel .tile")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), "sideways scroll"
            tiles = page.locator("#status-panel .tile")
            texts = [tiles.nth(i).inner_text() for i in range(tiles.count())]
            assert [t.split("\n")[0] for t in texts] == ["Homelab dashboard", "Plex", "n8n"]
            assert "degraded" in texts[0] and "days left" in texts[0] and "ago" in texts[0]
            assert "degraded" in texts[1] and "HTTP 502" in texts[1] and "up" in texts[2]
            boxes = [tiles.nth(i).bounding_box() for i in range(tiles.count())]
            assert all(b and b["x"] >= 0 and b["x"] + b["width"] <= 390 for b in boxes)
            page.screenshot(path=str(shots / "status-tiles-390.png"), full_page=False)
            page.set_viewport_size({"width": 1280, "height": 900})
            page.screenshot(path=str(shots / "status-tiles-1280.png"), full_page=False)
        finally:
            b.close()
