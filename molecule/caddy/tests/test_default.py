"""What a user of the lab host sees once the caddy role has run.

Requests go to the lab host's own published ports on 127.0.0.1 (curl --resolve), from a throwaway
container on the lab host's network namespace: the lab host itself ships no curl, the caddy image
does. The internal CA's root certificate comes from Caddy's data directory, so a passing request
proves the certificate chain too, not just that something answered.
"""

from __future__ import annotations

import hashlib
import json
import os

from checks import assert_check_mode_clean, recap, run_converge

CADDY_ROOT = "/opt/homelab/caddy"
CADDYFILE = f"{CADDY_ROOT}/config/Caddyfile"
ROOT_CA = "/data/caddy/pki/authorities/local/root.crt"
IMAGE = os.environ["LAB_CADDY_IMAGE"]
UPSTREAM_BODY = "hello from upstream"


def curl(host, url: str, *args: str):
    """curl from the lab host's network namespace, trusting Caddy's internal CA, retrying while
    Caddy is still issuing a certificate."""
    domain = url.split("/")[2]
    port = 443 if url.startswith("https") else 80
    cmd = (
        f"docker run --rm --network host -v {CADDY_ROOT}/data:/data:ro {IMAGE} "
        f"curl -sS --max-time 10 --retry 5 --retry-delay 1 --retry-all-errors --cacert {ROOT_CA} "
        f"--resolve {domain}:{port}:127.0.0.1 " + " ".join(args) + f" {url}"
    )
    return host.run(cmd)


def status(host, url: str, *args: str) -> str:
    res = curl(host, url, "-o /dev/null", "-w '%{http_code} %{redirect_url}'", *args)
    assert res.rc == 0, res.stderr
    return res.stdout.strip()


def started_at(host) -> str:
    return host.check_output("docker inspect -f '{{.State.StartedAt}}' caddy")


def caddyfile_sha(host) -> str:
    return hashlib.sha256(host.file(CADDYFILE).content).hexdigest()


def extra_vars(**kv) -> tuple[str, str]:
    return ("-e", json.dumps(kv))


def test_https_route_serves_the_upstream_with_a_cert_from_the_internal_ca(host):
    res = curl(host, "https://whoami.lab.test/", "-D -")
    assert res.rc == 0, res.stderr
    assert UPSTREAM_BODY in res.stdout
    assert "x-lab-route: whoami" in res.stdout.lower()
    issuer = host.check_output(
        f"docker run --rm --network host {IMAGE} sh -c "
        "'curl -skv --resolve whoami.lab.test:443:127.0.0.1 https://whoami.lab.test/ -o /dev/null 2>&1'"
    )
    assert "issuer: CN=Caddy Local Authority" in issuer


def test_basic_auth_route_needs_the_password(host):
    assert status(host, "https://private.lab.test/").startswith("401")
    assert status(host, "https://private.lab.test/", "-u alice:wrong-password").startswith("401")
    ok = curl(host, "https://private.lab.test/", "-u alice:lab-only-wonderland", "--fail")
    assert ok.rc == 0 and UPSTREAM_BODY in ok.stdout, ok.stderr


def test_http_redirects_to_https(host):
    assert status(host, "http://whoami.lab.test/some/path") == "308 https://whoami.lab.test/some/path"


def test_disabled_service_gets_no_site(host):
    assert "retired.lab.test" not in host.file(CADDYFILE).content_string
    res = curl(host, "https://retired.lab.test/", "--retry 0")
    assert res.rc != 0 and UPSTREAM_BODY not in res.stdout


def test_config_is_a_bind_mounted_directory_and_data_a_host_path(host):
    mounts = {
        m["Destination"]: m["Source"]
        for m in json.loads(host.check_output("docker inspect -f '{{json .Mounts}}' caddy"))
    }
    assert mounts["/etc/caddy"] == f"{CADDY_ROOT}/config"
    assert mounts["/data"] == f"{CADDY_ROOT}/data"
    assert host.file(f"{CADDY_ROOT}/data/caddy/pki/authorities/local/root.crt").exists


def test_converged_host_reports_no_change_in_check_mode():
    assert_check_mode_clean()


def test_malformed_domain_is_refused_before_any_change(host):
    before = caddyfile_sha(host)
    bad = {"broken": {"domain": "bad..domain", "upstream": "upstream:8080"}}
    proc = run_converge(*extra_vars(lab_extra_services=bad))
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "caddy_sites['broken'].domain = 'bad..domain' is not a domain name" in proc.stdout
    assert all(c["changed"] == 0 for c in recap(proc.stdout).values()), proc.stdout[-3000:]
    assert caddyfile_sha(host) == before


def test_caddyfile_that_caddy_refuses_never_goes_live(host):
    before_sha, before_start = caddyfile_sha(host), started_at(host)
    typo = "typo.lab.test {\n\ttls internal\n\treverse_prxy upstream:8080\n}"
    proc = run_converge(*extra_vars(caddy_extra_config=typo))
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "caddy validate refused the new Caddyfile" in proc.stdout, proc.stdout[-3000:]
    assert "reverse_prxy" in proc.stdout  # Caddy's own reason is passed on
    assert caddyfile_sha(host) == before_sha
    assert started_at(host) == before_start
    assert UPSTREAM_BODY in curl(host, "https://whoami.lab.test/").stdout


def test_new_site_goes_live_by_graceful_reload_without_restart(host):
    before = started_at(host)
    extra = {"extra": {"domain": "extra.lab.test", "upstream": "upstream:8080"}}
    try:
        proc = run_converge(*extra_vars(lab_extra_services=extra))
        assert proc.returncode == 0, proc.stdout[-4000:]
        assert "RUNNING HANDLER [caddy : Reload caddy]" in proc.stdout
        res = curl(host, "https://extra.lab.test/", "--fail")
        assert res.rc == 0 and UPSTREAM_BODY in res.stdout, res.stderr
        assert started_at(host) == before, "the container was restarted instead of reloaded"
        assert host.check_output("docker inspect -f '{{.RestartCount}}' caddy") == "0"
        backups = host.check_output(f"ls {CADDY_ROOT}/config").split()
        assert any(name.startswith("Caddyfile.") for name in backups), backups
    finally:
        restored = run_converge()
    assert restored.returncode == 0, restored.stdout[-4000:]
    assert started_at(host) == before
    assert "extra.lab.test" not in host.file(CADDYFILE).content_string
