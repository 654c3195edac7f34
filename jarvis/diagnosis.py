"""Diagnosis: run the checks (host facts through the engine's read-only `diagnose` job, network
checks here) and record what they found: new findings, seen again, resolved. No decisions."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from sqlalchemy import select, update

from homelab.catalog import ValidationError
from jarvis import hostchecks, netchecks
from jarvis.base import ACTOR, DIAGNOSE, JarvisBase, scrub  # noqa: F401
from jarvis.findings import Finding
from jarvis.models import JarvisAction, JarvisFinding

log = logging.getLogger("jarvis.service")


@dataclass
class Diagnosis:
    findings: list[Finding] = field(default_factory=list)
    scopes: set[str] = field(default_factory=set)  # what was checked (an open finding there and not seen is resolved)
    job_id: int | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Diagnosing(JarvisBase):
    def service_targets(self) -> list[netchecks.ServiceTarget]:
        """Every enabled service of the inventory's service registry, as DNS/TLS/HTTP targets."""
        return netchecks.service_targets(self.inventory.registry.union().values())

    def targets(self, addresses: tuple[str, ...] = ()) -> list[netchecks.Target]:
        """What a network diagnosis checks (no network used to say so)."""
        return netchecks.targets(self.rules.checks, self.service_targets(), addresses)

    def diagnose(
        self, limit: str = "", hosts: bool = True, network: bool = True, only: set[str] | None = None
    ) -> Diagnosis:
        """Run the checks (host-side through the engine, network-side here); no decisions."""
        started = time.monotonic()
        d = Diagnosis()
        addresses: tuple[str, ...] = ()
        with self._diag_lock:
            if hosts:
                addresses = self._host_diagnosis(limit, d)
            if network:
                try:
                    ts = self.targets(addresses)
                except Exception as exc:  # a broken registry entry: say so, check what the rules list
                    d.notes.append(f"the service registry cannot be read, so its domains are not checked: {exc}")
                    ts = netchecks.targets(self.rules.checks, [], addresses)
                if only is not None:
                    ts = [t for t in ts if t.scope in only]
                found, scopes = netchecks.run_all(ts, self.rules.checks)
                d.findings += found
                d.scopes |= scopes
        d.seconds = time.monotonic() - started
        return d

    def _host_diagnosis(self, limit: str, d: Diagnosis) -> tuple[str, ...]:
        try:
            spec = self.catalog.prepare(DIAGNOSE, {}, limit, inventory=self.inventory)
        except ValidationError as exc:
            d.notes.append(f"host checks skipped: {exc}")
            return ()
        job = self.engine.submit(spec, ACTOR, "jarvis", requested_limit=limit)
        d.job_id = job.id
        try:
            job = self.engine.wait(job.id, self.js.job_timeout)
        except TimeoutError:
            self.engine.cancel(job.id, ACTOR)
            for h in spec.hosts:
                d.findings.append(
                    hostchecks.unreachable(
                        h, f"the diagnose job #{job.id} did not end within {self.js.job_timeout:.0f}s"
                    )
                )
                d.scopes.add(f"reach:{h}")
            return ()
        data = (job.artifact_data or {}).get("jarvis_diagnose") or {}
        results = self.engine.task_results(job.id)
        try:  # what each host runs and which git branch it follows (deploy.behind)
            registry = self.inventory.registry.by_host()
        except Exception as exc:  # a broken registry entry: the other host checks still count
            d.notes.append(f"the service registry cannot be read, so no service is checked for new commits: {exc}")
            registry = {}
        addresses: set[str] = set()
        for h in job.hosts or []:
            d.scopes.add(f"reach:{h}")
            facts = data.get(h)
            if not isinstance(facts, dict):
                bad = next((r for r in results if r.host == h and r.status in ("unreachable", "failed")), None)
                why = f"{bad.status}: {bad.message}" if bad else (job.reason or f"job #{job.id} ended {job.status}")
                d.findings.append(hostchecks.unreachable(h, why))
                continue
            d.scopes.add(f"host:{h}")
            d.findings += hostchecks.judge(h, facts, self.rules.checks, self.clock(), registry.get(h))
            for e in ((facts.get("ddclient") or {}).get("entries") or {}).values():
                ip = e.get("ipv4") or e.get("ip")
                if ip:
                    addresses.add(str(ip))
        return tuple(sorted(addresses))

    def record(self, d: Diagnosis) -> tuple[list[str], list[str]]:
        """Store findings: new, seen again, resolved (open, not seen again where its check ran clean)."""
        now = self.clock()
        seen = {f.key: f for f in d.findings}
        new, resolved = [], []
        with self.store.session.begin() as s:
            rows = (
                {r.key: r for r in s.scalars(select(JarvisFinding).where(JarvisFinding.key.in_(list(seen))))}
                if seen
                else {}
            )
            for key, f in seen.items():
                row = rows.get(key)
                if row is None:
                    row = JarvisFinding(key=key, code=f.code, target=f.target, first_seen=now, occurrences=1)
                    s.add(row)
                    new.append(key)
                elif row.status == "resolved":
                    row.status, row.first_seen, row.resolved_at, row.decision = "open", now, None, ""
                    row.occurrences += 1
                    new.append(key)
                row.severity, row.summary, row.host, row.scope = f.severity, scrub(f.summary[:2000]), f.host, f.scope
                row.evidence, row.params, row.last_seen = scrub(f.evidence), dict(f.params), now
            if d.scopes:
                for row in s.scalars(
                    select(JarvisFinding).where(
                        JarvisFinding.status != "resolved", JarvisFinding.scope.in_(list(d.scopes))
                    )
                ):
                    if row.key not in seen:
                        row.status, row.resolved_at = "resolved", now
                        resolved.append(row.key)
                        s.execute(
                            update(JarvisAction)
                            .where(JarvisAction.finding_key == row.key, JarvisAction.status == "pending")
                            .values(
                                status="obsolete", reason="the finding resolved before anyone decided", finished_at=now
                            )
                        )
        for key in new:
            f = seen[key]
            self.audit(
                "jarvis.finding",
                f.target,
                {"code": f.code, "severity": f.severity, "summary": scrub(f.summary[:180])},
                "open",
            )
        for key in resolved:
            code, _, target = key.partition("|")
            self.audit("jarvis.finding", target, {"code": code}, "resolved")
        return new, resolved
