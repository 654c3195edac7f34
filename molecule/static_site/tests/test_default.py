"""What a visitor of the blue-green static site sees: the domain serves the live release through
Caddy over HTTPS; deploying a new release and rolling it back switch what Caddy serves without a
single failed request; a release that fails its health check is never switched to (and a rollback
to it is refused); the previous slot keeps its release for a rollback."""

from __future__ import annotations

import json
import os
import re
import shlex
import time
from contextlib import contextmanager
from pathlib import Path

from checks import DELIVER, STAGES, assert_check_mode_clean, recap, run_converge, stages_run
from services import CADDY_DATA, ROOT_CA, curl

DOMAIN = "static.lab.test"
URL = f"https://{DOMAIN}/"
ROOT = "/opt/homelab/static_site"
FILES = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "files"
ROLLBACK = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "playbooks" / "ops" / "rollback_static_site.yml"
PROBE = "static-site-probe"
PROBE_DIR = "/root/static-site-probe"
MIN_REQUESTS = 200


def served(host) -> str:
    res = curl(host, URL, "--fail-with-body")
    assert res.rc == 0, f"{URL}: {res.stdout[-300:]} {res.stderr[-300:]}"
    return res.stdout.strip()


def active(host) -> str:
    return host.file(f"{ROOT}/active").content_string.strip()


def release_of(host, slot: str) -> str:
    marker = host.file(f"{ROOT}/slots/{slot}/.homelab-release")
    return marker.content_string.strip() if marker.exists else ""


def routed_slot(host) -> str:
    site = host.file("/opt/homelab/caddy/config/sites/static_site.caddy").content_string
    found = re.findall(r"reverse_proxy static-site-(blue|green):80", site)
    assert len(found) == 1, site
    return found[0]


def direct(host, slot: str) -> str:
    """The slot's own answer at /, from a container on the homelab network (not through Caddy)."""
    image = os.environ["LAB_CADDY_IMAGE"]
    return host.check_output(f"docker run --rm --network homelab {image} curl -sS --max-time 5 http://static-site-{slot}/")


@contextmanager
def request_loop(host):
    """Requests through Caddy, one new TLS connection each, back to back, from a throwaway container
    on the lab host while the body of the with-block runs; yields a list filled with one
    (body, status) per request when the block ends (at least MIN_REQUESTS of them)."""
    image = os.environ["LAB_CADDY_IMAGE"]
    host.run(f"docker rm -f {PROBE}; rm -rf {PROBE_DIR}; mkdir -p {PROBE_DIR}")
    loop = (
        "n=0; while [ ! -e /probe/stop ] || [ $n -lt %d ]; do "
        "out=$(curl -sS --max-time 5 --cacert %s --resolve %s:443:127.0.0.1 -w ' %%{http_code}' %s 2>&1); "
        "echo \"$out\" | tr '\\n' ' '; echo; n=$((n+1)); done > /probe/log.tmp; mv /probe/log.tmp /probe/log"
    ) % (MIN_REQUESTS, ROOT_CA, DOMAIN, URL)
    host.check_output(
        f"docker run -d --name {PROBE} --network host -v {CADDY_DATA}:/data:ro -v {PROBE_DIR}:/probe "
        f"{image} bash -c {shlex.quote(loop)}"
    )
    results: list[tuple[str, str]] = []
    try:
        time.sleep(1)  # requests are flowing before the switch starts
        yield results
    finally:
        host.run(f"touch {PROBE_DIR}/stop")
        for _ in range(120):
            if host.file(f"{PROBE_DIR}/log").exists:
                break
            time.sleep(1)
        host.run(f"docker rm -f {PROBE}")
        for line in host.file(f"{PROBE_DIR}/log").content_string.splitlines():
            body, _, status = line.strip().rpartition(" ")
            results.append((body.strip(), status))


def assert_no_failed_request(results, before: str, after: str) -> None:
    assert len(results) >= MIN_REQUESTS, f"only {len(results)} requests were made"
    failed = [r for r in results if r[1] != "200" or r[0] not in (before, after)]
    assert not failed, f"{len(failed)} of {len(results)} requests failed during the switch: {failed[:5]}"
    bodies = [body for body, _ in results]
    # It served the old release, then switched once to the new one and stayed there.
    assert bodies[0] == before and bodies[-1] == after, (bodies[0], bodies[-1])
    switches = sum(1 for a, b in zip(bodies, bodies[1:]) if a != b)
    assert switches == 1, f"the release flapped {switches} times"


def converge_changes_nothing() -> None:
    proc = run_converge()
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert all(c["changed"] == 0 for c in recap(proc.stdout).values()), proc.stdout[-3000:]


def test_the_domain_serves_release_a_through_caddy(host):
    assert served(host) == "release-A"
    assert active(host) == routed_slot(host) == "blue"
    assert release_of(host, "green") == ""
    # The release id is the hash of the site's files, served next to them as the marker.
    assert re.fullmatch(r"[0-9a-f]{12}", release_of(host, "blue"))


def test_deploying_release_b_switches_slots_without_a_failed_request(host):
    release_a = release_of(host, "blue")
    with request_loop(host) as results:
        proc = run_converge("-e", json.dumps({"static_site_src": str(FILES / "release-b")}))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert_no_failed_request(results, "release-A", "release-B")
    assert served(host) == "release-B"
    assert active(host) == routed_slot(host) == "green"
    # The previous slot still holds release A, and still serves it, ready for a rollback.
    assert release_of(host, "blue") == release_a
    assert direct(host, "blue").strip() == "release-A"
    assert release_of(host, "green") not in ("", release_a)
    assert host.file(f"{ROOT}/slots/green/css/site.css").exists


def test_rollback_serves_release_a_again_without_a_failed_request(host):
    with request_loop(host) as results:
        proc = run_converge(playbook=str(ROLLBACK))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert_no_failed_request(results, "release-B", "release-A")
    assert served(host) == "release-A"
    assert active(host) == routed_slot(host) == "blue"
    assert direct(host, "green").strip() == "release-B"
    # The inventory's release (A) is live again: converging changes nothing.
    converge_changes_nothing()


def test_a_release_failing_its_health_check_is_not_switched_to(host):
    broken = json.dumps({"static_site_src": str(FILES / "release-broken"), "static_site_health_retries": 3})
    proc = run_converge("-e", broken)
    assert proc.returncode != 0, "a release without an index page was switched to"
    assert "FAILED its health check" in proc.stdout and "Caddy was NOT switched" in proc.stdout, proc.stdout[-3000:]
    assert served(host) == "release-A"
    assert active(host) == routed_slot(host) == "blue"
    # The failed release sits in the idle slot, where nobody sees it.
    assert release_of(host, "green") not in ("", release_of(host, "blue"))
    assert not host.file(f"{ROOT}/slots/green/index.html").exists
    converge_changes_nothing()


def test_rollback_to_a_slot_failing_its_health_check_is_refused(host):
    proc = run_converge("-e", json.dumps({"static_site_health_retries": 2}), playbook=str(ROLLBACK))
    assert proc.returncode != 0, "a rollback to a broken slot was accepted"
    assert "Refusing to roll back" in proc.stdout and "keeps serving slot blue" in proc.stdout, proc.stdout[-3000:]
    assert served(host) == "release-A"
    assert active(host) == routed_slot(host) == "blue"


def test_slot_containers_have_limits_and_a_healthcheck(host):
    for slot in ("blue", "green"):
        info = json.loads(host.check_output(f"docker inspect static-site-{slot}"))[0]
        assert info["HostConfig"]["Memory"] == 128 * 1024**2
        assert info["State"]["Health"]["Status"] == "healthy"
        assert info["Config"]["Labels"]["homelab.service"] == "static_site"
        mount = next(m for m in info["Mounts"] if m["Destination"] == "/srv")
        assert (mount["Source"], mount["RW"]) == (f"{ROOT}/slots", False)


RECORD = "/var/lib/homelab/releases/static_site.json"
REPO = "/srv/git/static_site.git"
WORKTREE = "/srv/lab-site"


def head(host) -> str:
    return host.check_output(f"git -C {WORKTREE} rev-parse HEAD").strip()


def commit(host, message: str, script: str) -> str:
    """Change the lab site's working tree with a shell script, commit it, push it to main."""
    cmd = (
        f"set -e; cd {WORKTREE}; {script}; git add -A; git commit -q -m {shlex.quote(message)}; "
        "git push -q origin main"
    )
    host.run_expect([0], f"bash -c {shlex.quote(cmd)}")
    return head(host)


def deliver(**extra):
    """The catalog's `deliver` playbook on the lab host, as the job engine runs it, for the site built
    from the lab repository (the converge serves a controller directory, so the run names the
    repository, and the health path the lab site's releases keep their health file at)."""
    params = {
        "service": "static_site",
        "static_site_enabled": True,
        "static_site_src": "",
        "static_site_repo": REPO,
        "static_site_health_path": "/health",
        "static_site_test_command": "grep -q site- index.html",
        "static_site_test_image": os.environ["LAB_CADDY_IMAGE"],
        **extra,
    }
    return run_converge("-e", json.dumps(params), playbook=str(DELIVER))


def record(host) -> dict:
    return json.loads(host.file(RECORD).content_string)


def test_a_new_commit_goes_live_through_the_pipeline(host):
    served_slot = active(host)
    sha = commit(host, "lab site v2", "echo site-v2 > index.html")
    proc = deliver(commit=sha)
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert stages_run(proc.stdout) == list(STAGES), proc.stdout[-3000:]
    assert served(host) == "site-v2"
    # Into the idle slot, then Caddy switched to it; the slot that served keeps its release.
    new_slot = "green" if served_slot == "blue" else "blue"
    assert active(host) == routed_slot(host) == new_slot
    assert release_of(host, new_slot) == sha
    assert direct(host, served_slot).strip() == "release-A"
    rec = record(host)
    assert rec["service"] == "static_site" and rec["commit"] == sha
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rec["deployed_at"])
    assert (rec["last"]["commit"], rec["last"]["outcome"], rec["last"]["stage"]) == (sha, "live", "Verify")
    assert not host.run("docker ps -a --format '{{.Names}}' | grep -x static-site-test").stdout


def test_a_commit_failing_the_slot_health_check_is_never_switched_to(host):
    """The new release has no health file (404): the idle slot's direct check fails at Deploy, Caddy
    is never switched, and the release that served still does."""
    live_slot, live_sha = active(host), record(host)["commit"]
    sha = commit(host, "lab site v3: no health file", "echo site-v3 > index.html; rm health")
    proc = deliver(static_site_health_retries=2)
    assert proc.returncode != 0
    assert stages_run(proc.stdout) == ["Validate", "Test", "Build", "Deploy", "Rollback"], proc.stdout[-3000:]
    assert f"static_site: {sha[:12]} failed at Deploy; nothing live was changed" in proc.stdout, proc.stdout[-3000:]
    assert "FAILED its health check, so Caddy was NOT switched" in proc.stdout, proc.stdout[-3000:]
    assert served(host) == "site-v2"
    assert active(host) == routed_slot(host) == live_slot
    rec = record(host)
    assert rec["commit"] == live_sha and (rec["last"]["commit"], rec["last"]["stage"]) == (sha, "Deploy")
    commit(host, "lab site v3 reverted", "git revert --no-edit -n HEAD")


def test_a_commit_failing_verify_is_rolled_back_and_the_previous_release_serves(host):
    """The new release moved its health file into a directory: the slot's own check follows the
    redirect to /health/ and passes, a visitor's GET /health through Caddy gets a 308. Verify
    fails after the switch, and Caddy goes back to the slot that served."""
    live_slot, live_sha = active(host), record(host)["commit"]
    sha = commit(host, "lab site v3: health moves into a directory",
                 "echo site-v3 > index.html; mkdir h; mv health h/index.html; mv h health")
    proc = deliver(static_site_verify_retries=2)
    assert proc.returncode != 0
    assert stages_run(proc.stdout) == [*STAGES, "Rollback"], proc.stdout[-3000:]
    failed = f"static_site: {sha[:12]} failed at Verify; the previous release serves again"
    assert failed in proc.stdout, proc.stdout[-3000:]
    assert "did not answer through Caddy" in proc.stdout and "answered 308" in proc.stdout, proc.stdout[-3000:]
    assert served(host) == "site-v2"
    assert active(host) == routed_slot(host) == live_slot
    rec = record(host)
    assert rec["commit"] == live_sha
    assert (rec["last"]["commit"], rec["last"]["outcome"], rec["last"]["stage"]) == (sha, "rolled_back", "Verify")
    # The fix on main (so the repository is deliverable again), then the inventory's release A is
    # converged back, for the check-mode test below.
    commit(host, "lab site v4: the health file is back", "git revert --no-edit -n HEAD; echo site-v4 > index.html")
    proc = run_converge()
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert served(host) == "release-A"


def test_check_mode_reports_no_changes_on_a_converged_host():
    assert_check_mode_clean()
