"""Jarvis: the homelab's operator. It diagnoses (read-only checks), remediates through catalog
playbooks under rules and safety limits, asks a person before anything a rule does not allow,
and optionally explains and proposes through an LLM. Everything it runs goes through the one job
engine (homelab.jobs.JobEngine); it never runs a command of its own on a host."""

__all__ = ["Finding"]

from jarvis.findings import Finding  # noqa: E402
