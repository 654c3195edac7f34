"""Building one job's ansible-runner Runner: flags and vars files, the filtered environment, the
supervisor wrapper. Built the way ansible_runner.run_async builds it (RunnerConfig -> prepare ->
Runner), with one step between: the prepared environment is filtered, because the runner seeds it
from the whole os.environ and the web process holds secrets."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

from ansible_runner import Runner, RunnerConfig

from homelab.catalog import JobSpec
from homelab.extravars import write_vars_file
from homelab.processes import MARKER_ENV
from homelab.settings import Settings
from homelab.store import Job
from homelab.supervise import SERVER_PID_ENV

EXTRA_VARS_FILE = "extra-vars.yml"
SECRET_VARS_FILE = "secret-vars.yml"


def build_runner(
    settings: Settings,
    job: Job,
    spec: JobSpec,
    pdd: Path,
    *,
    cancelled: Callable[[], bool],
    on_event: Callable[[dict[str, Any]], bool],
    pexpect_timeout: float,
) -> Runner:
    """The job's Runner in its private data dir `pdd` (not started)."""
    flags = [f for f, on in (("--check", spec.check), ("--diff", spec.diff)) if on]
    if spec.tags:  # names checked by catalog.parse_tags: no spaces, no shell meaning
        flags += ["--tags", ",".join(spec.tags)]
    # Every parameter reaches ansible as unsafe data in a vars file, never templated
    # (homelab.extravars). Secret ones go to their own 0600 file, deleted when the run ends;
    # neither is ever on a command line (ps, the runner's `command` artifact).
    public = {k: v for k, v in spec.extravars.items() if k not in spec.secret_names}
    secret = {k: v for k, v in spec.extravars.items() if k in spec.secret_names}
    for name, values in ((EXTRA_VARS_FILE, public), (SECRET_VARS_FILE, secret)):
        if values:
            flags += ["-e", "@" + str(write_vars_file(pdd / name, values))]
    cmdline = " ".join(shlex.quote(f) for f in flags)
    rc = RunnerConfig(
        private_data_dir=str(pdd),
        project_dir=str(settings.root),
        playbook=str(spec.entry.playbook),
        inventory=str(settings.inventory),
        ident=str(job.id),
        limit=spec.limit or None,
        cmdline=cmdline or None,
        envvars={
            "ANSIBLE_CONFIG": str(settings.ansible_cfg),
            "ANSIBLE_FORCE_COLOR": "1",
            "ANSIBLE_NOCOLOR": "0",
            "HOMELAB_JOB_ID": str(job.id),
            MARKER_ENV: job.marker,
            SERVER_PID_ENV: str(os.getpid()),
        },
        quiet=True,
        suppress_env_files=True,
        # Not runner's per-job jsonfile cache: ansible.cfg's fact cache applies, as for the CLI
        # (gathering=smart then reuses facts instead of gathering them again on every job).
        fact_cache_type="ansible.cfg",
    )
    rc.prepare()
    # prepare() resets these from env/settings (which suppress_env_files means we never write),
    # so they are set after it: quick cancel checks, nothing on the server's console, and no
    # unmasked stdout copy on disk (the store keeps the masked output).
    rc.pexpect_timeout = pexpect_timeout
    rc.suppress_ansible_output = True
    rc.suppress_output_file = True
    rc.env = filter_env(settings.job_env_allow, rc.env)
    # The supervisor makes the run die with this server, even after a kill -9 (homelab.supervise).
    rc.command = [sys.executable, "-m", "homelab.supervise", "--", *rc.command]
    return Runner(
        rc,
        event_handler=on_event,
        cancel_callback=cancelled,
        status_handler=None,
        finished_callback=None,
    )


def filter_env(
    allow: Iterable[str], prepared: dict[str, str], server_env: dict[str, str] | None = None
) -> dict[str, str]:
    """Keep what ansible-runner added or changed and the allow-listed variables; drop the rest."""
    server_env = dict(os.environ if server_env is None else server_env)

    def allowed(name: str) -> bool:
        return any(name == a or (a.endswith("*") and name.startswith(a[:-1])) for a in allow)

    out = {k: v for k, v in prepared.items() if k not in server_env or server_env[k] != v or allowed(k)}
    venv_bin = str(Path(sys.executable).parent)
    path = out.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    if venv_bin not in path.split(os.pathsep):
        out["PATH"] = venv_bin + os.pathsep + path
    return out
