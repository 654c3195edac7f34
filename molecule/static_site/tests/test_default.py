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

from checks import assert_check_mode_clean, recap, run_converge
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


def test_check_mode_reports_no_changes_on_a_converged_host():
    assert_check_mode_clean()
