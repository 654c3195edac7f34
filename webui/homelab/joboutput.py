"""What a person is shown of a job: its output without the noise of skipped tasks, and its task
results grouped by role and host, problems first.

Why: ansible.posix.profile_tasks prints a timestamp line when every task starts, while the default
callback (display_skipped_hosts = false) prints a task's banner only with its first shown result.
A skipped task therefore left a bare timestamp line behind: 513 of a site run's 970 lines. The
stored events stay as ansible printed them (the API serves them whole); the job page and its live
stream drop a timestamp line that no task banner follows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Protocol

from homelab.ansi import strip_ansi

# profile_tasks' line: "Wednesday 02 December 2026  10:30:00 +0000 (0:00:00.123)       0:00:01.234 ****"
TIMESTAMP_RE = re.compile(
    r"^\s*[A-Za-z]+ \d{1,2} [A-Za-z]+ \d{4}\s+\d{1,2}:\d{2}:\d{2} [+-]\d{4} \(\d+:\d{2}:\d{2}\.\d+\)\s+"
    r"\d+:\d{2}:\d{2}\.\d+ \**\s*$"
)


class HasStdout(Protocol):
    stdout: str


def bare_timestamp(stdout: str) -> bool:
    """Whether an event's output is nothing but profile_tasks' timestamp line (and blank lines)."""
    lines = [ln for ln in strip_ansi(stdout).splitlines() if ln.strip()]
    return len(lines) == 1 and bool(TIMESTAMP_RE.match(lines[0]))


class SkipNoise:
    """Filters a job's events as they come: a bare timestamp line is held until the next event with
    output shows whether a task banner follows it (then both are shown) or another timestamp does
    (the task was skipped: it is dropped). Feed events in order; `flush` at the end of the run."""

    def __init__(self) -> None:
        self.held: Any = None

    def feed(self, events: Iterable[Any]) -> Iterator[Any]:
        for ev in events:
            if not ev.stdout:
                continue
            if bare_timestamp(ev.stdout):
                self.held = ev  # the one held before it was a skipped task's: dropped
                continue
            if self.held is not None:
                yield self.held
                self.held = None
            yield ev

    def flush(self) -> Iterator[Any]:
        """At the end of the run: a timestamp no output followed belonged to a skipped task."""
        self.held = None
        return iter(())


def shown_output(events: Iterable[Any]) -> list[Any]:
    """A finished job's events with output, as the job page shows them."""
    f = SkipNoise()
    return [*f.feed(events), *f.flush()]


# ---------------------------------------------------------------------- task results
RANK = {"failed": 0, "unreachable": 0, "changed": 1, "ignored": 2, "ok": 3, "skipped": 4}


@dataclass
class ResultGroup:
    """One role's tasks on one host (role "" = tasks of the play itself)."""

    role: str
    host: str
    first_seq: int
    results: list[Any] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    @property
    def rank(self) -> int:
        return min((RANK.get(r.status, 3) for r in self.results), default=4)

    @property
    def seconds(self) -> float:
        return sum(r.duration or 0.0 for r in self.results)

    @property
    def only_skipped(self) -> bool:
        return all(r.status == "skipped" for r in self.results)

    @property
    def shown(self) -> int:
        return sum(1 for r in self.results if r.status != "skipped")


def group_results(results: Iterable[Any]) -> list[ResultGroup]:
    """Task results by (role, host): the groups with failures first, then those with changes, then
    the rest in the order they ran; inside a group the same order of states, then run order."""
    groups: dict[tuple[str, str], ResultGroup] = {}
    for r in results:
        key = (r.role or "", r.host)
        if key not in groups:
            groups[key] = ResultGroup(role=key[0], host=key[1], first_seq=r.seq)
        groups[key].results.append(r)
    for g in groups.values():
        g.results.sort(key=lambda r: (RANK.get(r.status, 3), r.seq))
    return sorted(groups.values(), key=lambda g: (g.rank if g.rank < 2 else 2, g.first_seq))


def seconds_text(seconds: float | None) -> str:
    """A duration as a person reads it: 0.4 s, 12 s, 3 min 05 s."""
    if seconds is None:
        return "–"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s"
