"""`homelab`: serve the web UI, and run/list/follow/cancel jobs through the server's one engine.

The client commands talk to the running server's REST API (HOMELAB_URL, default
http://127.0.0.1:8080) so that CLI jobs queue behind web jobs on the same hosts. Without
HOMELAB_TOKEN, a local user gets a token minted in the local store (var/cli-token, mode 0600).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

from homelab.settings import Settings


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows])


def _plain(text: str) -> str:
    """Output for where it goes: ansible's colours for a terminal, plain text for a file or a pipe."""
    from homelab.ansi import strip_ansi

    text = text.replace("\r\n", "\n")
    return text if sys.stdout.isatty() else strip_ansi(text)


def _registry(inventory: Path) -> Any:
    from homelab.registry import Registry, RegistryError

    try:
        return Registry(inventory).union()
    except RegistryError as exc:
        raise SystemExit(f"homelab: {exc}") from None
    except Exception as exc:  # ansible's own errors: a missing vault password, a broken inventory
        raise SystemExit(f"homelab: cannot resolve the inventory {inventory}: {exc}") from None


def _services(inventory: Path, as_json: bool) -> int:
    """`homelab services`: the registry as Ansible resolves it for this inventory."""
    services = _registry(inventory)
    if as_json:
        print(json.dumps({n: s.as_dict() for n, s in services.items()}, indent=2))
        return 0
    rows = [
        [
            n,
            "yes" if s.enabled else "no",
            s.kind,
            " ".join(s.domains) or "-",
            s.upstream or "-",
            s.health.get("path") or s.health.get("command") or "-",
            " ".join(s.databases) or "-",
            " ".join(s.data) or "-",
            ",".join(s.ops) or "-",
        ]
        for n, s in services.items()
    ]
    if not rows:
        print(f"the inventory {inventory} has no service")
        return 0
    print(_table(rows, ["SERVICE", "ENABLED", "KIND", "DOMAINS", "UPSTREAM", "HEALTH", "DATABASES", "DATA", "OPS"]))
    return 0


def _jarvis_targets(settings: Settings, inventory: Path, as_json: bool) -> int:
    """`homelab jarvis targets`: what a network diagnosis would check, from the rules file's
    checks and the registry's enabled services."""
    from jarvis import netchecks
    from jarvis.config import JarvisSettings, load_rules

    rules = load_rules(JarvisSettings.from_env().rules_path)
    ts = netchecks.targets(rules.checks, netchecks.service_targets(_registry(inventory).values()))
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "kind": t.kind,
                        "name": t.name,
                        **{k: list(v) if isinstance(v, tuple) else v for k, v in t.spec.items()},
                    }
                    for t in ts
                ],
                indent=2,
            )
        )
        return 0
    if not ts:
        print(
            f"Jarvis would check nothing on {inventory}: no enabled service has a domain "
            f"(or checks.from_inventory is false in the rules file)"
        )
        return 0
    print(
        _table(
            [
                [
                    t.kind,
                    t.name,
                    t.spec.get("url") or t.spec.get("connect") or ",".join(t.spec.get("expected") or ()) or "-",
                ]
                for t in ts
            ],
            ["CHECK", "TARGET", "DETAIL"],
        )
    )
    return 0


def serve(settings: Settings) -> int:
    from werkzeug.serving import make_server

    from homelab.web import create_app

    app = create_app(settings)
    server = make_server(settings.host, settings.port, app, threaded=True)
    stopping = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(
        f"homelab: web UI on http://{settings.host}:{server.server_port}/ (inventory {settings.inventory}, "
        f"store {settings.db_url})",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        from homelab.web import stop_app

        stop_app(app)
    return 0


class Client:
    """A small REST client (standard library only)."""

    def __init__(self, settings: Settings) -> None:
        self.base = os.environ.get("HOMELAB_URL", f"http://{settings.host}:{settings.port}").rstrip("/")
        self.token = os.environ.get("HOMELAB_TOKEN") or self._local_token(settings)

    @staticmethod
    def _local_token(settings: Settings) -> str:
        path = settings.var_dir / "cli-token"
        if path.is_file():
            return path.read_text().strip()
        from homelab.store import Store
        from homelab.web.auth import create_token

        settings.var_dir.mkdir(parents=True, exist_ok=True)
        token = create_token(Store(settings.db_url), "admin", f"cli@{os.uname().nodename}", kind="cli")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token)
        return token

    def _req(self, method: str, path: str, body: Any = None, accept: str = "application/json") -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Accept": accept,
                **({"Content-Type": "application/json"} if data else {}),
            },
        )
        try:
            return urllib.request.urlopen(req, timeout=None if accept == "text/event-stream" else 30)
        except urllib.error.HTTPError as exc:
            try:
                msg = json.loads(exc.read()).get("error", exc.reason)
            except ValueError:
                msg = exc.reason
            raise SystemExit(f"homelab: {msg} (HTTP {exc.code})") from None
        except urllib.error.URLError as exc:
            raise SystemExit(
                f"homelab: cannot reach the server at {self.base} ({exc.reason}); "
                "start it with `python -m homelab serve`"
            ) from None

    def json(self, method: str, path: str, body: Any = None) -> Any:
        with self._req(method, path, body) as r:
            return json.loads(r.read())

    def stream(self, job_id: int, after: int = 0) -> Iterator[tuple[str, dict[str, Any]]]:
        with self._req("GET", f"/api/v1/jobs/{job_id}/stream?after={after}", accept="text/event-stream") as r:
            event, data = "message", list[str]()
            for raw in r:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if not line:
                    if data:
                        yield event, json.loads("\n".join(data))
                    event, data = "message", list[str]()
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())


def _follow(client: Client, job_id: int) -> int:
    status = "unknown"
    for event, data in client.stream(job_id):
        if event == "output" and data.get("stdout"):
            sys.stdout.write(_plain(data["stdout"]) + "\n")
            sys.stdout.flush()
        elif event == "end":
            status = data["status"]
            break
    job = client.json("GET", f"/api/v1/jobs/{job_id}")
    print(f"\njob {job_id}: {job['status']}" + (f" ({job['reason']})" if job.get("reason") else ""), file=sys.stderr)
    return 0 if status == "successful" else 1


def _drift(client: Client, args: argparse.Namespace) -> int:
    cmd = args.drift_cmd or "status"
    if cmd == "status":
        body = client.json("GET", "/api/v1/drift")
        if not body["states"]:
            print("no drift check has run yet: homelab drift check")
            return 0
        rows = [
            [
                st["host"],
                st["playbook"],
                st["state"],
                st["since"] or "-",
                (st["reason"] if st["state"] == "unknown" else "; ".join(t["task"] for t in st["tasks"]))[:100] or "-",
            ]
            for st in body["states"]
        ]
        print(_table(rows, ["HOST", "PLAYBOOK", "STATE", "SINCE", "WHY / WHAT WOULD CHANGE"]))
        return 1 if body["summary"]["drifted"] else 0
    if cmd == "schedules":
        body = client.json("GET", "/api/v1/drift/schedules")
        if body["error"]:
            print(f"schedules file: {body['error']}", file=sys.stderr)
        if not body["schedules"]:
            print("no schedule" + (" (the schedules file cannot be read)" if body["error"] else ""))
            return 0
        rows = [
            [
                s["id"],
                s.get("action") or "check",
                s["playbook"],
                f"{s['in_words']} ({s['when']})" if s.get("in_words") and s["in_words"] != s["when"] else s["when"],
                s["limit"] or "every host",
                str(s["next_run"] or "-") if s["enabled"] else "disabled",
            ]
            for s in body["schedules"]
        ]
        print(_table(rows, ["SCHEDULE", "ACTION", "PLAYBOOK", "WHEN", "LIMIT", "NEXT RUN"]))
        return 0
    if cmd == "history":
        episodes = client.json("GET", "/api/v1/drift/history")
        if not episodes:
            print("no drift recorded yet")
            return 0
        rows = [[e["host"], e["started_at"], e["resolved_at"] or "open", ", ".join(e["tasks"])[:100]] for e in episodes]
        print(_table(rows, ["HOST", "STARTED", "RESOLVED", "TASKS"]))
        return 0
    if cmd == "check":
        what = args.what or "site"
        schedules = {s["id"] for s in client.json("GET", "/api/v1/drift/schedules")["schedules"]}
        body = {"schedule": what} if what in schedules and not args.limit else {"playbook": what, "limit": args.limit}
        job = client.json("POST", "/api/v1/drift/check", body)
        print(
            f"job {job['id']}: drift check {'started' if job['started'] else 'already running'} "
            f"on {', '.join(job['hosts'])}",
            file=sys.stderr,
        )
        if args.no_follow:
            print(job["id"])
            return 0
        _follow(client, job["id"])
        import time

        results: list[Any] = []
        deadline = time.monotonic() + 60
        while not results and time.monotonic() < deadline:  # the result is stored just after the job ends
            results = client.json("GET", f"/api/v1/drift/checks/{job['id']}")
            if not results:
                time.sleep(0.5)
        for r in results:
            print(f"{r['host']}: {r['state']}" + (f" ({r['reason']})" if r["reason"] else ""))
            for t in r["tasks"]:
                print(f"  would change: {t['role'] + ' : ' if t['role'] else ''}{t['task']}")
        return 0
    if cmd == "fix":
        job = client.json("POST", "/api/v1/drift/fix", {"playbook": args.playbook, "hosts": args.hosts})
        tags = f" --tags {','.join(job['tags'])}" if job.get("tags") else ""
        print(f"job {job['id']}: converging {', '.join(job['hosts'])}{tags}", file=sys.stderr)
        if args.no_follow:
            print(job["id"])
            return 0
        return _follow(client, job["id"])
    return 2


def _status(client: Client, as_json: bool) -> int:
    """`homelab status`: each service as last probed, problems first; 1 when one is down."""
    from homelab.status import age_text

    rows = client.json("GET", "/api/v1/services")
    down = [r["name"] for r in rows if r["status"] == "down"]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 1 if down else 0
    if not rows:
        print("no service to show: no enabled service of the inventory has a domain to probe")
        return 0
    table = [
        [
            r["name"],
            r["status"],
            age_text(r["age_seconds"]) if r["observed_at"] else "never",
            f"{r['response_ms']:.0f} ms" if r["response_ms"] is not None else "-",
            f"{r['tls_days_left']:.0f}" if r["tls_days_left"] is not None else "-",
            r["url"] or "-",
        ]
        for r in rows
    ]
    print(_table(table, ["SERVICE", "STATUS", "AGE", "RESPONSE", "TLS DAYS", "URL"]))
    for r in rows:
        if r["status"] in ("down", "degraded") and r["error"]:
            print(f"{r['name']}: {r['error']}"[:300], file=sys.stderr)
    if down:
        print(f"down: {', '.join(down)}", file=sys.stderr)
    return 1 if down else 0


def _typed(client: Client, playbook: str, params: dict[str, str]) -> dict[str, Any]:
    """NAME=VALUE text as the API takes it: integers and booleans as JSON numbers and booleans, by the
    entry's schema. What does not convert is sent as typed, and the server says what is wrong with it."""
    if not params:
        return params
    schema: dict[str, Any] = next(
        (e["parameters"] for e in client.json("GET", "/api/v1/catalog") if e["id"] == playbook), {}
    )
    out: dict[str, Any] = {}
    for name, value in params.items():
        kind = (schema.get(name) or {}).get("type")
        if kind == "integer" and re.fullmatch(r"-?[0-9]+", value):
            out[name] = int(value)
        elif kind == "boolean" and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            out[name] = value.lower() in ("true", "1", "yes", "on")
        else:
            out[name] = value
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="homelab", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the web UI, API and job engine")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    r = sub.add_parser("run", help="start a catalog playbook and follow its output")
    r.add_argument("playbook")
    r.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
    r.add_argument("-l", "--limit", default="")
    r.add_argument("--check", action="store_true")
    r.add_argument("--diff", action="store_true")
    r.add_argument("--no-follow", action="store_true", help="print the job id and return")
    r.add_argument("--confirm", action="store_true", help="start a disruptive playbook (restart, roll back, restore)")
    j = sub.add_parser("jobs", help="list recent jobs")
    j.add_argument("--status")
    j.add_argument("--playbook")
    j.add_argument("-n", type=int, default=20)
    lg = sub.add_parser("logs", help="print a job's output")
    lg.add_argument("job", type=int)
    lg.add_argument("-f", "--follow", action="store_true")
    c = sub.add_parser("cancel", help="cancel a queued or running job")
    c.add_argument("job", type=int)
    sub.add_parser("catalog", help="list the runnable playbooks")
    d = sub.add_parser("drift", help="drift state, run a drift check now, fix drift")
    dsub = d.add_subparsers(dest="drift_cmd")
    dsub.add_parser("status", help="the current drift state per host (default)")
    dc = dsub.add_parser("check", help="run a drift check now and follow it")
    dc.add_argument(
        "what", nargs="?", default="", help="a schedule id or a catalog id (default: every schedule's playbook 'site')"
    )
    dc.add_argument("-l", "--limit", default="")
    dc.add_argument("--no-follow", action="store_true")
    df = dsub.add_parser("fix", help="converge exactly the drifted hosts (audited) and follow it")
    df.add_argument("playbook", nargs="?", default="site")
    df.add_argument("hosts", nargs="*")
    df.add_argument("--no-follow", action="store_true")
    dsub.add_parser("schedules", help="list the drift schedules and their next run")
    dsub.add_parser("history", help="drift episodes, newest first")
    st = sub.add_parser("status", help="each service's status as last probed; exits 1 when one is down")
    st.add_argument("--json", action="store_true")
    sv = sub.add_parser("services", help="the service registry of an inventory, resolved by Ansible (no server needed)")
    sv.add_argument("-i", "--inventory", type=Path, help="an inventory (default: HOMELAB_INVENTORY or inventory/lab)")
    sv.add_argument("--json", action="store_true")
    jv = sub.add_parser("jarvis", help="what Jarvis would do, without a server")
    jsub = jv.add_subparsers(dest="jarvis_cmd")
    jt = jsub.add_parser("targets", help="the DNS, TLS and HTTP checks Jarvis would run (no network is used)")
    jt.add_argument("-i", "--inventory", type=Path, help="an inventory (default: HOMELAB_INVENTORY or inventory/lab)")
    jt.add_argument("--json", action="store_true")
    t = sub.add_parser("token", help="create an API token (stored hashed; printed once)")
    t.add_argument("name")
    sub.add_parser("reset-admin-password", help="set a new generated admin password and print it once")
    args = p.parse_args(argv)

    overrides: dict[str, Any] = {}
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None):
        overrides["port"] = args.port
    settings = Settings.from_env(**overrides)
    if args.cmd == "serve":
        return serve(settings)
    if args.cmd == "services":
        return _services(args.inventory or settings.inventory, as_json=args.json)
    if args.cmd == "jarvis":
        if args.jarvis_cmd != "targets":
            p.error("jarvis: give a command (targets)")
        return _jarvis_targets(settings, args.inventory or settings.inventory, as_json=args.json)
    if args.cmd == "token":
        from homelab.store import Store
        from homelab.web.auth import create_token

        settings.var_dir.mkdir(parents=True, exist_ok=True)
        print(create_token(Store(settings.db_url), "admin", args.name))
        return 0

    if args.cmd == "reset-admin-password":
        import secrets

        from sqlalchemy import select
        from werkzeug.security import generate_password_hash

        from homelab.store import Store, User

        settings.var_dir.mkdir(parents=True, exist_ok=True)
        store = Store(settings.db_url)
        password = secrets.token_urlsafe(15)
        with store.session.begin() as db:
            admin = db.scalar(select(User).where(User.username == "admin"))
            if admin is None:
                db.add(User(username="admin", password_hash=generate_password_hash(password)))
            else:
                admin.password_hash = generate_password_hash(password)
        from homelab.web.auth import end_all_sessions

        end_all_sessions(store, "admin")
        store.audit("cli", "admin.password-reset", "admin")
        print(password)
        return 0

    client = Client(settings)
    if args.cmd == "catalog":
        entries = client.json("GET", "/api/v1/catalog")
        if not entries:
            print("the catalog lists no playbook")
            return 0
        rows = [[e["id"], e["category"], e["risk"], e["title"]] for e in entries]
        print(_table(rows, ["ID", "CATEGORY", "RISK", "TITLE"]))
        return 0
    if args.cmd == "drift":
        return _drift(client, args)
    if args.cmd == "status":
        return _status(client, args.json)
    if args.cmd == "run":
        params = {}
        for kv in args.param:
            if "=" not in kv:
                raise SystemExit(f"homelab: parameter {kv!r} is not NAME=VALUE")
            k, v = kv.split("=", 1)
            params[k] = v
        params = _typed(client, args.playbook, params)
        job = client.json(
            "POST",
            "/api/v1/jobs",
            {"playbook": args.playbook, "params": params, "limit": args.limit, "check": args.check, "diff": args.diff}
            | ({"confirm": True} if args.confirm else {}),
        )
        print(f"job {job['id']}: {job['status']} on {', '.join(job['hosts'])}", file=sys.stderr)
        if args.no_follow:
            print(job["id"])
            return 0
        return _follow(client, job["id"])
    if args.cmd == "jobs":
        q = (
            f"?limit={args.n}"
            + (f"&status={args.status}" if args.status else "")
            + (f"&playbook={args.playbook}" if args.playbook else "")
        )
        jobs = client.json("GET", "/api/v1/jobs" + q)
        if not jobs:
            print("no job matches" if args.status or args.playbook else "no job has run yet")
            return 0
        rows = [
            [
                str(job["id"]),
                job["status"],
                job["playbook"],
                job["title"],
                ",".join(job["hosts"])[:30],
                job["created_by"],
                job["created_at"],
            ]
            for job in jobs
        ]
        print(_table(rows, ["JOB", "STATUS", "PLAYBOOK", "TITLE", "HOSTS", "BY", "CREATED"]))
        return 0
    if args.cmd == "logs":
        if args.follow:
            return _follow(client, args.job)
        after, printed = 0, False
        while True:
            events = client.json("GET", f"/api/v1/jobs/{args.job}/events?after={after}")
            if not events:
                if not printed:
                    print(f"job {args.job} has no output yet", file=sys.stderr)
                return 0
            for ev in events:
                if ev["stdout"]:
                    print(_plain(ev["stdout"]))
                    printed = True
            after = events[-1]["seq"]
    if args.cmd == "cancel":
        res = client.json("POST", f"/api/v1/jobs/{args.job}/cancel")
        print(f"job {args.job}: cancel requested (was {res['was']}, now {res['status']})")
        return 0
    return 2
