"""History for the charts (homelab.history) on a real store: the status and facts cycles' samples
in 5-minute (24 h) and 1-hour (7 d) buckets, and the retention pass that thins what is older than
24 h to one row per series per 5 minutes, run by the status cycle itself (StatusService.cycle with a
fixed clock and no service to probe) and by the facts cycle's ingest."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import func, select

from homelab.history import RANGES, bucket_start, host_history, service_history, thin_cutoff, thin_facts_samples
from homelab.settings import Settings
from homelab.status import StatusService
from homelab.store import ContainerSample, HostSample, ServiceSample, Store

NOW = dt.datetime(2026, 12, 2, 12, 2, 30)  # naive UTC, as the store keeps it


@pytest.fixture
def store(settings: Settings) -> Store:
    return Store(settings.db_url)


def _probe(service: str, at: dt.datetime, status: str, ms: float | None, **kw: Any) -> ServiceSample:
    return ServiceSample(service=service, at=at, status=status, url=f"https://{service}.test/", response_ms=ms, **kw)


def _approx(buckets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: pytest.approx(v) if isinstance(v, float) else v for k, v in b.items()} for b in buckets]


def test_24h_buckets_are_5_minutes_with_mean_and_slowest_response_fraction_up_and_worst_status(store: Store) -> None:
    t = dt.datetime(2026, 12, 2, 11, 0)
    with store.session.begin() as s:
        s.add_all(
            [
                _probe("n8n", t + dt.timedelta(seconds=10), "up", 100.0),
                _probe("n8n", t + dt.timedelta(minutes=1), "up", 200.0),
                _probe("n8n", t + dt.timedelta(minutes=2), "down", None, error="refused"),
                _probe("n8n", t + dt.timedelta(minutes=4, seconds=59), "degraded", 600.0, http_status=502),
                _probe("n8n", t + dt.timedelta(minutes=5), "up", 50.0),
                _probe("plex", t + dt.timedelta(minutes=1), "down", None),  # another service: not in n8n's
                _probe("n8n", NOW - dt.timedelta(days=2), "down", None),  # before the range
            ]
        )

    day = service_history(store, "n8n", RANGES["24h"], NOW)

    assert (day["service"], day["range"], day["bucket_seconds"]) == ("n8n", "24h", 300)
    assert (day["from"], day["to"]) == ("2026-12-01T12:02:30Z", "2026-12-02T12:02:30Z")
    assert day["buckets"] == [
        {
            "start": "2026-12-02T11:00:00Z",
            "samples": 4,
            "up_fraction": 0.5,
            "status": "down",
            "response_ms_mean": 300.0,  # of the three that answered
            "response_ms_max": 600.0,
        },
        {
            "start": "2026-12-02T11:05:00Z",
            "samples": 1,
            "up_fraction": 1.0,
            "status": "up",
            "response_ms_mean": 50.0,
            "response_ms_max": 50.0,
        },
    ]
    week = service_history(store, "n8n", RANGES["7d"], NOW)
    assert week["bucket_seconds"] == 3600
    # the sample of two days ago is in the week, in its own hour; the five of 11:00 in one hour
    assert [(b["start"], b["samples"], b["status"]) for b in week["buckets"]] == [
        ("2026-11-30T12:00:00Z", 1, "down"),
        ("2026-12-02T11:00:00Z", 5, "down"),
    ]
    assert week["buckets"][1]["up_fraction"] == 0.6 and week["buckets"][1]["response_ms_mean"] == 237.5
    assert service_history(store, "nothing", RANGES["24h"], NOW)["buckets"] == []


def test_the_status_cycle_thins_probes_older_than_24h_to_one_row_per_5_minutes_and_the_week_reads_the_same(
    settings: Settings, store: Store
) -> None:
    rows = []
    start = dt.datetime(2026, 12, 1, 6, 0)  # 30 h before 12:00 today
    for i in range(30 * 60):  # a probe a minute for 30 hours, of two services
        at = start + dt.timedelta(minutes=i, seconds=7)
        status = "down" if i % 17 == 0 else ("degraded" if i % 11 == 0 else "up")
        ms = None if status == "down" else float(20 + i % 9 * 13)
        rows.append(_probe("n8n", at, status, ms, tls_days_left=60.0 - i / 1440, http_status=200 if ms else None))
        rows.append(_probe("plex", at, "up", 5.0 + i % 3))
    with store.session.begin() as s:
        s.add_all(rows)
    week_before = {n: service_history(store, n, RANGES["7d"], NOW)["buckets"] for n in ("n8n", "plex")}
    day_before = service_history(store, "n8n", RANGES["24h"], NOW)["buckets"]
    cycle = StatusService(replace(settings, status_retention_days=7), store, lambda: [], clock=lambda: NOW)

    cycle.cycle()

    cutoff = thin_cutoff(NOW)
    assert cutoff == dt.datetime(2026, 12, 1, 12, 0) and cutoff <= NOW - dt.timedelta(hours=24)
    with store.session() as s:
        old = s.scalars(select(ServiceSample).where(ServiceSample.at < cutoff).order_by(ServiceSample.at)).all()
        recent = s.scalar(select(func.count()).select_from(ServiceSample).where(ServiceSample.at >= cutoff))
    per_bucket = {(r.service, bucket_start(r.at, 300)) for r in old}
    assert len(old) == len(per_bucket) == 2 * 6 * 12  # 6 h before the cutoff: one row per service per 5 min
    assert all(r.samples == 5 and r.at == bucket_start(r.at, 300) for r in old)
    assert recent == 2 * (30 * 60 - 6 * 60)  # the last 24 h (and a bit) untouched
    n8n = [r for r in old if r.service == "n8n"]
    assert sum(r.samples or 0 for r in n8n) == 6 * 60 and {r.status for r in n8n} == {"up", "degraded", "down"}
    assert cycle.last["thinned"] == 2 * 6 * 60 - 2 * 6 * 12
    # the charts read the same of the week (1-hour buckets of whole 5-minute rollups) and of the day
    for name in ("n8n", "plex"):
        assert service_history(store, name, RANGES["7d"], NOW)["buckets"] == _approx(week_before[name])
    assert service_history(store, "n8n", RANGES["24h"], NOW)["buckets"] == day_before
    # the newest probe is still what the status says (a rollup's new id is not newer)
    with store.session() as s:
        newest = s.scalar(select(func.max(ServiceSample.at)).where(ServiceSample.service == "n8n"))
    assert newest == start + dt.timedelta(minutes=30 * 60 - 1, seconds=7)

    # again: nothing left to thin; a late probe in a thinned bucket is merged with its rollup
    cycle.cycle()
    assert cycle.last["thinned"] == 0
    # a lone probe behind the cutoff becomes a rollup of one (no probe's own row stays to be read again)
    lone = cutoff - dt.timedelta(hours=5, minutes=58)
    with store.session.begin() as s:
        s.add(_probe("grafana", lone, "up", 11.0))
    cycle.cycle()
    with store.session() as s:
        [one] = s.scalars(select(ServiceSample).where(ServiceSample.service == "grafana")).all()
        raw_left = s.scalar(select(func.count()).where(ServiceSample.at < cutoff, ServiceSample.samples.is_(None)))
    assert (one.at, one.samples, one.up_samples, one.response_samples, one.response_ms_max) == (
        bucket_start(lone, 300),
        1,
        1,
        1,
        11.0,
    )
    assert raw_left == 0 and cycle.last["thinned"] == 0
    late = cutoff - dt.timedelta(minutes=3)
    with store.session.begin() as s:
        s.add(_probe("plex", late, "down", None))
    cycle.cycle()
    assert cycle.last["thinned"] == 1
    with store.session() as s:
        [merged] = s.scalars(
            select(ServiceSample).where(ServiceSample.service == "plex", ServiceSample.at == bucket_start(late, 300))
        ).all()
    assert (merged.samples, merged.up_samples, merged.response_samples, merged.status) == (6, 5, 5, "down")


def test_the_retention_still_deletes_what_is_older_than_the_retention(settings: Settings, store: Store) -> None:
    with store.session.begin() as s:
        s.add(_probe("n8n", NOW - dt.timedelta(days=8), "up", 10.0))
        s.add(_probe("n8n", NOW - dt.timedelta(days=6), "up", 10.0))
    StatusService(settings, store, lambda: [], clock=lambda: NOW).cycle()
    with store.session() as s:
        # the 8-day-old one gone; the 6-day-old one kept, as a rollup of one at the start of its 5 minutes
        assert s.scalars(select(ServiceSample.at)).all() == [bucket_start(NOW - dt.timedelta(days=6), 300)]
    assert [b["samples"] for b in service_history(store, "n8n", RANGES["7d"], NOW)["buckets"]] == [1]


def test_host_buckets_are_means_and_container_buckets_the_most_restarts_and_facts_are_thinned(store: Store) -> None:
    t = dt.datetime(2026, 12, 2, 10, 0)
    old = dt.datetime(2026, 12, 1, 8, 0)  # past 24 h: two runs in one 5 minutes are thinned to one
    with store.session.begin() as s:
        for at, cpu, mem, disk, restarts in (
            (t, 10.0, 40.0, 60.0, 1),
            (t + dt.timedelta(minutes=2), 30.0, None, 62.0, 3),
            (t + dt.timedelta(minutes=5), 50.0, 44.0, 62.0, 2),
            (old, 5.0, 30.0, 50.0, 0),
            (old + dt.timedelta(minutes=3), 7.0, 31.0, 50.0, 4),
        ):
            s.add(HostSample(host="alpha", at=at, cpu_percent=cpu, mem_percent=mem, disk_percent=disk))
            s.add(HostSample(host="beta", at=at, cpu_percent=99.0, mem_percent=99.0, disk_percent=99.0))
            s.add(
                ContainerSample(host="alpha", at=at, service="n8n", name="n8n", state="running", restart_count=restarts)
            )
            s.add(ContainerSample(host="alpha", at=at, service="plex", name="plex", state="running", restart_count=9))

    day = host_history(store, "alpha", RANGES["24h"], NOW)
    assert (day["host"], day["range"], day["bucket_seconds"]) == ("alpha", "24h", 300)
    assert day["buckets"] == [
        {"start": "2026-12-02T10:00:00Z", "samples": 2, "cpu_percent": 20.0, "mem_percent": 40.0, "disk_percent": 61.0},
        {"start": "2026-12-02T10:05:00Z", "samples": 1, "cpu_percent": 50.0, "mem_percent": 44.0, "disk_percent": 62.0},
    ]
    svc = service_history(store, "n8n", RANGES["24h"], NOW)
    assert svc["containers"] == [
        {
            "host": "alpha",
            "name": "n8n",
            "buckets": [
                {"start": "2026-12-02T10:00:00Z", "restart_count": 3},
                {"start": "2026-12-02T10:05:00Z", "restart_count": 2},
            ],
        }
    ]

    with store.session.begin() as s:
        gone = thin_facts_samples(s, NOW)
    assert gone == 4  # of the old 5 minutes: a host row of alpha's and of beta's, a container row of n8n's and plex's
    with store.session() as s:
        kept = s.scalars(select(HostSample).where(HostSample.host == "alpha", HostSample.at < t)).all()
        boxes = s.scalars(select(ContainerSample).where(ContainerSample.service == "n8n", ContainerSample.at < t)).all()
        recent = s.scalar(select(func.count()).select_from(HostSample).where(HostSample.at >= t))
    assert [(r.at, r.cpu_percent) for r in kept] == [(old + dt.timedelta(minutes=3), 7.0)]  # the newest
    assert [r.restart_count for r in boxes] == [4]  # the most restarts
    assert recent == 6  # the last 24 h untouched
