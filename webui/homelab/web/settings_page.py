"""The settings page, /settings: what this server is configured with and where each thing is set,
for a newcomer who asks "where do notifications go, which model does Jarvis use, what does Jarvis
do on its own?". Each setting says where it is changed; the one it edits is Jarvis's mode per rule
(one line of the rules file, validated, audited: jarvis.config.set_rule_mode), the rest is read-only.

Secrets never reach the page: a notification channel is its kind, its host and where it is set
(a Discord webhook's path is its credential, an ntfy topic is as good as a password), the LLM
endpoint is its scheme, host, port and path (no user, password or query), and an API key or token
is only "set" or "not set"."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, abort, redirect, render_template, request, url_for

from homelab.notify import CHANNELS, ENV
from homelab.web.auth import audit
from homelab.web.context import homelab

bp = Blueprint("settings", __name__)
TITLES = {"discord": "Discord webhook", "ntfy": "ntfy", "webhook": "JSON webhook"}
LLM_KEY_ENV = ("HOMELAB_JARVIS_OPENAI_API_KEY", "OPENAI_API_KEY")
LLM_URL_ENV = ("HOMELAB_JARVIS_OPENAI_BASE_URL", "OPENAI_BASE_URL")


def origin(url: str) -> str:
    """scheme://host[:port] of a URL, nothing of its path, user, password or query."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "(not a URL)"
    if not host:
        return "(not a URL)"
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}"


def endpoint(url: str) -> str:
    """A base URL without its user, password, query or fragment (an LLM endpoint's path is /v1)."""
    base = origin(url)
    if base == "(not a URL)":
        return base
    return base + urlsplit(url).path.rstrip("/")


def _channels() -> list[dict[str, Any]]:
    h = homelab()
    notifier = h.drift.notifier if h.drift is not None else None
    urls = notifier.urls if notifier is not None else {}
    out = []
    for ch in CHANNELS:
        url = urls.get(ch, "")
        row: dict[str, Any] = {
            "kind": ch,
            "title": TITLES[ch],
            "configured": bool(url),
            "host": origin(url) if url else "",
            "source": (
                f"environment {ENV[ch]}"
                if os.environ.get(ENV[ch])
                else f"the notify: section of {h.settings.schedules.name}"
                if url
                else f"not set ({ENV[ch]})"
            ),
            "failure": (notifier.failures.get(ch, "") if notifier is not None else ""),
        }
        if ch == "ntfy" and notifier is not None:
            row["token"] = bool(notifier.ntfy_token)
        out.append(row)
    return out


def _llm() -> dict[str, Any]:
    """The LLM Jarvis chats with: as the running Jarvis has it, else as the environment says."""
    from jarvis.config import JarvisSettings

    h = homelab()
    js = h.jarvis.js if h.jarvis is not None else JarvisSettings.from_env()
    key_from = next((n for n in LLM_KEY_ENV if os.environ.get(n)), "")
    url_from = next((n for n in LLM_URL_ENV if os.environ.get(n)), "")
    return {
        "jarvis": h.jarvis is not None,
        "enabled": js.llm_enabled,
        "endpoint": endpoint(js.base_url) if js.base_url else "https://api.openai.com/v1",
        "endpoint_from": f"environment {url_from}" if url_from else "the default (set HOMELAB_JARVIS_OPENAI_BASE_URL)",
        "model": js.model,
        "model_from": "environment HOMELAB_JARVIS_MODEL" if os.environ.get("HOMELAB_JARVIS_MODEL") else "the default",
        "key_from": f"environment {key_from}" if key_from else "",
        "timeout": js.llm_timeout,
        "rules_path": js.rules_path,
    }


def _rules() -> tuple[list[Any], str]:
    """Jarvis's rules as loaded (the running Jarvis's), and why none are (its error)."""
    h = homelab()
    if h.jarvis is None:
        return [], ""
    return list(h.jarvis.rules.rules), h.jarvis.rules_error


@bp.get("/settings")
def page() -> Any:
    h = homelab()
    rules, rules_error = _rules()
    return render_template(
        "settings.html",
        channels=_channels(),
        llm=_llm(),
        rules=rules,
        rules_error=rules_error,
        catalog=h.catalog.entries,
        settings=h.settings,
        saved=request.args.get("saved") if any(r.id == request.args.get("saved") for r in rules) else None,
    )


@bp.post("/settings/jarvis/rules/<rule_id>/mode")
def rule_mode(rule_id: str) -> Any:
    """Set one Jarvis rule's mode (auto, approve, off) in the rules file, then reload Jarvis's rules."""
    from jarvis.config import MODES, RulesError, set_rule_mode

    h = homelab()
    if h.jarvis is None:
        abort(404, description="Jarvis is turned off on this server (HOMELAB_JARVIS=0)")
    rule = h.jarvis.rules.rule(rule_id)
    if rule is None:
        abort(404, description=f"Jarvis has no rule '{rule_id[:64]}'")
    mode = request.form.get("mode", "")
    if mode not in MODES:
        audit("jarvis.rule_mode", rule.id, {"mode": mode[:20]}, outcome=f"refused: mode must be one of {MODES}")
        abort(400, description=f"mode must be one of {', '.join(MODES)}")
    path = h.jarvis.js.rules_path
    try:
        before = set_rule_mode(path, rule.id, mode)
    except (RulesError, OSError) as exc:
        audit("jarvis.rule_mode", rule.id, {"mode": mode}, outcome=f"refused: {exc}"[:300])
        abort(409, description=str(exc))
    h.jarvis.reload_rules()
    audit("jarvis.rule_mode", rule.id, {"before": before, "after": mode, "file": path.name})
    return redirect(url_for("settings.page", saved=rule.id, _anchor="settings-modes"))
