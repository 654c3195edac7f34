"""The real server process: SSE over HTTP, the CLI, and a server killed in the middle of a job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request

from homelab.jobs import processes_with_marker
from homelab.store import Job, Store
from homelab.web.auth import create_token

from webui_helpers import PY, ROOT, wait_until


def _api(server, token, method, path, body=None):
    req = urllib.request.Request(
        server.url + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def _sleeping(marker: str) -> bool:
    """Whether the job's `sleep` command runs (the playbook reached its long task)."""
    for pid in processes_with_marker(marker):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().startswith(b"sleep\0"):
                    return True
        except OSError:
            pass
    return False


def _read_sse(server, token, job_id):
    req = urllib.request.Request(
        f"{server.url}/api/v1/jobs/{job_id}/stream", headers={"Authorization": f"Bearer {token}"}
    )
    events, event, data = [], None, []
    with urllib.request.urlopen(req, timeout=120) as r:
        for raw in r:
            line = raw.decode().rstrip("\n")
            if not line:
                if event:
                    events.append((event, json.loads("\n".join(data))))
                    if event == "end":
                        return events
                event, data = None, []
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
    return events


def test_live_output_over_sse_arrives_complete_and_in_order(settings, server_factory):
    server = server_factory(settings).start()
    token = create_token(Store(settings.db_url), "admin", "t")
    job = _api(
        server, token, "POST", "/api/v1/jobs", {"playbook": "events", "params": {"event_items": 300}, "limit": "alpha"}
    )
    events = _read_sse(server, token, job["id"])
    out = [d for e, d in events if e == "output"]
    assert events[-1][0] == "end" and events[-1][1]["status"] == "successful"
    seqs = [d["seq"] for d in out]
    assert seqs == list(range(1, len(seqs) + 1)), "an event was lost or reordered on the stream"
    assert len([d for d in out if d["event"] == "runner_item_on_ok"]) == 300
    detail = _api(server, token, "GET", f"/api/v1/jobs/{job['id']}")
    assert detail["event_count"] == len(seqs)
    assert [e for e, _ in events if e == "status"][0] == "status"


def test_cli_runs_follows_lists_and_cancels_through_the_server(settings, server_factory):
    server = server_factory(settings).start()
    env = {**server.env, "HOMELAB_URL": server.url}
    env.pop("HOMELAB_TOKEN", None)
    run = subprocess.run(
        [PY, "-m", "homelab", "run", "hello", "-p", "greeting=from cli", "-l", "beta"],
        env=env,
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr
    assert "from cli from beta" in run.stdout and "successful" in run.stderr
    assert (settings.var_dir / "cli-token").stat().st_mode & 0o777 == 0o600
    bad = subprocess.run(
        [PY, "-m", "homelab", "run", "hello", "-p", "flavour=spicy"],
        env=env,
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "must be one of plain, fancy" in bad.stderr
    started = subprocess.run(
        [PY, "-m", "homelab", "run", "sleep", "-l", "alpha", "--no-follow"],
        env=env,
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=60,
    )
    job_id = int(started.stdout.strip())
    jobs = subprocess.run(
        [PY, "-m", "homelab", "jobs"], env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=60
    )
    assert f"{job_id}" in jobs.stdout and "sleep" in jobs.stdout
    cancel = subprocess.run(
        [PY, "-m", "homelab", "cancel", str(job_id)], env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=60
    )
    assert cancel.returncode == 0, cancel.stderr
    logs = subprocess.run(
        [PY, "-m", "homelab", "logs", "--follow", str(job_id)],
        env=env,
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "canceled" in logs.stderr and logs.returncode == 1
    with Store(settings.db_url).session() as s:
        assert s.get(Job, job_id).source == "cli"


def test_server_killed_mid_job_takes_its_ansible_along_and_the_job_is_marked_failed_on_restart(
    settings, server_factory
):
    server = server_factory(settings).start()
    store = Store(settings.db_url)
    token = create_token(store, "admin", "t")
    job = _api(server, token, "POST", "/api/v1/jobs", {"playbook": "sleep", "limit": "alpha"})
    with store.session() as s:
        marker = s.get(Job, job["id"]).marker

    wait_until(lambda: _sleeping(marker), 120, "the job's sleep to start")
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(30)
    # homelab.supervise: the kernel signals the job's supervisor when the server dies, and it
    # kills the whole process group (ansible-playbook, its workers, the `sleep` they run)
    wait_until(lambda: processes_with_marker(marker) == [], 20, "the dead server's ansible processes to die with it")
    with store.session() as s:
        assert s.get(Job, job["id"]).status == "running"

    again = server_factory(settings)
    again.start()
    detail = _api(again, token, "GET", f"/api/v1/jobs/{job['id']}")
    assert detail["status"] == "failed"
    assert "stopped before it finished" in detail["reason"] and "leftover" not in detail["reason"]


def test_a_stopping_server_cancels_its_jobs_and_leaves_no_ansible(settings, server_factory):
    server = server_factory(settings).start()
    store = Store(settings.db_url)
    token = create_token(store, "admin", "t")
    job = _api(server, token, "POST", "/api/v1/jobs", {"playbook": "sleep", "limit": "alpha"})
    queued = _api(server, token, "POST", "/api/v1/jobs", {"playbook": "hello", "limit": "alpha"})
    with store.session() as s:
        marker = s.get(Job, job["id"]).marker
    wait_until(lambda: _sleeping(marker), 120, "the job's sleep to start")
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(60) == 0
    with store.session() as s:
        stopped, waiting = s.get(Job, job["id"]), s.get(Job, queued["id"])
    assert stopped.status == "canceled" and "shut down" in stopped.reason
    assert waiting.status == "queued", "a queued job must not start while the server stops"
    assert processes_with_marker(marker) == []
