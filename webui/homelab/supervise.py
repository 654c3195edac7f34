"""`python -m homelab.supervise -- COMMAND...`: run a job's ansible-playbook so that it dies with
the server that started it.

The job engine starts every job through this small supervisor. It asks the kernel for a signal
when its parent (the homelab server) dies (prctl PR_SET_PDEATHSIG), even by `kill -9`, and then
kills every process of the job: ansible-playbook, its workers (which call setsid(), so they are
not in its process group) and the commands they run, all found by the job's marker
(homelab.processes). Without it, a crashed server left ansible running until the next start
found the leftovers.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

from homelab.processes import MARKER_ENV, processes_with_marker

PR_SET_PDEATHSIG = 1
SERVER_PID_ENV = "HOMELAB_SERVER_PID"


def _kill_job(signum: int = 0, frame: object = None) -> None:
    """The server is gone: kill every process of the job, then this one."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    marker = os.environ.get(MARKER_ENV, "")
    deadline = time.monotonic() + 10
    while marker and time.monotonic() < deadline:
        others = [p for p in processes_with_marker(marker) if p != os.getpid()]
        if not others:
            break
        for pid in others:  # no grace: nothing is left to read what they would say
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.05)
    os.killpg(os.getpgrp(), signal.SIGKILL)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: python -m homelab.supervise -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        print(f"homelab.supervise: prctl failed: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _kill_job)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as pexpect's ignore_sighup: the pty may close early
    expected = os.environ.get(SERVER_PID_ENV, "")
    if expected.isascii() and expected.isdigit() and os.getppid() != int(expected):
        return 137  # the server died before the signal was armed: start nothing
    child = subprocess.Popen(argv)
    rc = child.wait()
    return 128 - rc if rc < 0 else rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
