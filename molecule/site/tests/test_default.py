"""The whole site on one lab host, as its user meets it."""


from checks import assert_check_mode_clean
from services import status


def test_ssh_offers_no_password_login(host):
    out = host.run(
        "ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o PreferredAuthentications=password "
        "-o ConnectTimeout=5 labadmin@127.0.0.1 true"
    )
    assert out.rc != 0
    assert "Permission denied (publickey)" in out.stderr


def test_firewall_denies_by_default_and_allows_web(host):
    status = host.check_output("ufw status verbose")
    assert "Status: active" in status
    assert "deny (incoming)" in status
    for port in ("22/tcp", "80/tcp", "443/tcp"):
        assert port in status


def test_caddy_answers_https_with_its_internal_ca(host):
    out = host.check_output(
        "curl -sS --max-time 10 --cacert /opt/homelab/caddy/data/caddy/pki/authorities/local/root.crt "
        "--resolve status.lab.test:443:127.0.0.1 https://status.lab.test/"
    )
    assert out == "homelab lab: caddy is up"


def test_postgres_is_healthy(host):
    health = host.check_output("docker inspect -f '{{.State.Health.Status}}' postgres")
    assert health == "healthy"


def test_services_share_the_homelab_network(host):
    members = host.check_output("docker network inspect homelab -f '{{range .Containers}}{{.Name}} {{end}}'").split()
    # Container names are hostnames on this network, so they use hyphens (the bots' roles and compose
    # projects are discord_bot and stream_bot; their containers discord-bot and stream-bot).
    assert {"caddy", "postgres", "n8n", "discord-bot", "stream-bot", "plex", "dashboard", "vnc-desktop"} <= set(members), members


# Every routed service answers at its domain through Caddy over HTTPS (internal CA).
ROUTES = {
    "n8n.lab.test": "/healthz",
    "bot.lab.test": "/",
    "stream.lab.test": "/",
    "plex.lab.test": "/identity",
    "home.lab.test": "/",
    "vnc.lab.test": "/vnc.html",
    "static.lab.test": "/",
    "dashboard.lab.test": "/healthz",
}


def test_every_service_answers_at_its_domain_through_caddy(host):
    codes = {domain: status(host, f"https://{domain}{path}") for domain, path in ROUTES.items()}
    assert all(code == 200 for code in codes.values()), codes


def test_every_container_runs_and_none_is_unhealthy(host):
    rows = host.check_output("docker ps -a --format '{{.Names}} {{.State}} {{.Status}}'").splitlines()
    assert len(rows) >= 11, rows
    bad = [r for r in rows if " running " not in r or "unhealthy" in r]
    assert not bad, bad


def test_host_services_are_scheduled(host):
    for unit in ("git-sync.timer", "ddclient.service"):
        assert host.service(unit).is_running, unit
    timers = host.check_output("systemctl list-timers --all --no-legend")
    assert "git-sync.timer" in timers and "backup" in timers, timers


def test_check_mode_reports_no_drift():
    assert_check_mode_clean()
