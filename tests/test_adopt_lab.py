"""Adopting a homelab run by hand, on a real lab host (Debian 13, the platform image, never converged).

The old stack is lab/old-stack (the seed's shape): one docker-compose.unified.yml and a Caddyfile in
/home/evin/contain, one PostgreSQL (homelab-postgres) holding n8n's and the ticket bot's databases
with rows, bind-mounted data under ./volumes, a Caddy holding certificates from its internal CA, and
a code-server no role adopts. The lab's local images are tagged with the upstream names the compose
file uses (no registry is reachable). Then, on one host:

- the preflight fails naming the old Caddy on 80/443 (and reports the old containers);
- adopt's plan (the default, plan-only) says what is copied where, which databases go into which
  new database and owner, which old containers stop, and that code-server stays; nothing changes;
- adopt with discord_bot's health check made to fail: Caddy is cut over (same certificate), n8n is
  adopted, discord_bot's deploy fails and the old discord-bot container keeps serving bot.lab.test
  through the new Caddy;
- adopt again (the cause gone) resumes with discord_bot: every row, the files and the certificate
  are there, both services answer through the new Caddy from their new containers, the old ones
  are stopped, code-server still runs;
- the rollback starts the old stack again exactly as it was, answering through the old Caddy.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from homelab.testing.lab import host_ip, in_host, lab, lab_inventory, require_lab_images

from labenv import ROOT, ansible_env

HOST = "homelab-adopt-test"
pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("adopt-lab")]
PROJECT = "/home/evin/contain"
COMPOSE = f"{PROJECT}/docker-compose.unified.yml"
OLD_CA = f"{PROJECT}/volumes/caddy/data/caddy/pki/authorities/local/root.crt"
RECAP = re.compile(rf"^{HOST}\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=(\d+)", re.M)
TABLES = {"n8n": ("workflow_entity", "execution_entity"), "ticketbot": ("tickets", "settings")}
# The old stack's own files: compose file, Caddyfile, .env and the services' data (adopt only reads them).
OLD_FILES = (
    f"cd {PROJECT} && find .env *.yml Caddyfile volumes/n8n volumes/discord-bot volumes/code-server -type f"
    " -exec md5sum {} + | sort"
)
NEW_DB = {"n8n": "n8n", "ticketbot": "discord_bot"}


def _run(inventory: Path, playbook: str, *extra: str) -> tuple[int, str]:
    proc = subprocess.run(
        ["ansible-playbook", "-i", str(inventory), str(ROOT / "playbooks" / playbook), *extra],
        cwd=ROOT,
        env=ansible_env(HOMELAB_VAR_DIR=str(ROOT / "var"), ANSIBLE_STRATEGY="mitogen_linear"),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def _flat(out: str) -> str:
    return re.sub(r"\s+", " ", out).replace("''", "'")


def _build_old_stack() -> None:
    """lab/old-stack in the host's project tree, started by docker compose, with rows and files."""
    env = os.environ
    tags = {
        env["LAB_CADDY_IMAGE"]: ["caddy:2"],
        env["LAB_POSTGRES_IMAGE"]: ["postgres:16-alpine"],
        env["LAB_STANDIN_IMAGE"]: ["n8nio/n8n:latest", "discord-bot:latest", "codercom/code-server:latest"],
    }
    in_host(HOST, f"mkdir -p {PROJECT}")
    for name in ("docker-compose.unified.yml", "Caddyfile", "seed.sql"):
        subprocess.run(["docker", "cp", str(ROOT / "lab" / "old-stack" / name), f"{HOST}:{PROJECT}/{name}"], check=True)
    pw = {k: secrets.token_hex(12) for k in ("POSTGRES_PASSWORD", "N8N_DB_PASSWORD", "TICKETBOT_DB_PASSWORD")}
    script = [f"docker tag {src} {t}" for src, ts in tags.items() for t in ts]
    script += [
        f"cd {PROJECT}",
        "printf '%s\\n' " + " ".join(f"'{k}={v}'" for k, v in pw.items()) + " > .env",
        "mkdir -p volumes/n8n/nodes volumes/code-server volumes/discord-bot",
        'echo \'{"encryptionKey": "old-key"}\' > volumes/n8n/config',
        "head -c 300000 /dev/urandom > volumes/n8n/nodes/blob.bin",
        "chown -R 1000:1000 volumes/n8n",
        "echo 'bind-addr: 0.0.0.0:8080' > volumes/code-server/config.yaml",
        "echo transcript > volumes/discord-bot/ticket-1.txt",
        "docker compose -f docker-compose.unified.yml up -d homelab-postgres >/dev/null 2>&1",
        "for i in $(seq 60); do docker exec homelab-postgres pg_isready -h 127.0.0.1 -q && break; sleep 0.5; done",
        "docker exec homelab-postgres psql -q -U postgres -v ON_ERROR_STOP=1"
        f" -c \"CREATE ROLE n8n LOGIN PASSWORD '{pw['N8N_DB_PASSWORD']}'\" -c 'CREATE DATABASE n8n OWNER n8n'"
        f" -c \"CREATE ROLE ticketbot LOGIN PASSWORD '{pw['TICKETBOT_DB_PASSWORD']}'\""
        " -c 'CREATE DATABASE ticketbot OWNER ticketbot'",
        "docker exec -i homelab-postgres psql -q -U postgres -v ON_ERROR_STOP=1 < seed.sql",
        "docker compose -f docker-compose.unified.yml up -d >/dev/null 2>&1",
    ]
    in_host(HOST, "\n".join(script))


def _https(domain: str, ca: str, tries: int = 60) -> tuple[int, dict[str, str], str]:
    """GET / of a domain on the host's port 443, verified against the old Caddy's root CA: the status,
    the stand-in's JSON and the SHA-256 of the certificate served."""
    ctx = ssl.create_default_context(cadata=ca)
    last: Exception | None = None
    for _ in range(tries):
        try:
            with socket.create_connection((host_ip(HOST), 443), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname=domain) as tls:
                    cert = hashlib.sha256(tls.getpeercert(binary_form=True) or b"").hexdigest()
                    tls.sendall(f"GET / HTTP/1.1\r\nHost: {domain}\r\nConnection: close\r\n\r\n".encode())
                    data = b""
                    while chunk := tls.recv(65536):
                        data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            if status == 200:
                return status, json.loads(body), cert
            last = AssertionError(f"{domain}: HTTP {status} {body[:200]!r}")
        except (OSError, ValueError) as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{domain} does not answer through Caddy on 443: {last}")


def _rows(container: str, db: str) -> dict[str, int]:
    out = {}
    for table in TABLES["n8n" if db == "n8n" else "ticketbot"]:
        out[table] = int(
            in_host(HOST, f"docker exec {container} psql -U postgres -d {db} -tAc 'select count(*) from {table}'")
        )
    return out


def _running() -> set[str]:
    return set(in_host(HOST, "docker ps --format '{{.Names}}'").split())


def test_adopt_moves_the_old_stack_and_the_rollback_brings_it_back(tmp_path: Path) -> None:
    require_lab_images()
    t0 = time.perf_counter()
    inventory = lab_inventory(tmp_path / "inventory", [HOST])
    settings = {
        "adopt_compose_file": COMPOSE,
        "n8n_enabled": True,
        "discord_bot_enabled": True,
        "discord_bot_source": "image",
        "discord_bot_image": os.environ["LAB_STANDIN_IMAGE"],
    }
    (tmp_path / "adopt.json").write_text(json.dumps(settings))
    extra = ("-e", f"@{tmp_path / 'adopt.json'}")
    lab("rm", HOST)
    lab("run", HOST)
    try:
        _build_old_stack()
        ca = in_host(HOST, f"for i in $(seq 60); do test -s {OLD_CA} && break; sleep 0.5; done; cat {OLD_CA}")
        old = {d: _https(d, ca) for d in ("n8n.lab.test", "bot.lab.test")}
        assert old["n8n.lab.test"][1]["service"] == "old-n8n" and old["n8n.lab.test"][1]["database"] == "ok n8n n8n"
        assert old["bot.lab.test"][1]["database"] == "ok ticketbot ticketbot"
        before = {db: _rows("homelab-postgres", db) for db in TABLES}
        old_files = in_host(HOST, f"cd {PROJECT}/volumes/n8n && find . -type f -exec md5sum {{}} + | sort")
        old_tree = in_host(HOST, OLD_FILES)
        print(f"\nold stack built ({time.perf_counter() - t0:.0f} s); rows before: {before}")

        # The preflight names what a first converge would fight with.
        rc, out = _run(inventory, "preflight.yml")
        flat = _flat(out)
        assert rc != 0, out[-3000:]
        assert "BLOCKER port 80/tcp is held by container caddy (image caddy:2" in flat, out[-3000:]
        assert "BLOCKER port 443/tcp is held by container caddy" in flat, out[-3000:]
        assert "cd /home/evin/contain && docker compose -p contain stop" in flat, out[-3000:]
        assert re.search(r"WARNING compose project contain runs [a-z0-9, -]*homelab-postgres", flat), out[-3000:]
        print(out[out.rfind("msg:") : out.find("PLAY RECAP")].strip())

        # The plan (plan-only is the default): nothing changes.
        rc, out = _run(inventory, "adopt.yml", *extra)
        assert rc == 0 and RECAP.search(out) and RECAP.search(out)[1] == "0", out[-4000:]
        flat = _flat(out)
        for expected in (
            "adopt plan for compose project contain (/home/evin/contain/docker-compose.unified.yml)",
            "the old container caddy stops and roles/caddy takes ports 80/443",
            "n8n -> n8n (by image n8nio/n8n:latest); dump database n8n from homelab-postgres into n8n (owner n8n);"
            " copy /home/evin/contain/volumes/n8n -> /opt/homelab/n8n/data; deploy roles/n8n health-gated;"
            " then stop the old container n8n",
            "discord-bot -> discord_bot (by name discord-bot); dump database ticketbot from homelab-postgres into"
            " discord_bot (owner discord_bot); copy /home/evin/contain/volumes/discord-bot"
            " -> /opt/homelab/discord_bot/data",
            "code-server (code-server): not adopted, keeps running as it is",
            "postgres: the old container homelab-postgres stops once every service is adopted",
            "plan only (adopt_plan_only): nothing was changed",
        ):
            assert expected in flat, f"{expected!r} not in the plan:\n{out[-4000:]}"
        print(out[out.find("TASK [adopt : Print the plan]") : out.find("PLAY RECAP")].strip())
        assert _running() == {"caddy", "homelab-postgres", "n8n", "discord-bot", "code-server"}

        # A failure halfway: discord_bot's new release never gets healthy.
        rc, out = _run(
            inventory,
            "adopt.yml",
            *extra,
            "-e",
            "adopt_plan_only=false",
            "-e",
            '{"discord_bot_healthcheck_test": ["CMD", "false"], "discord_bot_health_timeout": 8}',
        )
        assert rc != 0, out[-4000:]
        assert "Adopting discord-bot as discord_bot failed at" in _flat(out), out[-4000:]
        bot = _https("bot.lab.test", ca)
        assert bot[1]["service"] == "old-discord-bot" and bot[1]["database"] == "ok ticketbot ticketbot", bot
        n8n = _https("n8n.lab.test", ca)
        assert n8n[1]["service"] == "n8n" and n8n[1]["database"] == "ok n8n n8n", n8n
        assert n8n[2] == old["n8n.lab.test"][2], "the new Caddy serves another certificate than the old one"
        running = _running()
        assert {"discord-bot", "homelab-postgres", "code-server", "caddy", "n8n", "postgres"} <= running, running
        assert "n8n-pre-adopt" not in running and "caddy-pre-adopt" not in running, running
        print(
            f"after the injected failure: bot.lab.test answered by {bot[1]['service']},"
            f" n8n.lab.test by {n8n[1]['service']}"
        )

        # Again, the cause gone: it resumes with discord_bot.
        rc, out = _run(inventory, "adopt.yml", *extra, "-e", "adopt_plan_only=false")
        assert rc == 0, out[-5000:]
        assert "already adopted (markers in /var/lib/homelab/adopt): caddy, n8n" in _flat(out), out[-4000:]
        after = {db: _rows("postgres", NEW_DB[db]) for db in TABLES}
        print(f"rows before: {before}\nrows after:  {after} (new databases {NEW_DB})")
        assert after == before
        owners = in_host(
            HOST,
            "docker exec postgres psql -U postgres -d discord_bot -tAc"
            " 'select distinct tableowner from pg_tables where schemaname = $$public$$'",
        )
        assert owners.split() == ["discord_bot"], owners
        new_files = in_host(HOST, "cd /opt/homelab/n8n/data && find . -type f -exec md5sum {} + | sort")
        assert new_files == old_files and "blob.bin" in new_files
        assert in_host(HOST, "cat /opt/homelab/discord_bot/data/ticket-1.txt").strip() == "transcript"
        for domain, service, db in (
            ("n8n.lab.test", "n8n", "ok n8n n8n"),
            ("bot.lab.test", "discord-bot", "ok discord_bot discord_bot"),
        ):
            status, body, cert = _https(domain, ca)
            assert (body["service"], body["database"]) == (service, db), body
            assert cert == old[domain][2], f"{domain}: a new certificate was issued"
        running = _running()
        assert running == {"caddy", "postgres", "n8n", "discord-bot", "code-server"}, running
        labels = in_host(
            HOST, "docker inspect -f '{{.Name}} {{index .Config.Labels \"homelab.service\"}}' caddy n8n discord-bot"
        )
        assert labels.split() == ["/caddy", "caddy", "/n8n", "n8n", "/discord-bot", "discord_bot"], labels
        assert in_host(HOST, OLD_FILES) == old_tree, "adopt changed a file of the old stack"

        # Roll back: the old stack as it was.
        rc, out = _run(inventory, "adopt-rollback.yml", *extra)
        assert rc == 0, out[-4000:]
        print(out[out.find("TASK [adopt : Say what runs again]") : out.find("PLAY RECAP")].strip())
        assert _running() == {"caddy", "homelab-postgres", "n8n", "discord-bot", "code-server"}
        labels = in_host(
            HOST, "docker inspect -f '{{index .Config.Labels \"com.docker.compose.project\"}}' caddy n8n discord-bot"
        )
        assert labels.split() == ["contain"] * 3, labels
        for domain, service in (("n8n.lab.test", "old-n8n"), ("bot.lab.test", "old-discord-bot")):
            status, body, cert = _https(domain, ca)
            assert body["service"] == service and body["database"].startswith("ok"), body
            assert cert == old[domain][2]
        assert {db: _rows("homelab-postgres", db) for db in TABLES} == before
        assert in_host(HOST, OLD_FILES) == old_tree
        print(f"adopt lab test: {time.perf_counter() - t0:.0f} s")
    finally:
        lab("rm", HOST)
