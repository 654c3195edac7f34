"""Running one action: check mode first where asked (its diff kept for the approval), the gate
again, the catalog playbook through the engine, then verification (the finding's scope diagnosed
again): resolved, or escalated to a person; failures count towards the rule's breaker."""

from __future__ import annotations

import logging

from sqlalchemy import select, update

from homelab.catalog import ValidationError
from homelab.jobs.stages import DELIVER
from jarvis.base import ACTOR, JarvisEvent  # noqa: F401
from jarvis.config import Rule
from jarvis.diagnosis import Diagnosing
from jarvis.models import JarvisAction, JarvisFinding
from jarvis.safety import SafetyGate

log = logging.getLogger("jarvis.service")


class ActionRunner(Diagnosing, SafetyGate):
    def _run_action(self, action_id: int) -> None:
        a = self._action(action_id)
        rule = self.rules.rule(a.rule_id) if a.rule_id else None
        if a.status not in ("queued",):
            return
        if a.check_first and a.check_job_id is None:
            if not self._check_run(a):
                return
            a = self._action(action_id)
            if a.mode != "auto" and not a.decided_by:
                self._set(action_id, status="pending")
                self.audit(
                    "jarvis.proposal",
                    f"action {action_id} ({a.playbook})",
                    {"params": a.params, "limit": a.limit},
                    "waiting for approval",
                )
                return
        gate = self.gate(rule, a.target, throttle=False, playbook=a.playbook)
        if gate:
            self._set(action_id, status="refused", reason=gate, finished_at=self.clock())
            self.audit(
                "jarvis.run", f"action {action_id} ({a.playbook})", {"params": a.params, "limit": a.limit}, gate[:200]
            )
            return
        try:
            spec = self.catalog.prepare(a.playbook, a.params, a.limit, inventory=self.inventory)
        except ValidationError as exc:
            self._set(action_id, status="refused", reason=f"refused: {exc}", finished_at=self.clock())
            self.audit(
                "jarvis.run", f"action {action_id} ({a.playbook})", {"params": a.params}, f"refused: {exc}"[:200]
            )
            return
        job = self.engine.submit(
            spec,
            ACTOR if a.mode == "auto" else f"jarvis (approved by {a.decided_by})",
            "jarvis",
            requested_limit=a.limit,
        )
        self._set(action_id, status="running", job_id=job.id, started_at=self.clock())
        self.audit(
            "jarvis.run",
            f"action {action_id} job {job.id} ({a.playbook})",
            {"params": a.params, "limit": a.limit, "rule": a.rule_id, "mode": a.mode},
            "started",
        )
        try:
            job = self.engine.wait(job.id, self.js.job_timeout)
        except TimeoutError:
            self.engine.cancel(job.id, ACTOR)
            job = self.engine.wait(job.id, 120)
        if job.status != "successful":
            return self._outcome(a, rule, "failed", f"job #{job.id} {job.status}: {job.reason}"[:1000], failed=True)
        if not a.finding_key:
            return self._outcome(a, rule, "resolved", f"job #{job.id} succeeded (no finding to verify)")
        self._set(action_id, status="verifying")
        still = self._verify(a)
        if still is None:
            return self._outcome(a, rule, "resolved", f"job #{job.id} succeeded and the finding is gone")
        return self._outcome(
            a, rule, "escalated", f"job #{job.id} succeeded but the finding is still there: {still}"[:1000], failed=True
        )

    def _check_run(self, a: JarvisAction) -> bool:
        """Check + diff mode first; keeps the diff. False when the action stops here."""
        try:
            spec = self.catalog.prepare(a.playbook, a.params, a.limit, check=True, diff=True, inventory=self.inventory)
        except ValidationError as exc:
            self._set(a.id, status="refused", reason=f"refused: {exc}", finished_at=self.clock())
            self.audit("jarvis.check", f"action {a.id} ({a.playbook})", {"params": a.params}, f"refused: {exc}"[:200])
            return False
        job = self.engine.submit(spec, ACTOR, "jarvis", requested_limit=a.limit)
        self._set(a.id, status="checking", check_job_id=job.id)
        try:
            job = self.engine.wait(job.id, self.js.job_timeout)
        except TimeoutError:
            self.engine.cancel(job.id, ACTOR)
            job = self.engine.wait(job.id, 120)
        parts = []
        for r in self.engine.task_results(job.id):
            if r.status == "changed":
                parts.append(f"--- {r.host}: {r.task}\n{r.diff or '(changed, no diff)'}")
        diff = "\n".join(parts) or "(the check run reports no change)"
        self.audit("jarvis.check", f"action {a.id} job {job.id} ({a.playbook})", {"params": a.params}, job.status)
        if job.status != "successful":
            self._set(a.id, diff=diff[:100000])
            self._outcome(
                a,
                self.rules.rule(a.rule_id),
                "failed",
                f"the check-mode run #{job.id} {job.status}: {job.reason}",
                failed=True,
            )
            return False
        self._set(a.id, diff=diff[:100000], status="queued")
        return True

    def _verify(self, a: JarvisAction) -> str | None:
        """Diagnose the finding's scope again and record it; the finding's summary if still present, else None."""
        with self.store.session() as s:
            row = s.scalar(select(JarvisFinding).where(JarvisFinding.key == a.finding_key))
        if row is None:
            return None
        if row.scope.startswith(("host:", "reach:")):
            d = self.diagnose(limit=row.host, hosts=True, network=False)
        else:
            d = self.diagnose(hosts=False, network=True, only={row.scope})
        self._set(a.id, verify_job_id=d.job_id)
        self.record(d)
        f = next((f for f in d.findings if f.key == a.finding_key), None)
        return f.summary if f else None

    def _outcome(self, a: JarvisAction, rule: Rule | None, status: str, reason: str, failed: bool = False) -> None:
        now = self.clock()
        self._set(a.id, status=status, reason=reason, finished_at=now, failed=failed)
        self.audit(
            "jarvis.outcome",
            f"action {a.id} ({a.playbook})",
            {"target": a.target, "rule": a.rule_id},
            f"{status}: {reason}"[:200],
        )
        url = f"{self.settings.public_url}/jarvis" if self.settings.public_url else ""
        if status in ("failed", "escalated") and a.finding_key:
            with self.store.session.begin() as s:
                s.execute(
                    update(JarvisFinding)
                    .where(JarvisFinding.key == a.finding_key, JarvisFinding.status != "resolved")
                    .values(status="escalated", decision=f"escalated: action #{a.id} {status}: {reason}"[:1000])
                )
            self.audit("jarvis.escalate", a.target, {"action": a.id, "playbook": a.playbook}, reason[:200])
        # A failed pipeline is told by the job engine itself, with the stage it failed at (StageAlerts,
        # whoever started it): Jarvis does not send a second message for the same run.
        if status in ("failed", "escalated") and a.finding_key and not (status == "failed" and a.playbook == DELIVER):
            self._notify(
                JarvisEvent(
                    "escalated",
                    a.limit,
                    a.playbook,
                    f"Jarvis needs a person: {a.target}",
                    (f"{a.playbook} {a.params} {status}: {reason}"[:600],),
                    url,
                )
            )
        if failed and rule is not None:
            self._maybe_trip(rule, url)
