"""How long playbooks/site.yml takes on one lab host reached over SSH, as a real server is.

One fresh lab host (the platform-ready image) is given what a provisioned server has: sshd, an
admin account with a key and password-less sudo. Ansible reaches it over SSH with pipelining and
ControlPersist (ansible.cfg). In one run, on that host:

  platform  (base, docker, postgres, caddy, backup: the lab inventory's defaults)
            first converge, no-op re-converge, --check --diff
  site      (every service enabled, as molecule/site/converge.yml)
            first converge (on the converged platform), no-op re-converge, --check --diff

Each run goes through plain `ansible-playbook` (ansible's linear strategy), and the no-op and check
runs also through the opt-in Mitogen strategy, over SSH and then over the docker connection, so the
ratios compare runs of the same playbook on the same host minutes apart. Prints seconds, the recap
(ok/changed/skipped), tasks run and seconds per task. Needs var/lab-images.env (make bench-converge).
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

from homelab.testing import ROOT
from homelab.testing.lab import host_ip, in_host, lab, require_lab_images

from _common import machine

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


def provision() -> None:
    """A fresh host with what a provisioned server has: sshd, labadmin with the lab key, sudo."""
    require_lab_images()
    lab("rm", HOST)
    lab("run", HOST)
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


def run(inv: Path, extra_vars: Path, strategy: str, *args: str) -> dict:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_STRATEGY": strategy,
        "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["ansible-playbook", "-i", str(inv), str(ROOT / "playbooks" / "site.yml"), "-e", f"@{extra_vars}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    seconds = time.perf_counter() - t0
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
    args = parser.parse_args()
    work = ROOT / "var" / "bench" / "converge"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rows: list[tuple[str, str, str, str, dict, dict | None]] = []
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
                plain = run(ssh, extra, "linear", *flags)
                rows.append((name, label, "ssh", "linear", plain, plain))
                for connection, inv in (("ssh", ssh), ("docker", docker)):
                    if connection == "docker":
                        rows.append((name, label, "docker", "linear", run(inv, extra, "linear", *flags), plain))
                    rows.append((name, label, connection, "mitogen", run(inv, extra, "mitogen_linear", *flags), plain))
    finally:
        if not args.keep:
            lab("rm", HOST)
    print(f"site.yml on one lab host ({machine()}); ratio: seconds / plain ansible-playbook over ssh, same run")
    print(
        f"{'what':<9} {'run':<18} {'conn':<7} {'strategy':<8} {'seconds':>8} {'ok':>4} {'changed':>7} "
        f"{'skipped':>7} {'s/task':>7} {'ratio':>6}"
    )
    for name, label, connection, strategy, r, plain in rows:
        ratio = f"{r['seconds'] / plain['seconds']:.2f}" if plain else "-"
        per_task = r["seconds"] / max(1, r["ok"])
        print(
            f"{name:<9} {label:<18} {connection:<7} {strategy:<8} {r['seconds']:8.1f} {r['ok']:4d} {r['changed']:7d} "
            f"{r['skipped']:7d} {per_task:7.3f} {ratio:>6}"
        )
    bad = [(n, label, c, s) for n, label, c, s, r, _ in rows if label != "first converge" and r["changed"]]
    if bad:
        print(f"changed != 0 on a converged host: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
