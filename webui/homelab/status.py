"""Service status without an agent on the host: every enabled service of the registry that has a
domain is probed from the controller (an HTTP GET of its health path through its route, a TLS
handshake with its first domain) and each observation is stored as a sample.

Why it is built this way:
- The probes are homelab.probes, the ones Jarvis's network checks run: one code says what
  "answers" and "the certificate verifies" mean.
- The cycle is an action of the one scheduler (registered as "status", fired every
  HOMELAB_STATUS_INTERVAL seconds by the lease holder), so several web workers on one store probe
  once, not once each.
- Status rules: up = the expected HTTP status; degraded = it answers, but with a 5xx or another
  unexpected status, or its certificate expires within TLS_DEGRADED_DAYS; down = no answer
  (refused, timeout, a certificate that does not verify); unknown = never probed.
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

from homelab.history import thin_service_samples
from homelab.probes import FRONT_PAGE_OK, HttpProbe, TlsProbe, probe_http, probe_tls
from homelab.registry import Service
from homelab.settings import Settings
from homelab.store import ServiceSample, Store, iso_z, rowcount, utcnow

log = logging.getLogger(__name__)
STATUSES = ("up", "degraded", "down", "unknown")
PROBLEMS_FIRST = {"down": 0, "degraded": 1, "unknown": 2, "up": 3}
TLS_DEGRADED_DAYS = 14
WORKERS = 8


@dataclass(frozen=True)
class StatusTarget:
    """What the cycle probes of one service: its health URL through its route and its first domain."""

    name: str
    title: str
    url: str  # its front page: what a person opens
    probe_url: str  # its health path (or its front page)
    domain: str
    expect: tuple[int, ...]


def status_targets(services: Iterable[Service]) -> list[StatusTarget]:
    """The enabled services with a domain, by name: what a cycle probes (no network used to say so)."""
    out = []
    for s in services:
        if s.enabled and s.domains:
            expect = tuple(s.health.get("status") or ()) if s.health.get("path") else ()
            out.append(
                StatusTarget(s.name, s.title, s.url, s.health_url or s.url, s.domains[0], expect or FRONT_PAGE_OK)
            )
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
    ) -> None:
        self.settings = settings
        self.store = store
        self.services = services  # the registry's services, read again at each cycle
        self.clock = clock
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
        targets = self.targets()
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
        """Each target with its latest sample (unknown when never probed), problems first."""
        targets = self.targets()
        names = [t.name for t in targets]
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
        rows = [self._row(t, latest.get(t.name), now) for t in targets]
        return sorted(rows, key=lambda r: (PROBLEMS_FIRST.get(r["status"], 2), r["name"]))

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
    def _row(t: StatusTarget, sample: ServiceSample | None, now: dt.datetime) -> dict[str, Any]:
        base = {"name": t.name, "title": t.title, "url": t.url, "probe_url": t.probe_url}
        if sample is None:
            return {
                **base,
                "status": "unknown",
                "observed_at": None,
                "age_seconds": None,
                "response_ms": None,
                "http_status": None,
                "tls_days_left": None,
                "error": "not probed yet",
            }
        return {
            **base,
            "status": sample.status,
            "observed_at": iso_z(sample.at),
            "age_seconds": max(0, int((now - sample.at).total_seconds())),
            "response_ms": sample.response_ms,
            "http_status": sample.http_status,
            "tls_days_left": sample.tls_days_left,
            "error": sample.error,
        }


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
