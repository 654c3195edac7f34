"""(c) Time from the API call that starts a job to the first event streamed to a client.

N times: POST /api/v1/jobs, then open the job's SSE stream at once, on the real server. Reported
(p50/p95/max): to the first SSE message (the job's status), and to the first ansible output
event (playbook_on_start: the moment ansible-playbook has started, imported and parsed the
playbook). Target: p95 < 1 s.
"""

from __future__ import annotations

import argparse
import time

from _common import LiveServer, bench_settings, machine, pct


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20)
    args = ap.parse_args()
    server = LiveServer(bench_settings(hosts=1))
    first_msg, first_output = [], []
    try:
        for i in range(args.n + 1):
            t0 = time.perf_counter()
            job = server.api("POST", "/api/v1/jobs", {"playbook": "events", "params": {"event_items": 1}})
            got_msg = got_out = None
            for t, event, _data in server.sse(job["id"]):
                if got_msg is None:
                    got_msg = t - t0
                if event == "output" and got_out is None:
                    got_out = t - t0
            if i:  # the first run warms caches
                first_msg.append(got_msg)
                first_output.append(got_out)
    finally:
        server.close()
    f = lambda xs: f"p50 {pct(xs, 50) * 1000:.0f} ms, p95 {pct(xs, 95) * 1000:.0f} ms, max {max(xs) * 1000:.0f} ms"  # noqa: E731
    print(f"(c) API call -> first streamed message (job status), n={args.n}: {f(first_msg)}")
    print(
        f"(c) API call -> first ansible output event (playbook_on_start), n={args.n}: {f(first_output)} "
        f"(target p95 < 1 s) [{machine()}]"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
