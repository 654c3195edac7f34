"""Homelab: one job engine (ansible-runner) behind the web UI, the REST API, the CLI and schedules."""

__version__ = "0.1.0"
