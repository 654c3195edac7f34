"""What a check reports: a stable code, a severity, the target, the evidence.

Codes are part of the rules file's contract (rules match on them), so they never change meaning.
A check that itself fails or times out reports a finding too (`<check>.error`), never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("info", "warning", "critical")
RANK = {s: i for i, s in enumerate(SEVERITIES)}

# Every code Jarvis reports, with what it means (shown on the Jarvis page and in the README).
CODES: dict[str, str] = {
    "host.unreachable": "the diagnose playbook could not reach or run on the host",
    "docker.unavailable": "the Docker engine does not answer on the host",
    "container.down": "a service container exists but is not running",
    "container.unhealthy": "a service container's health check fails",
    "container.restart_loop": "a service container keeps restarting",
    "deploy.unhealthy": "a service's container went down or unhealthy within the watch window after a deploy",
    "deploy.behind": "git sync holds a newer commit of an auto-deployed service than the one it serves",
    "deploy.failed": "the delivery pipeline's last attempt at a service failed or was rolled back",
    "disk.full": "a file system is nearly full",
    "memory.high": "little memory is available",
    "load.high": "the load average is high for the number of CPUs",
    "gitsync.failing": "git sync keeps failing or has not succeeded for too long",
    "gitsync.stale_lock": "a git lock file is older than the limit and no git process runs",
    "gitsync.diverged": "a synced repository diverged from its remote",
    "gitsync.status_stale": "the git sync status file has not been updated for too long",
    "ddclient.auth_error": "the DNS provider refused ddclient's credentials",
    "ddclient.update_failed": "ddclient's last update of a name failed",
    "ddclient.stale": "ddclient has not written its cache for too long",
    "backup.failed": "the last backup failed",
    "backup.stale": "no successful backup for too long",
    "backup.missing": "no backup status exists although backups are expected",
    "backup.offsite_failed": "the weekly check or restore drill of the off-host backup copies failed",
    "postgres.unreachable": "PostgreSQL does not accept connections",
    "dns.mismatch": "a domain resolves to an address other than the server's",
    "dns.missing": "a domain does not resolve",
    "dns.error": "the DNS check could not get an answer (resolver error or timeout)",
    "tls.expiring": "a certificate expires soon",
    "tls.expired": "a certificate has expired",
    "tls.invalid": "a certificate chain or name does not verify",
    "tls.error": "the TLS check could not complete a handshake (refused, timeout)",
    "http.down": "a service's URL does not answer (refused, timeout)",
    "http.bad_status": "a service's URL answers with an unexpected status",
    "check.error": "a check itself failed; its finding says which",
}


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str
    target: str  # stable identity of what is wrong: "homelab-lab-1/container:caddy", "tls:example.org"
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    host: str = ""  # the inventory host a remediation would be limited to ("" = network-side)
    params: dict[str, str] = field(default_factory=dict)  # what rules may use: service, domain, repo, ...
    scope: str = ""  # the check run that reports it (an open finding resolves when its scope ran clean)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} is not one of {SEVERITIES}")

    @property
    def key(self) -> str:
        return f"{self.code}|{self.target}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "target": self.target,
            "summary": self.summary,
            "evidence": self.evidence,
            "host": self.host,
            "params": self.params,
            "scope": self.scope,
        }
