"""Drift-check schedules: a version-controlled YAML file (playbooks/schedules.yml), validated
against the catalog and the inventory before anything is scheduled or written back.

Why a file and not the database: schedules are configuration, reviewed and versioned with the
playbooks they run. The scheduler's own bookkeeping (next run times) lives in the database.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from homelab.catalog import Catalog, HostResolver, ValidationError, parse_limit, run_variant  # noqa: F401 (re-exported)
from homelab.durations import UNIT_WORDS, duration_seconds, split_duration

SCHEDULE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
INTERVAL_DIGITS = 6
MIN_INTERVAL_SECONDS = 5
ACTIONS = ("check", "run", "jarvis")
HEADER = """---
# Drift-check schedules: each runs a catalog playbook (playbooks/catalog.yml) in check + diff mode
# through the job engine and records per host whether it drifted. Edited by hand or on the web
# UI's Drift page (which validates, rewrites this file and audits the change).
#   id        letters, digits, '-', '_'
#   playbook  a catalog id (its real converge is what "Fix drift" runs)
#   cron      "min hour day month weekday" (server time zone), or
#   interval  a number with s, m, h or d: "30m", "6h", "1d"
#   limit     host or group names separated by commas; empty: every host the entry targets
#   enabled   false keeps the schedule but never fires it
#   action    check (default: a drift check), run (runs the playbook for real: maintenance), or
#             jarvis (a Jarvis diagnosis cycle; playbook: diagnose)
#   params    (action run only) the playbook's parameters, checked against the catalog; never a
#             secret one (secrets live in the vault, not in this file)
# Notifications (optional): HOMELAB_NOTIFY_DISCORD_URL, HOMELAB_NOTIFY_NTFY_URL (+ _NTFY_TOKEN),
# HOMELAB_NOTIFY_WEBHOOK_URL in the server's environment; a `notify:` section here
# (discord_url, ntfy_url, webhook_url) only for URLs that carry no secret.
"""


class ScheduleError(ValueError):
    """The schedules file (or an edit of it) is invalid; the message says where and why."""


@dataclass(frozen=True)
class Schedule:
    id: str
    playbook: str
    cron: str = ""
    interval: str = ""
    limit: str = ""
    enabled: bool = True
    action: str = "check"  # check (drift), run (a real run: proactive maintenance), jarvis (a diagnosis cycle)
    params: dict[str, Any] = field(default_factory=dict)  # action run: the playbook's parameters

    @property
    def interval_seconds(self) -> int:
        return duration_seconds(self.interval, INTERVAL_DIGITS) or 0

    @property
    def when(self) -> str:
        return f"cron {self.cron}" if self.cron else f"every {self.interval}"

    def trigger(self) -> Any:
        """The APScheduler trigger this schedule fires on."""
        from apscheduler.triggers.interval import IntervalTrigger

        if self.cron:
            return crontab_trigger(self.cron)
        return IntervalTrigger(seconds=self.interval_seconds)

    @property
    def in_words(self) -> str:
        """When it fires, as a person says it ("Sundays at 03:15", "every 10 minutes")."""
        return describe_cron(self.cron) if self.cron else f"every {describe_interval(self.interval)}"

    def as_yaml(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "playbook": self.playbook}
        if self.cron:
            d["cron"] = self.cron
        else:
            d["interval"] = self.interval
        d["limit"] = self.limit
        d["enabled"] = self.enabled
        if self.action != "check":
            d["action"] = self.action
        if self.params:
            d["params"] = dict(self.params)
        return d

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "when": self.when, "in_words": self.in_words}


def parse_schedule(raw: Any, where: str = "schedule") -> Schedule:
    """One schedule from YAML or a form, with messages a person can act on."""
    if not isinstance(raw, dict):
        raise ScheduleError(f"{where} is not a mapping")
    unknown = sorted(set(raw) - {"id", "playbook", "cron", "interval", "limit", "enabled", "action", "params"})
    if unknown:
        raise ScheduleError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}")
    sid = str(raw.get("id") or "").strip()
    if not SCHEDULE_ID_RE.match(sid):
        raise ScheduleError(f"{where}: id {sid!r} must be lower-case letters, digits, '-' or '_'")
    where = f"schedule '{sid}'"
    playbook = str(raw.get("playbook") or "").strip()
    if not playbook:
        raise ScheduleError(f"{where}: playbook (a catalog id) is required")
    cron = str(raw.get("cron") or "").strip()
    interval = str(raw.get("interval") or "").strip()
    if bool(cron) == bool(interval):
        raise ScheduleError(f'{where}: give exactly one of cron ("30 4 * * *") or interval ("6h")')
    if cron:
        try:
            crontab_trigger(cron)
        except ValueError as exc:
            raise ScheduleError(
                f"{where}: cron {cron!r} is not valid ({exc}); use 'min hour day month weekday'"
            ) from None
    else:
        seconds = duration_seconds(interval, INTERVAL_DIGITS)
        if seconds is None:
            raise ScheduleError(f"{where}: interval {interval!r} must be a number with s, m, h or d, e.g. 30m")
        if seconds < MIN_INTERVAL_SECONDS:
            raise ScheduleError(f"{where}: interval must be at least {MIN_INTERVAL_SECONDS}s")
    limit = str(raw.get("limit") or "").strip()
    try:
        parse_limit(limit)
    except ValidationError as exc:
        raise ScheduleError(f"{where}: {exc}") from None
    enabled = raw.get("enabled", True)
    if isinstance(enabled, str):
        enabled = enabled.lower() in ("1", "true", "yes", "on")
    if not isinstance(enabled, bool):
        raise ScheduleError(f"{where}: enabled must be true or false")
    action = str(raw.get("action") or "check").strip()
    if action not in ACTIONS:
        raise ScheduleError(f"{where}: action must be one of {', '.join(ACTIONS)}")
    params = raw.get("params") or {}
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise ScheduleError(f"{where}: params must be a mapping of parameter name -> value")
    if params and action != "run":
        raise ScheduleError(f"{where}: params are only for action run (a check or a diagnosis takes none)")
    return Schedule(
        id=sid,
        playbook=playbook,
        cron=cron,
        interval=interval,
        limit=limit,
        enabled=enabled,
        action=action,
        params=dict(params),
    )


DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab's numbering: 0 (and 7) is Sunday
DAY_WORDS = ("Sundays", "Mondays", "Tuesdays", "Wednesdays", "Thursdays", "Fridays", "Saturdays")


def _crontab_days(field: str) -> list[int]:
    """A crontab day-of-week field (0-7, names, ranges, lists, steps) as crontab day numbers 0-6."""
    days: set[int] = set()
    for part in field.lower().split(","):
        rng, _, step_s = part.partition("/")
        step = int(step_s) if step_s else 1
        if step < 1 or (step_s and not step_s.isdigit()):
            raise ValueError(f"bad step in day of week {part!r}")
        if rng == "*":
            lo, hi = 0, 6
        else:
            a, _, b = rng.partition("-")
            lo, hi = _day(a), _day(b) if b else _day(a)
            if b and hi < lo:
                raise ValueError(f"day-of-week range {rng!r} runs backwards")
        days.update(d % 7 for d in range(lo, hi + 1, step))
    return sorted(days)


def _day(token: str) -> int:
    if token in DAY_NAMES:
        return DAY_NAMES.index(token)
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token)
    raise ValueError(f"{token!r} is not a day of the week (0-7 or sun..sat)")


def crontab_trigger(expr: str) -> Any:
    """An APScheduler trigger that means what crontab means. APScheduler's own from_crontab reads
    day-of-week 0 as Monday (crontab: Sunday), which moved a weekly Sunday maintenance to Monday."""
    from apscheduler.triggers.cron import CronTrigger

    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"wrong number of fields; got {len(fields)}, expected 5")
    minute, hour, day, month, dow = fields
    kwargs: dict[str, Any] = {"minute": minute, "hour": hour, "day": day, "month": month}
    if dow != "*":
        kwargs["day_of_week"] = ",".join(DAY_NAMES[d] for d in _crontab_days(dow))
    return CronTrigger(**kwargs)


def describe_cron(expr: str) -> str:
    """Common crontab forms in words; anything else as the expression itself."""
    try:
        minute, hour, day, month, dow = expr.split()
    except ValueError:
        return expr
    if not (minute.isdigit() and hour.isdigit() and day == "*" and month == "*"):
        return f"cron {expr}"
    at = f"at {int(hour):02d}:{int(minute):02d}"
    if dow == "*":
        return f"daily {at}"
    try:
        days = _crontab_days(dow)
    except ValueError:
        return f"cron {expr}"
    if days == [1, 2, 3, 4, 5]:
        return f"weekdays {at}"
    return (
        " and ".join(
            [", ".join(DAY_WORDS[d] for d in days[:-1]), DAY_WORDS[days[-1]]] if len(days) > 1 else [DAY_WORDS[days[0]]]
        )
        + f" {at}"
    )


def describe_interval(interval: str) -> str:
    parts = split_duration(interval, INTERVAL_DIGITS)
    if parts is None:
        return interval
    n, unit = parts[0], UNIT_WORDS[parts[1]]
    return f"{n} {unit}{'s' if n != 1 else ''}" if n != 1 else unit


class Schedules:
    """The schedules file: load, validate against the catalog, write back atomically."""

    def __init__(self, path: Path, catalog: Catalog, inventory: HostResolver | None = None) -> None:
        self.path = path
        self.catalog = catalog
        self.inventory = inventory

    def mtime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return 0.0

    def load(self) -> list[Schedule]:
        """The schedules; a missing file means none. Raises ScheduleError when the file is wrong."""
        if not self.path.exists():
            return []
        try:
            data = yaml.safe_load(self.path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ScheduleError(f"cannot read {self.path}: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("schedules", []), list):
            raise ScheduleError(f"{self.path}: expected a mapping with a 'schedules' list")
        out = [
            parse_schedule(raw, f"{self.path.name}: schedules[{i}]")
            for i, raw in enumerate(data.get("schedules") or [])
        ]
        self.validate(out)
        return out

    def notify_config(self) -> dict[str, Any]:
        """The optional `notify:` section (discord_url, ntfy_url, webhook_url without secrets; env wins)."""
        try:
            data = yaml.safe_load(self.path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            return {}
        notify = data.get("notify") if isinstance(data, dict) else None
        return notify if isinstance(notify, dict) else {}

    def validate(self, schedules: list[Schedule]) -> None:
        seen: set[str] = set()
        for s in schedules:
            if s.id in seen:
                raise ScheduleError(f"schedule id '{s.id}' is listed twice")
            seen.add(s.id)
            try:
                entry = self.catalog.get(s.playbook)
            except ValidationError as exc:
                raise ScheduleError(f"schedule '{s.id}': {exc}") from None
            secret = sorted(p.name for p in entry.parameters if p.secret and p.name in s.params)
            if secret:
                raise ScheduleError(
                    f"schedule '{s.id}': {', '.join(secret)} is a secret parameter; "
                    f"a schedules file is kept in git, so it may not hold one"
                )
            if s.params:
                try:  # the same check a job gets when it starts: refused here, not at 3 a.m.
                    self.catalog.prepare(entry.id, s.params, s.limit, inventory=self.inventory or _ANY_HOSTS)
                except ValidationError as exc:
                    raise ScheduleError(f"schedule '{s.id}': {exc}") from None
            if s.action == "check" and run_variant(self.catalog, entry.id) is None:
                raise ScheduleError(
                    f"schedule '{s.id}': '{entry.id}' has no catalog entry that converges "
                    f"{entry.playbook.name} for real, so drift could not be fixed"
                )
            if self.inventory is not None and s.limit:
                try:
                    self.inventory.resolve(entry, s.limit)
                except ValidationError as exc:
                    raise ScheduleError(f"schedule '{s.id}': {exc}") from None

    def get(self, schedule_id: str) -> Schedule:
        for s in self.load():
            if s.id == schedule_id:
                return s
        raise ValidationError(f"schedule '{str(schedule_id)[:64]}' does not exist", status=404, field="schedule")

    def save(self, schedules: list[Schedule]) -> None:
        """Validate, then replace the file atomically (a reader never sees half a file)."""
        self.validate(schedules)
        doc: dict[str, Any] = {"schedules": [s.as_yaml() for s in schedules]}
        notify = self.notify_config()
        if notify:
            doc["notify"] = notify  # kept as it was: the web UI does not edit it
        body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".schedules-", suffix=".yml")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(HEADER + body)
            if self.path.exists():
                os.chmod(tmp, self.path.stat().st_mode & 0o777)
            else:
                os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class _AnyHosts:
    """For checking a schedule's parameters when no inventory is at hand: the limit is checked later."""

    def resolve(self, entry: Any, limit: str) -> list[str]:
        return parse_limit(limit)


_ANY_HOSTS = _AnyHosts()
