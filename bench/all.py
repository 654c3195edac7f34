"""Run the three measurements of issue #3 in one go and print their summary lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    rc = 0
    for script in ("engine_overhead.py", "event_throughput.py", "first_event_latency.py"):
        proc = subprocess.run([sys.executable, str(HERE / script)], capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("(")]
        print(
            "\n".join(lines) if lines else f"{script} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}", flush=True
        )
        rc |= proc.returncode
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
