"""Decisions, in one place: per open finding, which rule applies and what it may do now (every
decision that changes is audited), and what people decide (approve, reject, reset a breaker) or
propose (the chat, on a person's behalf), each through the safety gate."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import select, update

from homelab.catalog import ValidationError
from homelab.jobs.stages import DELIVER
from homelab.refused import refused_outcome, refused_params
from homelab.store import AuditEntry, Job, rowcount
from jarvis.actions import ActionRunner
from jarvis.base import ACTOR, JarvisEvent
from jarvis.config import Rule
from jarvis.findings import RANK
from jarvis.models import ACTION_OPEN, JarvisAction, JarvisBreaker, JarvisFinding

log = logging.getLogger("jarvis.service")


class Deciding(ActionRunner):
    def decide_all(self) -> None:
        with self.store.session() as s:
            rows = list(
                s.scalars(select(JarvisFinding).where(JarvisFinding.status != "resolved").order_by(JarvisFinding.id))
            )
        rows.sort(key=lambda r: -RANK.get(r.severity, 0))
        for row in rows:
            try:
                self._decide(row)
            except Exception:
                log.exception("jarvis: deciding about %s failed", row.key)

    def _note(self, row: JarvisFinding, decision: str, rule: Rule | None, params: dict[str, Any] | None = None) -> None:
        """Record the decision on the finding; audit it when it changed (not every cycle)."""
        if row.decision == decision:
            return
        with self.store.session.begin() as s:
            s.execute(update(JarvisFinding).where(JarvisFinding.id == row.id).values(decision=decision[:1000]))
        row.decision = decision
        self.audit(
            "jarvis.decision",
            row.target,
            {"code": row.code, "rule": rule.id if rule else "", **(params or {})},
            decision[:200],
        )

    def _decide(self, row: JarvisFinding) -> None:
        with self._decide_lock:
            rule = self.rules.rule_for(row.code)
            if rule is None:
                return self._note(row, "reported only: no rule handles this code", None)
            if rule.mode == "off":
                return self._note(row, f"reported only: rule {rule.id} is off", rule)
            if rule.mode == "notify":
                return self._notify_finding(row, rule)
            if row.status == "escalated":
                return self._note(row, "escalated: a remediation did not fix it; waiting for a person", rule)
            with self.store.session() as s:
                active = s.scalar(
                    select(JarvisAction).where(
                        JarvisAction.finding_key == row.key, JarvisAction.status.in_(ACTION_OPEN)
                    )
                )
            if active is not None:
                return  # its action decides what happens next
            try:
                params = rule.render(row.params or {})
            except KeyError as exc:
                return self._note(row, f"refused: rule {rule.id} needs {exc} but the finding has none", rule)
            gate = self.gate(rule, row.target, throttle=True)
            if gate:
                return self._note(row, gate, rule, {"playbook": rule.playbook, "params": params})
            limit = row.host or rule.limit
            try:
                spec = self.catalog.prepare(rule.playbook, params, limit, inventory=self.inventory)
            except ValidationError as exc:
                return self._note(row, f"refused: {exc}", rule, {"playbook": rule.playbook, "params": params})
            check_first = rule.check_first if rule.check_first is not None else spec.entry.risk == "changes-config"
            status = "queued" if rule.mode == "auto" or check_first else "pending"
            with self.store.session.begin() as s:
                a = JarvisAction(
                    source="rules",
                    rule_id=rule.id,
                    finding_id=row.id,
                    finding_key=row.key,
                    target=row.target,
                    playbook=spec.entry.id,
                    params=spec.masked_params(),
                    limit=limit,
                    mode=rule.mode,
                    check_first=check_first,
                    status=status,
                    requested_by=ACTOR,
                    reason=f"{row.code}: {row.summary}"[:1000],
                )
                s.add(a)
                s.flush()
                action_id = a.id
            what = f"{spec.entry.id}{' ' + str(params) if params else ''} on {limit or 'its targets'}"
            if rule.mode == "auto":
                self._note(row, f"remediating (rule {rule.id}, auto): action #{action_id} runs {what}", rule)
            else:
                self._note(row, f"waiting for approval (rule {rule.id}): action #{action_id} would run {what}", rule)
            self._enqueue(self._run_action, action_id)

    def _told_by_engine(self, row: JarvisFinding) -> str:
        """A failed pipeline run by this server's job engine was told when it ended (the engine's
        StageAlerts, naming the stage): its release record names the job (evidence last.job)."""
        last = (row.evidence or {}).get("last") if isinstance(row.evidence, dict) else None
        job_id = str((last or {}).get("job") or "") if isinstance(last, dict) else ""
        if not job_id.isdigit():
            return ""
        with self.store.session() as s:
            job = s.get(Job, int(job_id))
        # Its status may still read running here (Jarvis re-checks as the job ends): the engine tells
        # of it once it has ended failed.
        if job is None or job.playbook != DELIVER:
            return ""
        return f"job #{job.id}, which ran it here, notified when it failed"

    def _notify_finding(self, row: JarvisFinding, rule: Rule) -> None:
        """Mode notify: no playbook, a notification, at most once per rule and target within the
        rule's throttle (kept in the audit log: jarvis.notify), whether the finding stayed open or
        came back. Maintenance windows do not hold it back: telling is not acting."""
        sent = f"sent (rule {rule.id})"
        told = self._told_by_engine(row)
        if told:
            return self._note(row, f"reported; {told}: not notified again (rule {rule.id})", rule)
        with self.store.session() as s:
            last = s.scalar(
                select(AuditEntry)
                .where(AuditEntry.action == "jarvis.notify", AuditEntry.target == row.target[:200])
                .where(AuditEntry.outcome == sent)
                .order_by(AuditEntry.id.desc())
            )
        if last is not None and last.at > self.clock() - dt.timedelta(seconds=rule.throttle):
            if row.decision.startswith("reported and notified"):
                return  # this very finding was the one notified
            nxt = last.at + dt.timedelta(seconds=rule.throttle)
            when = f"{last.at:%Y-%m-%d %H:%M} UTC, not again before {nxt:%Y-%m-%d %H:%M} UTC"
            return self._note(row, f"reported; throttled: rule {rule.id} notified about {row.target} at {when}", rule)
        url = f"{self.settings.public_url}/jarvis" if self.settings.public_url else ""
        self._notify(
            JarvisEvent(
                "finding",
                row.host,
                "",
                f"Jarvis: {row.summary}"[:300],
                (f"{row.code} ({row.severity}) on {row.target}", *([rule.description] if rule.description else ())),
                url,
                alarm=row.severity != "info",
            )
        )
        channels = getattr(self.notifier, "channels", None)
        self.audit("jarvis.notify", row.target, {"code": row.code, "rule": rule.id}, sent)
        where = f"to {', '.join(channels)}" if channels else "(no notification channel is configured)"
        self._note(row, f"reported and notified {where} (rule {rule.id}, notify): no playbook runs", rule)

    def approve(self, action_id: int, user: str) -> JarvisAction:
        a = self._action(action_id)
        if a.status != "pending":
            raise ValidationError(f"action {action_id} is {a.status}, not waiting for approval", status=409)
        rule = self.rules.rule(a.rule_id) if a.rule_id else None
        gate = self.gate(rule, a.target, throttle=False, playbook=a.playbook)
        if gate:
            self.audit(
                "jarvis.approve", f"action {action_id} ({a.playbook})", {"params": a.params}, gate[:200], actor=user
            )
            raise ValidationError(f"cannot run now: {gate}", status=409)
        with self.store.session.begin() as s:
            n = rowcount(
                s.execute(
                    update(JarvisAction)
                    .where(JarvisAction.id == action_id, JarvisAction.status == "pending")
                    .values(status="queued", decided_by=user, decided_at=self.clock())
                )
            )
        if not n:
            raise ValidationError(f"action {action_id} was decided meanwhile", status=409)
        self.audit(
            "jarvis.approve",
            f"action {action_id} ({a.playbook})",
            {"params": a.params, "limit": a.limit},
            "approved",
            actor=user,
        )
        self._enqueue(self._run_action, action_id)
        return self._action(action_id)

    def reject(self, action_id: int, user: str, why: str = "") -> JarvisAction:
        with self.store.session.begin() as s:
            n = rowcount(
                s.execute(
                    update(JarvisAction)
                    .where(JarvisAction.id == action_id, JarvisAction.status == "pending")
                    .values(
                        status="rejected",
                        decided_by=user,
                        decided_at=self.clock(),
                        finished_at=self.clock(),
                        reason=f"rejected by {user}" + (f": {why[:300]}" if why else ""),
                    )
                )
            )
        if not n:
            raise ValidationError(f"action {action_id} is not waiting for approval", status=409)
        a = self._action(action_id)
        self.audit("jarvis.reject", f"action {action_id} ({a.playbook})", {"params": a.params}, "rejected", actor=user)
        return a

    def reset_breaker(self, rule_id: str, user: str) -> bool:
        with self.store.session.begin() as s:
            n = rowcount(
                s.execute(
                    update(JarvisBreaker)
                    .where(JarvisBreaker.rule_id == rule_id, JarvisBreaker.reset_at.is_(None))
                    .values(reset_at=self.clock(), reset_by=user)
                )
            )
        self.audit("jarvis.breaker", rule_id, {}, "reset" if n else "nothing to reset", actor=user)
        return bool(n)

    def propose(
        self, playbook: Any, params: Any, limit: Any, reason: str, user: str, source: str = "chat"
    ) -> JarvisAction:
        """A run someone (the chat model on a person's behalf) asks for: validated against the catalog;
        it runs at once only when an auto rule would run exactly this for an open finding, else it waits
        for approval. Raises ValidationError (refused) for anything the catalog does not allow."""
        limit = limit if isinstance(limit, str) else ""
        try:
            spec = self.catalog.prepare(
                playbook, params if isinstance(params, dict) else None, limit, inventory=self.inventory
            )
        except ValidationError as exc:
            self.audit(
                "jarvis.proposal",
                str(playbook)[:60],
                {"params": refused_params(self.catalog, playbook, params), "limit": limit},
                refused_outcome(self.catalog, playbook, params, exc)[:200],
                actor=f"{user} via {source}",
            )
            raise
        rule, finding = self._rule_allowing(spec)
        target = finding.target if finding else f"{spec.entry.id}:{limit or 'all'}"
        note = ""
        if rule is not None:
            gate = self.gate(rule, target, throttle=True)
            if gate:  # the rule may not run it now: a person may still decide to
                note, rule = f"rule {rule.id} would allow it, but {gate}", None
        check_first = spec.entry.risk == "changes-config"
        with self.store.session.begin() as s:
            a = JarvisAction(
                source=source,
                rule_id=rule.id if rule else "",
                finding_id=finding.id if finding else None,
                finding_key=finding.key if finding else "",
                target=target,
                playbook=spec.entry.id,
                params=spec.masked_params(),
                limit=limit,
                mode="auto" if rule else "approve",
                check_first=check_first,
                status="queued" if (rule or check_first) else "pending",
                requested_by=f"{user} via {source}",
                reason=(reason + (f" ({note})" if note else ""))[:1000],
            )
            s.add(a)
            s.flush()
            action_id = a.id
        self.audit(
            "jarvis.proposal",
            f"action {action_id} ({spec.entry.id})",
            {"params": spec.masked_params(), "limit": limit},
            f"runs under rule {rule.id}" if rule else "waiting for approval",
            actor=f"{user} via {source}",
        )
        if rule is not None or check_first:
            self._enqueue(self._run_action, action_id)
        return self._action(action_id)

    def _rule_allowing(self, spec: Any) -> tuple[Rule | None, JarvisFinding | None]:
        with self.store.session() as s:
            rows = list(s.scalars(select(JarvisFinding).where(JarvisFinding.status == "open")))
        for row in rows:
            rule = self.rules.rule_for(row.code)
            if rule is None or rule.mode != "auto" or rule.playbook != spec.entry.id:
                continue
            try:
                want = self.catalog.prepare(
                    rule.playbook, rule.render(row.params or {}), row.host or rule.limit, inventory=self.inventory
                )
            except (KeyError, ValidationError):
                continue
            if want.extravars == spec.extravars and set(spec.hosts) <= set(want.hosts):
                return rule, row
        return None, None
