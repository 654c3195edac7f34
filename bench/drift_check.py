"""Drift check of 1 vs 4 converged lab hosts in one run, and the full-site check time of one host.

Starts N lab hosts (default 4, Debian 13 systemd containers), converges them all with
lab/prepare.yml and playbooks/site.yml in one ansible-playbook run, then through the job engine
and the drift service times a site.yml drift check (check + diff, results analyzed and stored)
limited to one host, and one of all N hosts, alternating, -n times each. Prints the medians and
their ratio (target: N-host time <= 1.6 x the 1-host time: forks at work) and the 1-host time
(target < 60 s). Needs var/lab-images.env sourced (make bench does it). Removes the hosts unless --keep.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from homelab.drift import DriftService
from homelab.jobs import JobEngine
from homelab.settings import Settings
from homelab.store import DriftRun
from homelab.testing.lab import ansible, lab, lab_inventory

from _common import machine

PREFIX = "homelab-drift-bench"


def timed_check(drift: DriftService, limit: str) -> float:
    t0 = time.perf_counter()
    job, _ = drift.check("site", limit, "bench", "api")
    done = drift.engine.wait(job.id, 1800)
    while True:
        with drift.store.session() as s:
            if s.get(DriftRun, job.id).analyzed_at:
                break
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    states = {r.host: r.state for r in drift.results(job.id)}
    if done.status != "successful" or set(states.values()) != {"clean"}:
        raise SystemExit(f"check {job.id} of {limit or 'all'}: {done.status} {states} {done.reason}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("-n", type=int, default=2, help="checks of each size (default 2)")
    ap.add_argument("--keep", action="store_true", help="leave the lab hosts running")
    args = ap.parse_args()
    if not os.environ.get("LAB_IMAGE"):
        raise SystemExit("source var/lab-images.env first (make bench does)")
    hosts = [f"{PREFIX}-{i + 1}" for i in range(args.hosts)]
    tmp = Path(tempfile.mkdtemp(prefix="homelab-bench-drift-"))
    inventory = lab_inventory(tmp / "inventory", hosts)
    try:
        for h in hosts:
            lab("run", h)
        t_prep = ansible(inventory, "lab/prepare.yml")
        t_conv = ansible(inventory, "playbooks/site.yml")
        print(f"converged {len(hosts)} lab hosts: prepare {t_prep:.0f} s, site.yml {t_conv:.0f} s", flush=True)
        (tmp / "var").mkdir()
        settings = Settings.from_env(
            {
                "HOMELAB_VAR_DIR": str(tmp / "var"),
                "HOMELAB_INVENTORY": str(inventory),
                "HOMELAB_MAX_PARALLEL_JOBS": "1",
            },
            scheduler=False,
        )
        engine = JobEngine.for_settings(settings)
        store, catalog, inv = engine.store, engine.catalog, engine.inventory
        engine.start()
        drift = DriftService(settings, store, catalog, inv, engine)
        one, many = [], []
        for _ in range(args.n):
            one.append(timed_check(drift, hosts[0]))
            many.append(timed_check(drift, ""))
            print(f"  1 host {one[-1]:.1f} s, {len(hosts)} hosts {many[-1]:.1f} s", flush=True)
        engine.stop()
        m1, mn = statistics.median(one), statistics.median(many)
        print(f"({machine()})")
        print(f"(drift a) full-site drift check of one converged host: {m1:.1f} s (target < 60 s)")
        print(f"(drift b) {len(hosts)} hosts in one run: {mn:.1f} s = {mn / m1:.2f} x the 1-host time (target <= 1.6)")
        return 0 if m1 < 60 and mn / m1 <= 1.6 else 1
    finally:
        if not args.keep:
            for h in hosts:
                lab("rm", h)


if __name__ == "__main__":
    sys.exit(main())
