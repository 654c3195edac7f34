"""How long playbooks/site.yml takes on one lab host reached over SSH, as a real server is.

One fresh lab host (the platform-ready image) is given what a provisioned server has: sshd, an
admin account with a key and password-less sudo. Ansible reaches it over SSH with pipelining and
ControlPersist (ansible.cfg). In one run, on that host:

  platform  (base, docker, postgres, caddy, backup: the lab inventory's defaults)
            first converge, no-op re-converge, --check --diff
  site      (every service enabled, as molecule/site/converge.yml)
            first converge (on the converged platform), no-op re-converge, --check --diff

Each run goes through plain `ansible-playbook` (ansible's linear strategy), and the no-op and check
runs also through the opt-in Mitogen strategy, over SSH and (--docker) over the docker connection,
so the ratios compare runs of the same playbook on the same host minutes apart. With --against REF
the no-op and check runs go first through the roles and playbooks of that commit (a git worktree of
it under var/bench/), on the same converged host, so a change is measured before and after in one
run. Prints seconds, the recap (ok/changed/skipped), tasks run and seconds per task. Needs
var/lab-images.env (make bench-converge; BENCH_ARGS="--against HEAD~1" passes options).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from homelab.testing.lab import host_ip, in_host, lab, require_lab_images

from _common import ROOT, machine

HOST = "homelab-bench-converge"
KEY = ROOT / "var" / "lab-secrets" / "admin_ed25519"
RECAP = re.compile(r"^\S+\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)", re.M)


def site_vars() -> dict:
    """The variables molecule/site/converge.yml enables every service with."""
    play = yaml.safe_load((ROOT / "molecule" / "site" / "converge.yml").read_text())[0]
    return dict(play["vars"])


def inventory(directory: Path, connection: str) -> Path:
    """The bench host over SSH (as labadmin, sudo) or over the docker connection (as root)."""
    path = directory / connection
    path.mkdir(parents=True, exist_ok=True)
    if not (path / "group_vars").exists():
        (path / "group_vars").symlink_to(ROOT / "inventory" / "lab" / "group_vars")
    host = {"lab_secrets_dir": str(ROOT / "var" / "lab-secrets")}
    if connection == "ssh":
        host.update(
            ansible_host=host_ip(HOST),
            ansible_user="labadmin",
            ansible_ssh_private_key_file=str(KEY),
            ansible_ssh_common_args=f"-o StrictHostKeyChecking=accept-new "
            f"-o UserKnownHostsFile={directory / 'known_hosts'}",
        )
    else:
        host.update(ansible_connection="docker", ansible_user="root")
    doc = {"all": {"children": {"homelab": {"hosts": {HOST: host}}}}}
    (path / "hosts.yml").write_text(yaml.safe_dump(doc))
    return path


# The images the whole site runs on besides caddy and postgres (molecule/site/molecule.yml's list).
SITE_IMAGES = ("LAB_STANDIN_IMAGE", "LAB_VNC_IMAGE", "LAB_DASHBOARD_IMAGE")


def provision() -> None:
    """A fresh host with what a provisioned server has: sshd, labadmin with the lab key, sudo, and
    the locally built images the services run (no registry is reachable), as lab/prepare.yml loads them."""
    require_lab_images()
    lab("rm", HOST)
    lab("run", HOST)
    for var in SITE_IMAGES:
        image = os.environ[var]
        subprocess.run(
            f"docker save {image} | docker exec -i {HOST} docker load -q", shell=True, check=True, timeout=600
        )
    pub = KEY.with_suffix(".pub").read_text().strip()
    in_host(
        HOST,
        f"""
        id labadmin >/dev/null 2>&1 || useradd -m -s /bin/bash labadmin
        install -d -m 700 -o labadmin -g labadmin /home/labadmin/.ssh
        echo '{pub}' > /home/labadmin/.ssh/authorized_keys
        chown labadmin:labadmin /home/labadmin/.ssh/authorized_keys; chmod 600 /home/labadmin/.ssh/authorized_keys
        echo 'labadmin ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/labadmin; chmod 440 /etc/sudoers.d/labadmin
        systemctl enable --now ssh >/dev/null 2>&1
    """,
    )


def checkout(ref: str, work: Path) -> Path:
    """A git worktree of ref (its roles, playbooks and plugins) for the --against runs."""
    path = work / "against"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], capture_output=True)
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), ref], check=True, capture_output=True
    )
    return path


def run(inv: Path, extra_vars: Path, strategy: str, *args: str, tree: Path = ROOT) -> dict:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(tree / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_STRATEGY": strategy,
        "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["ansible-playbook", "-i", str(inv), str(tree / "playbooks" / "site.yml"), "-e", f"@{extra_vars}", *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    seconds = time.perf_counter() - t0
    # Each run's output (profile_tasks' per-task times included), to attribute a change's gain.
    logs = ROOT / "var" / "bench" / "converge" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    name = "-".join([inv.name, extra_vars.stem, strategy, *(a.strip("-") for a in args), tree.name])
    (logs / f"{len(list(logs.iterdir())):02d}-{name}.log").write_text(proc.stdout)
    m = RECAP.search(proc.stdout)
    if proc.returncode != 0 or not m:
        raise SystemExit(
            f"site.yml {' '.join(args)} failed ({strategy}):\n{proc.stdout[-5000:]}\n{proc.stderr[-2000:]}"
        )
    ok, changed, _unreachable, _failed, skipped = (int(g) for g in m.groups())
    return {"seconds": seconds, "ok": ok, "changed": changed, "skipped": skipped}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the lab host running")
    parser.add_argument("--platform-only", action="store_true", help="skip the whole-site runs")
    parser.add_argument("--against", metavar="REF", help="also run the no-op and check runs with REF's roles")
    parser.add_argument("--docker", action="store_true", help="also over the docker connection")
    args = parser.parse_args()
    work = ROOT / "var" / "bench" / "converge"
    if (work / "against").exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(work / "against")], check=False)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rows: list[tuple[str, str, str, str, dict, dict | None]] = []
    against = checkout(args.against, work) if args.against else None
    try:
        provision()
        ssh, docker = inventory(work, "ssh"), inventory(work, "docker")
        platform_vars, all_vars = work / "platform.yml", work / "site.yml"
        platform_vars.write_text(yaml.safe_dump({}))
        all_vars.write_text(yaml.safe_dump(site_vars()))
        groups = [("platform", platform_vars)] + ([] if args.platform_only else [("site", all_vars)])
        for name, extra in groups:
            first = run(ssh, extra, "linear")
            rows.append((name, "first converge", "ssh", "linear", first, None))
            for label, flags in (("no-op re-converge", ()), ("--check --diff", ("--check", "--diff"))):
                before = run(ssh, extra, "linear", *flags, tree=against) if against else None
                plain = run(ssh, extra, "linear", *flags)
                if before:
                    rows.append((name, f"{label} @{args.against}", "ssh", "linear", before, before))
                rows.append((name, label, "ssh", "linear", plain, before or plain))
                for connection, inv in (("ssh", ssh), ("docker", docker))[: 2 if args.docker else 1]:
                    if connection == "docker":
                        rows.append((name, label, "docker", "linear", run(inv, extra, "linear", *flags), plain))
                    rows.append((name, label, connection, "mitogen", run(inv, extra, "mitogen_linear", *flags), plain))
    finally:
        if not args.keep:
            lab("rm", HOST)
        if against:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(against)], check=False)
    base = f"the same run at {args.against} (plain, over ssh)" if args.against else "plain ansible-playbook over ssh"
    print(f"site.yml on one lab host ({machine()}); ratio: seconds / {base}, same run")
    print(
        f"{'what':<9} {'run':<28} {'conn':<7} {'strategy':<8} {'seconds':>8} {'ok':>4} {'changed':>7} "
        f"{'skipped':>7} {'s/task':>7} {'ratio':>6}"
    )
    for name, label, connection, strategy, r, plain in rows:
        ratio = f"{r['seconds'] / plain['seconds']:.2f}" if plain else "-"
        per_task = r["seconds"] / max(1, r["ok"])
        print(
            f"{name:<9} {label:<28} {connection:<7} {strategy:<8} {r['seconds']:8.1f} {r['ok']:4d} {r['changed']:7d} "
            f"{r['skipped']:7d} {per_task:7.3f} {ratio:>6}"
        )
    bad = [(n, label, c, s) for n, label, c, s, r, _ in rows if label != "first converge" and r["changed"]]
    # In the ratios of the mitogen rows, "plain" is this commit's linear run: the strategy's own gain.
    if bad:
        print(f"changed != 0 on a converged host: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
