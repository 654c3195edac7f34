"""What a user of a host converged by the base role sees.

SSH and firewall behaviour is checked from the controller, over the lab host's own address:
loopback traffic never passes ufw, so only an outside connection proves what the firewall lets in.
Traffic goes only to this scenario's own lab host.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from checks import assert_check_mode_clean, recap, run_converge

ADMIN = "ops"  # base_admin_user in converge.yml
ADMIN_KEY = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "admin_id_ed25519"
PROBE_PORT = 8443  # declared in base_firewall_extra_ports
UNDECLARED_PORT = 8444


@pytest.fixture(scope="module")
def address(host) -> str:
    """The lab host's IPv4 address on the Docker network."""
    return host.check_output("hostname -I").split()[0]


def ssh(address: str, user: str, *options: str, command: str = "true") -> subprocess.CompletedProcess[str]:
    """Run one non-interactive ssh command from the controller against the lab host."""
    return subprocess.run(
        [
            "ssh", "-F", "/dev/null",
            "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=10",
            "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR",
            *options,
            f"{user}@{address}", command,
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )


def can_connect(address: str, port: int, timeout: float = 3.0) -> bool:
    """True if a TCP connection to address:port is accepted within timeout."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


@pytest.fixture
def listener(host):
    """Start a throwaway TCP listener on the lab host; stopped afterwards."""
    units = []

    def start(port: int) -> None:
        unit = f"molecule-probe-{port}"
        host.run(f"systemctl stop {unit}")  # left over from an interrupted run
        host.check_output(f"systemd-run --unit={unit} python3 -m http.server {port} --bind 0.0.0.0")
        units.append(unit)
        for _ in range(50):
            if host.run(f"ss -Hltn 'sport = :{port}'").stdout.strip():
                return
            time.sleep(0.1)
        raise AssertionError(f"probe listener on port {port} did not start")

    yield start
    for unit in units:
        host.run(f"systemctl stop {unit}")


@pytest.fixture(autouse=True)
def forget_ssh_rate_limit(host):
    """Start every test with ufw's ssh rate-limit memory empty.

    base_firewall_ssh_rule is "limit": the 6th new ssh connection from one address within 30 s is
    refused, and this suite opens several. ufw keeps that memory in the xt_recent list DEFAULT.
    """
    host.run("test -e /proc/net/xt_recent/DEFAULT && echo / > /proc/net/xt_recent/DEFAULT")


def sshd_effective(host) -> dict[str, str]:
    """sshd -T: the configuration sshd uses, every drop-in applied."""
    lines = host.check_output("sshd -T").splitlines()
    return dict(line.split(" ", 1) for line in lines if " " in line)


def test_sshd_runs_with_keys_only(host):
    assert host.service("ssh").is_running
    assert host.service("ssh").is_enabled
    config = sshd_effective(host)
    assert config["passwordauthentication"] == "no"
    assert config["kbdinteractiveauthentication"] == "no"
    assert config["permitemptypasswords"] == "no"
    assert config["permitrootlogin"] == "no"
    assert config["authenticationmethods"] == "publickey"


def test_ssh_offers_no_password_login(address):
    proc = ssh(address, ADMIN, "-o", "PubkeyAuthentication=no",
               "-o", "PreferredAuthentications=password,keyboard-interactive")
    assert proc.returncode == 255
    # The server lists the methods it still allows: only publickey.
    assert "Permission denied (publickey)." in proc.stderr, proc.stderr


def test_admin_logs_in_with_the_key_and_has_sudo(address):
    proc = ssh(address, ADMIN, "-i", str(ADMIN_KEY), "-o", "IdentitiesOnly=yes",
               command="id -un && sudo -n id -un")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [ADMIN, "root"]


def test_admin_key_does_not_open_other_accounts(address):
    proc = ssh(address, "nobody", "-i", str(ADMIN_KEY), "-o", "IdentitiesOnly=yes")
    assert proc.returncode == 255
    assert "Permission denied" in proc.stderr


def test_root_cannot_log_in_even_with_an_authorized_key(host, address):
    # authorized_keys2 is read by sshd (checked below) and is not a file the role manages.
    assert ".ssh/authorized_keys2" in sshd_effective(host)["authorizedkeysfile"].split()
    pubkey = Path(f"{ADMIN_KEY}.pub").read_text().strip()
    host.check_output(f"install -d -m 700 /root/.ssh && echo {pubkey!r} > /root/.ssh/authorized_keys2")
    try:
        proc = ssh(address, "root", "-i", str(ADMIN_KEY), "-o", "IdentitiesOnly=yes")
    finally:
        host.check_output("rm -f /root/.ssh/authorized_keys2")
    assert proc.returncode == 255
    assert "Permission denied" in proc.stderr


def test_ssh_connection_bursts_are_rate_limited(address):
    accepted = [can_connect(address, 22) for _ in range(8)]
    assert accepted[:5] == [True] * 5
    assert accepted[5:] == [False] * 3  # ufw limit: the 6th within 30 s is refused


def test_firewall_is_active_with_default_deny(host):
    status = host.check_output("ufw status verbose")
    assert "Status: active" in status
    assert "Default: deny (incoming), allow (outgoing), deny (routed)" in status
    assert host.service("ufw").is_enabled


def test_firewall_allows_only_ssh_http_https_and_declared_ports(host):
    rules = host.check_output("ufw show added").splitlines()[1:]
    assert sorted(rules) == sorted([
        "ufw limit 22/tcp comment 'ssh'",
        "ufw allow 80/tcp comment 'http'",
        "ufw allow 443/tcp comment 'https'",
        "ufw allow 443/udp comment 'https (HTTP/3)'",
        f"ufw allow {PROBE_PORT}/tcp comment 'molecule probe'",
    ])


def test_declared_port_answers_and_undeclared_port_is_dropped(host, address, listener):
    listener(PROBE_PORT)
    listener(UNDECLARED_PORT)
    # Both listen (loopback skips the firewall) ...
    assert host.run(f"python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {UNDECLARED_PORT}), 3)'").rc == 0
    # ... but from outside only the declared one answers.
    assert can_connect(address, PROBE_PORT)
    assert not can_connect(address, UNDECLARED_PORT)
    assert can_connect(address, 22)


def test_next_run_closes_a_port_nothing_declares(host):
    host.check_output("ufw allow 9999/tcp")
    assert "ufw allow 9999/tcp" in host.check_output("ufw show added")
    proc = run_converge()
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert all(c["changed"] >= 1 for c in recap(proc.stdout).values())
    assert "9999" not in host.check_output("ufw show added")


def test_timezone_is_set(host):
    assert host.check_output("timedatectl show -p Timezone --value") == "Europe/Berlin"
    assert host.check_output("date +%Z") in {"CET", "CEST"}


def test_journald_runs_with_the_size_limit(host):
    assert host.service("systemd-journald").is_running
    messages = host.check_output("journalctl -u systemd-journald -o cat --no-pager").splitlines()
    latest = [m for m in messages if m.startswith("System Journal (")][-1]
    assert "max 64M" in latest, latest


def test_unattended_upgrades_are_on_for_security_updates(host):
    periodic = host.check_output("apt-config dump APT::Periodic")
    assert 'APT::Periodic::Update-Package-Lists "1";' in periodic
    assert 'APT::Periodic::Unattended-Upgrade "1";' in periodic
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        assert host.service(timer).is_enabled
        assert host.service(timer).is_running
    dry_run = host.run("unattended-upgrade --dry-run --debug")
    assert dry_run.rc == 0, dry_run.stderr
    allowed = next(line for line in (dry_run.stdout + dry_run.stderr).splitlines()
                   if line.startswith("Allowed origins are:"))
    assert "label=Debian-Security" in allowed
    assert "label=Debian," not in allowed  # scope "security": no point-release updates


def test_sysctl_values_are_live_and_persistent(host):
    expected = {"net.ipv4.tcp_syncookies": "1", "net.ipv4.conf.all.send_redirects": "0",
                "net.ipv4.conf.all.accept_redirects": "0", "net.ipv4.icmp_echo_ignore_broadcasts": "1"}
    persisted = host.file("/etc/sysctl.d/60-homelab.conf").content_string
    for key, value in expected.items():
        assert host.check_output(f"sysctl -n {key}") == value
        assert f"{key}={value}" in persisted


def test_container_guard_leaves_host_kernel_parameters_alone(host):
    keys = [line.split("=", 1)[0].strip()
            for line in host.file("/etc/sysctl.d/60-homelab.conf").content_string.splitlines()
            if "=" in line and not line.lstrip().startswith("#")]
    assert keys and all(key.startswith("net.") for key in keys), keys
    assert host.check_output("sysctl -n kernel.osrelease") != "molecule-guard-probe"


def test_swapfile_is_refused_inside_a_container(host):
    # --check: even if the refusal broke, nothing would be written or turned on.
    proc = run_converge("--check", "-e", '{"base_swapfile_enabled": true}')
    assert proc.returncode != 0
    assert "swap belongs to the host kernel" in proc.stdout, proc.stdout[-4000:]
    assert not host.file("/swapfile").exists


def test_check_mode_on_the_converged_host_changes_nothing():
    assert_check_mode_clean()
