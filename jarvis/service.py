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
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy import func, select, update

from homelab.catalog import Catalog, ValidationError
from homelab.masking import mask
from homelab.refused import refused_outcome, refused_params
from homelab.settings import Settings
from homelab.store import Store, utcnow
from jarvis import hostchecks, netchecks
from jarvis.config import JarvisSettings, Rule, RulesError, RulesFile, Safety, Checks, load_rules
from jarvis.findings import RANK, Finding
from jarvis.models import ACTION_OPEN, JarvisAction, JarvisBreaker, JarvisChat, JarvisFinding

log = logging.getLogger(__name__)
ACTOR = "jarvis"
URL_CREDENTIALS_RE = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s:]+:[^/@\s]+@", re.I)


def scrub(value: Any) -> Any:
    """Evidence as stored and shown: secret-named keys masked, and credentials inside URLs
    (a git remote's https://user:token@host in an error message) cut out."""
    def urls(v: Any) -> Any:
        if isinstance(v, str):
            return URL_CREDENTIALS_RE.sub(lambda m: m["scheme"] + "********@", v)
        if isinstance(v, dict):
            return {k: urls(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [urls(x) for x in v]
        return v
    return mask(urls(value))
DIAGNOSE = "diagnose"


@dataclass(frozen=True)
class JarvisEvent:
    """A notification (escalation, breaker): the shape homelab.notify.Notifier sends."""

    kind: str  # escalated, breaker
    host: str
    playbook: str
    title: str
    lines: tuple[str, ...] = ()
    url: str = ""
    alarm: bool = True

    def text(self, limit: int = 1800) -> str:
        out = "\n".join([self.title, *self.lines, *([self.url] if self.url else [])])
        return out if len(out) <= limit else out[: limit - 1] + "…"

    def as_json(self) -> dict[str, Any]:
        return {"event": f"jarvis.{self.kind}", "host": self.host, "playbook": self.playbook, "title": self.title,
                "lines": list(self.lines), "url": self.url}


@dataclass
class Diagnosis:
    findings: list[Finding] = field(default_factory=list)
    scopes: set[str] = field(default_factory=set)  # what was checked (an open finding there and not seen is resolved)
    job_id: int | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Jarvis:
    def __init__(self, settings: Settings, store: Store, catalog: Catalog, inventory: Any, engine: Any,
                 notifier: Any = None, jsettings: JarvisSettings | None = None) -> None:
        self.settings = settings
        self.store = store
        self.catalog = catalog
        self.inventory = inventory
        self.engine = engine
        self.notifier = notifier
        self.js = jsettings or JarvisSettings.from_env()
        from homelab.store import Base
        from jarvis import models
        Base.metadata.create_all(store.engine, tables=[t.__table__ for t in (
            models.JarvisFinding, models.JarvisAction, models.JarvisBreaker, models.JarvisChat)])
        self.rules_error = ""
        self.rules = self._load_rules()
        self.last: dict[str, Any] = {}  # the last diagnosis: at, findings, seconds, notes
        self._queue: "queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]] | None]" = queue.Queue()
        self._worker: threading.Thread | None = None
        self._diag_lock = threading.Lock()
        self._decide_lock = threading.Lock()
        self.clock: Callable[[], dt.datetime] = utcnow  # naive UTC; tests may move it
        from jarvis.llm import Assistant
        self.assistant = Assistant(self)

    # ------------------------------------------------------------------ lifecycle
    def _load_rules(self) -> RulesFile:
        try:
            rules = load_rules(self.js.rules_path)
            self.rules_error = ""
            return rules
        except RulesError as exc:
            self.rules_error = str(exc)
            log.error("jarvis: rules not loaded, Jarvis only diagnoses: %s", exc)
            return RulesFile(self.js.rules_path, (), Safety(), Checks())

    def reload_rules(self) -> None:
        self.rules = self._load_rules()

    def start(self) -> None:
        self._worker = threading.Thread(target=self._work, name="homelab-jarvis", daemon=True)
        self._worker.start()

    def stop(self, timeout: float = 30.0) -> None:
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout)
            self._worker = None

    def wait_idle(self, timeout: float = 600.0) -> None:
        """Until every queued action and cycle has been worked off (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                raise TimeoutError(f"jarvis still busy after {timeout:.0f}s")
            time.sleep(0.05)

    def _enqueue(self, fn: Callable[..., Any], *args: Any) -> None:
        self._queue.put((fn, args))
        if self._worker is None:  # not started (tests driving it step by step): run inline
            self._drain()

    def _drain(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            try:
                if item is not None:
                    item[0](*item[1])
            except Exception:
                log.exception("jarvis: a queued step failed")
            finally:
                self._queue.task_done()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                item[0](*item[1])
            except Exception:
                log.exception("jarvis: a queued step failed")
            finally:
                self._queue.task_done()

    def audit(self, action: str, target: str, params: dict[str, Any] | None = None, outcome: str = "ok",
              actor: str = ACTOR) -> None:
        self.store.audit(actor, action, target, params or {}, "", outcome)

    # ------------------------------------------------------------------ diagnosis
    def service_targets(self) -> list[netchecks.ServiceTarget]:
        """Every enabled service of the inventory's service registry, as DNS/TLS/HTTP targets."""
        return netchecks.service_targets(self.inventory.registry.union().values())

    def targets(self, addresses: tuple[str, ...] = ()) -> list[netchecks.Target]:
        """What a network diagnosis checks (no network used to say so)."""
        return netchecks.targets(self.rules.checks, self.service_targets(), addresses)

    def diagnose(self, limit: str = "", hosts: bool = True, network: bool = True, only: set[str] | None = None) -> Diagnosis:
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
            spec = self.catalog.prepare(DIAGNOSE, {}, limit, False, False, self.inventory)
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
                d.findings.append(hostchecks.unreachable(h, f"the diagnose job #{job.id} did not end within {self.js.job_timeout:.0f}s"))
                d.scopes.add(f"reach:{h}")
            return ()
        data = (job.artifact_data or {}).get("jarvis_diagnose") or {}
        results = self.engine.task_results(job.id)
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
            d.findings += hostchecks.judge(h, facts, self.rules.checks, self.clock())
            for e in ((facts.get("ddclient") or {}).get("entries") or {}).values():
                ip = e.get("ipv4") or e.get("ip")
                if ip:
                    addresses.add(str(ip))
        return tuple(sorted(addresses))

    def cycle(self, actor: str = "schedule", remediate: bool = True, limit: str = "") -> Diagnosis:
        """One diagnosis of everything, recorded; then decisions for what is open."""
        d = self.diagnose(limit)
        self.record(d)
        self.last = {"at": self.clock(), "findings": len(d.findings), "seconds": round(d.seconds, 2), "notes": d.notes,
                     "job_id": d.job_id, "by": actor}
        if remediate:
            self.decide_all()
        return d

    def trigger(self, actor: str) -> None:
        """A cycle on the worker (web "Diagnose now"): returns at once."""
        self.audit("jarvis.diagnose", "all", {}, "started", actor=actor)
        self._enqueue(self.cycle, actor)

    def record(self, d: Diagnosis) -> tuple[list[str], list[str]]:
        """Store findings: new, seen again, resolved (open, not seen again where its check ran clean)."""
        now = self.clock()
        seen = {f.key: f for f in d.findings}
        new, resolved = [], []
        with self.store.session.begin() as s:
            rows = {r.key: r for r in s.scalars(select(JarvisFinding).where(JarvisFinding.key.in_(list(seen))))} if seen else {}
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
                for row in s.scalars(select(JarvisFinding).where(JarvisFinding.status != "resolved",
                                                                 JarvisFinding.scope.in_(list(d.scopes)))):
                    if row.key not in seen:
                        row.status, row.resolved_at = "resolved", now
                        resolved.append(row.key)
                        s.execute(update(JarvisAction).where(JarvisAction.finding_key == row.key, JarvisAction.status == "pending")
                                  .values(status="obsolete", reason="the finding resolved before anyone decided", finished_at=now))
        for key in new:
            f = seen[key]
            self.audit("jarvis.finding", f.target, {"code": f.code, "severity": f.severity, "summary": scrub(f.summary[:180])}, "open")
        for key in resolved:
            code, _, target = key.partition("|")
            self.audit("jarvis.finding", target, {"code": code}, "resolved")
        return new, resolved

    # ------------------------------------------------------------------ decisions
    def decide_all(self) -> None:
        with self.store.session() as s:
            rows = list(s.scalars(select(JarvisFinding).where(JarvisFinding.status != "resolved").order_by(JarvisFinding.id)))
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
        self.audit("jarvis.decision", row.target, {"code": row.code, "rule": rule.id if rule else "", **(params or {})},
                   decision[:200])

    def _decide(self, row: JarvisFinding) -> None:
        with self._decide_lock:
            rule = self.rules.rule_for(row.code)
            if rule is None:
                return self._note(row, "reported only: no rule handles this code", None)
            if rule.mode == "off":
                return self._note(row, f"reported only: rule {rule.id} is off", rule)
            if row.status == "escalated":
                return self._note(row, "escalated: a remediation did not fix it; waiting for a person", rule)
            with self.store.session() as s:
                active = s.scalar(select(JarvisAction).where(JarvisAction.finding_key == row.key,
                                                             JarvisAction.status.in_(ACTION_OPEN)))
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
                spec = self.catalog.prepare(rule.playbook, params, limit, False, False, self.inventory)
            except ValidationError as exc:
                return self._note(row, f"refused: {exc}", rule, {"playbook": rule.playbook, "params": params})
            check_first = rule.check_first if rule.check_first is not None else spec.entry.risk == "changes-config"
            status = "queued" if rule.mode == "auto" or check_first else "pending"
            with self.store.session.begin() as s:
                a = JarvisAction(source="rules", rule_id=rule.id, finding_id=row.id, finding_key=row.key, target=row.target,
                                 playbook=spec.entry.id, params=spec.masked_params(), limit=limit, mode=rule.mode,
                                 check_first=check_first, status=status, requested_by=ACTOR,
                                 reason=f"{row.code}: {row.summary}"[:1000])
                s.add(a)
                s.flush()
                action_id = a.id
            what = f"{spec.entry.id}{' ' + str(params) if params else ''} on {limit or 'its targets'}"
            if rule.mode == "auto":
                self._note(row, f"remediating (rule {rule.id}, auto): action #{action_id} runs {what}", rule)
            else:
                self._note(row, f"waiting for approval (rule {rule.id}): action #{action_id} would run {what}", rule)
            self._enqueue(self._run_action, action_id)

    def gate(self, rule: Rule | None, target: str, throttle: bool, playbook: str = "") -> str:
        """Why this may not run now ("" = it may): catalog, breaker, maintenance, throttle, rate limit."""
        playbook = playbook or (rule.playbook if rule else "")
        if playbook not in self.catalog.entries:
            return f"refused: playbook '{playbook[:64]}' is not in the catalog"
        now = self.clock()
        if rule is not None:
            br = self.open_breaker(rule.id)
            if br is not None:
                return f"refused: the circuit breaker of rule {rule.id} is open since {br.opened_at:%Y-%m-%d %H:%M} UTC ({br.reason[:120]})"
        for w in self.rules.safety.maintenance:
            if w.contains(now):
                return f"deferred: maintenance window {w.describe()}"
        with self.store.session() as s:
            if throttle and rule is not None:
                last = s.scalar(select(JarvisAction).where(JarvisAction.rule_id == rule.id, JarvisAction.target == target,
                                                           JarvisAction.status.not_in(("refused", "obsolete")))
                                .order_by(JarvisAction.id.desc()))
                if last is not None and last.created_at > now - dt.timedelta(seconds=rule.throttle):
                    nxt = last.created_at + dt.timedelta(seconds=rule.throttle)
                    return (f"throttled: rule {rule.id} acted on {target} at {last.created_at:%H:%M:%S} (action #{last.id}); "
                            f"not again before {nxt:%H:%M:%S} UTC")
            recent = s.scalar(select(func.count()).select_from(JarvisAction)
                              .where(JarvisAction.started_at >= now - dt.timedelta(seconds=60))) or 0
        if recent >= self.rules.safety.rate_limit_per_minute:
            return f"rate limited: {recent} actions started in the last minute (limit {self.rules.safety.rate_limit_per_minute})"
        return ""

    def open_breaker(self, rule_id: str) -> JarvisBreaker | None:
        with self.store.session() as s:
            return s.scalar(select(JarvisBreaker).where(JarvisBreaker.rule_id == rule_id, JarvisBreaker.reset_at.is_(None)))

    # ------------------------------------------------------------------ actions
    def _action(self, action_id: int) -> JarvisAction:
        with self.store.session() as s:
            a = s.get(JarvisAction, action_id)
            if a is None:
                raise ValidationError(f"Jarvis action {action_id} does not exist", status=404)
            return a

    def _set(self, action_id: int, **values: Any) -> None:
        with self.store.session.begin() as s:
            s.execute(update(JarvisAction).where(JarvisAction.id == action_id).values(**values))

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
                self.audit("jarvis.proposal", f"action {action_id} ({a.playbook})", {"params": a.params, "limit": a.limit},
                           "waiting for approval")
                return
        gate = self.gate(rule, a.target, throttle=False, playbook=a.playbook)
        if gate:
            self._set(action_id, status="refused", reason=gate, finished_at=self.clock())
            self.audit("jarvis.run", f"action {action_id} ({a.playbook})", {"params": a.params, "limit": a.limit}, gate[:200])
            return
        try:
            spec = self.catalog.prepare(a.playbook, a.params, a.limit, False, False, self.inventory)
        except ValidationError as exc:
            self._set(action_id, status="refused", reason=f"refused: {exc}", finished_at=self.clock())
            self.audit("jarvis.run", f"action {action_id} ({a.playbook})", {"params": a.params}, f"refused: {exc}"[:200])
            return
        job = self.engine.submit(spec, ACTOR if a.mode == "auto" else f"jarvis (approved by {a.decided_by})", "jarvis",
                                 requested_limit=a.limit)
        self._set(action_id, status="running", job_id=job.id, started_at=self.clock())
        self.audit("jarvis.run", f"action {action_id} job {job.id} ({a.playbook})",
                   {"params": a.params, "limit": a.limit, "rule": a.rule_id, "mode": a.mode}, "started")
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
        return self._outcome(a, rule, "escalated", f"job #{job.id} succeeded but the finding is still there: {still}"[:1000],
                             failed=True)

    def _check_run(self, a: JarvisAction) -> bool:
        """Check + diff mode first; keeps the diff. False when the action stops here."""
        try:
            spec = self.catalog.prepare(a.playbook, a.params, a.limit, True, True, self.inventory)
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
            self._outcome(a, self.rules.rule(a.rule_id), "failed", f"the check-mode run #{job.id} {job.status}: {job.reason}",
                          failed=True)
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
        self.audit("jarvis.outcome", f"action {a.id} ({a.playbook})", {"target": a.target, "rule": a.rule_id}, f"{status}: {reason}"[:200])
        url = f"{self.settings.public_url}/jarvis" if self.settings.public_url else ""
        if status in ("failed", "escalated") and a.finding_key:
            with self.store.session.begin() as s:
                s.execute(update(JarvisFinding).where(JarvisFinding.key == a.finding_key, JarvisFinding.status != "resolved")
                          .values(status="escalated", decision=f"escalated: action #{a.id} {status}: {reason}"[:1000]))
            self.audit("jarvis.escalate", a.target, {"action": a.id, "playbook": a.playbook}, reason[:200])
            self._notify(JarvisEvent("escalated", a.limit, a.playbook, f"Jarvis needs a person: {a.target}",
                                     (f"{a.playbook} {a.params} {status}: {reason}"[:600],), url))
        if failed and rule is not None:
            self._maybe_trip(rule, url)

    def _maybe_trip(self, rule: Rule, url: str) -> None:
        s_ = self.rules.safety
        since = self.clock() - dt.timedelta(seconds=s_.breaker_window)
        with self.store.session() as s:
            reset = s.scalar(select(func.max(JarvisBreaker.reset_at)).where(JarvisBreaker.rule_id == rule.id))
            if reset is not None and reset > since:  # failures before a person's reset do not count again
                since = reset
            n = s.scalar(select(func.count()).select_from(JarvisAction).where(
                JarvisAction.rule_id == rule.id, JarvisAction.failed.is_(True), JarvisAction.finished_at >= since)) or 0
        if n < s_.breaker_failures or self.open_breaker(rule.id) is not None:
            return
        reason = f"{n} failed remediations within {s_.breaker_window / 60:.0f} min"
        with self.store.session.begin() as s:
            s.add(JarvisBreaker(rule_id=rule.id, reason=reason, opened_at=self.clock()))
        self.audit("jarvis.breaker", rule.id, {"failures": n}, f"open: {reason}")
        self._notify(JarvisEvent("breaker", "", rule.playbook, f"Jarvis stopped rule {rule.id}: {reason}",
                                 ("It runs again only after a person resets its breaker on the Jarvis page.",), url))

    def _notify(self, ev: JarvisEvent) -> None:
        if self.notifier is not None:
            try:
                self.notifier.send_async([ev])
            except Exception:
                log.exception("jarvis: notification failed")

    # ------------------------------------------------------------------ people
    def approve(self, action_id: int, user: str) -> JarvisAction:
        a = self._action(action_id)
        if a.status != "pending":
            raise ValidationError(f"action {action_id} is {a.status}, not waiting for approval", status=409)
        rule = self.rules.rule(a.rule_id) if a.rule_id else None
        gate = self.gate(rule, a.target, throttle=False, playbook=a.playbook)
        if gate:
            self.audit("jarvis.approve", f"action {action_id} ({a.playbook})", {"params": a.params}, gate[:200], actor=user)
            raise ValidationError(f"cannot run now: {gate}", status=409)
        with self.store.session.begin() as s:
            n = s.execute(update(JarvisAction).where(JarvisAction.id == action_id, JarvisAction.status == "pending")
                          .values(status="queued", decided_by=user, decided_at=self.clock())).rowcount
        if not n:
            raise ValidationError(f"action {action_id} was decided meanwhile", status=409)
        self.audit("jarvis.approve", f"action {action_id} ({a.playbook})", {"params": a.params, "limit": a.limit}, "approved", actor=user)
        self._enqueue(self._run_action, action_id)
        return self._action(action_id)

    def reject(self, action_id: int, user: str, why: str = "") -> JarvisAction:
        with self.store.session.begin() as s:
            n = s.execute(update(JarvisAction).where(JarvisAction.id == action_id, JarvisAction.status == "pending")
                          .values(status="rejected", decided_by=user, decided_at=self.clock(), finished_at=self.clock(),
                                  reason=f"rejected by {user}" + (f": {why[:300]}" if why else ""))).rowcount
        if not n:
            raise ValidationError(f"action {action_id} is not waiting for approval", status=409)
        a = self._action(action_id)
        self.audit("jarvis.reject", f"action {action_id} ({a.playbook})", {"params": a.params}, "rejected", actor=user)
        return a

    def reset_breaker(self, rule_id: str, user: str) -> bool:
        with self.store.session.begin() as s:
            n = s.execute(update(JarvisBreaker).where(JarvisBreaker.rule_id == rule_id, JarvisBreaker.reset_at.is_(None))
                          .values(reset_at=self.clock(), reset_by=user)).rowcount
        self.audit("jarvis.breaker", rule_id, {}, "reset" if n else "nothing to reset", actor=user)
        return bool(n)

    def propose(self, playbook: Any, params: Any, limit: Any, reason: str, user: str, source: str = "chat") -> JarvisAction:
        """A run someone (the chat model on a person's behalf) asks for: validated against the catalog;
        it runs at once only when an auto rule would run exactly this for an open finding, else it waits
        for approval. Raises ValidationError (refused) for anything the catalog does not allow."""
        limit = limit if isinstance(limit, str) else ""
        try:
            spec = self.catalog.prepare(playbook, params if isinstance(params, dict) else None, limit, False, False, self.inventory)
        except ValidationError as exc:
            self.audit("jarvis.proposal", str(playbook)[:60], {"params": refused_params(self.catalog, playbook, params), "limit": limit},
                       refused_outcome(self.catalog, playbook, params, exc)[:200], actor=f"{user} via {source}")
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
            a = JarvisAction(source=source, rule_id=rule.id if rule else "", finding_id=finding.id if finding else None,
                             finding_key=finding.key if finding else "", target=target, playbook=spec.entry.id,
                             params=spec.masked_params(), limit=limit, mode="auto" if rule else "approve",
                             check_first=check_first, status="queued" if (rule or check_first) else "pending",
                             requested_by=f"{user} via {source}", reason=(reason + (f" ({note})" if note else ""))[:1000])
            s.add(a)
            s.flush()
            action_id = a.id
        self.audit("jarvis.proposal", f"action {action_id} ({spec.entry.id})", {"params": spec.masked_params(), "limit": limit},
                   f"runs under rule {rule.id}" if rule else "waiting for approval", actor=f"{user} via {source}")
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
                want = self.catalog.prepare(rule.playbook, rule.render(row.params or {}), row.host or rule.limit, False, False,
                                            self.inventory)
            except (KeyError, ValidationError):
                continue
            if want.extravars == spec.extravars and set(spec.hosts) <= set(want.hosts):
                return rule, row
        return None, None

    # ------------------------------------------------------------------ reading
    def findings(self, include_resolved: bool = False, limit: int = 200) -> list[JarvisFinding]:
        q = select(JarvisFinding)
        if not include_resolved:
            q = q.where(JarvisFinding.status != "resolved")
        with self.store.session() as s:
            rows = list(s.scalars(q.order_by(JarvisFinding.last_seen.desc()).limit(limit)))
        rows.sort(key=lambda r: (r.status == "resolved", -RANK.get(r.severity, 0), r.target))
        return rows

    def actions(self, statuses: tuple[str, ...] | None = None, limit: int = 100) -> list[JarvisAction]:
        q = select(JarvisAction)
        if statuses:
            q = q.where(JarvisAction.status.in_(statuses))
        with self.store.session() as s:
            return list(s.scalars(q.order_by(JarvisAction.id.desc()).limit(limit)))

    def breakers(self) -> list[JarvisBreaker]:
        with self.store.session() as s:
            return list(s.scalars(select(JarvisBreaker).where(JarvisBreaker.reset_at.is_(None)).order_by(JarvisBreaker.id)))

    def chat_history(self, user: str, limit: int = 50) -> list[JarvisChat]:
        with self.store.session() as s:
            rows = list(s.scalars(select(JarvisChat).where(JarvisChat.user == user).order_by(JarvisChat.id.desc()).limit(limit)))
        return rows[::-1]

    def summary(self) -> dict[str, Any]:
        rows = self.findings()
        pending = self.actions(("pending",))
        return {
            "open": len(rows), "critical": sum(1 for r in rows if r.severity == "critical"),
            "warning": sum(1 for r in rows if r.severity == "warning"),
            "escalated": sum(1 for r in rows if r.status == "escalated"), "pending": len(pending),
            "breakers": [b.rule_id for b in self.breakers()], "llm": self.assistant.describe(), "last": self.last,
            "rules_error": self.rules_error, "top": rows[:5],
        }
