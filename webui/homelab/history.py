"""History for the charts: the samples of the status and facts cycles as time series, bucketed at
query time, and thinned by the retention pass.

Why it is built this way:
- Two ranges, each with its own bucket: 24 h in 5-minute buckets (288 points), 7 d in 1-hour buckets
  (168 points). Buckets are aligned to the epoch (a multiple of their length), so a 5-minute bucket
  always lies inside one 1-hour bucket, and bucketing is done in Python over the rows of the range
  (a few thousand at most): the same code on SQLite and PostgreSQL, and no SQL date arithmetic.
- Thinning keeps the store at most one row per service (host, container) per 5 minutes once the
  samples are older than THIN_AFTER (24 h): the 24 h charts see every probe, the 7 d chart needs no
  finer rows than its 1-hour buckets. The status cycle probes every minute, so its rows of a 5-minute
  bucket are merged into one rollup that keeps what the charts read: the number of probes, how many
  were up, the mean response time (weighted by the probes that had one), the slowest, the worst
  status. The facts cycle runs every 5 minutes, so a bucket rarely holds two of its rows (a run by
  hand): the newest host row is kept, and the container row with the most restarts.
- Only buckets whose whole span is past the cutoff are thinned (the cutoff is aligned to 5 minutes),
  so a bucket is merged once; a pass that finds a rollup and later rows in one bucket merges them
  all again, so nothing is counted twice or lost.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from homelab.store import ContainerSample, HostSample, ServiceSample, Store, iso_z

THIN_STEP = 300  # seconds: past THIN_AFTER, at most one row per series per THIN_STEP
THIN_AFTER = dt.timedelta(hours=24)
WORST = {"down": 3, "degraded": 2, "unknown": 1, "up": 0}  # the worst status of a bucket wins
_EPOCH = dt.datetime(1970, 1, 1)


@dataclass(frozen=True)
class Range:
    """A chart range: its name (the API's ?range=), its span and its bucket, in seconds."""

    name: str
    seconds: int
    step: int


RANGES = {r.name: r for r in (Range("24h", 86400, 300), Range("7d", 7 * 86400, 3600))}


def bucket_start(at: dt.datetime, step: int) -> dt.datetime:
    """The start of the epoch-aligned bucket of `step` seconds that `at` (naive UTC) falls in."""
    seconds = int((at - _EPOCH).total_seconds())
    return _EPOCH + dt.timedelta(seconds=seconds - seconds % step)


def _mean(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known), 2) if known else None


# ---------------------------------------------------------------------- what one row stands for
def _probes(r: ServiceSample) -> tuple[int, int, int, float | None]:
    """(probes, up, with a response time, the slowest) of a row: a probe's own row or a rollup."""
    if r.samples is None:
        responded = 1 if r.response_ms is not None else 0
        return 1, 1 if r.status == "up" else 0, responded, r.response_ms
    return r.samples, r.up_samples or 0, r.response_samples or 0, r.response_ms_max


def service_buckets(rows: Iterable[ServiceSample], step: int) -> list[dict[str, Any]]:
    """Per bucket (oldest first, only those with samples): the probes, the fraction up, the worst
    status, the mean and the slowest response time (None when no probe had an answer)."""
    groups: dict[dt.datetime, list[ServiceSample]] = defaultdict(list)
    for r in rows:
        groups[bucket_start(r.at, step)].append(r)
    out = []
    for start in sorted(groups):
        n = up = responded = 0
        total = 0.0
        slowest: float | None = None
        for r in groups[start]:
            rn, rup, rresp, rmax = _probes(r)
            n, up, responded = n + rn, up + rup, responded + rresp
            if r.response_ms is not None and rresp:
                total += r.response_ms * rresp
            if rmax is not None:
                slowest = rmax if slowest is None else max(slowest, rmax)
        out.append(
            {
                "start": iso_z(start),
                "samples": n,
                "up_fraction": round(up / n, 4) if n else None,
                "status": max((r.status for r in groups[start]), key=lambda s: WORST.get(s, 1)),
                "response_ms_mean": round(total / responded, 2) if responded else None,
                "response_ms_max": round(slowest, 2) if slowest is not None else None,
            }
        )
    return out


def host_buckets(rows: Iterable[HostSample], step: int) -> list[dict[str, Any]]:
    """Per bucket (oldest first, only those with samples): the mean CPU, memory and disk use, in %."""
    groups: dict[dt.datetime, list[HostSample]] = defaultdict(list)
    for r in rows:
        groups[bucket_start(r.at, step)].append(r)
    return [
        {
            "start": iso_z(start),
            "samples": len(groups[start]),
            "cpu_percent": _mean(r.cpu_percent for r in groups[start]),
            "mem_percent": _mean(r.mem_percent for r in groups[start]),
            "disk_percent": _mean(r.disk_percent for r in groups[start]),
        }
        for start in sorted(groups)
    ]


def container_buckets(rows: Iterable[ContainerSample], step: int) -> list[dict[str, Any]]:
    """Per container (by host, then name): per bucket, the most restarts Docker counted."""
    series: dict[tuple[str, str], dict[dt.datetime, int]] = defaultdict(dict)
    for r in rows:
        buckets = series[(r.host, r.name)]
        start = bucket_start(r.at, step)
        buckets[start] = max(buckets.get(start, 0), r.restart_count or 0)
    return [
        {
            "host": host,
            "name": name,
            "buckets": [{"start": iso_z(t), "restart_count": n} for t, n in sorted(buckets.items())],
        }
        for (host, name), buckets in sorted(series.items())
    ]


# ---------------------------------------------------------------------- reading a range
def _window(r: Range, now: dt.datetime) -> tuple[dt.datetime, dict[str, Any]]:
    since = now - dt.timedelta(seconds=r.seconds)
    return since, {"range": r.name, "bucket_seconds": r.step, "from": iso_z(since), "to": iso_z(now)}


def service_history(store: Store, name: str, r: Range, now: dt.datetime) -> dict[str, Any]:
    """A service's probes of the range in buckets, and its containers' restarts."""
    since, head = _window(r, now)
    with store.session() as s:
        probes = s.scalars(
            select(ServiceSample)
            .where(ServiceSample.service == name, ServiceSample.at >= since)
            .order_by(ServiceSample.at, ServiceSample.id)
        ).all()
        boxes = s.scalars(
            select(ContainerSample)
            .where(ContainerSample.service == name, ContainerSample.at >= since)
            .order_by(ContainerSample.at, ContainerSample.id)
        ).all()
    return {
        "service": name,
        **head,
        "buckets": service_buckets(probes, r.step),
        "containers": container_buckets(boxes, r.step),
    }


def host_history(store: Store, host: str, r: Range, now: dt.datetime) -> dict[str, Any]:
    """A host's CPU, memory and disk of the range in buckets."""
    since, head = _window(r, now)
    with store.session() as s:
        rows = s.scalars(
            select(HostSample)
            .where(HostSample.host == host, HostSample.at >= since)
            .order_by(HostSample.at, HostSample.id)
        ).all()
    return {"host": host, **head, "buckets": host_buckets(rows, r.step)}


# ---------------------------------------------------------------------- thinning (the retention pass)
def thin_cutoff(now: dt.datetime) -> dt.datetime:
    """Rows before this are thinned: THIN_AFTER ago, down to a bucket boundary (whole buckets only)."""
    return bucket_start(now - THIN_AFTER, THIN_STEP)


def _groups(rows: Iterable[Any], key: Any) -> list[list[Any]]:
    """The rows by series and 5-minute bucket (in the order they came)."""
    groups: dict[tuple[Any, dt.datetime], list[Any]] = defaultdict(list)
    for r in rows:
        groups[(key(r), bucket_start(r.at, THIN_STEP))].append(r)
    return list(groups.values())


def thin_service_samples(s: Session, now: dt.datetime) -> int:
    """Merge each service's probes of every 5 minutes before the cutoff into one rollup row (a lone
    probe too, so that no probe's own row stays behind the cutoff and the next pass reads only the
    buckets that passed it since); returns how many rows went."""
    cutoff = thin_cutoff(now)
    raw = s.execute(
        select(ServiceSample.service, ServiceSample.at).where(
            ServiceSample.at < cutoff, ServiceSample.samples.is_(None)
        )
    ).all()
    if not raw:
        return 0
    oldest = bucket_start(min(at for _, at in raw), THIN_STEP)
    services = sorted({name for name, _ in raw})
    rows = s.scalars(
        select(ServiceSample)
        .where(ServiceSample.service.in_(services), ServiceSample.at >= oldest, ServiceSample.at < cutoff)
        .order_by(ServiceSample.at, ServiceSample.id)
    ).all()
    gone = 0
    for group in _groups(rows, lambda r: r.service):
        if len(group) == 1 and group[0].samples is not None:
            continue  # a rollup already
        s.add(_rollup(group))
        for r in group:
            s.delete(r)
        gone += len(group) - 1
    return gone


def _rollup(group: list[ServiceSample]) -> ServiceSample:
    """One row standing for the probes of one service's 5 minutes (oldest first)."""
    n = up = responded = 0
    total = 0.0
    slowest: float | None = None
    for r in group:
        rn, rup, rresp, rmax = _probes(r)
        n, up, responded = n + rn, up + rup, responded + rresp
        if r.response_ms is not None and rresp:
            total += r.response_ms * rresp
        if rmax is not None:
            slowest = rmax if slowest is None else max(slowest, rmax)
    worst = max(reversed(group), key=lambda r: WORST.get(r.status, 1))  # the newest of the worst
    days = [r.tls_days_left for r in group if r.tls_days_left is not None]
    return ServiceSample(
        service=group[0].service,
        at=bucket_start(group[0].at, THIN_STEP),
        status=worst.status,
        url=group[-1].url,
        http_status=worst.http_status,
        response_ms=total / responded if responded else None,
        tls_days_left=min(days) if days else None,
        error=worst.error,
        samples=n,
        up_samples=up,
        response_samples=responded,
        response_ms_max=slowest,
    )


def thin_facts_samples(s: Session, now: dt.datetime) -> int:
    """Keep one host row (the newest) and one row per container (the one with the most restarts)
    of every 5 minutes before the cutoff; returns how many rows went."""
    cutoff = thin_cutoff(now)
    since = cutoff - THIN_AFTER  # a pass runs at least daily: older buckets were thinned already
    hosts = s.scalars(select(HostSample).where(HostSample.at >= since, HostSample.at < cutoff)).all()
    gone: list[int] = []
    for group in _groups(hosts, lambda r: r.host):
        keep = max(group, key=lambda r: (r.at, r.id))
        gone += [r.id for r in group if r is not keep]
    if gone:
        s.execute(delete(HostSample).where(HostSample.id.in_(gone)))
    boxes = s.scalars(select(ContainerSample).where(ContainerSample.at >= since, ContainerSample.at < cutoff)).all()
    gone_boxes: list[int] = []
    for group in _groups(boxes, lambda r: (r.host, r.service, r.name)):
        keep = max(group, key=lambda r: (r.restart_count or 0, r.at, r.id))
        gone_boxes += [r.id for r in group if r is not keep]
    if gone_boxes:
        s.execute(delete(ContainerSample).where(ContainerSample.id.in_(gone_boxes)))
    return len(gone) + len(gone_boxes)
