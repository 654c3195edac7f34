"""The rules file (jarvis/rules.yml, under version control) and Jarvis's environment settings.

The file says what Jarvis checks (thresholds, domains, URLs), which finding codes map to which
catalog playbook with which parameters and in which mode (auto | approve | notify | off; notify
runs nothing and only sends a notification, once per target within the throttle), and the safety
limits: throttle per rule and target, circuit breaker, global rate limit, maintenance windows.
It is validated as a whole when loaded; a rule whose playbook is not in the catalog (yet) stays
listed but can never run ("unavailable"), so a rules file can name playbooks that land later.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from homelab.durations import duration_seconds
from jarvis.findings import CODES

MODES = ("auto", "approve", "notify", "off")
PLACEHOLDER_RE = re.compile(r"\{([a-z_][a-z0-9_]{0,31})\}")
RULE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_RULES = Path(__file__).resolve().parent / "rules.yml"


class RulesError(ValueError):
    """The rules file is wrong; the message says where."""


def duration(raw: Any, where: str) -> float:
    """Seconds from "15m", "2h", "30s", "1d" or a number of seconds."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    seconds = duration_seconds(str(raw))
    if seconds is None:
        raise RulesError(f"{where}: {raw!r} is not a duration like 30s, 15m, 2h, 1d")
    return float(seconds)


@dataclass(frozen=True)
class Rule:
    id: str
    codes: tuple[str, ...]
    playbook: str
    params: dict[str, Any]
    mode: str
    throttle: float
    limit: str = ""  # for network-side findings (no host): the inventory hosts to run on; "" = the entry's targets
    check_first: bool | None = None  # None: check mode first when the catalog entry's risk is changes-config
    description: str = ""

    def placeholders(self) -> set[str]:
        return {m for v in self.params.values() if isinstance(v, str) for m in PLACEHOLDER_RE.findall(v)}

    def render(self, finding_params: dict[str, str]) -> dict[str, Any]:
        """The rule's parameters with {name} filled from the finding; KeyError names a missing one.

        Only whole strings from the finding are substituted (no expressions, no formatting
        language), and the result is validated against the catalog schema before anything runs.
        """
        out: dict[str, Any] = {}
        for k, v in self.params.items():
            if isinstance(v, str):
                v = PLACEHOLDER_RE.sub(lambda m: str(finding_params[m[1]]), v)
            out[k] = v
        return out


@dataclass(frozen=True)
class Window:
    """A maintenance window: weekly (days + start/end time of day) or one-off (start/end instants)."""

    days: tuple[str, ...] = ()
    start: str = ""
    end: str = ""
    at: tuple[dt.datetime, dt.datetime] | None = None
    reason: str = ""

    def contains(self, now: dt.datetime) -> bool:
        """now: naive UTC."""
        if self.at is not None:
            return self.at[0] <= now < self.at[1]
        t = now.strftime("%H:%M")
        day = DAYS[now.weekday()]
        if self.start <= self.end:
            return day in self.days and self.start <= t < self.end
        # crosses midnight: the part after midnight belongs to the previous day's window
        prev = DAYS[(now.weekday() - 1) % 7]
        return (day in self.days and t >= self.start) or (prev in self.days and t < self.end)

    def describe(self) -> str:
        if self.at is not None:
            return f"{self.at[0]:%Y-%m-%d %H:%M} to {self.at[1]:%Y-%m-%d %H:%M} UTC" + (
                f" ({self.reason})" if self.reason else ""
            )
        return f"{','.join(self.days)} {self.start}-{self.end} UTC" + (f" ({self.reason})" if self.reason else "")


@dataclass(frozen=True)
class Safety:
    throttle: float = 900.0  # default per rule and target: once within 15 minutes
    breaker_failures: int = 3  # failed remediations of one rule within breaker_window open its breaker
    breaker_window: float = 3600.0
    rate_limit_per_minute: int = 60  # actions Jarvis starts, all rules together
    maintenance: tuple[Window, ...] = ()


@dataclass(frozen=True)
class Checks:
    """What the network-side checks look at, and the host-side thresholds."""

    timeout: float = 5.0
    dns_resolvers: tuple[str, ...] = ()  # "ip" or "ip:port"; empty = the system's resolvers
    dns_expected: tuple[str, ...] = ()  # the server's public address(es); empty = ddclient's last address
    dns_domains: tuple[str, ...] = ()  # empty = every domain of the registry's enabled services
    tls_domains: tuple[dict[str, Any], ...] = ()  # {domain, connect: "host:port"}; empty = the service domains on 443
    tls_warn_days: float = 21.0
    tls_critical_days: float = 7.0
    tls_ca_file: str = ""  # extra CA bundle to verify chains with (e.g. a lab's internal CA)
    http: tuple[dict[str, Any], ...] = ()  # {name, url, expect: [200, ...]}; empty = https://<domain>/ per service
    host: dict[str, Any] = field(default_factory=dict)
    from_inventory: bool = True  # empty lists mean "the inventory's service domains"; false: only what is listed

    def threshold(self, name: str) -> Any:
        return {**HOST_DEFAULTS, **self.host}[name]


HOST_DEFAULTS: dict[str, Any] = {
    "disk_warn_percent": 85,
    "disk_critical_percent": 95,
    "memory_warn_percent": 90,
    "load_per_cpu_warn": 2.0,
    "restart_loop_count": 5,
    "git_failures": 3,
    "git_lock_minutes": 10,
    "git_success_max_hours": 6,
    "git_status_max_minutes": 60,
    "backup_max_age_hours": 26,
    "backup_expected": False,
    "ddclient_max_age_hours": 0,
    "deploy_watch_minutes": 30,
}


@dataclass(frozen=True)
class RulesFile:
    path: Path
    rules: tuple[Rule, ...]
    safety: Safety
    checks: Checks

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    def rule_for(self, code: str) -> Rule | None:
        """The first rule (file order) that handles this finding code."""
        return next((r for r in self.rules if code in r.codes), None)


def _window(raw: Any, where: str) -> Window:
    if not isinstance(raw, dict):
        raise RulesError(f"{where}: a maintenance window is a mapping")
    reason = str(raw.get("reason", ""))
    if "from" in raw or "until" in raw:
        try:
            a = _instant(raw["from"])
            b = _instant(raw["until"])
        except (KeyError, ValueError) as exc:
            raise RulesError(f"{where}: a one-off window needs from and until as ISO times ({exc})") from None
        if b <= a:
            raise RulesError(f"{where}: until must be after from")
        return Window(at=(a, b), reason=reason)
    days = raw.get("days") or list(DAYS)
    if isinstance(days, str):
        days = [d.strip() for d in days.split(",")]
    days = [str(d).lower()[:3] for d in days]
    if any(d not in DAYS for d in days):
        raise RulesError(f"{where}: days must be among {', '.join(DAYS)}")
    start, end = str(raw.get("start", "")), str(raw.get("end", ""))
    for t in (start, end):
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", t):
            raise RulesError(f"{where}: start and end are times of day like 02:00 (UTC)")
    return Window(days=tuple(days), start=start, end=end, reason=reason)


def _instant(raw: Any) -> dt.datetime:
    if isinstance(raw, dt.datetime):
        t = raw
    else:
        t = dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    if t.tzinfo is not None:
        t = t.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return t


def _strings(raw: Any, where: str) -> tuple[str, ...]:
    if raw in (None, ""):
        return ()
    if isinstance(raw, str):
        raw = [x.strip() for x in raw.split(",") if x.strip()]
    if not isinstance(raw, list) or not all(isinstance(x, (str, int, float)) for x in raw):
        raise RulesError(f"{where}: expected a list of names")
    return tuple(str(x) for x in raw)


def load_rules(path: Path, env: dict[str, str] | None = None) -> RulesFile:
    """Read and validate the rules file; environment variables override the check targets."""
    env = dict(os.environ if env is None else env)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RulesError(f"cannot read the rules file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise RulesError(f"{path}: expected a mapping with rules, safety and checks")
    unknown = set(data) - {"rules", "safety", "checks"}
    if unknown:
        raise RulesError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}")
    s = data.get("safety") or {}
    if not isinstance(s, dict):
        raise RulesError(f"{path}: safety must be a mapping")
    breaker = s.get("breaker") or {}
    safety = Safety(
        throttle=duration(s.get("throttle", "15m"), "safety.throttle"),
        breaker_failures=int(breaker.get("failures", 3)),
        breaker_window=duration(breaker.get("window", "1h"), "safety.breaker.window"),
        rate_limit_per_minute=int(s.get("rate_limit_per_minute", 60)),
        maintenance=tuple(_window(w, f"safety.maintenance[{i}]") for i, w in enumerate(s.get("maintenance") or [])),
    )
    if safety.breaker_failures < 1 or safety.rate_limit_per_minute < 1:
        raise RulesError(f"{path}: breaker.failures and rate_limit_per_minute must be at least 1")
    rules: list[Rule] = []
    for i, raw in enumerate(data.get("rules") or []):
        where = f"{path.name}: rules[{i}]"
        if not isinstance(raw, dict):
            raise RulesError(f"{where} is not a mapping")
        extra = set(raw) - {
            "id",
            "codes",
            "code",
            "playbook",
            "params",
            "mode",
            "throttle",
            "limit",
            "check_first",
            "description",
        }
        if extra:
            raise RulesError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
        rid = str(raw.get("id", ""))
        if not RULE_ID_RE.match(rid):
            raise RulesError(f"{where}: id {rid!r} must be lower-case letters, digits, '-' or '_'")
        if any(r.id == rid for r in rules):
            raise RulesError(f"{where}: id '{rid}' is listed twice")
        codes = _strings(raw.get("codes", raw.get("code")), f"rule '{rid}': codes")
        bad = [c for c in codes if c not in CODES]
        if not codes or bad:
            raise RulesError(
                f"rule '{rid}': codes must be finding codes Jarvis reports; unknown: {', '.join(bad) or 'none given'}"
            )
        mode = str(raw.get("mode", "approve"))
        if mode not in MODES:
            raise RulesError(f"rule '{rid}': mode must be one of {', '.join(MODES)}")
        if mode in ("auto", "approve") and not raw.get("playbook"):
            raise RulesError(f"rule '{rid}': mode {mode} runs a playbook, so it needs one (or mode notify or off)")
        params = raw.get("params") or {}
        if not isinstance(params, dict) or not all(isinstance(v, (str, int, bool)) for v in params.values()):
            raise RulesError(f"rule '{rid}': params must map names to text, numbers or true/false")
        check_first = raw.get("check_first")
        if check_first is not None and not isinstance(check_first, bool):
            raise RulesError(f"rule '{rid}': check_first must be true or false")
        rules.append(
            Rule(
                id=rid,
                codes=codes,
                playbook=str(raw.get("playbook", "")),
                params=dict(params),
                mode=mode,
                throttle=duration(raw.get("throttle", safety.throttle), f"rule '{rid}': throttle"),
                limit=str(raw.get("limit", "")),
                check_first=check_first,
                description=str(raw.get("description", "")).strip(),
            )
        )
    c = data.get("checks") or {}
    if not isinstance(c, dict):
        raise RulesError(f"{path}: checks must be a mapping")
    dns = c.get("dns") or {}
    tls = c.get("tls") or {}
    host = c.get("host") or {}
    unknown_host = set(host) - set(HOST_DEFAULTS)
    if unknown_host:
        raise RulesError(f"checks.host: unknown threshold(s) {', '.join(sorted(unknown_host))}")
    tls_domains = []
    for d in tls.get("domains") or []:
        tls_domains.append({"domain": d} if isinstance(d, str) else dict(d))
    http = [dict(h) for h in c.get("http") or []]
    for h in http:
        if not str(h.get("url", "")).startswith(("http://", "https://")) or not h.get("name"):
            raise RulesError(f"checks.http: each entry needs a name and an http(s) url; got {h}")
    checks = Checks(
        timeout=duration(c.get("timeout", 5), "checks.timeout"),
        dns_resolvers=_strings(env.get("HOMELAB_JARVIS_DNS_RESOLVERS") or dns.get("resolvers"), "checks.dns.resolvers"),
        dns_expected=_strings(env.get("HOMELAB_JARVIS_PUBLIC_IP") or dns.get("expected"), "checks.dns.expected"),
        dns_domains=_strings(dns.get("domains"), "checks.dns.domains"),
        tls_domains=tuple(tls_domains),
        tls_warn_days=float(tls.get("warn_days", 21)),
        tls_critical_days=float(tls.get("critical_days", 7)),
        tls_ca_file=str(env.get("HOMELAB_JARVIS_CA_FILE") or tls.get("ca_file") or ""),
        http=tuple(http),
        host=dict(host),
        from_inventory=bool(c.get("from_inventory", True)),
    )
    return RulesFile(path=path, rules=tuple(rules), safety=safety, checks=checks)


def set_rule_mode(path: Path, rule_id: str, mode: str) -> str:
    """Change one rule's mode in the rules file and return the mode it had (the settings page's editor).

    Only that rule's `mode:` line changes (or is added after its id): the file is edited as text, so
    its comments stay, and the result must load as the same rules with that one mode changed, else
    RulesError and nothing is written. Written to a temporary file beside it, then os.replace."""
    import dataclasses
    import tempfile

    if mode not in MODES:
        raise RulesError(f"mode must be one of {', '.join(MODES)}, not {str(mode)[:20]!r}")
    current = load_rules(path)
    rule = current.rule(rule_id) if isinstance(rule_id, str) else None
    if rule is None:
        raise RulesError(f"there is no rule '{str(rule_id)[:64]}' in {path.name}")
    word = f'"{mode}"' if mode == "off" else mode  # YAML 1.1 reads a bare off as false
    lines = path.read_text().splitlines(keepends=True)
    starts = [
        i
        for i, line in enumerate(lines)
        if re.match(rf"^(\s*)-\s+id:\s*[\"']?{re.escape(rule.id)}[\"']?\s*(#.*)?$", line)
    ]
    if len(starts) != 1:
        raise RulesError(f"rule '{rule.id}' is not written as '- id: {rule.id}' on a line of its own: edit {path.name}")
    start = starts[0]
    dash = len(lines[start]) - len(lines[start].lstrip())
    end = len(lines)
    for i in range(start + 1, len(lines)):
        text = lines[i].strip()
        indent = len(lines[i]) - len(lines[i].lstrip())
        if text and not text.startswith("#") and indent <= dash:
            end = i
            break
    at = [i for i in range(start + 1, end) if re.match(r"^\s+mode\s*:", lines[i])]
    if len(at) > 1:
        raise RulesError(f"rule '{rule.id}' sets mode twice: edit {path.name}")
    if at:
        head, _, tail = lines[at[0]].rstrip("\r\n").partition(":")
        m = re.match(r"^(\s*)[\"']?[a-z]+[\"']?(\s*(#.*)?)$", tail)
        if m is None:
            raise RulesError(f"rule '{rule.id}': its mode line is not plain: edit {path.name}")
        lines[at[0]] = f"{head}:{m[1] or ' '}{word}{m[2]}\n"
    else:
        lines.insert(start + 1, f"{' ' * (dash + 2)}mode: {word}\n")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".yml")
    try:
        with os.fdopen(fd, "w") as f:
            f.write("".join(lines))
        new = load_rules(Path(tmp))
        expected = tuple(dataclasses.replace(r, mode=mode) if r.id == rule.id else r for r in current.rules)
        if new.rules != expected or new.safety != current.safety or new.checks != current.checks:
            raise RulesError(f"changing rule '{rule.id}' would change more than its mode: edit {path.name}")
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return rule.mode


@dataclass(frozen=True)
class JarvisSettings:
    """Jarvis's part of the environment (secrets are read here and never stored or shown)."""

    enabled: bool = True
    rules_path: Path = DEFAULT_RULES
    api_key: str = field(default="", repr=False)
    base_url: str = ""
    model: str = "gpt-4o-mini"
    llm_timeout: float = 60.0
    job_timeout: float = 900.0

    @property
    def llm_enabled(self) -> bool:
        return bool(self.api_key)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> "JarvisSettings":
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = dict(
            enabled=env.get("HOMELAB_JARVIS", "1") not in ("0", "false", "no", "off"),
            rules_path=Path(env.get("HOMELAB_JARVIS_RULES", str(DEFAULT_RULES))).resolve(),
            api_key=env.get("HOMELAB_JARVIS_OPENAI_API_KEY") or env.get("OPENAI_API_KEY", ""),
            base_url=env.get("HOMELAB_JARVIS_OPENAI_BASE_URL") or env.get("OPENAI_BASE_URL", ""),
            model=env.get("HOMELAB_JARVIS_MODEL") or "gpt-4o-mini",
            llm_timeout=float(env.get("HOMELAB_JARVIS_LLM_TIMEOUT") or 60),
            job_timeout=float(env.get("HOMELAB_JARVIS_JOB_TIMEOUT") or 900),
        )
        values.update(overrides)
        return cls(**values)
