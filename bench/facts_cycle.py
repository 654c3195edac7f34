"""What one facts cycle (homelab.facts, the dashboard's host and container facts) costs: wall time,
controller CPU and host CPU, for 1 and 2 lab hosts in one run, projected to 10 hosts (issue #12).

The cycle runs as the product runs it: the app (create_app, the repository's catalog, Jarvis off)
on an inventory of lab hosts, and the scheduler's built-in schedule "builtin:facts" fired by hand
(Scheduler.fire: the facts service submits the read-only `facts` catalog playbook, ops/facts.yml,
to the job engine, which runs it through ansible-runner and the supervisor; the scheduler waits for
the job; the engine's on_finished hook stores the samples). Each lab host (lab/lab.sh, the docker
connection of inventory/lab) gets `--containers` stand-in containers labelled as registry services,
so files/facts.py inspects as many service containers as inventory/production's one host runs.

What is measured, per cycle (the median of `--cycles`, after one warm-up cycle):
  wall          seconds from firing the schedule to the job's end, as the scheduler waits
  ansible CPU   user+sys seconds of the job's processes (supervisor, ansible-playbook, its workers,
                the docker CLIs of the connection): getrusage(RUSAGE_CHILDREN) of this process,
                which reaps them; nothing else is spawned while the cycles run
  engine CPU    user+sys seconds of this process (the engine's threads: pexpect reading, events to
                the store, the facts ingest; the scheduler's wait): getrusage(RUSAGE_SELF)
  host CPU      the lab hosts' cgroup CPU (cpuacct.usage on cgroup v1, cpu.stat usage_usec on v2),
                read from this machine's side, summed over the hosts, minus their idle rate measured
                over `--idle` seconds before (systemd, dockerd and containerd ticking); the service
                containers of a host's engine are cgroups of their own and are not counted (the
                cycle only asks the host's dockerd about them, which is counted); this machine's
                dockerd, which relays the docker connection's exec (sshd on the host, over SSH), is not
Ratios: CPU per wall second, and the cost at one cycle per HOMELAB_FACTS_INTERVAL (300 s) as a share
of one core. The projection to 10 hosts is linear: cost(1) + 9 x (cost(2) - cost(1)), the marginal
cost of the second host (with --hosts 1 2 3, the mean marginal cost of hosts 2 and 3). It assumes
forks >= hosts (ansible.cfg: forks = 10, so ten hosts still run as one play in parallel and the
controller's per-host work adds up), and that the controller is not saturated: on this 2-core
machine the lab hosts share the cores with the controller, so the projected wall is an upper bound
where the hosts would run on machines of their own.

    make bench-facts     (or: source var/lab-images.env; cd bench; python facts_cycle.py [--hosts 1 2] [--cycles 5])
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from homelab.testing import ROOT
from homelab.testing.lab import in_host, lab, lab_inventory, require_lab_images

from _common import PASSWORD, machine

PREFIX = "homelab-bench-facts"
INTERVAL = 300  # HOMELAB_FACTS_INTERVAL's default: one cycle per 5 minutes
PROJECT_TO = 10


def host_names(n: int) -> list[str]:
    return [PREFIX if i == 0 else f"{PREFIX}{i + 1}" for i in range(n)]


def cpu_counter(host: str) -> Callable[[], float]:
    """A function returning the host container's cgroup CPU seconds so far, read on this machine's side."""
    cid = subprocess.run(
        ["docker", "inspect", "-f", "{{.Id}}", host], check=True, capture_output=True, text=True
    ).stdout.strip()
    v1 = [Path(f"/sys/fs/cgroup/{c}/docker/{cid}/cpuacct.usage") for c in ("cpuacct", "cpu,cpuacct")]
    for path in v1:
        if path.exists():
            return lambda p=path: int(p.read_text()) / 1e9
    v2 = [
        Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat"),
        Path(f"/sys/fs/cgroup/docker/{cid}/cpu.stat"),
    ]
    for path in v2:
        if path.exists():
            return lambda p=path: _usage_usec(p.read_text()) / 1e6
    raise SystemExit(f"no cgroup CPU counter found for {host} ({cid[:12]}); tried {[str(p) for p in v1 + v2]}")


def _usage_usec(text: str) -> int:
    return next(int(line.split()[1]) for line in text.splitlines() if line.startswith("usage_usec "))


def provision(hosts: list[str], containers: int, services: list[str]) -> None:
    """Fresh lab hosts, each running `containers` stand-ins labelled as registry services."""
    image = os.environ["LAB_STANDIN_IMAGE"]
    for host in hosts:
        lab("rm", host)
        lab("run", host)
        script = "\n".join(
            f"docker run -d --name bench-{svc} --label homelab.service={svc} --network none {image} >/dev/null"
            for svc in services[:containers]
        )
        in_host(host, script)


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Setup:
    """The app on an inventory of these hosts, the hosts' CPU counters, and what its cycles measured."""

    def __init__(self, work: Path, hosts: list[str]) -> None:
        from homelab.settings import Settings
        from homelab.web import create_app

        d = work / f"{len(hosts)}-hosts"
        (d / "var").mkdir(parents=True)
        (d / "schedules.yml").write_text("schedules: []\n")
        settings = Settings.from_env(
            {
                "HOMELAB_VAR_DIR": str(d / "var"),
                "HOMELAB_INVENTORY": str(lab_inventory(d / "inventory", hosts)),
                "HOMELAB_CATALOG": str(ROOT / "playbooks" / "catalog.yml"),
                "HOMELAB_SCHEDULES": str(d / "schedules.yml"),
                "HOMELAB_SCHEDULER": "0",  # the loop stays off: the bench fires the built-in schedule itself
                "HOMELAB_STATUS_INTERVAL": "0",
            }
        )
        self.hosts = hosts
        self.counters = [cpu_counter(h) for h in hosts]
        self.app = create_app(settings)
        self.h = self.app.extensions["homelab"]
        assert "builtin:facts" in self.h.scheduler.builtin, "the facts cycle is not registered"
        self.rows: list[dict[str, float]] = []
        self.idle_rate = 0.0

    def host_cpu(self) -> float:
        return sum(c() for c in self.counters)

    def cycle(self) -> float:
        """One cycle as the scheduler runs it (fire: submit, then wait for the job); its wall seconds."""
        w0 = time.perf_counter()
        job_id = self.h.scheduler.fire("builtin:facts")
        wall = time.perf_counter() - w0
        job = self.h.engine.get(job_id)
        assert job.status == "successful", f"facts job {job_id}: {job.status} {job.reason}"
        return wall

    def measured_cycle(self) -> None:
        c0, s0, h0 = children_cpu(), self_cpu(), self.host_cpu()
        wall = self.cycle()
        self.rows.append(
            {
                "wall": wall,
                "ansible": children_cpu() - c0,
                "engine": self_cpu() - s0,
                "host": max(0.0, self.host_cpu() - h0 - self.idle_rate * wall),
            }
        )

    def check(self, containers: int) -> None:
        """The cycles stored what the product shows: a sample per host, without errors, and its containers."""
        seen = {r["host"]: r for r in self.h.facts.hosts()}
        assert sorted(seen) == sorted(self.hosts), f"facts stored for {sorted(seen)}, not {self.hosts}"
        bad = {k: r["error"] for k, r in seen.items() if r["error"]}
        assert not bad, f"facts errors: {bad}"
        boxes = len(self.h.facts.containers())
        assert boxes == containers * len(self.hosts), f"{boxes} container samples, not {containers} per host"

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            k: statistics.median(r[k] for r in self.rows) for k in ("wall", "ansible", "engine", "host")
        }
        spread = [r["ansible"] + r["engine"] for r in self.rows]
        walls = [r["wall"] for r in self.rows]
        return {
            **out,
            "idle_rate": self.idle_rate,
            "hosts": len(self.hosts),
            "ctl_min": min(spread),
            "wall_min": min(walls),
            "wall_max": max(walls),
            "ctl_max": max(spread),
        }

    def stop(self) -> None:
        from homelab.web import stop_app

        stop_app(self.app)


def measure(
    work: Path, counts: list[int], names: list[str], cycles: int, idle: float, containers: int
) -> list[dict[str, Any]]:
    """An app per host count; a warm-up cycle each, their hosts' idle CPU, then the measured cycles
    interleaved (1, 2, 1, 2, ...) so a change of the machine's load falls on every count alike."""
    setups: list[Setup] = []
    try:
        for n in counts:
            setups.append(Setup(work, names[:n]))
        for s in setups:
            s.cycle()  # warm-up: imports, the store's first writes, the fact cache
        time.sleep(1)
        starts = [(s.host_cpu(), time.perf_counter()) for s in setups]
        time.sleep(idle)
        for s, (h0, w0) in zip(setups, starts):
            s.idle_rate = (s.host_cpu() - h0) / (time.perf_counter() - w0)
        for _ in range(cycles):
            for s in setups:
                s.measured_cycle()
        for s in setups:
            s.check(containers)
        return [s.result() for s in setups]
    finally:
        for s in setups:
            s.stop()


def line(label: str, r: dict[str, float], ratios: bool = True) -> str:
    controller = r["ansible"] + r["engine"]
    per_wall = f"{controller / r['wall']:8.2f} {r['host'] / r['wall']:9.2f}" if ratios else f"{'-':>8} {'-':>9}"
    return (
        f"{label:<22} {r['wall']:7.2f} {r['ansible']:8.2f} {r['engine']:7.2f} {r['host']:7.2f} {per_wall} "
        f"{controller / INTERVAL * 100:8.2f}% {r['host'] / INTERVAL * 100:8.2f}%"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, nargs="+", default=[1, 2], help="lab host counts to measure (1 first)")
    ap.add_argument("--cycles", type=int, default=6, help="measured cycles per host count")
    ap.add_argument("--containers", type=int, default=8, help="service containers per lab host")
    ap.add_argument("--idle", type=float, default=10.0, help="seconds of idle host CPU measured per host count")
    ap.add_argument("--keep", action="store_true", help="leave the lab hosts running")
    args = ap.parse_args()
    counts = sorted(set(args.hosts))
    if counts[0] != 1 or len(counts) < 2:
        ap.error("--hosts needs 1 and at least one more count (the marginal cost per host)")
    require_lab_images()
    os.environ.setdefault("HOMELAB_JARVIS", "0")
    os.environ.setdefault("HOMELAB_ADMIN_PASSWORD", PASSWORD)  # no generated password printed per app
    os.environ.setdefault("ANSIBLE_CONFIG", str(ROOT / "ansible.cfg"))  # its vars plugin defines homelab_registry
    names = host_names(max(counts))
    with tempfile.TemporaryDirectory(prefix="homelab-bench-facts-") as tmp:
        try:
            from homelab.inventory import Inventory

            services = sorted(Inventory(lab_inventory(Path(tmp) / "registry", names[:1])).registry.union())
            if len(services) < args.containers:
                raise SystemExit(f"the registry has {len(services)} services, fewer than --containers")
            provision(names, args.containers, services)
            results = measure(Path(tmp), counts, names, args.cycles, args.idle, args.containers)
        finally:
            if not args.keep:
                for host in names:
                    lab("rm", host)
    one = results[0]
    marginal = {
        k: statistics.mean((r[k] - one[k]) / (r["hosts"] - 1) for r in results[1:])
        for k in ("wall", "ansible", "engine", "host")
    }
    projected = {k: one[k] + (PROJECT_TO - 1) * marginal[k] for k in marginal}
    forks = next(
        (ln.split("=")[1].strip() for ln in (ROOT / "ansible.cfg").read_text().splitlines() if ln.startswith("forks")),
        "5",
    )
    print(
        f"facts cycle (the `facts` catalog playbook through the job engine, fired as builtin:facts) "
        f"on lab hosts over the docker connection, {args.containers} service containers per host; "
        f"{machine()}; median of {args.cycles} cycles; forks = {forks}"
    )
    print(
        f"{'hosts':<22} {'wall s':>7} {'ansible':>8} {'engine':>7} {'host':>7} "
        f"{'ctl/wall':>8} {'host/wall':>9} {'ctl/300s':>9} {'host/300s':>9}"
    )
    for r in results:
        print(line(f"{r['hosts']} measured", r))
    print(line("+1 host (marginal)", marginal, ratios=False))
    print(line(f"{PROJECT_TO} projected (linear)", projected))
    print(
        "CPU in seconds per cycle; ctl = ansible + engine (this machine); host = the lab hosts' cgroups, summed, "
        "net of idle (idle: " + ", ".join(f"{r['idle_rate'] * 100:.1f}%" for r in results) + " of a core); "
        "x/300s = the share of one core at one cycle per 5 minutes"
    )
    print(
        "spread (min..max of the cycles): "
        + ", ".join(
            f"{r['hosts']} host(s) wall {r['wall_min']:.2f}..{r['wall_max']:.2f} s, "
            f"ctl {r['ctl_min']:.2f}..{r['ctl_max']:.2f} s"
            for r in results
        )
    )
    print(
        f"per host: {results[-1]['host'] / results[-1]['hosts']:.2f} s of its own CPU per cycle "
        f"({results[-1]['host'] / results[-1]['hosts'] / INTERVAL * 100:.2f}% of a core at one cycle per 5 min); "
        f"projection assumes forks ({forks}) >= hosts and linear per-host cost"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
