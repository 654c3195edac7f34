"""What ddclient does for a user: the daemon keeps every name pointed at the public address
through ZoneEdit (here a fake on the lab host's loopback that logs each request); update_dns forces
an update now and reports it without ever showing the password; a configuration ddclient rejects
is never installed; fix_ddclient repairs a hand-broken configuration and a bad cache."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from checks import assert_check_mode_clean, run_converge

ROOT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
OPS = ROOT / "playbooks" / "ops"
DOMAINS = {"rig-city.lab.test", "bot.rig-city.lab.test", "evindrake.lab.test", "scarletredjoker.lab.test"}
FAKE = "/srv/fake-zoneedit"
CACHE = "/var/cache/ddclient/ddclient.cache"
USER = "lab-zoneedit"
# In the lab the ops playbooks see ddclient_enabled from the scenario, as production's inventory sets it.
ENABLED = json.dumps({"ddclient_enabled": True})


def password() -> str:
    return (Path(os.environ.get("HOMELAB_VAR_DIR", ROOT / "var")) / "lab-secrets" / "ddclient_password").read_text().strip()


def set_public_ip(host, ip: str) -> None:
    host.check_output(f"echo {ip} > {FAKE}/ip && : > {FAKE}/requests.log")


def updates(host) -> list[dict]:
    """The update requests the fake ZoneEdit received since the log was last cleared."""
    lines = host.file(f"{FAKE}/requests.log").content_string.splitlines()
    return [r for r in map(json.loads, lines) if r["path"] == "/auth/dynamic.html"]


def cache(host) -> dict[str, dict[str, str]]:
    """ddclient's cache: {name: {key: value}}, as diagnostics (Jarvis) read it."""
    out = {}
    for line in host.file(CACHE).content_string.splitlines():
        if line.strip() and not line.startswith("#"):
            fields, _, name = line.rpartition(" ")
            out[name] = dict(kv.split("=", 1) for kv in fields.split(",") if "=" in kv)
    return out


def ops(name: str, *extra: str):
    proc = run_converge("-v", "-e", ENABLED, *extra, playbook=str(OPS / f"{name}.yml"))
    proc.flat = " ".join(proc.stdout.split())  # ansible wraps long messages
    return proc


def assert_every_name_updated(host, ip: str) -> None:
    sent = updates(host)
    assert sent, "ddclient sent no update to ZoneEdit"
    names = {h for r in sent for h in r["query"]["host"].split(",")}
    assert names == DOMAINS
    assert {r["user"] for r in sent} == {USER}
    assert {r["password_sha256"] for r in sent} == {hashlib.sha256(password().encode()).hexdigest()}
    assert {r["query"]["dnsto"] for r in sent} == {ip}
    entries = cache(host)
    for name in DOMAINS:
        assert entries[name]["ip"] == ip and entries[name]["status"] == "good", entries.get(name)


def test_the_daemon_runs_with_its_interval_and_a_root_only_config(host):
    service = host.service("ddclient")
    assert service.is_enabled and service.is_running
    assert 'daemon_interval="300"' in host.file("/etc/default/ddclient").content_string
    conf = host.file("/etc/ddclient.conf")
    assert (conf.user, conf.group, conf.mode) == ("root", "root", 0o600)
    text = conf.content_string
    for line in ("protocol=zoneedit1", "server='127.0.0.1:8443'", f"login='{USER}'", "ssl=yes",
                 "usev4=webv4, webv4='https://127.0.0.1:8443/checkip.html'"):
        assert line in text, text
    assert all(d in text for d in DOMAINS)
    # The password is in the root-only file and nowhere on a command line.
    assert password() not in host.check_output("cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '")


def test_update_dns_updates_every_name_with_the_account_and_never_shows_the_password(host):
    set_public_ip(host, "203.0.113.20")
    proc = ops("update_dns")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert password() not in proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout and all(d in proc.flat for d in DOMAINS), proc.stdout[-3000:]
    assert_every_name_updated(host, "203.0.113.20")


def test_update_dns_refuses_a_name_ddclient_does_not_manage(host):
    set_public_ip(host, "203.0.113.21")
    proc = ops("update_dns", "-e", "domain=evil.example.org")
    assert proc.returncode != 0
    assert "domain 'evil.example.org' is not one of ddclient's names" in proc.flat, proc.stdout[-2000:]
    assert updates(host) == []


def test_update_dns_reports_a_refused_update_and_fails(host):
    set_public_ip(host, "203.0.113.22")
    host.check_output(f"touch {FAKE}/reject-auth")
    try:
        proc = ops("update_dns")
    finally:
        host.check_output(f"rm -f {FAKE}/reject-auth")
    assert proc.returncode != 0
    assert "Authentication failed" in proc.flat and "did not update every name" in proc.flat, proc.stdout[-3000:]
    assert password() not in proc.stdout + proc.stderr
    assert cache(host)["evindrake.lab.test"]["status"] == "failed"


def test_a_config_ddclient_rejects_is_never_installed(host):
    before = host.file("/etc/ddclient.conf").content_string
    proc = run_converge("-e", json.dumps({"ddclient_server": "zoneedit"}))  # no dot: not a server name
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "ddclient rejected the configuration" in " ".join(proc.stdout.split()), proc.stdout[-3000:]
    assert host.file("/etc/ddclient.conf").content_string == before
    assert host.service("ddclient").is_running
    assert password() not in proc.stdout + proc.stderr


def test_fix_ddclient_recovers_from_a_broken_config_and_a_bad_cache(host):
    # Someone edits the file by hand and breaks it, and the cache holds failed entries.
    host.check_output("printf 'protocol=nonsense\\nlogin=oops\\n' > /etc/ddclient.conf && systemctl restart ddclient")
    host.check_output(f"sed -i 's/status=good/status=badauth/' {CACHE} && "
                      f"echo 'ip=198.51.100.1,status=failed old.lab.test' >> {CACHE}")
    set_public_ip(host, "203.0.113.30")
    proc = ops("fix_ddclient")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert password() not in proc.stdout + proc.stderr
    text = host.file("/etc/ddclient.conf").content_string
    assert "protocol=zoneedit1" in text and "nonsense" not in text
    assert host.service("ddclient").is_running
    assert "old.lab.test" not in cache(host)  # the bad entry is gone
    assert_every_name_updated(host, "203.0.113.30")


def test_check_mode_reports_no_changes_on_a_converged_host():
    assert_check_mode_clean()
