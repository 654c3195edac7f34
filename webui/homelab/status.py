"""Service status without an agent on the host: every enabled service of the registry that has a
domain is probed from the controller (an HTTP GET of its health path through its route, a TLS
handshake with its first domain) and each observation is stored as a sample. A service's status
also takes its containers into account, as the facts cycle last saw them (homelab.facts).

Why it is built this way:
- The probes are homelab.probes, the ones Jarvis's network checks run: one code says what
  "answers" and "the certificate verifies" mean.
- The cycle is an action of the one scheduler (registered as "status", fired every
  HOMELAB_STATUS_INTERVAL seconds by the lease holder), so several web workers on one store probe
  once, not once each.
- Status rules of a probe: up = the expected HTTP status; degraded = it answers, but with a 5xx or
  another unexpected status, or its certificate expires within TLS_DEGRADED_DAYS; down = no answer
  (refused, timeout, a certificate that does not verify); unknown = never probed.
- One judge (judge_service) says a service's status, read by the dashboard's tiles, the live tiles,
  the API and so the CLI: the worst of its newest probe and its containers in each host's newest
  facts, when those are at most FACTS_FRESH_INTERVALS facts intervals old (older ones say nothing).
  A container restarting, paused or unhealthy makes it degraded; exited, dead, created (never
  started) or missing (a container its registry entry names, absent from a host that enables it)
  down. A service without a domain (nothing to probe) but with containers is judged from them alone.
- Samples are kept for the retention the settings say (7 days); each cycle deletes older ones and
  merges those older than 24 h into one row per 5 minutes (homelab.history, which the charts read).
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import logging
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

from sqlalchemy import delete, func, select

from homelab.facts import HostFacts, newest_facts
from homelab.history import WORST, thin_service_samples
from homelab.probes import FRONT_PAGE_OK, HttpProbe, TlsProbe, probe_http, probe_tls
from homelab.registry import Service
from homelab.settings import Settings
from homelab.store import ServiceSample, Store, iso_z, rowcount, utcnow

log = logging.getLogger(__name__)
STATUSES = ("up", "degraded", "down", "unknown")
PROBLEMS_FIRST = {"down": 0, "degraded": 1, "unknown": 2, "up": 3}
TLS_DEGRADED_DAYS = 14
WORKERS = 8
FACTS_FRESH_INTERVALS = 2  # container facts older than this many facts intervals are not judged
CONTAINER_DOWN = ("exited", "dead", "created", "removing")  # docker's states of a container not running
CONTAINER_DEGRADED = ("restarting", "paused")


@dataclass(frozen=True)
class StatusTarget:
    """What the cycle probes of one service: its health URL through its route and its first domain
    (all empty for a service without a domain: judged from its containers alone)."""

    name: str
    title: str
    url: str  # its front page: what a person opens
    probe_url: str  # its health path (or its front page)
    domain: str
    expect: tuple[int, ...]
    containers: tuple[str, ...] = ()  # the container names its registry entry says it runs

    @property
    def probed(self) -> bool:
        return bool(self.domain)


def status_targets(services: Iterable[Service]) -> list[StatusTarget]:
    """The services with a status, by name (no network used to say so): the enabled ones with a domain
    (probed), and the enabled container services without one (judged from their containers alone;
    the platform's Caddy and PostgreSQL are not services a tile stands for)."""
    out = []
    for s in services:
        if s.enabled and s.domains:
            expect = tuple(s.health.get("status") or ()) if s.health.get("path") else ()
            out.append(
                StatusTarget(
                    s.name, s.title, s.url, s.health_url or s.url, s.domains[0], expect or FRONT_PAGE_OK, s.containers
                )
            )
        elif s.enabled and s.kind == "container" and s.containers:
            out.append(StatusTarget(s.name, s.title, "", "", "", (), s.containers))
    return sorted(out, key=lambda t: t.name)


def judge(t: StatusTarget, http: HttpProbe, tls: TlsProbe | None) -> tuple[str, str]:
    """(status, why it is not up) from one HTTP and one TLS probe of a service."""
    if http.status is None:
        return "down", http.error or "no answer"
    if tls is not None and tls.invalid:
        return "down", f"the certificate of {t.domain} does not verify: {tls.invalid}"
    if http.status >= 500:
        return "degraded", f"answers HTTP {http.status}"
    if http.status not in t.expect:
        return "degraded", f"answers HTTP {http.status} (expected {', '.join(map(str, t.expect))})"
    if tls is not None and tls.days_left is not None and tls.days_left < TLS_DEGRADED_DAYS:
        return "degraded", f"the certificate of {t.domain} expires in {tls.days_left:.1f} days"
    if tls is not None and tls.ms is None:
        return "degraded", f"the TLS probe of {t.domain} failed: {tls.error}"
    return "up", ""


def container_problem(c: dict[str, Any]) -> tuple[str, str] | None:
    """(status, why) of one container as the facts saw it; None when it runs (healthy or without a check)."""
    name, state, health = c.get("name", "?"), c.get("state", ""), c.get("health", "")
    if state in CONTAINER_DOWN:
        return "down", f"container {name} exited" if state == "exited" else f"container {name} is {state}"
    if state in CONTAINER_DEGRADED:
        return "degraded", f"container {name} is {state}"
    if health == "unhealthy":
        return "degraded", f"container {name} is unhealthy"
    return None


def judge_service(
    t: StatusTarget, probe: ServiceSample | None, facts: list[HostFacts], hosts: list[str] | None
) -> tuple[str, str]:
    """(status, why it is not up) of a service: the worst of its newest probe and its containers.
    `facts`: the fresh facts of the hosts (its containers only); `hosts`: the hosts that enable it
    (None: every host with facts). A container its entry names and a fresh host lacks is missing."""
    problems: list[tuple[str, str]] = []
    fresh = {f.host: f for f in facts if f.containers_read}
    expected = [h for h in (hosts if hosts is not None else sorted(fresh)) if h in fresh]
    many = len(hosts if hosts is not None else fresh) > 1
    for host in expected:
        where = f" on {host}" if many else ""
        seen = {c["name"] for c in fresh[host].containers}
        for c in fresh[host].containers:
            p = container_problem(c)
            if p:
                problems.append((p[0], p[1] + where))
        problems += [("down", f"container {n} is missing{where}") for n in t.containers if n not in seen]
    if t.probed:
        base = (probe.status, probe.error) if probe is not None else ("unknown", "not probed yet")
    elif expected:
        base = ("up", "")
    else:
        base = ("unknown", "no container facts yet (or none fresh)")
    ranked = sorted(problems, key=lambda p: -WORST.get(p[0], 1))  # stable: the containers in their order
    status = max([base[0], *(p[0] for p in ranked)], key=lambda s: WORST.get(s, 1))
    why = [p[1] for p in ranked] + ([base[1]] if base[0] != "up" and base[1] else [])
    return status, "; ".join(why)


class _Scheduler(Protocol):
    def every(self, action: str, seconds: int, handler: Callable[[Any], int | None]) -> None: ...


class StatusService:
    """The probe cycle, its samples, and what the dashboard, the API and the CLI read of them."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        services: Callable[[], Iterable[Service]],
        clock: Callable[[], dt.datetime] = utcnow,
        hosts: Callable[[], dict[str, dict[str, Service]]] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.services = services  # the registry's services, read again at each cycle
        self.clock = clock
        self.hosts = hosts  # the registry per host (Registry.by_host): where each service is enabled
        self.last: dict[str, Any] = {}  # the last cycle: when, how long, how many services

    def register(self, scheduler: _Scheduler) -> None:
        """The cycle on the scheduler, every status_interval seconds (0: never)."""
        if self.settings.status_interval > 0:
            scheduler.every("status", self.settings.status_interval, self._fire)

    def _fire(self, _schedule: Any) -> None:
        """The "status" action: a cycle, with no job to wait for."""
        self.cycle()

    def targets(self) -> list[StatusTarget]:
        return status_targets(self.services())

    @property
    def facts_fresh_seconds(self) -> int:
        """How old container facts may be and still count: FACTS_FRESH_INTERVALS facts intervals
        (of the default 5 minutes when the facts cycle is off: a run by hand still counts)."""
        return FACTS_FRESH_INTERVALS * (self.settings.facts_interval or 300)

    # ------------------------------------------------------------------ the cycle
    def probe(self, t: StatusTarget) -> ServiceSample:
        """One service, now: its HTTP and TLS probes, judged (not stored)."""
        st = self.settings
        http = probe_http(t.probe_url, st.status_timeout, st.status_ca_file, st.status_connect)
        tls = None
        if urllib.parse.urlsplit(t.probe_url).scheme == "https":
            tls = probe_tls(t.domain, st.status_connect, st.status_timeout, st.status_ca_file)
        status, error = judge(t, http, tls)
        return ServiceSample(
            service=t.name,
            at=self.clock(),
            status=status,
            url=t.probe_url,
            http_status=http.status,
            response_ms=http.ms,
            tls_days_left=tls.days_left if tls is not None else None,
            error=error[:500],
        )

    def cycle(self) -> list[ServiceSample]:
        """Probe every target at once (bounded in time as a whole), store the samples, drop the old ones."""
        started = time.monotonic()
        targets = [t for t in self.targets() if t.probed]
        samples: list[ServiceSample] = []
        if targets:
            budget = self.settings.status_timeout * 3 + 5  # a TLS probe of an invalid certificate connects twice
            pool = cf.ThreadPoolExecutor(max_workers=min(WORKERS, len(targets)), thread_name_prefix="homelab-status")
            try:
                futs = {pool.submit(self.probe, t): t for t in targets}
                done, pending = cf.wait(futs, timeout=budget)
                for f in done:
                    t = futs[f]
                    try:
                        samples.append(f.result())
                    except Exception as exc:  # a bug in a probe is this service's error, not the cycle's end
                        samples.append(self._failed(t, f"the probe failed: {type(exc).__name__}: {exc}"))
                for f in pending:
                    samples.append(self._failed(futs[f], f"the probes did not end within {budget:g}s"))
            finally:
                pool.shutdown(wait=False, cancel_futures=True)
        cutoff = self.clock() - dt.timedelta(days=self.settings.status_retention_days)
        with self.store.session.begin() as s:
            s.add_all(samples)
            deleted = rowcount(s.execute(delete(ServiceSample).where(ServiceSample.at < cutoff)))
            thinned = thin_service_samples(s, self.clock())  # one row per 5 min past 24 h
        seconds = time.monotonic() - started
        self.last = {"at": self.clock(), "seconds": round(seconds, 3), "services": len(targets), "deleted": deleted}
        self.last["thinned"] = thinned
        log.info(
            "status: %d service(s) in %.2fs: %s",
            len(targets),
            seconds,
            ", ".join(f"{x.service}={x.status}" for x in sorted(samples, key=lambda x: x.service)),
        )
        return samples

    def _failed(self, t: StatusTarget, why: str) -> ServiceSample:
        return ServiceSample(service=t.name, at=self.clock(), status="down", url=t.probe_url, error=why[:500])

    # ------------------------------------------------------------------ reading
    def current(self) -> list[dict[str, Any]]:
        """Each target with its status (judge_service: its latest probe and its containers), problems first."""
        targets = self.targets()
        names = [t.name for t in targets if t.probed]
        latest: dict[str, ServiceSample] = {}
        if names:
            with self.store.session() as s:
                # the newest by time, not by id: a rollup of old probes (homelab.history) gets a new id
                newest = (
                    select(ServiceSample.service, func.max(ServiceSample.at).label("at"))
                    .where(ServiceSample.service.in_(names))
                    .group_by(ServiceSample.service)
                    .subquery()
                )
                newest_rows = s.scalars(
                    select(ServiceSample)
                    .join(newest, (ServiceSample.service == newest.c.service) & (ServiceSample.at == newest.c.at))
                    .order_by(ServiceSample.id)
                )
                for row in newest_rows:
                    latest[row.service] = row
        now = self.clock()
        since = now - dt.timedelta(seconds=self.facts_fresh_seconds)
        facts = [f for f in newest_facts(self.store) if f.at >= since] if targets else []
        by_host = self.hosts() if self.hosts is not None else None
        rows = []
        for t in targets:
            mine = [
                HostFacts(f.host, f.at, f.containers_read, [c for c in f.containers if c["service"] == t.name])
                for f in facts
            ]
            hosts = (
                sorted(h for h, svcs in by_host.items() if t.name in svcs and svcs[t.name].enabled) if by_host else None
            )
            rows.append(self._row(t, latest.get(t.name), mine, hosts, now))
        return sorted(rows, key=problems_first)

    def one(self, name: str) -> dict[str, Any] | None:
        """A target's current status, None when the name is not a probed service."""
        return next((r for r in self.current() if r["name"] == name), None)

    def history(self, name: str, seconds: int) -> list[dict[str, Any]]:
        """The service's samples of the last `seconds`, oldest first."""
        since = self.clock() - dt.timedelta(seconds=seconds)
        with self.store.session() as s:
            rows = s.scalars(
                select(ServiceSample)
                .where(ServiceSample.service == name, ServiceSample.at >= since)
                .order_by(ServiceSample.at, ServiceSample.id)
            )
            return [r.as_dict() for r in rows]

    @staticmethod
    def _row(
        t: StatusTarget, sample: ServiceSample | None, facts: list[HostFacts], hosts: list[str] | None, now: dt.datetime
    ) -> dict[str, Any]:
        status, why = judge_service(t, sample, facts, hosts)
        seen = [f for f in facts if f.containers_read and (hosts is None or f.host in hosts)]
        boxes_at = max((f.at for f in seen), default=None)
        at = sample.at if sample is not None else (None if t.probed else boxes_at)
        return {
            "name": t.name,
            "title": t.title,
            "url": t.url,
            "probe_url": t.probe_url,
            "probed": t.probed,
            "status": status,
            "observed_at": iso_z(at) if at is not None else None,
            "age_seconds": max(0, int((now - at).total_seconds())) if at is not None else None,
            "response_ms": sample.response_ms if sample is not None else None,
            "http_status": sample.http_status if sample is not None else None,
            "tls_days_left": sample.tls_days_left if sample is not None else None,
            "error": why,
            "probe_status": sample.status if sample is not None else None,
            "containers": [
                {k: c[k] for k in ("host", "name", "state", "health", "restart_count")}
                for f in seen
                for c in f.containers
            ],
            "containers_observed_at": iso_z(boxes_at) if boxes_at is not None else None,
        }


def problems_first(row: dict[str, Any]) -> tuple[int, str]:
    """The tiles' order, the first render's and the live one's (the stream sends the rows in it):
    down, degraded, unknown, up, then by name."""
    return PROBLEMS_FIRST.get(row["status"], 2), row["name"]


def for_tiles(row: dict[str, Any]) -> dict[str, Any]:
    """A status row as the tiles show it (the first render and the live stream): with its age and
    its containers in words ("n8n running (healthy)")."""
    boxes = row.get("containers") or []
    many = len({c["host"] for c in boxes}) > 1
    words = [
        f"{c['name']} {c['state'] or '?'}"
        + (f" ({c['health']})" if c["health"] else "")
        + (f" on {c['host']}" if many else "")
        for c in boxes
    ]
    return {**row, "age": age_text(row["age_seconds"]), "containers_text": ", ".join(words)}


def age_text(seconds: int | None) -> str:
    """How old an observation is, as a person says it: "12 s", "4 min", "3 h", "2 d"; "never"."""
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"
