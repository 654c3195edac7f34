"""Chat with Jarvis through any OpenAI-compatible server (optional).

Without an API key Jarvis runs rules only and says so; nothing here is needed for diagnosis or
remediation. With one, the model may call exactly four tools: list_findings, run_diagnostics
(the read-only checks), list_playbooks (the catalog) and propose_playbook. A proposal is a catalog
id plus parameters, validated by the catalog like any request; it waits for a person's approval
unless an auto rule would run exactly that for an open finding. Model output is data: it is never
run as a command, used as a path, or looked up as anything but a catalog id. Every refusal is
written to the audit log.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any, Callable, Protocol
from urllib.parse import urlsplit

from homelab.catalog import Catalog, ValidationError
from homelab.store import Store
from jarvis.config import JarvisSettings
from jarvis.diagnosis import Diagnosis
from jarvis.models import JarvisAction, JarvisChat, JarvisFinding


class Operator(Protocol):
    """What the assistant uses of Jarvis (jarvis.service.Jarvis is one): it reads, diagnoses and
    proposes; it never runs anything itself."""

    js: JarvisSettings
    store: Store
    catalog: Catalog
    clock: Callable[[], dt.datetime]

    def audit(
        self, action: str, target: str, params: dict[str, Any] | None = None, outcome: str = "ok", actor: str = ...
    ) -> None: ...

    def chat_history(self, user: str, limit: int = 50) -> list[JarvisChat]: ...

    def findings(self, include_resolved: bool = False, limit: int = 200) -> list[JarvisFinding]: ...

    def diagnose(
        self, limit: str = "", hosts: bool = True, network: bool = True, only: set[str] | None = None
    ) -> Diagnosis: ...

    def record(self, d: Diagnosis) -> tuple[list[str], list[str]]: ...

    def propose(
        self, playbook: Any, params: Any, limit: Any, reason: str, user: str, source: str = "chat"
    ) -> JarvisAction: ...


log = logging.getLogger(__name__)
MAX_ROUNDS = 5
HISTORY = 20

SYSTEM = """You are Jarvis, the operator of a homelab. You explain findings of the homelab's checks in plain
words and propose fixes. You can only use the tools given: list_findings, run_diagnostics (read-only checks),
list_playbooks (the catalog of playbooks that may run) and propose_playbook (ask to run one catalog playbook with
parameters; a person approves it unless a rule allows it). You cannot run shell commands, read files or run
anything outside the catalog. Be brief."""

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "list_findings",
            "description": "The open findings of the homelab's checks (code, severity, target, evidence).",
            "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "run_diagnostics",
            "description": "Run every read-only check now and return the findings.",
            "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "list_playbooks",
            "description": "The catalog: every playbook that may run, its risk and parameter schema.",
            "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "propose_playbook",
            "description": "Propose running one catalog playbook. A person approves it unless a rule allows it.",
            "parameters": {
                "type": "object",
                "properties": {
                    "playbook": {"type": "string", "description": "a catalog id from list_playbooks"},
                    "params": {"type": "object", "description": "parameters, as the catalog's schema says"},
                    "limit": {
                        "type": "string",
                        "description": "inventory host or group names, comma separated; empty = all targets",
                    },
                    "reason": {"type": "string", "description": "why, in one sentence, for the person approving"},
                },
                "required": ["playbook", "reason"],
                "additionalProperties": False,
            },
        },
    },
]
PROPOSE_KEYS = {"playbook", "params", "limit", "reason"}


class Assistant:
    def __init__(self, jarvis: Operator) -> None:
        self.jarvis = jarvis

    @property
    def enabled(self) -> bool:
        return self.jarvis.js.llm_enabled

    def describe(self) -> str:
        js = self.jarvis.js
        if not js.llm_enabled:
            return "rules only: no LLM is configured (set OPENAI_API_KEY to chat)"
        where = urlsplit(js.base_url).netloc if js.base_url else "api.openai.com"
        return f"model {js.model} at {where}"

    def _client(self) -> Any:
        from openai import OpenAI

        js = self.jarvis.js
        return OpenAI(api_key=js.api_key, base_url=js.base_url or None, timeout=js.llm_timeout, max_retries=1)

    def _save(self, user: str, role: str, content: str, **meta: Any) -> JarvisChat:
        with self.jarvis.store.session.begin() as s:
            row = JarvisChat(user=user, role=role, content=content[:20000], meta=meta, at=self.jarvis.clock())
            s.add(row)
        return row

    def chat(self, user: str, text: str) -> list[JarvisChat]:
        """One turn: the person's message, the model's tool calls (each checked and answered), its answer."""
        text = text.strip()[:4000]
        if not text:
            raise ValidationError("say something", field="message")
        out = [self._save(user, "user", text)]
        if not self.enabled:
            out.append(
                self._save(
                    user,
                    "assistant",
                    "Jarvis runs rules only: no LLM is configured (OPENAI_API_KEY). "
                    "Findings, approvals and remediation work without it.",
                )
            )
            return out
        messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
        for row in self.jarvis.chat_history(user, HISTORY + 1)[:-1]:
            if row.role in ("user", "assistant"):
                messages.append({"role": row.role, "content": row.content})
        messages.append({"role": "user", "content": text})
        client = self._client()
        for _ in range(MAX_ROUNDS):
            try:
                resp = client.chat.completions.create(
                    model=self.jarvis.js.model, messages=messages, tools=TOOLS, tool_choice="auto"
                )
                msg = resp.choices[0].message
            except Exception as exc:  # never the key or the URL in what is stored or shown
                status = getattr(exc, "status_code", None)
                why = type(exc).__name__ + (f" (HTTP {status})" if status else "")
                log.warning("jarvis chat: the model did not answer: %s", why)
                out.append(
                    self._save(
                        user,
                        "assistant",
                        f"The model did not answer: {why}. Jarvis keeps working on rules alone.",
                        error=why,
                    )
                )
                return out
            calls = list(msg.tool_calls or [])
            if not calls:
                out.append(self._save(user, "assistant", msg.content or "(no answer)"))
                return out
            messages.append(
                {
                    "role": "assistant",
                    "content": msg.content or "",
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {
                                "name": getattr(c.function, "name", ""),
                                "arguments": getattr(c.function, "arguments", ""),
                            },
                        }
                        for c in calls
                    ],
                }
            )
            for c in calls:
                name = str(getattr(getattr(c, "function", None), "name", "") or "")[:64]
                raw = str(getattr(getattr(c, "function", None), "arguments", "") or "")
                result, row = self.tool(user, name, raw)
                out.append(row)
                messages.append(
                    {"role": "tool", "tool_call_id": c.id, "content": json.dumps(result, default=str)[:20000]}
                )
        out.append(self._save(user, "assistant", f"(stopped after {MAX_ROUNDS} rounds of tool calls)"))
        return out

    def tool(self, user: str, name: str, raw_args: str) -> tuple[dict[str, Any], JarvisChat]:
        """Answer one tool call; anything but the four tools, or bad arguments, is refused and audited."""
        j = self.jarvis
        try:
            args = json.loads(raw_args) if raw_args.strip() else {}
        except ValueError:
            return self._refuse(user, name, "its arguments are not JSON", raw_args)
        if not isinstance(args, dict):
            return self._refuse(user, name, "its arguments are not an object", raw_args)
        if name == "list_findings":
            data = [
                {
                    "code": r.code,
                    "severity": r.severity,
                    "target": r.target,
                    "summary": r.summary,
                    "status": r.status,
                    "evidence": r.evidence,
                    "decision": r.decision,
                }
                for r in j.findings()
            ]
            return {"findings": data}, self._save(user, "tool", f"looked at {len(data)} open finding(s)", tool=name)
        if name == "run_diagnostics":
            d = j.diagnose()
            j.record(d)
            data = [f.as_dict() for f in d.findings]
            return {"findings": data, "notes": d.notes}, self._save(
                user, "tool", f"ran the read-only checks: {len(data)} finding(s)", tool=name, job_id=d.job_id
            )
        if name == "list_playbooks":
            data = [{k: v for k, v in e.as_dict().items() if k != "playbook"} for e in j.catalog.entries.values()]
            return {"playbooks": data}, self._save(user, "tool", f"read the catalog ({len(data)} playbooks)", tool=name)
        if name == "propose_playbook":
            extra = set(args) - PROPOSE_KEYS
            if extra:
                return self._refuse(user, name, f"unknown argument(s) {', '.join(sorted(extra))[:80]}", raw_args)
            if args.get("params") is not None and not isinstance(args.get("params"), dict):
                return self._refuse(user, name, "params must be an object", raw_args)
            try:
                a = j.propose(
                    args.get("playbook"),
                    args.get("params") or {},
                    args.get("limit") or "",
                    str(args.get("reason") or "")[:500],
                    user,
                    "chat",
                )
            except ValidationError as exc:
                return self._refuse(user, name, str(exc), raw_args, audited=True)
            state = {"pending": "waiting for your approval", "queued": "queued", "refused": "refused"}.get(
                a.status, a.status
            )
            text = (
                f"proposed action #{a.id}: {a.playbook} {json.dumps(a.params)} on {a.limit or 'its targets'} ({state})"
            )
            return (
                {"action_id": a.id, "status": a.status, "playbook": a.playbook, "params": a.params, "note": state},
                self._save(user, "tool", text, tool=name, action_id=a.id),
            )
        return self._refuse(
            user,
            name,
            "no such tool: Jarvis can only list findings, run the read-only checks, "
            "read the catalog and propose a catalog playbook",
            raw_args,
        )

    def _audited_args(self, raw_args: str) -> dict[str, Any]:
        """A refused tool call's arguments as the audit log may keep them: a proposal's parameters
        masked by the catalog's schema (a secret never lands there), anything else only by size."""
        from homelab.refused import refused_params

        try:
            args = json.loads(raw_args)
        except (TypeError, ValueError):
            args = None
        if isinstance(args, dict) and isinstance(args.get("playbook"), str):
            return {
                "playbook": args["playbook"][:64],
                "params": refused_params(self.jarvis.catalog, args["playbook"], args.get("params")),
            }
        return {"arguments": f"({len(raw_args or '')} characters, not shown)"}

    def _refuse(
        self, user: str, name: str, why: str, raw_args: str, audited: bool = False
    ) -> tuple[dict[str, Any], JarvisChat]:
        if not audited:
            self.jarvis.audit(
                "jarvis.chat.refused",
                name or "(no name)",
                self._audited_args(raw_args),
                why[:200],
                actor=f"{user} via chat",
            )
        row = self._save(user, "tool", f"refused {name or '(no name)'}: {why}", tool=name, refused=True)
        return {"error": f"refused: {why}"}, row
