"""Where two runs of site.yml differ in time, by kind of task, from their profile_tasks output.

    python bench/attribute.py BEFORE.log AFTER.log

bench/converge.py keeps each run's output under var/bench/converge/logs/. A task's time is the
"(H:MM:SS.fff)" profile_tasks prints after it; a task that printed no result line was skipped
(display_skipped_hosts is off). Each task is put in the first kind whose pattern matches its name.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

KINDS = [
    ("compose up (skipped when current)", r"Run the compose project|Start PostgreSQL and wait"),
    (
        "ufw (one read, then only what differs)",
        r"^base : (Set the default policies|Open ssh|Read the (rules|firewall)|"
        r"Close ports|Set the firewall's logging|Enable the firewall)",
    ),
    ("apt (only when dpkg misses a package)", r"^\w+ : (Install |Ask dpkg)"),
    ("include (install/uninstall paths)", r"^\w+ : (Install|Uninstall|Remove the service) "),
]
TIMING = re.compile(r"\((\d+):(\d\d):(\d\d\.\d+)\)\s+\d+:\d\d:\d\d\.\d+ \*+\s*$")


def tasks(text: str) -> list[tuple[str, float, bool]]:
    """(name, seconds, skipped) of every task of a run, in order. profile_tasks prints its timing
    line when a task ends; a skipped task prints no header (display_skipped_hosts is off), only its
    timing line, so a timing line with no header before it is a skipped task's."""
    out: list[tuple[str, float, bool]] = []
    header: str | None = None
    shown = False
    for line in text.splitlines():
        if m := re.match(r"TASK \[(.*?)\]", line):
            header, shown = m.group(1), False
        elif re.match(r"(ok|changed|fatal|included|failed|skipping):", line):
            shown = True
        elif t := TIMING.search(line):
            seconds = int(t.group(1)) * 3600 + int(t.group(2)) * 60 + float(t.group(3))
            out.append((header or "(skipped, not shown)", seconds, header is None or not shown))
            header = None
    return out


def by_kind(text: str) -> dict[str, list[float]]:
    agg: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for name, seconds, skipped in tasks(text):
        kind = "skipped tasks" if skipped else "everything else"
        for label, pattern in KINDS:
            if re.search(pattern, name):
                kind = label
                break
        agg[kind][0] += 1
        agg[kind][1] += seconds
    return agg


def main(before: str, after: str) -> None:
    b, a = by_kind(Path(before).read_text()), by_kind(Path(after).read_text())
    print(
        f"{'kind of task':<42} {'tasks before':>12} {'s before':>9} {'tasks after':>11} {'s after':>8} {'saved s':>8}"
    )
    for kind in [k for k, _ in KINDS] + ["skipped tasks", "everything else"]:
        (nb, sb), (na, sa) = b.get(kind, [0, 0.0]), a.get(kind, [0, 0.0])
        print(f"{kind:<42} {nb:12d} {sb:9.1f} {na:11d} {sa:8.1f} {sb - sa:8.1f}")
    tb, ta = sum(v[1] for v in b.values()), sum(v[1] for v in a.values())
    print(
        f"{'all tasks':<42} {sum(v[0] for v in b.values()):12d} {tb:9.1f} {sum(v[0] for v in a.values()):11d} "
        f"{ta:8.1f} {tb - ta:8.1f}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])
