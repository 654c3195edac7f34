#!/usr/bin/env python3
"""homelab-backup: dumps of the shared PostgreSQL and archives of service data, verified restores.

  homelab-backup run                       make a backup now (the systemd timer runs this)
  homelab-backup list                      the complete backups, newest first (JSON)
  homelab-backup show [ID|latest]          one backup's manifest (JSON)
  homelab-backup verify [ID|latest]        checksums against the manifest, pg_restore --list of each
                                           dump, tar -t of each archive; exit 1 naming what is wrong
  homelab-backup restore-db ID DATABASE    pg_restore into a fresh database, swapped in when complete
  homelab-backup restore-data ID NAME      put a data archive back where it came from
  homelab-backup offsite-list              the off-host copies (restic snapshots), newest first (JSON)
  homelab-backup offsite-check             restic check (with a sample of the data) of the repository
  homelab-backup offsite-restore [SNAPSHOT|latest]
                                           bring an off-host copy back as a local backup, verified;
                                           restore-db / restore-data then restore from it
  homelab-backup drill                     restore drill: the latest off-host copy into a scratch
                                           directory, verified, each dump restored into a scratch
                                           database and dropped again

A backup is a directory <backup_dir>/<ID> (ID = UTC time, 20261126T033000Z) written as
.partial-<ID> and renamed only once complete, so a directory with an ID name is always whole.
It holds postgres/<db>.dump (pg_dump -Fc), postgres/globals.sql (pg_dumpall --globals-only:
roles and their password hashes), data/<name>.tar.gz and manifest.json (sha256 and size of each).
Everything is root-only (umask 077). The status file (last_attempt, last_success, status, error,
path) is what diagnostics and Jarvis read. The configuration is /etc/homelab/backup.json.

Off-host (config "offsite", optional): after each backup its directory is copied into a restic
repository (sftp, S3 such as MinIO, REST, or a path on another disk), encrypted with the key in
the password file; the repository's address and the backend's credentials come from an env file
(both root-only, written by the role from the vault). Retention there is restic's own (keep daily,
weekly, monthly, grouped by host). A failed copy fails the run: the status says "failed" with the
error, while last_success and path name the local backup that was made.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

CONFIG_PATH = os.environ.get("HOMELAB_BACKUP_CONFIG", "/etc/homelab/backup.json")
ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z$")
NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
SKIP_DATABASES = {"template0", "template1"}


class BackupError(Exception):
    """A failure a person can act on; its message goes to the status file and stderr."""


def load_config() -> dict:
    with open(CONFIG_PATH) as f:
        cfg = json.load(f)
    cfg.setdefault("backup_dir", "/var/backups/homelab")
    cfg.setdefault("status_file", "/var/lib/homelab/backup/status.json")
    cfg.setdefault("keep_daily", 7)
    cfg.setdefault("lock_file", "/run/lock/homelab-backup.lock")
    cfg.setdefault("data_dirs", {})
    cfg.setdefault("data_excludes", {})
    pg = cfg.setdefault("postgres", {})
    pg.setdefault("enabled", True)
    pg.setdefault("container", "postgres")
    pg.setdefault("user", "postgres")
    pg.setdefault("databases", [])
    pg.setdefault("exclude", [])
    pg.setdefault("globals", True)
    off = cfg.setdefault("offsite", {})
    off.setdefault("enabled", False)
    off.setdefault("env_file", "/etc/homelab/restic.env")
    off.setdefault("password_file", "/etc/homelab/restic.password")
    off.setdefault("repository", "")  # for messages only, without credentials
    off.setdefault("keep", {"daily": 7, "weekly": 4, "monthly": 12})
    off.setdefault("read_data_subset", "5%")
    off.setdefault("cache_dir", "/var/cache/homelab-backup/restic")
    return cfg


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run(argv: list[str], *, stdout=subprocess.PIPE, stdin=None, timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, stdout=stdout, stdin=stdin, stderr=subprocess.PIPE, timeout=timeout, check=False)


def tail(data: bytes | str | None, n: int = 400) -> str:
    text = data.decode(errors="replace") if isinstance(data, bytes) else (data or "")
    return " ".join(text.split())[-n:]


def docker_exec(cfg: dict, *argv: str, interactive: bool = False) -> list[str]:
    pg = cfg["postgres"]
    return ["docker", "exec", *(["-i"] if interactive else []), pg["container"], *argv]


def psql(cfg: dict, sql: str, db: str = "postgres") -> list[str]:
    proc = run(docker_exec(cfg, "psql", "-U", cfg["postgres"]["user"], "-d", db, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql), timeout=120)
    if proc.returncode != 0:
        raise BackupError(f"psql on {db} failed: {tail(proc.stderr)}")
    return [line for line in proc.stdout.decode().splitlines() if line]


def postgres_running(cfg: dict) -> bool:
    proc = run(["docker", "inspect", "-f", "{{.State.Running}}", cfg["postgres"]["container"]])
    return proc.returncode == 0 and proc.stdout.decode().strip() == "true"


def databases(cfg: dict) -> list[dict]:
    """Every database to dump, with its owner: the configured list, or all but the templates."""
    rows = psql(cfg, "SELECT datname || '|' || pg_get_userbyid(datdba) || '|' || pg_encoding_to_char(encoding)"
                     " || '|' || datcollate || '|' || datctype FROM pg_database WHERE datallowconn ORDER BY 1")
    found = {r.split("|")[0]: r.split("|")[1:] for r in rows}
    wanted = cfg["postgres"]["databases"] or sorted(found)
    missing = [d for d in wanted if d not in found]
    if missing:
        raise BackupError(f"configured databases do not exist: {', '.join(missing)}")
    return [{"name": d, "owner": found[d][0], "encoding": found[d][1], "collate": found[d][2], "ctype": found[d][3]}
            for d in wanted
            if d not in SKIP_DATABASES and d not in cfg["postgres"]["exclude"]]


def backups(cfg: dict) -> list[Path]:
    root = Path(cfg["backup_dir"])
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and ID_RE.match(p.name)), key=lambda p: p.name, reverse=True)


def resolve(cfg: dict, ident: str) -> Path:
    found = backups(cfg)
    if ident in ("", "latest"):
        if not found:
            raise BackupError(f"there is no backup in {cfg['backup_dir']} yet")
        return found[0]
    if not ID_RE.match(ident):
        raise BackupError(f"'{ident}' is not a backup id (like 20261126T033000Z) or 'latest'")
    path = Path(cfg["backup_dir"]) / ident
    if not path.is_dir():
        have = ", ".join(p.name for p in found[:10]) or "none"
        raise BackupError(f"there is no backup {ident} in {cfg['backup_dir']} (available: {have})")
    return path


def manifest(path: Path) -> dict:
    try:
        with open(path / "manifest.json") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise BackupError(f"{path.name}: manifest.json is missing or unreadable ({exc})") from exc


# --- off-host: restic ---------------------------------------------------------------------------

def env_file(path: str) -> dict[str, str]:
    """KEY='value' lines (as the role writes them); the values are never printed."""
    out: dict[str, str] = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, value = line.split("=", 1)
            if len(value) >= 2 and value[0] == value[-1] == "'":
                value = value[1:-1]
            out[key.strip()] = value
    return out


def restic(cfg: dict, *args: str, timeout: float = 6 * 3600) -> subprocess.CompletedProcess:
    off = cfg["offsite"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESTIC_", "AWS_", "B2_", "AZURE_", "GOOGLE_"))}
    env.update(env_file(off["env_file"]))
    env["RESTIC_PASSWORD_FILE"] = off["password_file"]
    env["RESTIC_CACHE_DIR"] = off["cache_dir"]
    try:
        return subprocess.run(["restic", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise BackupError("restic is not installed (the backup role installs it when offsite is enabled)") from exc


def restic_error(cfg: dict, what: str, proc: subprocess.CompletedProcess) -> BackupError:
    why = {10: "the repository does not exist", 11: "the repository is locked by another restic",
           12: "the password does not open the repository"}.get(proc.returncode, tail(proc.stderr))
    return BackupError(f"{what} ({cfg['offsite']['repository']}) failed: {why}")


def offsite_copy(cfg: dict, path: Path) -> dict:
    """The complete backup directory into the repository, then restic's retention."""
    off = cfg["offsite"]
    host = socket.gethostname()
    proc = restic(cfg, "backup", "--json", "--quiet", "--host", host, "--tag", "homelab", "--tag", f"id:{path.name}",
                  str(path))
    if proc.returncode != 0:
        raise restic_error(cfg, "off-host copy", proc)
    summary = {}
    for line in proc.stdout.decode(errors="replace").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if doc.get("message_type") == "summary":
            summary = doc
    keep = off["keep"]
    proc = restic(cfg, "forget", "--quiet", "--prune", "--host", host, "--tag", "homelab", "--group-by", "host",
                  "--keep-daily", str(keep["daily"]), "--keep-weekly", str(keep["weekly"]),
                  "--keep-monthly", str(keep["monthly"]))
    if proc.returncode != 0:
        raise restic_error(cfg, "off-host retention (restic forget --prune)", proc)
    return {"snapshot": summary.get("snapshot_id", ""), "repository": off["repository"], "at": now_iso(),
            "added": summary.get("data_added", 0)}


def snapshots(cfg: dict) -> list[dict]:
    proc = restic(cfg, "snapshots", "--json", "--tag", "homelab", timeout=600)
    if proc.returncode != 0:
        raise restic_error(cfg, "listing the off-host copies", proc)
    out = []
    for snap in json.loads(proc.stdout.decode() or "[]"):
        ident = next((t[3:] for t in snap.get("tags") or [] if t.startswith("id:")), "")
        out.append({"snapshot": snap["id"], "short": snap.get("short_id", snap["id"][:8]), "time": snap.get("time"),
                    "host": snap.get("hostname"), "backup": ident, "paths": snap.get("paths", [])})
    return sorted(out, key=lambda s: s["time"] or "", reverse=True)


def find_snapshot(cfg: dict, which: str) -> dict:
    snaps = snapshots(cfg)
    if not snaps:
        raise BackupError(f"the repository ({cfg['offsite']['repository']}) holds no homelab backup yet")
    if which in ("", "latest"):
        return snaps[0]
    for s in snaps:
        if which in (s["snapshot"], s["short"], s["backup"]):
            return s
    have = ", ".join(f"{s['short']} ({s['backup']})" for s in snaps[:10])
    raise BackupError(f"no off-host copy '{which}' (available: {have})")


@contextlib.contextmanager
def restored_copy(cfg: dict, snap: dict, prefix: str, label: str = "") -> Iterator[tuple[Path, dict]]:
    """The snapshot's backup directory restored into a scratch directory under backup_dir and
    verified against its manifest: (that directory, the verify result); the scratch goes after."""
    if not ID_RE.match(snap["backup"]) or len(snap["paths"]) != 1:
        raise BackupError(f"snapshot {snap['short']} is not a homelab backup (no id: tag or not one directory)")
    root = Path(cfg["backup_dir"])
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    try:
        proc = restic(cfg, "restore", snap["snapshot"], "--target", str(staging))
        if proc.returncode != 0:
            raise restic_error(cfg, f"restoring snapshot {snap['short']}", proc)
        got = staging / snap["paths"][0].lstrip("/")
        if not (got / "manifest.json").is_file():
            raise BackupError(f"snapshot {snap['short']} holds no manifest.json under {snap['paths'][0]}")
        result = verify(cfg, got)
        if not result["ok"]:
            raise BackupError(f"{label}snapshot {snap['short']} restored but does not verify: {result['problems']}")
        yield got, result
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def offsite_restore(cfg: dict, which: str) -> dict:
    snap = find_snapshot(cfg, which)
    target = Path(cfg["backup_dir"]) / snap["backup"]
    if target.exists():
        raise BackupError(f"backup {snap['backup']} is already here ({target}): restore from it directly")
    with restored_copy(cfg, snap, ".offsite-") as (got, _):
        os.rename(got, target)
    return {"id": snap["backup"], "path": str(target), "snapshot": snap["snapshot"], "verified": True}


DRILL_DB = "_homelab_restore_drill"


def drill(cfg: dict) -> dict:
    """The latest off-host copy restored into a scratch directory and verified, each of its database
    dumps restored into a scratch database (counting its tables) and dropped; nothing else touched."""
    snap = find_snapshot(cfg, "latest")
    restored: list[dict] = []
    with restored_copy(cfg, snap, ".drill-", "restore drill: ") as (got, result):
        if cfg["postgres"]["enabled"]:
            for entry in manifest(got).get("files", []):
                if entry["kind"] != "database":
                    continue
                psql(cfg, f'DROP DATABASE IF EXISTS "{DRILL_DB}" WITH (FORCE)')
                psql(cfg, f'CREATE DATABASE "{DRILL_DB}" TEMPLATE template0')
                try:
                    with open(got / entry["file"], "rb") as f:
                        proc = run(docker_exec(cfg, "pg_restore", "-U", cfg["postgres"]["user"], "-d", DRILL_DB,
                                               "--no-owner", "--no-acl", "--exit-on-error", interactive=True),
                                   stdin=f, timeout=6 * 3600)
                    if proc.returncode != 0:
                        raise BackupError(f"restore drill: {entry['database']} does not restore: {tail(proc.stderr)}")
                    tables = psql(cfg, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                                       " WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
                                  db=DRILL_DB)
                    restored.append({"database": entry["database"], "tables": int(tables[0])})
                finally:
                    psql(cfg, f'DROP DATABASE IF EXISTS "{DRILL_DB}" WITH (FORCE)')
    return {"ok": True, "snapshot": snap["snapshot"], "backup": snap["backup"], "at": now_iso(),
            "checked": result["checked"], "databases": restored}


def offsite_check(cfg: dict, subset: str) -> dict:
    proc = restic(cfg, "check", *(["--read-data-subset", subset] if subset else []))
    if proc.returncode != 0:
        raise restic_error(cfg, "restic check", proc)
    return {"read_data_subset": subset}


def require_offsite(cfg: dict) -> None:
    if not cfg["offsite"]["enabled"]:
        raise BackupError("off-host copies are not configured (backup_offsite_enabled is false)")


def cmd_offsite(cfg: dict, what: str, fn) -> int:  # noqa: ANN001 - one of the off-host commands
    """Run an off-host command, record its outcome in the status file (offsite_<what>), print it."""
    require_offsite(cfg)
    try:
        doc = fn()
    except (BackupError, OSError, subprocess.SubprocessError) as exc:
        write_status(cfg, **{f"offsite_{what}": {"at": now_iso(), "status": "failed", "error": str(exc)}})
        raise BackupError(str(exc)) from exc
    write_status(cfg, **{f"offsite_{what}": {"at": now_iso(), "status": "ok", "error": "", **doc}})
    print(json.dumps(doc))
    return 0


# --- run --------------------------------------------------------------------------------------

def make_backup(cfg: dict) -> dict:
    root = Path(cfg["backup_dir"])
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    ident = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    while (root / ident).exists():  # two runs in one second: the second waits for a fresh id
        time.sleep(1)
        ident = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    work = root / f".partial-{ident}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(mode=0o700)
    started = time.monotonic()
    files: list[dict] = []
    skipped: list[dict] = []
    try:
        pg = cfg["postgres"]
        if pg["enabled"]:
            if not postgres_running(cfg):
                raise BackupError(f"the PostgreSQL container '{pg['container']}' is not running")
            (work / "postgres").mkdir(mode=0o700)
            if pg["globals"]:
                out = work / "postgres" / "globals.sql"
                with open(out, "wb") as f:
                    proc = run(docker_exec(cfg, "pg_dumpall", "-U", pg["user"], "--globals-only"), stdout=f, timeout=600)
                if proc.returncode != 0:
                    raise BackupError(f"pg_dumpall --globals-only failed: {tail(proc.stderr)}")
                files.append({"file": "postgres/globals.sql", "kind": "globals"})
            for db in databases(cfg):
                out = work / "postgres" / f"{db['name']}.dump"
                with open(out, "wb") as f:
                    proc = run(docker_exec(cfg, "pg_dump", "-U", pg["user"], "-Fc", "-d", db["name"]), stdout=f, timeout=6 * 3600)
                if proc.returncode != 0:
                    raise BackupError(f"pg_dump of {db['name']} failed: {tail(proc.stderr)}")
                files.append({"file": f"postgres/{db['name']}.dump", "kind": "database", "database": db["name"],
                              **{k: db[k] for k in ("owner", "encoding", "collate", "ctype")}})
        for name, src in sorted(cfg["data_dirs"].items()):
            src_path = Path(src)
            if not src_path.is_dir():
                skipped.append({"name": name, "path": src, "reason": "no such directory (service not installed?)"})
                continue
            (work / "data").mkdir(mode=0o700, exist_ok=True)
            out = work / "data" / f"{name}.tar.gz"
            excludes = [f"--exclude={src_path.name}/{p.strip('/')}" for p in cfg["data_excludes"].get(name, [])]
            proc = run(["tar", "--create", "--gzip", "--numeric-owner", "--acls", "--xattrs", "--sparse",
                        "--warning=no-file-changed", *excludes, "--file", str(out), "-C", str(src_path.parent),
                        src_path.name], timeout=6 * 3600)
            # 1 = "some files changed while being read": the archive is usable, as with any live copy.
            if proc.returncode not in (0, 1):
                raise BackupError(f"archiving {name} ({src}) failed: {tail(proc.stderr)}")
            files.append({"file": f"data/{name}.tar.gz", "kind": "data", "name": name, "path": str(src_path)})
        for entry in files:
            p = work / entry["file"]
            os.chmod(p, 0o600)
            entry["size"] = p.stat().st_size
            entry["sha256"] = sha256(p)
        doc = {
            "id": ident, "created": now_iso(), "host": socket.gethostname(), "format": 1,
            "seconds": round(time.monotonic() - started, 1), "files": files, "skipped": skipped,
            "size": sum(e["size"] for e in files),
        }
        with open(work / "manifest.json", "w") as f:
            json.dump(doc, f, indent=2)
        os.chmod(work / "manifest.json", 0o600)
        os.rename(work, root / ident)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    doc["path"] = str(root / ident)
    doc["removed"] = apply_retention(cfg, keep=ident)
    return doc


def apply_retention(cfg: dict, keep: str) -> list[str]:
    """Keep the newest backup of each of the newest keep_daily days (by the ID's UTC date).

    Only complete backups (ID-named directories) count and are touched; the one just made stays.
    Leftover .partial-* directories of runs that died are removed too.
    """
    root = Path(cfg["backup_dir"])
    newest_per_day: dict[str, str] = {}
    for p in backups(cfg):  # newest first
        newest_per_day.setdefault(p.name[:8], p.name)
    kept = set(sorted(newest_per_day.values(), reverse=True)[: max(1, int(cfg["keep_daily"]))]) | {keep}
    removed = []
    for p in backups(cfg):
        if p.name not in kept:
            shutil.rmtree(p)
            removed.append(p.name)
    for p in root.glob(".partial-*"):
        if p.is_dir() and p.name != f".partial-{keep}":
            shutil.rmtree(p, ignore_errors=True)
    return removed


def write_status(cfg: dict, **fields) -> None:
    path = Path(cfg["status_file"])
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        with open(path) as f:
            status = json.load(f)
    except (OSError, ValueError):
        status = {}
    status.setdefault("last_success", None)
    status.update(fields)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".status-")
    with os.fdopen(fd, "w") as f:
        json.dump(status, f, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def cmd_run(cfg: dict) -> int:
    Path(cfg["lock_file"]).parent.mkdir(parents=True, exist_ok=True)
    lock = open(cfg["lock_file"], "w")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("another backup is running", file=sys.stderr)
        return 75
    attempt = now_iso()
    try:
        doc = make_backup(cfg)
    except (BackupError, OSError, subprocess.SubprocessError) as exc:
        write_status(cfg, last_attempt=attempt, status="failed", error=str(exc), path=None)
        print(f"backup failed: {exc}", file=sys.stderr)
        return 1
    fields = {"id": doc["id"], "size": doc["size"], "seconds": doc["seconds"], "skipped": doc["skipped"],
              "removed": doc["removed"]}
    if cfg["offsite"]["enabled"]:
        try:
            doc["offsite"] = offsite_copy(cfg, Path(doc["path"]))
        except (BackupError, OSError, subprocess.SubprocessError) as exc:
            # The local backup is whole and listed; the run still fails, so diagnostics see it.
            write_status(cfg, last_attempt=attempt, last_success=doc["created"], status="failed", error=str(exc),
                         path=doc["path"], **fields, offsite={"status": "failed", "error": str(exc), "at": now_iso()})
            print(f"backup failed: {exc}", file=sys.stderr)
            return 1
        fields["offsite"] = dict(doc["offsite"], status="ok", error="")
    write_status(cfg, last_attempt=attempt, last_success=doc["created"], status="ok", error="", path=doc["path"],
                 **fields)
    print(json.dumps({k: doc[k] for k in ("id", "path", "size", "seconds", "skipped", "removed", "offsite") if k in doc}))
    return 0


# --- verify -----------------------------------------------------------------------------------

def verify(cfg: dict, path: Path) -> dict:
    doc = manifest(path)
    problems: list[dict] = []
    checked: list[str] = []
    listed = {e["file"] for e in doc.get("files", [])}
    for entry in doc.get("files", []):
        name = entry["file"]
        p = path / name
        if not p.is_file():
            problems.append({"file": name, "problem": "missing"})
            continue
        if p.stat().st_size != entry["size"] or sha256(p) != entry["sha256"]:
            problems.append({"file": name, "problem": "checksum or size differs from the manifest (corrupted or altered)"})
            continue
        if entry["kind"] == "database":
            with open(p, "rb") as f:
                proc = run(docker_exec(cfg, "pg_restore", "--list", interactive=True), stdin=f, timeout=600)
            if proc.returncode != 0:
                problems.append({"file": name, "problem": f"pg_restore --list failed: {tail(proc.stderr)}"})
                continue
        elif entry["kind"] == "data":
            proc = run(["tar", "--list", "--gzip", "--file", str(p)], stdout=subprocess.DEVNULL, timeout=3600)
            if proc.returncode != 0:
                problems.append({"file": name, "problem": f"tar --list failed: {tail(proc.stderr)}"})
                continue
        checked.append(name)
    for sub in ("postgres", "data"):
        for p in sorted((path / sub).glob("*")) if (path / sub).is_dir() else []:
            rel = f"{sub}/{p.name}"
            if rel not in listed:
                problems.append({"file": rel, "problem": "not in the manifest"})
    return {"id": path.name, "path": str(path), "ok": not problems, "checked": checked, "problems": problems}


# --- restore ----------------------------------------------------------------------------------

def entry_of(doc: dict, kind: str, key: str, value: str, ident: str) -> dict:
    for e in doc.get("files", []):
        if e["kind"] == kind and e.get(key) == value:
            return e
    have = ", ".join(e.get(key) for e in doc.get("files", []) if e["kind"] == kind) or "none"
    raise BackupError(f"backup {ident} has no {kind} '{value}' (it has: {have})")


RESTORING = "_homelab_restoring"


def restore_db(cfg: dict, path: Path, db: str) -> dict:
    """Restore into a fresh database, then swap it in: the result is the database as it was.

    pg_restore --clean into the live database would drop and recreate only the objects in the
    dump and leave everything created since (a newer release's tables, say) in place, which breaks
    going back to an older release. Instead: a new database owned by the same role, pg_restore in
    one transaction (--exit-on-error), and only when that succeeded the old database is dropped and
    the new one renamed, with the old one's database-level grants (CONNECT for the owner only).
    A failed restore leaves the live database untouched.
    """
    def admin(sql: str) -> list[str]:
        # From template1: the database being replaced may be "postgres" itself.
        return psql(cfg, sql, "template1")

    doc = manifest(path)
    entry = entry_of(doc, "database", "database", db, path.name)
    p = path / entry["file"]
    if sha256(p) != entry["sha256"]:
        raise BackupError(f"{entry['file']} does not match its checksum: refusing to restore it")
    if not postgres_running(cfg):
        raise BackupError(f"the PostgreSQL container '{cfg['postgres']['container']}' is not running")
    user = cfg["postgres"]["user"]
    current = admin("SELECT pg_get_userbyid(datdba) || '|' || pg_encoding_to_char(encoding) || '|' || datcollate"
                        f" || '|' || datctype FROM pg_database WHERE datname = '{db}'")
    # The new database gets the live one's owner, encoding and locale (else those of the backup).
    owner, encoding, collate, ctype = (current[0].split("|") if current else
                                       [entry.get("owner") or user, entry.get("encoding"), entry.get("collate"), entry.get("ctype")])
    if not NAME_RE.match(owner) and owner != user:
        raise BackupError(f"odd owner for {db}: {owner!r}")
    if not admin(f"SELECT 1 FROM pg_roles WHERE rolname = '{owner}'"):
        raise BackupError(f"the owner role {owner} of {db} does not exist: recreate it first (converge the service, "
                          f"or apply postgres/globals.sql of the backup)")
    admin(f'DROP DATABASE IF EXISTS "{RESTORING}" WITH (FORCE)')
    options = "".join(f" {k} '{v}'" for k, v in (("ENCODING", encoding), ("LC_COLLATE", collate), ("LC_CTYPE", ctype))
                      if v and re.match(r"^[A-Za-z0-9_.@-]+$", v))
    admin(f'CREATE DATABASE "{RESTORING}" OWNER "{owner}" TEMPLATE template0{options}')
    try:
        with open(p, "rb") as f:
            proc = run(docker_exec(cfg, "pg_restore", "-U", user, "-d", RESTORING, "--single-transaction",
                                   "--exit-on-error", interactive=True), stdin=f, timeout=6 * 3600)
        if proc.returncode != 0:
            raise BackupError(f"pg_restore of {db} failed; the live database is untouched: {tail(proc.stderr)}")
        # The live database's grants (the postgres role revokes CONNECT from PUBLIC), else the dump's owner only.
        grants = ["REVOKE ALL ON DATABASE {db} FROM PUBLIC", f'GRANT CONNECT, TEMPORARY ON DATABASE {{db}} TO "{owner}"']
        if current:
            grants = ["REVOKE ALL ON DATABASE {db} FROM PUBLIC"] + [
                f"GRANT {priv} ON DATABASE {{db}} TO {grantee}" for priv, grantee in (r.split("|") for r in admin(f"""
                    SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END
                      FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
                     WHERE d.datname = '{db}'"""))]
        for g in grants:
            admin(g.format(db=f'"{RESTORING}"'))
        if current:
            admin(f'DROP DATABASE "{db}" WITH (FORCE)')
        admin(f'ALTER DATABASE "{RESTORING}" RENAME TO "{db}"')
    except BaseException:
        try:
            admin(f'DROP DATABASE IF EXISTS "{RESTORING}" WITH (FORCE)')
        except BackupError:
            pass
        raise
    return {"database": db, "backup": path.name, "created_database": not current}


def restore_data(cfg: dict, path: Path, name: str) -> dict:
    doc = manifest(path)
    entry = entry_of(doc, "data", "name", name, path.name)
    p = path / entry["file"]
    if sha256(p) != entry["sha256"]:
        raise BackupError(f"{entry['file']} does not match its checksum: refusing to restore it")
    target = Path(entry["path"])
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".restore-{name}-", dir=target.parent))
    try:
        proc = run(["tar", "--extract", "--gzip", "--numeric-owner", "--acls", "--xattrs", "--same-permissions",
                    "--file", str(p), "-C", str(staging)], timeout=6 * 3600)
        if proc.returncode != 0:
            raise BackupError(f"extracting {entry['file']} failed: {tail(proc.stderr)}")
        restored = staging / target.name
        if not restored.is_dir():
            raise BackupError(f"{entry['file']} does not hold {target.name}/")
        previous = None
        if target.exists():
            previous = target.with_name(f"{target.name}.pre-restore-{path.name}")
            if previous.exists():
                shutil.rmtree(previous)
            os.rename(target, previous)
        os.rename(restored, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"data": name, "path": str(target), "backup": path.name, "previous_kept_at": str(previous) if previous else None}


def main(argv: list[str]) -> int:
    os.umask(0o077)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    cmd, args = argv[0], argv[1:]
    try:
        cfg = load_config()
        if cmd == "run":
            return cmd_run(cfg)
        if cmd == "list":
            out = []
            for p in backups(cfg):
                try:
                    doc = manifest(p)
                    out.append({"id": p.name, "created": doc.get("created"), "size": doc.get("size")})
                except BackupError:
                    out.append({"id": p.name, "created": None, "size": None})
            print(json.dumps(out))
            return 0
        if cmd == "show":
            p = resolve(cfg, args[0] if args else "latest")
            print(json.dumps(dict(manifest(p), path=str(p))))
            return 0
        if cmd == "verify":
            result = verify(cfg, resolve(cfg, args[0] if args else "latest"))
            print(json.dumps(result))
            return 0 if result["ok"] else 1
        if cmd == "restore-db" and len(args) == 2:
            if not NAME_RE.match(args[1]):
                raise BackupError(f"'{args[1]}' is not a database name")
            print(json.dumps(restore_db(cfg, resolve(cfg, args[0]), args[1])))
            return 0
        if cmd == "restore-data" and len(args) == 2:
            if not NAME_RE.match(args[1]):
                raise BackupError(f"'{args[1]}' is not a data archive name")
            print(json.dumps(restore_data(cfg, resolve(cfg, args[0]), args[1])))
            return 0
        if cmd == "offsite-list" and not args:
            require_offsite(cfg)
            print(json.dumps(snapshots(cfg)))
            return 0
        if cmd == "offsite-check" and not args:
            subset = cfg["offsite"]["read_data_subset"]
            return cmd_offsite(cfg, "check", lambda: offsite_check(cfg, subset))
        if cmd == "offsite-restore" and len(args) <= 1:
            return cmd_offsite(cfg, "restore", lambda: offsite_restore(cfg, args[0] if args else "latest"))
        if cmd == "drill" and not args:
            return cmd_offsite(cfg, "drill", lambda: drill(cfg))
    except BackupError as exc:
        print(json.dumps({"error": str(exc)}))
        print(str(exc), file=sys.stderr)
        return 1
    print(f"unknown command: {' '.join(argv)}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
