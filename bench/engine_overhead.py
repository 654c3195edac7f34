"""(a) Wall time of a playbook run through the job engine / the same run by the ansible-playbook CLI.

The same playbook on the same localhost inventory with the repository's ansible.cfg, run in
turn by the ansible-playbook CLI, by bare ansible_runner.run() (no handlers: ansible-runner's
own cost) and through the engine; N times each; ratios of medians are printed (target <= 1.10).
The engine time is submit() until the job's final status is in the store (events, task results
and recap persisted).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import ansible_runner

from homelab.jobs import JobEngine

from _common import HERE, bench_settings, machine


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=5, help="runs of each (default 5)")
    ap.add_argument("--playbook", default="typical", choices=["typical", "events"])
    args = ap.parse_args()
    settings = bench_settings()
    engine = JobEngine.for_settings(settings)
    engine.start()
    work = tempfile.mkdtemp(prefix="homelab-bench-files-")
    params = {"bench_dir": work} if args.playbook == "typical" else {"event_items": 200}
    playbook = HERE / "playbooks" / f"{args.playbook}.yml"
    env = {**os.environ, "ANSIBLE_CONFIG": str(settings.ansible_cfg), "ANSIBLE_FORCE_COLOR": "1"}
    extra = " ".join(f"{k}={v}" for k, v in params.items())
    cli_times, engine_times, runner_times = [], [], []
    try:
        for i in range(args.n + 1):  # the first pair warms caches and is not counted
            t0 = time.perf_counter()
            proc = subprocess.run(
                ["ansible-playbook", "-i", str(settings.inventory), "-e", extra, str(playbook)],
                env=env,
                cwd=str(settings.root),
                capture_output=True,
                text=True,
            )
            cli = time.perf_counter() - t0
            if proc.returncode != 0:
                print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
                return 1
            t0 = time.perf_counter()
            pdd = tempfile.mkdtemp(prefix="homelab-bench-runner-")
            r = ansible_runner.run(
                private_data_dir=pdd,
                project_dir=str(settings.root),
                playbook=str(playbook),
                inventory=str(settings.inventory),
                extravars=params,
                quiet=True,
                envvars={"ANSIBLE_CONFIG": str(settings.ansible_cfg), "ANSIBLE_FORCE_COLOR": "1"},
                fact_cache_type="ansible.cfg",
            )
            bare = time.perf_counter() - t0
            if r.status != "successful":
                print(f"ansible_runner.run failed: {r.status}", file=sys.stderr)
                return 1
            t0 = time.perf_counter()
            job = engine.submit(engine.catalog.prepare(args.playbook, params, "", inventory=engine.inventory), "bench")
            job = engine.wait(job.id, 600)
            eng = time.perf_counter() - t0
            if job.status != "successful":
                print(f"engine job failed: {job.reason}", file=sys.stderr)
                return 1
            if i:
                cli_times.append(cli)
                engine_times.append(eng)
                runner_times.append(bare)
            print(
                f"  run {i}{' (warm-up)' if not i else ''}: cli {cli:.2f}s  "
                f"ansible_runner.run {bare:.2f}s  engine {eng:.2f}s",
                file=sys.stderr,
            )
    finally:
        engine.stop()
    c, e, b = statistics.median(cli_times), statistics.median(engine_times), statistics.median(runner_times)
    print(
        f"(a) engine/CLI wall time, playbook '{args.playbook}', median of {args.n}: engine {e:.2f}s / "
        f"ansible-playbook {c:.2f}s = {e / c:.3f} (target <= 1.10); "
        f"bare ansible_runner.run {b:.2f}s = {b / c:.3f} of the CLI, "
        f"engine/bare runner = {e / b:.3f} [{machine()}]"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
