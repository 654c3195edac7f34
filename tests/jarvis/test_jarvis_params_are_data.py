"""A Jarvis rule's parameters, rendered from a finding whose values come from the host, reach the
playbook as data, never as templates (the API, form and schedule paths: tests/webui/
test_webui_params_are_data.py). The catalog's blocklist is switched off to prove the unsafe data
path alone holds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from homelab import catalog as catalog_mod

from jarvis_helpers import iso, now


@pytest.fixture
def no_blocklist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog_mod, "JINJA_RE", re.compile(r"(?!x)x"))


def test_a_jarvis_rule_passes_a_finding_value_as_data(build, box, tmp_path: Path, no_blocklist: None) -> None:
    """A finding's value comes from the host (here a git repo's name in git-sync's status file):
    rendered into a rule's parameter, it still reaches the playbook as data."""
    marker, out = tmp_path / "MARKER-jarvis", tmp_path / "out-jarvis"
    out.mkdir()
    # a header that redefines Jinja's delimiters, with a newline in it (a repo name can hold anything)
    name = f"#jinja2:variable_start_string:'[[', variable_end_string:']]'\n[[ lookup('pipe', 'touch {marker}') ]]"
    t = "2026-01-01T00:00:00Z"
    box.git_status.write_text(
        json.dumps(
            {
                "updated_at": t,
                "repos": {
                    name: {
                        "path": str(box.repo),
                        "last_attempt": t,
                        "last_success": t,
                        "last_error": "fatal: could not read",
                        "consecutive_failures": 50,
                        "next_attempt_after": t,
                        "head": "0" * 40,
                    }
                },
            }
        )
    )
    status = json.loads(box.git_status.read_text())
    status["updated_at"] = iso(now())
    box.git_status.write_text(json.dumps(status))
    j = build(
        [
            {
                "id": "reveal-repo",
                "codes": ["gitsync.failing"],
                "playbook": "reveal",
                "mode": "auto",
                "params": {"reveal_dir": str(out), "v01": "{repo}", "v02": "repo {repo} failed"},
            }
        ]
    )
    j.cycle("test")
    jobs = [a for a in j.actions() if a.playbook == "reveal"]
    assert jobs and jobs[0].job_id, [(a.status, a.reason) for a in j.actions()]
    job = j.engine.wait(jobs[0].job_id, 180)
    assert job.status == "successful", (job.status, job.reason)
    assert not marker.exists(), "a finding's value was evaluated as a template: the marker file exists"
    assert (out / "v01-alpha.txt").read_text() == name
    assert (out / "v02-alpha.txt").read_text() == f"repo {name} failed"
    printed = json.loads(next(r.message for r in j.engine.task_results(job.id) if r.task == "Print the plain values"))
    assert printed["v01"] == name
