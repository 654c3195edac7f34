"""Configuration from the environment, with defaults that work from a checkout of the repository."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from homelab.durations import duration_seconds

REPO_ROOT = Path(__file__).resolve().parents[2]


def _seconds(env: dict[str, str], name: str, default: int) -> int:
    """A number of seconds, or a duration ("2m", "1h"); 0 is allowed (off)."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if raw.isascii() and raw.isdigit():
        return int(raw)
    seconds = duration_seconds(raw)
    if seconds is None:
        raise SystemExit(f"{name}={raw!r} is neither a number of seconds nor a duration like 90s, 2m, 1h")
    return seconds


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError as exc:
        raise SystemExit(f"{name}={raw!r} is not a whole number") from exc


@dataclass(frozen=True)
class Settings:
    """Everything the engine and the web layer need to know about where things are."""

    root: Path = REPO_ROOT
    var_dir: Path = REPO_ROOT / "var"
    database_url: str = ""
    inventory: Path = REPO_ROOT / "inventory" / "lab"
    catalog: Path = REPO_ROOT / "playbooks" / "catalog.yml"
    schedules: Path = REPO_ROOT / "playbooks" / "schedules.yml"
    scheduler: bool = True  # run the drift scheduler in this process (one process holds the lease)
    scheduler_lease_seconds: int = 30  # a dead scheduler's lease expires after this; renewed every sixth of it
    public_url: str = ""  # how notifications link back to the web UI, e.g. https://homelab.example
    ansible_cfg: Path = REPO_ROOT / "ansible.cfg"
    host: str = "127.0.0.1"
    port: int = 8080
    max_parallel_jobs: int = 2
    artifact_max_age_days: int = 30
    artifact_max_count: int = 200
    cookie_secure: str = "auto"  # "auto": Secure when the request came over HTTPS; "1" always; "0" never
    trust_proxy: bool = False
    # The status cycle (homelab.status): an HTTP and a TLS probe of every enabled service with a domain.
    status_interval: int = 60  # seconds between cycles (HOMELAB_STATUS_INTERVAL: "60", "2m"); 0 switches it off
    status_retention_days: int = 7  # samples older than this are deleted at each cycle
    status_timeout: float = 5.0  # seconds each probe may take
    status_connect: str = (
        ""  # "host[:port]" every probe connects to instead of the domain's DNS (the server's LAN address)
    )
    status_ca_file: str = ""  # an extra CA bundle the probes verify with (a lab's internal CA)
    # The facts cycle (homelab.facts): the read-only `facts` playbook, host and container facts kept as samples.
    facts_interval: int = 300  # seconds between cycles (HOMELAB_FACTS_INTERVAL: "300", "5m"); 0 switches it off
    # Names of environment variables a job may inherit from the server process (exact or prefix*).
    job_env_allow: tuple[str, ...] = field(
        default=(
            "PATH",
            "HOME",
            "USER",
            "LOGNAME",
            "LANG",
            "LANGUAGE",
            "LC_*",
            "TZ",
            "TERM",
            "TMPDIR",
            "SSH_AUTH_SOCK",
            "DOCKER_HOST",
            "DOCKER_CERT_PATH",
            "DOCKER_TLS_VERIFY",
            "LAB_*",
            "ANSIBLE_VAULT_PASSWORD_FILE",
            "VIRTUAL_ENV",
            "ANSIBLE_STRATEGY",  # the opt-in Mitogen strategy (ANSIBLE_STRATEGY=mitogen_linear) reaches the jobs
            "HOMELAB_VAR_DIR",  # inventory/lab reads it (lab secrets dir); a path, not a secret
        )
    )

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.var_dir / 'homelab.db'}"

    @property
    def jobs_dir(self) -> Path:
        return self.var_dir / "jobs"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> "Settings":
        env = dict(os.environ if env is None else env)
        root = Path(env.get("HOMELAB_ROOT", str(REPO_ROOT))).resolve()
        var_dir = Path(env.get("HOMELAB_VAR_DIR", str(root / "var"))).resolve()
        values: dict[str, object] = dict(
            root=root,
            var_dir=var_dir,
            database_url=env.get("HOMELAB_DATABASE_URL", ""),
            inventory=Path(env.get("HOMELAB_INVENTORY", str(root / "inventory" / "lab"))).resolve(),
            catalog=Path(env.get("HOMELAB_CATALOG", str(root / "playbooks" / "catalog.yml"))).resolve(),
            schedules=Path(env.get("HOMELAB_SCHEDULES", str(root / "playbooks" / "schedules.yml"))).resolve(),
            scheduler=env.get("HOMELAB_SCHEDULER", "1") not in ("0", "false", "no", "off"),
            public_url=env.get("HOMELAB_PUBLIC_URL", "").rstrip("/"),
            scheduler_lease_seconds=max(3, _int(env, "HOMELAB_SCHEDULER_LEASE_SECONDS", 30)),
            ansible_cfg=Path(env.get("HOMELAB_ANSIBLE_CFG", str(root / "ansible.cfg"))).resolve(),
            host=env.get("HOMELAB_HOST", "127.0.0.1"),
            port=_int(env, "HOMELAB_PORT", 8080),
            max_parallel_jobs=max(1, _int(env, "HOMELAB_MAX_PARALLEL_JOBS", 2)),
            artifact_max_age_days=_int(env, "HOMELAB_ARTIFACT_MAX_AGE_DAYS", 30),
            artifact_max_count=_int(env, "HOMELAB_ARTIFACT_MAX_COUNT", 200),
            cookie_secure=env.get("HOMELAB_COOKIE_SECURE", "auto"),
            trust_proxy=env.get("HOMELAB_TRUST_PROXY", "") in ("1", "true", "yes"),
            status_interval=_status_interval(_seconds(env, "HOMELAB_STATUS_INTERVAL", 60)),
            status_retention_days=max(1, _int(env, "HOMELAB_STATUS_RETENTION_DAYS", 7)),
            status_timeout=max(0.5, float(_int(env, "HOMELAB_STATUS_TIMEOUT", 5))),
            status_connect=env.get("HOMELAB_STATUS_CONNECT", "").strip(),
            status_ca_file=env.get("HOMELAB_STATUS_CA_FILE", "").strip(),
            facts_interval=_facts_interval(_seconds(env, "HOMELAB_FACTS_INTERVAL", 300)),
        )
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


def _status_interval(seconds: int) -> int:
    """0 (off) or at least 10 seconds: a cycle probes every service twice."""
    return 0 if seconds <= 0 else max(10, seconds)


def _facts_interval(seconds: int) -> int:
    """0 (off) or at least 60 seconds: a cycle is an ansible run on every host."""
    return 0 if seconds <= 0 else max(60, seconds)
