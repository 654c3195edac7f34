"""Finding and killing a job's processes by the marker in their environment.

Every process a job starts inherits HOMELAB_JOB_MARKER, a random token per job. Ansible's workers
call setsid(), so a job is not one process group: the marker is what ties ansible-playbook, its
workers, the commands they run and any SSH master together. Kept apart from the engine so the
job supervisor (homelab.supervise) can use it without importing the engine.
"""

from __future__ import annotations

import os
import signal
import time

MARKER_ENV = "HOMELAB_JOB_MARKER"


def processes_with_marker(marker: str) -> list[int]:
    """PIDs whose environment carries this job's marker: every process the job started."""
    needle = f"{MARKER_ENV}={marker}".encode() + b"\0"
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                if needle in f.read() + b"\0":
                    pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _term_group(pid: int) -> None:
    os.killpg(os.getpgid(pid), signal.SIGTERM)


def _term(pid: int) -> None:
    os.kill(pid, signal.SIGTERM)


def kill_marked(marker: str, grace: float = 3.0) -> int:
    """SIGTERM then SIGKILL every process (and its group) that carries the marker; how many were found."""
    pids = processes_with_marker(marker)
    for pid in pids:
        for term in (_term_group, _term):
            try:
                term(pid)
            except (ProcessLookupError, PermissionError, OSError):
                pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and processes_with_marker(marker):
        time.sleep(0.1)
    for pid in processes_with_marker(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return len(pids)
