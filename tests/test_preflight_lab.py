"""The preflight on a real lab host (Debian 13, the platform image, never converged).

One host, three runs: the catalog's preflight passes with its report (Debian is a warning, not
Ubuntu 25.10; this project's own Caddy on 443 is recognised by its homelab.service label); then an
old hand-run stack is planted (a compose project's Caddy publishing port 80, Docker's containerd.io
installed while roles/docker installs docker.io, a service on 5432; A records given as if looked
up, since tests send no DNS query): the preflight fails naming each with its way out, and site.yml
stops at its preflight before any task of base, the host unchanged and without the converged marker.
-e preflight_enabled=false, or the marker, skips it in site.yml.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from homelab.testing.lab import in_host, lab, lab_inventory, require_lab_images

from labenv import ROOT, ansible_env

HOST = "homelab-preflight-test"
pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("preflight-lab")]
RECAP = re.compile(rf"^{HOST}\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=(\d+)", re.M)

# The old stack, as the user runs it by hand: a compose project in his project tree.
OLD_STACK = """
docker run -d --name old-caddy -p 80:80 -p 8443:443 \
  --label com.docker.compose.project=contain \
  --label com.docker.compose.project.working_dir=/home/evin/contain \
  --label com.docker.compose.service=caddy {image} >/dev/null
mkdir -p /tmp/fake/DEBIAN
printf '%s\\n' 'Package: containerd.io' 'Version: 1.7.0-0fake' 'Architecture: all' \\
  'Maintainer: t <root@localhost>' 'Description: stands in for Docker containerd.io' > /tmp/fake/DEBIAN/control
dpkg-deb --build /tmp/fake /tmp/containerd.io.deb >/dev/null
dpkg -i /tmp/containerd.io.deb >/dev/null
systemd-run --quiet --unit=old-postgres python3 -m http.server 5432
for i in $(seq 50); do ss -Hltn 'sport = :5432' | grep -q . && break; sleep 0.1; done
"""


def _run(inventory: Path, playbook: str, *extra: str) -> tuple[int, str]:
    proc = subprocess.run(
        ["ansible-playbook", "-i", str(inventory), str(ROOT / "playbooks" / playbook), *extra],
        cwd=ROOT,
        env=ansible_env(HOMELAB_VAR_DIR=str(ROOT / "var")),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def _recap(out: str) -> tuple[int, int]:
    m = RECAP.search(out)
    assert m, out[-3000:]
    return int(m[1]), int(m[2])


def _flat(out: str) -> str:
    """The report as one line: ansible's YAML output wraps it and doubles single quotes."""
    return re.sub(r"\s+", " ", out).replace("''", "'")


def _report(out: str) -> str:
    """The report's lines (the assert's msg), for the test's output."""
    return out[out.rfind("msg:") : out.find("PLAY RECAP")].strip()


def _host_state() -> str:
    """What a converge would touch first: /etc, /opt, the package database, the running containers."""
    return in_host(
        HOST,
        "find /etc /opt -xdev -printf '%p %s %T@\\n' | sort; md5sum /var/lib/dpkg/status; "
        "docker ps --format '{{.Names}} {{.Image}} {{.Ports}}' | sort",
    )


def test_preflight_reports_then_blocks_the_first_converge(tmp_path: Path) -> None:
    require_lab_images()
    inventory = lab_inventory(tmp_path / "inventory", [HOST])
    lab("rm", HOST)
    lab("run", HOST)
    try:
        # This project's own Caddy (left by an earlier run that stopped halfway): it may hold 443.
        caddy = os.environ["LAB_CADDY_IMAGE"]
        in_host(HOST, f"docker run -d --name caddy --label homelab.service=caddy -p 443:443 {caddy}")

        rc, out = _run(inventory, "preflight.yml")
        assert rc == 0, out[-4000:]
        assert _recap(out) == (0, 0)
        flat = _flat(out)
        assert "roles/docker installs from distro (docker.io)" in flat, out[-3000:]
        assert "ports: 80 free, 443 caddy (this project's), 5432 free" in flat, out[-3000:]
        assert re.search(
            r"WARNING os: Debian 13\S* \(trixie\) is supported, but this project is written for Ubuntu 25.10", flat
        )
        assert "BLOCKER" not in flat and "0 blocker(s), 1 warning(s); ready to converge" in flat, out[-3000:]
        print(_report(out))

        in_host(HOST, OLD_STACK.format(image=caddy))
        # *.lab.test resolves nowhere and tests send no DNS query: the A records come as if looked up.
        answers = {"a.example.org": [], "b.example.org": ["198.51.100.9"], "c.example.org": ["198.51.100.7"]}
        dns = {"preflight_dns_enabled": True, "preflight_dns_domains": [], "__preflight_dns": answers}
        dns["preflight_public_address"] = "198.51.100.7"
        rc, out = _run(inventory, "preflight.yml", "--check", "-e", json.dumps(dns))  # as site_check runs it
        assert rc != 0 and _recap(out) == (0, 1), out[-4000:]
        flat = _flat(out)
        assert "ports: 80 old-caddy, 443 caddy (this project's), 5432 python3" in flat, out[-3000:]
        for expected in (
            "BLOCKER port 80/tcp is held by container old-caddy (image homelab-lab/caddy",
            "compose project contain), which this project does not manage -- way out: stop it before the first"
            " converge (cd /home/evin/contain && docker compose -p contain stop)",
            "BLOCKER docker packages: containerd.io (Docker's own packages) are installed, but roles/docker installs"
            " the distribution's docker.io",
            "way out: remove them (apt-get remove containerd.io;",
            "BLOCKER port 5432/tcp is held by process python3 (pid ",
            ", unit old-postgres.service) -- way out: stop it: systemctl disable --now old-postgres.service",
            "WARNING compose project contain runs old-caddy, which this project does not manage",
            "WARNING dns: a.example.org has no A record -- way out: add an A record a.example.org -> 198.51.100.7",
            "WARNING dns: b.example.org points at 198.51.100.9, not at this host (198.51.100.7)",
            "3 blocker(s), 4 warning(s); nothing was changed",
        ):
            assert expected in flat, f"{expected!r} not in the report:\n{out[-4000:]}"
        assert "443/tcp" not in flat, "443 was reported: this project's caddy holds it, old-caddy only publishes 8443"
        assert "c.example.org" not in flat, "a domain pointing at the host was reported"
        print(_report(out))

        before = _host_state()
        rc, out = _run(inventory, "site.yml")
        assert rc != 0 and _recap(out) == (0, 1), out[-4000:]
        assert "TASK [preflight : Report, and stop on a blocker]" in out
        assert "BLOCKER port 80/tcp is held by container old-caddy" in _flat(out)
        assert "TASK [base" not in out and "PLAY [Base system]" not in out, "site.yml went past its preflight"
        assert _host_state() == before, "the host changed although the preflight found blockers"
        assert in_host(HOST, "test -e /etc/homelab/converged && echo yes || echo no").strip() == "no"

        # Skipped when asked, and on a host converged before (its marker): only the always-tagged
        # plays run here (--tags of no role), so nothing converges and the blockers stop nothing.
        for extra, host_setup in ((("-e", "preflight_enabled=false"), "true"), ((), "touch /etc/homelab/converged")):
            in_host(HOST, f"mkdir -p /etc/homelab && {host_setup}")
            rc, out = _run(inventory, "site.yml", "--tags", "preflight-skip-proof", *extra)
            assert rc == 0 and _recap(out) == (0, 0), out[-4000:]
            assert "TASK [preflight :" not in out and "BLOCKER" not in out, extra
    finally:
        lab("rm", HOST)
