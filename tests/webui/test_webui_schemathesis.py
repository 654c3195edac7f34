"""The REST API keeps to its own OpenAPI document: schemathesis against a real server.

Every check schemathesis has (server errors, undocumented statuses, content types, response
schemas, valid data accepted, invalid data refused, auth enforced, unsupported methods, links), a
bounded and deterministic run, on a catalog of debug-only localhost playbooks
(tests/webui/catalog-contract.yml): the jobs it starts only echo. The live-output stream is left out
(it stays open while a job runs); its 4xx answers are covered in test_webui_security.py.
The figures land in var/reports/schemathesis.json and, with -s, in the output.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from homelab.settings import Settings
from homelab.store import Store
from homelab.web.auth import create_token

from webui_helpers import HERE, ROOT, write_inventory

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
MAX_EXAMPLES = 25
BUDGET = 240  # seconds for the whole run: about 25 on an idle machine, 100 on a busy one
STREAM = "/api/v1/jobs/{job_id}/stream"


def _operations(doc: dict[str, Any]) -> list[tuple[re.Pattern[str], str, str, set[str]]]:
    ops = []
    for path, methods in doc["paths"].items():
        rx = re.compile("^" + re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(path)) + "$")
        for method, op in methods.items():
            ops.append((rx, method.upper(), path, set(op["responses"])))
    return ops


def test_the_api_keeps_to_its_openapi_document(tmp_path: Path, server_factory: Any) -> None:
    var = tmp_path / "var"
    var.mkdir()
    schedules = tmp_path / "schedules.yml"
    schedules.write_text("schedules: []\n")
    settings = Settings.from_env(
        {
            "HOMELAB_VAR_DIR": str(var),
            "HOMELAB_CATALOG": str(HERE / "catalog-contract.yml"),
            "HOMELAB_INVENTORY": str(write_inventory(tmp_path / "inventory.yml")),
            "HOMELAB_MAX_PARALLEL_JOBS": "1",
        }
    )
    server = server_factory(
        settings, extra_env={"HOMELAB_JARVIS": "0", "HOMELAB_SCHEDULER": "0", "HOMELAB_SCHEDULES": str(schedules)}
    ).start()
    token = create_token(Store(settings.db_url), "admin", "schemathesis")
    out = tmp_path / "schemathesis"
    started = time.monotonic()
    run = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{server.url}/api/v1/openapi.json",
            "-H",
            f"Authorization: Bearer {token}",
            "--checks",
            "all",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--generation-deterministic",
            "--workers",
            "1",
            "--exclude-path",
            STREAM,
            "--request-timeout",
            "30",
            "--report",
            "json,har",
            "--report-dir",
            str(out),
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=BUDGET,
        cwd=str(tmp_path),
    )
    seconds = time.monotonic() - started

    import urllib.request

    req = urllib.request.Request(f"{server.url}/api/v1/openapi.json", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        doc = json.load(r)
    ops = _operations(doc)
    report = json.loads(next(out.glob("json-*.json")).read_text())
    har = json.loads(next(out.glob("har-*.json")).read_text())
    statuses: Counter[int] = Counter()
    per_operation: dict[str, Counter[int]] = {}
    server_errors, undocumented = [], []
    for entry in har["log"]["entries"]:
        method, url, status = entry["request"]["method"], entry["request"]["url"], entry["response"]["status"]
        path = urlsplit(url).path
        statuses[status] += 1
        match = next(((p, documented) for rx, m, p, documented in ops if m == method and rx.match(path)), None)
        if status >= 500:
            server_errors.append(f"{method} {url} -> {status}")
        if match is None:  # a method the document does not offer: schemathesis probing for 405
            per_operation.setdefault(f"{method} (not offered) {path}", Counter())[status] += 1
            if status != 405 and not (method == "OPTIONS" and status == 200):  # OPTIONS answers with Allow
                undocumented.append(f"{method} {url} -> {status} (not offered, and not 405)")
            continue
        per_operation.setdefault(f"{method} {match[0]}", Counter())[status] += 1
        if str(status) not in match[1]:
            undocumented.append(f"{method} {url} -> {status}")
    figures = {
        "schemathesis": report["schemathesis_version"],
        "seconds": round(seconds, 1),
        "max_examples": MAX_EXAMPLES,
        "operations": report["operations"],
        "cases": report["test_cases"],
        "requests": sum(statuses.values()),
        "statuses": dict(sorted(statuses.items())),
        "per_operation": {k: dict(sorted(v.items())) for k, v in sorted(per_operation.items())},
        "failures": report["failures"],
        "errors": report["errors"],
        "server_errors": server_errors[:20],
        "undocumented_statuses": undocumented[:20],
    }
    reports = ROOT / "var" / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "schemathesis.json").write_text(json.dumps(figures, indent=2) + "\n")
    print("\nschemathesis:", json.dumps(figures, indent=2))
    if "FAILURES" in run.stdout:
        print(run.stdout[run.stdout.index("FAILURES") :][:8000])

    assert report["complete"] and report["operations"]["tested"] == len(ops) - 1, report["operations"]
    assert report["test_cases"]["generated"] >= 10 * len(ops), "schemathesis generated too few cases to mean anything"
    assert not server_errors, server_errors
    assert not undocumented, undocumented
    assert not report["failures"] and not report["errors"], run.stdout[-8000:]
    assert run.returncode == 0, run.stdout[-8000:]
