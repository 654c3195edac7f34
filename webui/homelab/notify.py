"""Notifications: Discord webhook, ntfy and a generic JSON webhook, each optional. They send any
Event (a title, text, JSON, a link and whether it is an alarm): drift's DriftEvent here, or an event
of any part that plugs in (Jarvis's escalations and breakers); nothing here knows who sends.

URLs come from the environment (HOMELAB_NOTIFY_DISCORD_URL, HOMELAB_NOTIFY_NTFY_URL,
HOMELAB_NOTIFY_WEBHOOK_URL, and HOMELAB_NOTIFY_NTFY_TOKEN for a protected ntfy topic) or from
the `notify:` section of the schedules file (for URLs that carry no secret). A Discord webhook
URL is a credential: it is never logged, never stored, never shown; errors name the channel only.
Sending happens on a background thread so a slow receiver never stalls the job engine.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

log = logging.getLogger(__name__)

CHANNELS = ("discord", "ntfy", "webhook")
ENV = {
    "discord": "HOMELAB_NOTIFY_DISCORD_URL",
    "ntfy": "HOMELAB_NOTIFY_NTFY_URL",
    "webhook": "HOMELAB_NOTIFY_WEBHOOK_URL",
}


class Event(Protocol):
    """What Notifier sends."""

    @property
    def title(self) -> str: ...

    @property
    def url(self) -> str: ...

    @property
    def alarm(self) -> bool: ...  # red / warning (True), or green / all clear (False)

    def text(self, limit: int = 1800) -> str: ...

    def as_json(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class DriftEvent:
    """What changed: kind is 'drift' (new or different drift) or 'resolved'."""

    kind: str
    host: str
    playbook: str
    tasks: tuple[str, ...] = ()
    fingerprint: str = ""
    job_id: int | None = None
    url: str = ""

    @property
    def alarm(self) -> bool:
        return self.kind == "drift"

    @property
    def title(self) -> str:
        if self.kind == "drift":
            return f"Drift on {self.host}: {len(self.tasks)} task(s) of '{self.playbook}' would change"
        return f"Drift resolved on {self.host} ('{self.playbook}' is clean again)"

    def text(self, limit: int = 1800) -> str:
        lines = [self.title]
        for t in self.tasks[:20]:
            lines.append(f"- {t}")
        if len(self.tasks) > 20:
            lines.append(f"- ... and {len(self.tasks) - 20} more")
        if self.url:
            lines.append(self.url)
        out = "\n".join(lines)
        return out if len(out) <= limit else out[: limit - 1] + "…"

    def as_json(self) -> dict[str, Any]:
        return {
            "event": f"drift.{self.kind}",
            "host": self.host,
            "playbook": self.playbook,
            "tasks": list(self.tasks),
            "fingerprint": self.fingerprint,
            "job_id": self.job_id,
            "url": self.url,
            "title": self.title,
        }


@dataclass
class Notifier:
    """Sends events to every configured channel."""

    urls: dict[str, str] = field(default_factory=dict)
    ntfy_token: str = ""
    timeout: float = 10.0
    failures: dict[str, str] = field(default_factory=dict)  # channel -> last error (no URL in it)
    _threads: list[threading.Thread] = field(default_factory=list, repr=False)

    @classmethod
    def from_env(cls, config: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> "Notifier":
        env = dict(os.environ if env is None else env)
        config = config or {}
        urls = {}
        for ch in CHANNELS:
            url = env.get(ENV[ch]) or str(config.get(f"{ch}_url") or "")
            if url:
                if not url.startswith(("http://", "https://")):
                    raise ValueError(f"the {ch} notification URL must start with http:// or https://")
                urls[ch] = url
        return cls(urls=urls, ntfy_token=env.get("HOMELAB_NOTIFY_NTFY_TOKEN", ""))

    @property
    def channels(self) -> list[str]:
        return [c for c in CHANNELS if c in self.urls]

    def send_async(self, events: Sequence[Event]) -> threading.Thread | None:
        if not events or not self.urls:
            return None
        t = threading.Thread(target=self.send, args=(events,), name="homelab-notify", daemon=True)
        self._threads = [x for x in self._threads if x.is_alive()] + [t]
        t.start()
        return t

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until what was handed to send_async has been sent (or failed): tests, shutdown."""
        for t in list(self._threads):
            t.join(timeout)

    def send(self, events: Sequence[Event]) -> None:
        for ev in events:
            for ch in self.channels:
                try:
                    self._post(ch, ev)
                    self.failures.pop(ch, None)
                except Exception as exc:  # one channel failing must not stop the others
                    why = _describe(exc)
                    self.failures[ch] = why
                    log.warning("drift notification to %s failed: %s", ch, why)

    def _post(self, channel: str, ev: Event) -> None:
        url = self.urls[channel]
        headers = {"User-Agent": "homelab-drift"}
        if channel == "discord":
            color = 0xE5534B if ev.alarm else 0x3FB950
            body = json.dumps(
                {
                    "username": "homelab",
                    "allowed_mentions": {"parse": []},
                    "embeds": [
                        {
                            "title": ev.title[:256],
                            "description": ev.text(3500)[len(ev.title) + 1 :] or ev.title,
                            "color": color,
                            **({"url": ev.url} if ev.url else {}),
                        }
                    ],
                }
            ).encode()
            headers["Content-Type"] = "application/json"
        elif channel == "ntfy":
            body = ev.text(3800).encode()
            headers.update(
                {
                    "Title": ev.title.encode("ascii", "replace").decode(),
                    "Tags": "warning" if ev.alarm else "white_check_mark",
                    "Priority": "4" if ev.alarm else "3",
                }
            )
            if ev.url:
                headers["Click"] = ev.url
            if self.ntfy_token:
                headers["Authorization"] = f"Bearer {self.ntfy_token}"
        else:
            body = json.dumps(ev.as_json()).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=body, method="POST", headers=headers)
        with urllib.request.urlopen(req, timeout=self.timeout) as r:
            r.read(1024)


def _describe(exc: Exception) -> str:
    """An error without the URL (a Discord webhook URL is a secret)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot connect ({type(exc.reason).__name__}: {getattr(exc.reason, 'strerror', None) or 'error'})"
    return type(exc).__name__
