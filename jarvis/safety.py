"""The safety gate, enforced in code: catalog only, circuit breaker per rule (persisted; a person
resets it), maintenance windows, throttle per rule and target, a global rate limit on started actions."""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import func, select

from jarvis.base import ACTOR, JarvisBase, JarvisEvent  # noqa: F401
from jarvis.config import Rule
from jarvis.models import JarvisAction, JarvisBreaker

log = logging.getLogger("jarvis.service")


class SafetyGate(JarvisBase):
    def gate(self, rule: Rule | None, target: str, throttle: bool, playbook: str = "") -> str:
        """Why this may not run now ("" = it may): catalog, breaker, maintenance, throttle, rate limit."""
        playbook = playbook or (rule.playbook if rule else "")
        if playbook not in self.catalog.entries:
            return f"refused: playbook '{playbook[:64]}' is not in the catalog"
        now = self.clock()
        if rule is not None:
            br = self.open_breaker(rule.id)
            if br is not None:
                return (
                    f"refused: the circuit breaker of rule {rule.id} is open since {br.opened_at:%Y-%m-%d %H:%M} UTC "
                    f"({br.reason[:120]})"
                )
        for w in self.rules.safety.maintenance:
            if w.contains(now):
                return f"deferred: maintenance window {w.describe()}"
        with self.store.session() as s:
            if throttle and rule is not None:
                last = s.scalar(
                    select(JarvisAction)
                    .where(
                        JarvisAction.rule_id == rule.id,
                        JarvisAction.target == target,
                        JarvisAction.status.not_in(("refused", "obsolete")),
                    )
                    .order_by(JarvisAction.id.desc())
                )
                if last is not None and last.created_at > now - dt.timedelta(seconds=rule.throttle):
                    nxt = last.created_at + dt.timedelta(seconds=rule.throttle)
                    return (
                        f"throttled: rule {rule.id} acted on {target} at {last.created_at:%H:%M:%S} "
                        f"(action #{last.id}); "
                        f"not again before {nxt:%H:%M:%S} UTC"
                    )
            recent = (
                s.scalar(
                    select(func.count())
                    .select_from(JarvisAction)
                    .where(JarvisAction.started_at >= now - dt.timedelta(seconds=60))
                )
                or 0
            )
        if recent >= self.rules.safety.rate_limit_per_minute:
            limit = self.rules.safety.rate_limit_per_minute
            return f"rate limited: {recent} actions started in the last minute (limit {limit})"
        return ""

    def open_breaker(self, rule_id: str) -> JarvisBreaker | None:
        with self.store.session() as s:
            return s.scalar(
                select(JarvisBreaker).where(JarvisBreaker.rule_id == rule_id, JarvisBreaker.reset_at.is_(None))
            )

    def _maybe_trip(self, rule: Rule, url: str) -> None:
        s_ = self.rules.safety
        since = self.clock() - dt.timedelta(seconds=s_.breaker_window)
        with self.store.session() as s:
            reset = s.scalar(select(func.max(JarvisBreaker.reset_at)).where(JarvisBreaker.rule_id == rule.id))
            if reset is not None and reset > since:  # failures before a person's reset do not count again
                since = reset
            n = (
                s.scalar(
                    select(func.count())
                    .select_from(JarvisAction)
                    .where(
                        JarvisAction.rule_id == rule.id,
                        JarvisAction.failed.is_(True),
                        JarvisAction.finished_at >= since,
                    )
                )
                or 0
            )
        if n < s_.breaker_failures or self.open_breaker(rule.id) is not None:
            return
        reason = f"{n} failed remediations within {s_.breaker_window / 60:.0f} min"
        with self.store.session.begin() as s:
            s.add(JarvisBreaker(rule_id=rule.id, reason=reason, opened_at=self.clock()))
        self.audit("jarvis.breaker", rule.id, {"failures": n}, f"open: {reason}")
        self._notify(
            JarvisEvent(
                "breaker",
                "",
                rule.playbook,
                f"Jarvis stopped rule {rule.id}: {reason}",
                ("It runs again only after a person resets its breaker on the Jarvis page.",),
                url,
            )
        )
