"""The job vocabulary every layer shares, with no dependencies (the CLI imports it too): job states
and where a job came from."""

from __future__ import annotations

LIVE_STATES = ("queued", "running")
FINAL_STATES = ("successful", "failed", "canceled")
STATES = LIVE_STATES + FINAL_STATES
# Where a job came from (Job.source): a browser session, a bearer token of kind "api" or "cli"
# (TOKEN_KINDS), or Python inside the server (schedules, Jarvis).
TOKEN_KINDS = ("api", "cli")
SOURCES = ("web", *TOKEN_KINDS, "schedule", "jarvis")
