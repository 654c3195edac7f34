"""Jarvis's state and plumbing: settings, rules, the store and its tables, the one worker thread
that runs queued steps in order, the audit trail, notifications, and the action rows' accessors.
The parts of Jarvis (diagnosis, safety, actions, decisions, reading) build on this, one way:
base <- diagnosis, safety <- actions <- decisions <- service (Jarvis, which adds the chat)."""

from __future__ import annotations

import datetime as dt
import logging
import queue
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy import update

from homelab.catalog import Catalog, ValidationError
from homelab.masking import mask
from homelab.settings import Settings
from homelab.store import Store, table, utcnow
from jarvis.config import Checks, JarvisSettings, RulesError, RulesFile, Safety, load_rules
from jarvis.models import JarvisAction

log = logging.getLogger("jarvis.service")

ACTOR = "jarvis"
URL_CREDENTIALS_RE = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s:]+:[^/@\s]+@", re.I)
DIAGNOSE = "diagnose"


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


@dataclass(frozen=True)
class JarvisEvent:
    """A notification (escalation, breaker, a finding of a notify rule): the shape homelab.notify.Notifier sends."""

    kind: str  # escalated, breaker, finding
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
        return {
            "event": f"jarvis.{self.kind}",
            "host": self.host,
            "playbook": self.playbook,
            "title": self.title,
            "lines": list(self.lines),
            "url": self.url,
        }


class JarvisBase:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        catalog: Catalog,
        inventory: Any,
        engine: Any,
        notifier: Any = None,
        jsettings: JarvisSettings | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.catalog = catalog
        self.inventory = inventory
        self.engine = engine
        self.notifier = notifier
        self.js = jsettings or JarvisSettings.from_env()
        from homelab.store import Base
        from jarvis import models

        Base.metadata.create_all(
            store.engine,
            tables=[
                table(t) for t in (models.JarvisFinding, models.JarvisAction, models.JarvisBreaker, models.JarvisChat)
            ],
        )
        self.rules_error = ""
        self.rules = self._load_rules()
        self.last: dict[str, Any] = {}  # the last diagnosis: at, findings, seconds, notes
        self._queue: "queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]] | None]" = queue.Queue()
        self._worker: threading.Thread | None = None
        self._diag_lock = threading.Lock()
        self._decide_lock = threading.Lock()
        self.clock: Callable[[], dt.datetime] = utcnow  # naive UTC; tests may move it

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
        """Read the rules file again (after the settings page changed a mode)."""
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

    def audit(
        self, action: str, target: str, params: dict[str, Any] | None = None, outcome: str = "ok", actor: str = ACTOR
    ) -> None:
        self.store.audit(actor, action, target, params or {}, "", outcome)

    def _action(self, action_id: int) -> JarvisAction:
        with self.store.session() as s:
            a = s.get(JarvisAction, action_id)
            if a is None:
                raise ValidationError(f"Jarvis action {action_id} does not exist", status=404)
            return a

    def _set(self, action_id: int, **values: Any) -> None:
        with self.store.session.begin() as s:
            s.execute(update(JarvisAction).where(JarvisAction.id == action_id).values(**values))

    def _notify(self, ev: JarvisEvent) -> None:
        if self.notifier is not None:
            try:
                self.notifier.send_async([ev])
            except Exception:
                log.exception("jarvis: notification failed")
