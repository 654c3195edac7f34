"""What git_sync does for a user: a push to a remote shows up in the checkout after the service
runs, and the status file (the contract with Jarvis) says so; runs never overlap; a failing remote
backs off exponentially; a diverged checkout is reported and left alone; the clear_git_locks
playbook removes stale lock files only, and nothing in check mode."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from checks import assert_check_mode_clean, run_converge

OPS = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "playbooks" / "ops"
STATUS = "/var/lib/homelab/git-sync/status.json"
SCRIPT = "/usr/bin/python3 /usr/local/lib/homelab/git-sync.py --config /etc/homelab/git-sync/config.json"
KEYS = {"path", "last_attempt", "last_success", "last_error", "consecutive_failures", "next_attempt_after", "head"}
CHECKOUT = {"app": "/srv/projects/app", "tools": "/srv/work/tools"}


def status(host) -> dict:
    return json.loads(host.file(STATUS).content_string)


def push(host, repo: str, text: str) -> str:
    """Commit text to the remote's main branch from the seed clone; returns the new commit."""
    seed = f"/srv/lab-seed/{repo}"
    host.check_output(
        f"cd {seed} && git pull -q --ff-only origin main 2>/dev/null; echo '{text}' > README && "
        f"git -c user.name=lab -c user.email=lab@lab.test commit -q -am '{text}' && git push -q origin main"
    )
    return host.check_output(f"git -C {seed} rev-parse HEAD")


def sync(host):
    return host.run("systemctl start git-sync.service")


def ts(raw: str) -> dt.datetime:
    return dt.datetime.fromisoformat(raw)


def test_the_timer_runs_the_sync_every_five_minutes(host):
    timer = host.service("git-sync.timer")
    assert timer.is_enabled and timer.is_running
    unit = host.file("/etc/systemd/system/git-sync.timer").content_string
    assert "OnUnitActiveSec=5min" in unit and "OnBootSec=" in unit and "Persistent=true" in unit
    # systemd has it scheduled (the next run is known).
    assert host.check_output("systemctl show git-sync.timer -p NextElapseUSecMonotonic --value").strip() not in ("", "infinity")


def test_a_push_to_the_remote_is_pulled_and_the_status_says_so(host):
    new = push(host, "app", "app v2")
    res = sync(host)
    assert res.rc == 0, res.stderr
    data = status(host)
    assert set(data) >= {"updated_at", "repos"} and set(data["repos"]) == {"app", "tools"}
    for name, repo in data["repos"].items():
        assert KEYS <= set(repo), repo
        assert repo["path"] == CHECKOUT[name]
        assert repo["last_error"] is None and repo["consecutive_failures"] == 0 and repo["next_attempt_after"] is None
        assert ts(repo["last_success"]) >= ts(repo["last_attempt"])
    assert data["repos"]["app"]["head"] == new
    assert host.check_output("git -C /srv/projects/app rev-parse HEAD") == new
    assert host.file("/srv/projects/app/README").content_string.strip() == "app v2"
    # tools was cloned to its own dest, on its branch.
    assert host.check_output("git -C /srv/work/tools symbolic-ref --short HEAD") == "main"


def test_an_overlapping_run_is_refused_by_the_lock(host):
    before = status(host)["repos"]["app"]["head"]
    host.check_output("systemd-run --collect --unit lab-hold-git-sync-lock flock /var/lib/homelab/git-sync/sync.lock sleep 120")
    try:
        host.check_output("for i in $(seq 50); do systemctl is-active -q lab-hold-git-sync-lock && break; sleep 0.1; done")
        new = push(host, "app", "app v3")
        direct = host.run(SCRIPT)
        assert direct.rc == 75 and "holds the lock" in direct.stderr, (direct.rc, direct.stderr)
        assert sync(host).rc == 0  # the unit treats "locked" as success ...
        assert status(host)["repos"]["app"]["head"] == before  # ... but did not pull
    finally:
        host.run("systemctl stop lab-hold-git-sync-lock")
    assert sync(host).rc == 0
    assert status(host)["repos"]["app"]["head"] == new


def test_a_failing_remote_backs_off_exponentially_and_recovers(host):
    host.check_output("mv /srv/lab-remotes/tools.git /srv/lab-remotes/tools.git.away")
    try:
        assert sync(host).rc != 0  # a failed repository fails the run: visible in systemctl --failed
        tools = status(host)["repos"]["tools"]
        assert tools["consecutive_failures"] == 1 and "fetch failed" in tools["last_error"], tools
        assert (ts(tools["next_attempt_after"]) - ts(tools["last_attempt"])).total_seconds() == 60
        assert tools["head"]  # the checkout is still there, at its last good commit
        app = status(host)["repos"]["app"]
        assert app["consecutive_failures"] == 0 and app["last_error"] is None  # one bad repo spares the others

        # Within the backoff the repository is skipped: nothing is attempted.
        sync(host)
        again = status(host)["repos"]["tools"]
        assert again["consecutive_failures"] == 1 and again["last_attempt"] == tools["last_attempt"]

        # Each further failure doubles the wait.
        host.run(SCRIPT + " --force")
        third = status(host)["repos"]["tools"]
        assert third["consecutive_failures"] == 2
        assert (ts(third["next_attempt_after"]) - ts(third["last_attempt"])).total_seconds() == 120
    finally:
        host.check_output("mv /srv/lab-remotes/tools.git.away /srv/lab-remotes/tools.git")
    res = host.run(SCRIPT + " --force")
    assert res.rc == 0, res.stderr
    tools = status(host)["repos"]["tools"]
    assert tools["consecutive_failures"] == 0 and tools["last_error"] is None and tools["next_attempt_after"] is None


def test_a_diverged_checkout_is_reported_and_never_reset(host):
    app = CHECKOUT["app"]
    host.check_output(
        f"cd {app} && echo local > LOCAL && git add LOCAL && "
        "git -c user.name=me -c user.email=me@lab.test commit -q -m 'local work'"
    )
    local = host.check_output(f"git -C {app} rev-parse HEAD")
    remote = push(host, "app", "app v4")
    assert sync(host).rc != 0
    entry = status(host)["repos"]["app"]
    assert "diverged" in entry["last_error"] and entry["consecutive_failures"] == 1, entry
    assert entry["head"] == local
    # Nothing was merged, rebased or reset: the local commit is HEAD, its file is there, the remote
    # commit is fetched but not in the branch.
    assert host.check_output(f"git -C {app} rev-parse HEAD") == local
    assert host.file(f"{app}/LOCAL").exists
    assert host.run(f"git -C {app} merge-base --is-ancestor {remote} HEAD").rc == 1
    # A person resolves it; the next run is clean again.
    host.check_output(f"git -C {app} reset -q --hard origin/main")
    assert host.run(SCRIPT + " --force").rc == 0
    assert status(host)["repos"]["app"]["head"] == remote


def _clear_locks(*extra: str):
    """Run the clear_git_locks ops playbook against the lab host; stdout with whitespace collapsed
    (ansible wraps long messages)."""
    proc = run_converge(*extra, playbook=str(OPS / "clear_git_locks.yml"))
    proc.stdout = " ".join(proc.stdout.split())
    return proc


def test_clear_git_locks_removes_only_stale_locks_and_nothing_in_check_mode(host):
    stale = ["/srv/projects/app/.git/index.lock", "/srv/projects/app/.git/refs/heads/main.lock"]
    fresh = "/srv/work/tools/.git/index.lock"
    for path in stale:
        host.check_output(f"touch -d '-30 minutes' {path}")
    host.check_output(f"touch {fresh}")
    try:
        check = _clear_locks("--check")
        assert check.returncode == 0, check.stdout[-3000:]
        assert "Would remove 2 stale lock file(s)" in check.stdout, check.stdout[-3000:]
        assert all(host.file(p).exists for p in stale + [fresh])

        real = _clear_locks()
        assert real.returncode == 0, real.stdout[-3000:]
        assert "Removed 2 stale lock file(s)" in real.stdout and stale[0] in real.stdout, real.stdout[-3000:]
        assert not any(host.file(p).exists for p in stale)
        assert host.file(fresh).exists and f"Kept {fresh}" in real.stdout

        # A lock older than the maximum age stays while a git process works on that repository.
        host.check_output(f"touch -d '-30 minutes' {fresh}")
        # A stand-in git process (sleep under the name git) working in the tools checkout.
        host.check_output("mkdir -p /usr/local/lib/lab-git && cp /usr/bin/sleep /usr/local/lib/lab-git/git && "
                          "systemd-run --collect --unit lab-busy-git -p WorkingDirectory=/srv/work/tools /usr/local/lib/lab-git/git 120")
        assert host.service("lab-busy-git").is_running
        busy = _clear_locks("-e", "max_age_minutes=5")
        assert busy.returncode == 0 and host.file(fresh).exists, busy.stdout[-3000:]
        assert "git is running on this repository" in busy.stdout
        host.check_output("systemctl stop lab-busy-git")
        idle = _clear_locks("-e", "max_age_minutes=5", "-e", "repo=tools")
        assert idle.returncode == 0 and not host.file(fresh).exists, idle.stdout[-3000:]
    finally:
        host.run(f"rm -f {' '.join(stale)} {fresh}; systemctl stop lab-busy-git")


def test_clear_git_locks_refuses_bad_input_before_touching_the_host(host):
    host.check_output("touch -d '-30 minutes' /srv/projects/app/.git/index.lock")
    try:
        for extra, text in ((("-e", "repo=nope"), "repo 'nope' is not one of the repositories"),
                            (("-e", "max_age_minutes=soon"), "max_age_minutes must be a whole number")):
            proc = _clear_locks(*extra)
            assert proc.returncode != 0 and text in proc.stdout, proc.stdout[-2000:]
        assert host.file("/srv/projects/app/.git/index.lock").exists
    finally:
        host.run("rm -f /srv/projects/app/.git/index.lock")


def test_check_mode_reports_no_changes_on_a_converged_host():
    assert_check_mode_clean()
