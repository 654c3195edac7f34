"""Jarvis's recovery time: a service container is stopped (fault injection) -> healthy again.

Starts one lab host with its Docker engine and Caddy (tls internal), then the real app
(create_app: job engine, scheduler with its DB lease, Jarvis) on it, with a `jarvis` schedule
firing a diagnosis every --interval seconds and the shipped rules (container.down ->
restart_service, auto; its 15-minute throttle lifted, since every round faults the same
container). Each round stops the caddy container at a random moment of the schedule's cycle and
times until caddy runs and answers HTTPS again (status.lab.test through the lab host's address,
verified against Caddy's internal CA). The target is under 2 check intervals plus the playbook's
own run time (restart_service's job, started -> finished): each round prints both and their ratio.
Needs var/lab-images.env sourced (make bench-jarvis does it). Removes the lab host unless --keep.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

from homelab.settings import Settings
from homelab.testing.lab import host_ip, in_host, lab, start_lab_with_caddy

from _common import ROOT, machine

HOST = "homelab-jarvis-bench"


def answers(ip: str, ca: Path) -> bool:
    """Caddy serves status.lab.test over verified TLS."""
    ctx = ssl.create_default_context(cafile=str(ca))
    try:
        with (
            socket.create_connection((ip, 443), timeout=2) as s,
            ctx.wrap_socket(s, server_hostname="status.lab.test") as t,
        ):
            t.sendall(b"GET / HTTP/1.1\r\nHost: status.lab.test\r\nConnection: close\r\n\r\n")
            return t.recv(64).startswith(b"HTTP/1.1 200")
    except (OSError, ssl.SSLError):
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--interval", type=int, default=15, help="seconds between diagnoses (the jarvis schedule)")
    ap.add_argument("-n", "--rounds", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the lab host")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="homelab-jarvis-bench-"))
    print(f"machine: {machine()}; interval {args.interval}s, {args.rounds} rounds", flush=True)
    t0 = time.perf_counter()
    inventory = start_lab_with_caddy(HOST, tmp / "inventory")
    print(f"lab host with Docker and Caddy ready in {time.perf_counter() - t0:.0f}s", flush=True)
    app = None
    try:
        schedules = tmp / "schedules.yml"
        schedules.write_text(
            "---\nschedules:\n"
            "  - {id: jarvis, playbook: diagnose, interval: %ds, limit: '', enabled: true, action: jarvis}\n"
            % args.interval
        )
        (tmp / "var").mkdir()
        # The shipped rules, with restart-container's 15-minute throttle lifted: every round stops the
        # same container within minutes, and the throttle would (rightly) hold the second fix back.
        import yaml

        rules = yaml.safe_load((ROOT / "jarvis" / "rules.yml").read_text())
        for rule in rules["rules"]:
            if rule["id"] == "restart-container":
                rule["throttle"] = "0s"
        rules["checks"]["from_inventory"] = (
            False  # no DNS/TLS/HTTP checks of service domains: only the lab host is touched
        )
        (tmp / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
        os.environ["HOMELAB_JARVIS_RULES"] = str(tmp / "rules.yml")
        os.environ.setdefault("HOMELAB_ADMIN_PASSWORD", "bench-password-123")
        os.environ["HOMELAB_NOTIFY_WEBHOOK_URL"] = ""
        from homelab.web import create_app

        settings = Settings.from_env(
            {
                "HOMELAB_VAR_DIR": str(tmp / "var"),
                "HOMELAB_INVENTORY": str(inventory),
                "HOMELAB_SCHEDULES": str(schedules),
                "HOMELAB_SCHEDULER_LEASE_SECONDS": "3",
            }
        )
        app = create_app(settings)
        jarvis = app.extensions["homelab"].jarvis
        engine = app.extensions["homelab"].engine
        ca = tmp / "caddy-root.crt"
        ca.write_text(in_host(HOST, "cat /opt/homelab/caddy/data/caddy/pki/authorities/local/root.crt"))
        ip = host_ip(HOST)
        assert answers(ip, ca), "caddy does not answer before the first fault"
        rows = []
        for r in range(args.rounds):
            time.sleep(random.uniform(0, args.interval))  # a random phase of the schedule's cycle
            before = {a.id for a in jarvis.actions()}
            fault = time.perf_counter()
            in_host(HOST, "docker stop caddy >/dev/null")
            while answers(ip, ca) or "running" in in_host(HOST, "docker inspect -f '{{.State.Status}}' caddy"):
                time.sleep(0.05)  # until the stop has taken effect
            while not answers(ip, ca):
                if time.perf_counter() - fault > 10 * args.interval + 300:
                    raise SystemExit("caddy did not come back")
                time.sleep(0.2)
            recovered = time.perf_counter() - fault
            deadline = time.perf_counter() + 120
            while True:  # the action's record (its verification may still run)
                new = [a for a in jarvis.actions() if a.id not in before and a.job_id]
                if new:
                    break
                if time.perf_counter() > deadline:
                    raise SystemExit("caddy came back without a Jarvis action: something else restarted it")
                time.sleep(0.2)
            job = engine.wait(new[0].job_id, 600)
            playbook = (job.finished_at - job.started_at).total_seconds()
            budget = 2 * args.interval + playbook
            rows.append((recovered, playbook, budget, recovered / budget))
            print(
                f"round {r + 1}: healthy again after {recovered:.1f}s; restart_service ran {playbook:.1f}s "
                f"(job #{job.id}); target {budget:.1f}s (2 x {args.interval}s + playbook); "
                f"ratio {recovered / budget:.2f}",
                flush=True,
            )
            jarvis.wait_idle(600)
        med = statistics.median(r[0] for r in rows)
        worst = max(r[3] for r in rows)
        print(
            f"\nrecovery time median {med:.1f}s, worst ratio {worst:.2f} of (2 intervals + playbook run time); "
            f"target < 1.00: {'met' if worst < 1 else 'NOT met'}"
        )
        return 0 if worst < 1 else 1
    finally:
        if app is not None:
            from homelab.web import stop_app

            stop_app(app, timeout=120)
        if not args.keep:
            lab("rm", HOST)


if __name__ == "__main__":
    sys.exit(main())
