"""Host and container facts without an agent on the host: the read-only `facts` catalog playbook
(playbooks/ops/facts.yml) runs through the one job engine every HOMELAB_FACTS_INTERVAL (5 min) and
what it reports (set_stats) is kept as samples: each host's CPU, memory, disk, load and uptime,
each service container's state, health, restart count, image and commit (its label homelab.commit,
which the delivery pipeline sets: deployed_commit says which commit a container runs).

Why it is built this way:
- A catalog playbook through the engine, like every other run: it is audited as a job, it queues
  behind a converge of the same host, and its output is masked like any job's.
- The cycle is a built-in schedule ("builtin:facts") of the one scheduler, fired by the lease
  holder only; the samples are taken from any `facts` job that ends successfully in this process
  (engine.on_finished), so a run started by hand from the catalog refreshes them too.
- Samples are kept as long as the service samples (HOMELAB_STATUS_RETENTION_DAYS); each ingest
  deletes older ones and thins those older than 24 h to one per 5 minutes (homelab.history).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from sqlalchemy import delete, func, select

from homelab.history import thin_facts_samples
from homelab.settings import Settings
from homelab.store import ContainerSample, HostSample, Store, iso_z, rowcount, utcnow

log = logging.getLogger(__name__)
ENTRY = "facts"  # the catalog entry the cycle runs
SHA_RE = re.compile(r"^[0-9a-f]{40}$")  # a container's label homelab.commit: the full sha, nothing else kept
# the delivery pipeline's image tag: homelab/<app>:<first 12 hex of the commit>[-<8 hex>]
IMAGE_COMMIT_RE = re.compile(r"(?:^|/)homelab/[a-z0-9][a-z0-9_.-]*:([0-9a-f]{12})(?:-[0-9a-f]{8})?$")
SHORT = 12  # how many hex digits of a commit a page shows
CONTAINERS_ERROR = "containers: "  # how a host sample's error says its containers could not be read
HOST_FIELDS = ("cpu_percent", "cpus", "mem_percent", "mem_total", "disk_percent", "disk_free") + (
    "load1",
    "load5",
    "load15",
    "uptime_seconds",
)


class _Scheduler(Protocol):
    def every(self, action: str, seconds: int, handler: Callable[[Any], int | None]) -> None: ...


def _number(value: Any, kind: type) -> Any:
    """A fact as stored: an int or float, None for anything else (a host's report is data, not trusted)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return kind(value)


def _text(value: Any, limit: int) -> str:
    return str(value if value is not None else "")[:limit]


def _sha(value: Any) -> str:
    """A commit label as stored: a full sha (lower case), "" for anything else."""
    text = str(value or "").strip().lower()
    return text if SHA_RE.match(text) else ""


def deployed_commit(container: dict[str, Any]) -> str:
    """The commit a container runs, as a page shows it (12 hex): from its label homelab.commit, else
    from the delivery pipeline's image tag (homelab/<app>:<12 hex>[-<8 hex>]); "" when neither says."""
    sha = _sha(container.get("git_commit"))
    if sha:
        return sha[:SHORT]
    m = IMAGE_COMMIT_RE.search(str(container.get("image") or ""))
    return m.group(1) if m else ""


class FactsService:
    """The facts cycle, its samples, and what the dashboard and the service pages read of them."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        catalog: Any,
        inventory: Any,
        engine: Any,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.store = store
        self.catalog = catalog
        self.inventory = inventory
        self.engine = engine
        self.clock = clock
        engine.on_finished.append(self._on_finished)

    def register(self, scheduler: _Scheduler) -> None:
        """The cycle on the scheduler, every facts_interval seconds (0: never)."""
        if self.settings.facts_interval > 0 and ENTRY in self.catalog.entries:
            scheduler.every(ENTRY, self.settings.facts_interval, self._fire)

    def _fire(self, _schedule: Any) -> int:
        """The "facts" action: start the facts playbook; the scheduler waits for the job."""
        return int(self.start("schedule builtin:facts", "schedule").id)

    def start(self, actor: str, source: str) -> Any:
        spec = self.catalog.prepare(ENTRY, {}, "", inventory=self.inventory)
        return self.engine.submit(spec, actor, source)

    # ------------------------------------------------------------------ samples
    def _on_finished(self, job_id: int) -> None:
        try:
            job = self.engine.get(job_id)
            if job.playbook == ENTRY and job.status == "successful" and not job.check:
                self.ingest(job_id, (job.artifact_data or {}).get("homelab_facts") or {})
        except Exception:
            log.exception("facts: reading job %s failed", job_id)

    def ingest(self, job_id: int | None, report: dict[str, Any]) -> int:
        """Store one facts report ({host: what files/facts.py printed}); drop samples past the retention.
        Returns how many host samples were stored."""
        now = self.clock()
        hosts, boxes = [], []
        for host, facts in sorted(report.items()):
            if not isinstance(facts, dict):
                continue
            h: dict[str, Any] = facts["host"] if isinstance(facts.get("host"), dict) else {}
            errors = [str(e) for e in facts.get("errors") or [] if e]
            c: dict[str, Any] = facts["containers"] if isinstance(facts.get("containers"), dict) else {}
            if c.get("error"):
                errors.append(f"{CONTAINERS_ERROR}{c['error']}")
            hosts.append(
                HostSample(
                    host=_text(host, 200),
                    at=now,
                    job_id=job_id,
                    error="; ".join(errors)[:1000],
                    **{
                        k: _number(h.get(k), int if k in ("cpus", "mem_total", "disk_free") else float)
                        for k in HOST_FIELDS
                    },
                )
            )
            for item in c.get("items") or []:
                if not isinstance(item, dict) or not item.get("service") or not item.get("name"):
                    continue
                boxes.append(
                    ContainerSample(
                        host=_text(host, 200),
                        at=now,
                        job_id=job_id,
                        service=_text(item["service"], 64),
                        name=_text(item["name"], 128),
                        state=_text(item.get("state"), 32),
                        health=_text(item.get("health"), 32),
                        restart_count=_number(item.get("restart_count"), int) or 0,
                        image=_text(item.get("image"), 500),
                        git_commit=_sha(item.get("commit")),
                    )
                )
        cutoff = now - dt.timedelta(days=self.settings.status_retention_days)
        with self.store.session.begin() as s:
            s.add_all([*hosts, *boxes])
            gone = rowcount(s.execute(delete(HostSample).where(HostSample.at < cutoff)))
            gone += rowcount(s.execute(delete(ContainerSample).where(ContainerSample.at < cutoff)))
            gone += thin_facts_samples(s, now)  # one row per host (container) per 5 min past 24 h
        log.info(
            "facts: %d host(s), %d container(s) from job %s; %d old sample(s) deleted",
            len(hosts),
            len(boxes),
            job_id,
            gone,
        )
        return len(hosts)

    # ------------------------------------------------------------------ reading
    def hosts(self) -> list[dict[str, Any]]:
        """Each host's newest sample, by name, with its age."""
        with self.store.session() as s:
            newest = select(func.max(HostSample.id).label("id")).group_by(HostSample.host).subquery()
            rows = list(
                s.scalars(select(HostSample).join(newest, HostSample.id == newest.c.id).order_by(HostSample.host))
            )
        now = self.clock()
        return [{**r.as_dict(), "age_seconds": max(0, int((now - r.at).total_seconds()))} for r in rows]

    def containers(self, service: str | None = None) -> list[dict[str, Any]]:
        """The containers of each host's newest facts (of one service, when named)."""
        return [c for n in newest_facts(self.store, service) for c in n.containers]

    def last_at(self) -> str | None:
        with self.store.session() as s:
            return iso_z(s.scalar(select(func.max(HostSample.at))))


@dataclass(frozen=True)
class HostFacts:
    """A host's newest facts as the status judge reads them: when, whether its containers could be
    read, and its containers (of one service, when asked so)."""

    host: str
    at: dt.datetime
    containers_read: bool
    containers: list[dict[str, Any]]


def newest_facts(store: Store, service: str | None = None) -> list[HostFacts]:
    """Each host's newest facts sample and the containers it saw (of one service, when named), by host."""
    with store.session() as s:
        newest = select(HostSample.host, func.max(HostSample.at).label("at")).group_by(HostSample.host).subquery()
        rows = s.scalars(
            select(HostSample)
            .join(newest, (HostSample.host == newest.c.host) & (HostSample.at == newest.c.at))
            .order_by(HostSample.host, HostSample.id)
        )
        hosts = {h.host: h for h in rows}  # the newest by time; of two at one time, the later row
        out = []
        for h in hosts.values():
            q = select(ContainerSample).where(ContainerSample.host == h.host, ContainerSample.at == h.at)
            if service is not None:
                q = q.where(ContainerSample.service == service)
            boxes = [r.as_dict() for r in s.scalars(q.order_by(ContainerSample.service, ContainerSample.name))]
            out.append(HostFacts(h.host, h.at, CONTAINERS_ERROR not in (h.error or ""), boxes))
    return out
