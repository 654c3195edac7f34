"""The jobs layer: the engine (queue, dispatch, launch, cancel: engine.py), one job's runner
(runner.py), runner events to store rows (events.py), retention of the private data dirs
(retention.py). Processes of a job are found and killed by homelab.processes, which the job
supervisor (homelab.supervise) imports without loading any of this."""

from homelab.jobs.engine import JobEngine
from homelab.jobs.events import render_diff
from homelab.processes import MARKER_ENV, kill_marked, processes_with_marker

__all__ = ["JobEngine", "render_diff", "MARKER_ENV", "kill_marked", "processes_with_marker"]
