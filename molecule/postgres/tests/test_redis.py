"""What a user of the redis role sees on a converged lab host (the postgres scenario converges both
data platform services).

Clients reach Redis as redis:6379 on the homelab network only; each authenticates as its ACL user.
The checks run redis-cli inside the redis container, passwords through docker exec's environment.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest
from checks import recap, run_converge

ADMIN_PASSWORD = (
    (Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "var" / "lab-secrets" / "redis_admin").read_text().strip()
)
BASE = "/opt/homelab/redis"
# A registry service declaring Redis, for the runs that add one: stream_bot of the lab inventory.
STREAM_BOT = {
    "stream_bot_enabled": True,
    "stream_bot_redis": True,
    "stream_bot_redis_password": "lab-stream-redis-7c1f0e9a",
}


def cli(host, *command: str, user: str = "", password: str = ""):
    auth = f"REDISCLI_AUTH={shlex.quote(password)} " if password else ""
    flags = ["--no-auth-warning"] + (["--user", user] if user else [])
    return host.run(f"{auth}docker exec -e REDISCLI_AUTH redis redis-cli {shlex.join(flags + list(command))}")


def admin(host, *command: str):
    return cli(host, *command, user="admin", password=ADMIN_PASSWORD)


def test_redis_is_healthy_on_the_homelab_network_and_not_published(host):
    assert host.check_output("docker inspect -f '{{.State.Health.Status}}' redis") == "healthy"
    assert host.check_output("docker port redis") == ""
    networks = json.loads(host.check_output("docker inspect -f '{{json .NetworkSettings.Networks}}' redis"))
    assert set(networks) == {"homelab"}


def test_without_a_password_a_client_may_only_ping(host):
    assert cli(host, "ping").stdout.strip() == "PONG"
    for command in (("get", "x"), ("set", "x", "1"), ("config", "get", "*")):
        assert "NOPERM" in cli(host, *command).stdout, command


def test_the_admin_may_do_everything_and_the_acl_file_holds_no_password(host):
    assert admin(host, "set", "lab:probe", "1").stdout.strip() == "OK"
    assert admin(host, "get", "lab:probe").stdout.strip() == "1"
    assert admin(host, "acl", "whoami").stdout.strip() == "admin"
    acl = host.file(f"{BASE}/conf/users.acl")
    assert (acl.user, acl.gid, acl.mode) == ("root", 999, 0o640)
    assert ADMIN_PASSWORD not in acl.content_string and "#" in acl.content_string
    # redis-cli reports a failed AUTH on stderr and goes on as the default user, which may only PING
    wrong = cli(host, "get", "lab:probe", user="admin", password="not-the-password")
    assert "WRONGPASS" in wrong.stderr and "NOPERM" in wrong.stdout


def test_data_survives_a_restart_in_the_append_only_file_on_the_host(host):
    assert admin(host, "set", "lab:durable", "kept").stdout.strip() == "OK"
    host.run_expect([0], "docker restart redis")
    host.run_expect([0], "timeout 60 sh -c 'until docker exec redis redis-cli ping | grep -q PONG; do sleep 1; done'")
    assert admin(host, "get", "lab:durable").stdout.strip() == "kept"
    data = host.file(f"{BASE}/data")
    assert data.is_directory and data.uid == 999 and data.mode == 0o750
    assert host.run(f"test -e {BASE}/data/appendonlydir -o -e {BASE}/data/appendonly.aof").rc == 0


def test_a_service_that_declares_redis_gets_its_user_loaded_without_a_restart(host):
    started = host.check_output("docker inspect -f '{{.State.StartedAt}}' redis")
    password = STREAM_BOT["stream_bot_redis_password"]
    assert "WRONGPASS" in cli(host, "ping", user="stream_bot", password=password).stderr
    try:
        proc = run_converge("-e", json.dumps(STREAM_BOT))
        assert proc.returncode == 0, proc.stdout[-4000:]
        assert "Load the new ACL into the running Redis" in proc.stdout and password not in proc.stdout
        assert cli(host, "set", "stream_bot:k", "v", user="stream_bot", password=password).stdout.strip() == "OK"
        assert "NOPERM" in cli(host, "get", "lab:probe", user="stream_bot", password=password).stdout
        assert "NOPERM" in cli(host, "keys", "*", user="stream_bot", password=password).stdout
        assert host.check_output("docker inspect -f '{{.State.StartedAt}}' redis") == started
    finally:
        back = run_converge()
    assert back.returncode == 0, back.stdout[-4000:]
    assert "WRONGPASS" in cli(host, "ping", user="stream_bot", password=password).stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"redis_admin_password": "short"}, "redis_admin_password (at least 16 characters) is not set"),
        ({"redis_maxmemory": "lots"}, "redis_maxmemory must be a size such as 256mb"),
        (
            {**STREAM_BOT, "stream_bot_redis_password": "short"},
            "their password (at least 16 characters) is not set: stream_bot_redis_password",
        ),
        ({"redis_maxmemory_policy": "forget-everything"}, "redis_maxmemory_policy"),
    ],
    ids=["short-admin-password", "bad-maxmemory", "service-without-password", "bad-policy"],
)
def test_bad_redis_settings_are_refused_before_any_change(override, message):
    proc = run_converge("-e", json.dumps(override))
    assert proc.returncode != 0
    assert message in proc.stdout, proc.stdout[-3000:]
    assert all(c["changed"] == 0 for c in recap(proc.stdout).values())
