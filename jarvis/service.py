"""Jarvis's loop: diagnose, record findings, decide per rule under the safety limits, run catalog
playbooks through the job engine, verify, resolve or escalate.

Why it is built this way:
- Everything that touches a host is an engine job of a catalog entry (source "jarvis"): the
  read-only `diagnose` playbook for host facts, the rules' playbooks for remediation. Nothing
  else runs; a rule or chat proposal naming anything outside the catalog is refused.
- Decisions are made in one place (_decide, _gate) and every one that changes is written to the
  audit log; runs and outcomes are audited too. Safety is enforced there in code: catalog only,
  throttle per rule and target, circuit breaker per rule (persisted; a person resets it), a global
  rate limit on started actions, maintenance windows (decisions deferred, findings still recorded).
- One worker thread runs actions one after another; a diagnosis cycle (scheduled, or "run now")
  only decides and queues, so a slow playbook never delays the next look at the system.
- After a remediation the diagnosis of that finding's scope runs again: gone -> resolved, still
  there -> escalated (a notification; the finding is not remediated again until it is resolved,
  so Jarvis never loops). A failed or unfixed remediation counts towards the rule's breaker.
- Changes-config actions run in check + diff mode first; the diff is kept with the action and
  shown on the approval; a check that fails stops the action.

The parts live in their own modules (jarvis.base, .diagnosis, .safety, .actions, .decisions,
.reading); Jarvis composes them and adds the diagnosis cycle, the chat assistant (jarvis.llm) and
its registration with the scheduler.
"""

from __future__ import annotations

import logging
from typing import Any

from homelab.catalog import Catalog
from homelab.settings import Settings
from homelab.store import Store
from jarvis.base import ACTOR, JarvisEvent, scrub  # noqa: F401 (re-exported)
from jarvis.config import JarvisSettings
from jarvis.decisions import Deciding
from jarvis.diagnosis import Diagnosis
from jarvis.llm import Assistant
from jarvis.reading import ReadModel

log = logging.getLogger("jarvis.service")


class Jarvis(Deciding, ReadModel):
    def __init__(
        self,
        settings: Settings,
        store: Store,
        catalog: Catalog,
        inventory: Any,
        engine: Any,
        notifier: Any = None,
        jsettings: JarvisSettings | None = None,
    ) -> None:
        super().__init__(settings, store, catalog, inventory, engine, notifier, jsettings)
        self.assistant = Assistant(self)

    def register(self, scheduler: Any) -> None:
        """Diagnosis cycles fire on `jarvis` schedules (no job to wait for: the cycle waits for its own)."""
        scheduler.register("jarvis", lambda s: self.cycle(f"schedule {s.id}", limit=s.limit) and None)

    def cycle(self, actor: str = "schedule", remediate: bool = True, limit: str = "") -> Diagnosis:
        """One diagnosis of everything, recorded; then decisions for what is open."""
        d = self.diagnose(limit)
        self.record(d)
        self.last = {
            "at": self.clock(),
            "findings": len(d.findings),
            "seconds": round(d.seconds, 2),
            "notes": d.notes,
            "job_id": d.job_id,
            "by": actor,
        }
        if remediate:
            self.decide_all()
        return d

    def trigger(self, actor: str) -> None:
        """A cycle on the worker (web "Diagnose now"): returns at once."""
        self.audit("jarvis.diagnose", "all", {}, "started", actor=actor)
        self._enqueue(self.cycle, actor)

    def summary(self) -> dict[str, Any]:
        rows = self.findings()
        pending = self.actions(("pending",))
        return {
            "open": len(rows),
            "critical": sum(1 for r in rows if r.severity == "critical"),
            "warning": sum(1 for r in rows if r.severity == "warning"),
            "escalated": sum(1 for r in rows if r.status == "escalated"),
            "pending": len(pending),
            "breakers": [b.rule_id for b in self.breakers()],
            "llm": self.assistant.describe(),
            "last": self.last,
            "rules_error": self.rules_error,
            "top": rows[:5],
        }
