#!/usr/bin/env python3
"""VACUUM (ANALYZE) every database of the shared PostgreSQL, REINDEX bloated b-tree indexes.

Run by playbooks/ops/db_maintenance.yml on the host; talks to the server with `docker exec psql`
as the superuser (the container's local socket), prints one JSON report on stdout.

Bloat criterion (reindex=auto), measured, not estimated: pgstattuple's pgstatindex() reads each
b-tree index of at least min_index_pages pages and reports avg_leaf_density, the share of leaf
page space holding live entries. A freshly built b-tree sits near its fillfactor (90 %); pages
emptied by deletes/updates are not merged back, so density drops. An index whose density is
below min_leaf_density is rebuilt with REINDEX INDEX CONCURRENTLY (no write lock on the table).
The measurement runs after the VACUUM (so dead entries are gone) inside a transaction that
creates the pgstattuple extension when it is missing and is rolled back: the service database is
left without it. Without pgstattuple (a server built without contrib), auto reindexes nothing and
says so. Non-b-tree indexes (GIN, GiST, ...) are never measured; reindex=always rebuilds them too.

Config from the environment, JSON in DB_MAINT_CONFIG: container, user, database ('all' or a
name), reindex (auto|always|never), min_leaf_density (percent), min_index_pages, check (bool).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

CFG = json.loads(os.environ.get("DB_MAINT_CONFIG", "{}"))
SEP = "\x1f"


class MaintError(Exception):
    pass


def psql(db: str, sql: str, timeout: float = 3600) -> list[list[str]]:
    argv = ["docker", "exec", "-i", CFG.get("container", "postgres"), "psql", "-U", CFG.get("user", "postgres"),
            "-d", db, "-XAtq", "-v", "ON_ERROR_STOP=1", "-F", SEP]
    proc = subprocess.run(argv, input=sql, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise MaintError(f"{db}: {' '.join(proc.stderr.split())[-400:]}")
    return [line.split(SEP) for line in proc.stdout.splitlines() if line]


INDEXES = """
SELECT format('%I.%I', n.nspname, i.relname), format('%I.%I', n.nspname, t.relname), am.amname,
       pg_relation_size(i.oid), i.relpages
  FROM pg_index x
  JOIN pg_class i ON i.oid = x.indexrelid
  JOIN pg_class t ON t.oid = x.indrelid
  JOIN pg_namespace n ON n.oid = i.relnamespace
  JOIN pg_am am ON am.oid = i.relam
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
   AND i.relpersistence <> 't' AND x.indisvalid AND x.indisready
 ORDER BY 1
"""


def measure(db: str, min_pages: int) -> list[dict]:
    """avg_leaf_density of each b-tree index of at least min_pages pages (pgstattuple, rolled back)."""
    sql = f"""
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgstattuple;
SELECT format('%I.%I', n.nspname, i.relname), format('%I.%I', n.nspname, t.relname),
       pg_relation_size(i.oid), s.avg_leaf_density, s.leaf_fragmentation
  FROM pg_index x
  JOIN pg_class i ON i.oid = x.indexrelid
  JOIN pg_class t ON t.oid = x.indrelid
  JOIN pg_namespace n ON n.oid = i.relnamespace
  JOIN pg_am am ON am.oid = i.relam,
  LATERAL pgstatindex(i.oid) s
 WHERE am.amname = 'btree' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_%' AND i.relpersistence <> 't' AND x.indisvalid AND x.indisready
   AND i.relpages >= {int(min_pages)}
 ORDER BY 1;
ROLLBACK;
"""
    out = []
    for name, table, size, density, frag in psql(db, sql):
        out.append({"index": name, "table": table, "size": int(size),
                    "leaf_density": None if density in ("", "NaN") else float(density),
                    "leaf_fragmentation": None if frag in ("", "NaN") else float(frag)})
    return out


def main() -> int:
    check = bool(CFG.get("check"))
    mode = CFG.get("reindex", "auto")
    threshold = float(CFG.get("min_leaf_density", 50))
    min_pages = int(CFG.get("min_index_pages", 8))
    all_dbs = [r[0] for r in psql("postgres", "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1")]
    wanted = CFG.get("database", "all")
    if wanted != "all" and wanted not in all_dbs:
        print(json.dumps({"error": f"there is no database '{wanted}' (there are: {', '.join(all_dbs)})"}))
        return 1
    dbs = all_dbs if wanted == "all" else [wanted]
    have_pgstattuple = bool(psql("postgres", "SELECT 1 FROM pg_available_extensions WHERE name = 'pgstattuple'"))
    report: dict = {"check": check, "reindex": mode, "min_leaf_density": threshold, "databases": [], "changed": False,
                    "pgstattuple": have_pgstattuple}
    for db in dbs:
        entry: dict = {"database": db, "vacuumed": False, "reindexed": [], "measured": [], "note": ""}
        started = time.monotonic()
        report["changed"] = True  # a vacuum is always done (or, in check mode, would be)
        if not check:
            psql(db, "VACUUM (ANALYZE)")
            entry["vacuumed"] = True
        targets: list[dict] = []
        if mode == "always":
            targets = [{"index": r[0], "table": r[1], "size": int(r[3]), "reason": "reindex=always"}
                       for r in psql(db, INDEXES)]
        elif mode == "auto":
            if not have_pgstattuple:
                entry["note"] = "pgstattuple is not available on this server: bloat cannot be measured, nothing reindexed"
            else:
                entry["measured"] = measure(db, min_pages)
                targets = [dict(m, reason=f"leaf density {m['leaf_density']:.1f} % < {threshold:g} %")
                           for m in entry["measured"] if m["leaf_density"] is not None and m["leaf_density"] < threshold]
        for t in targets:
            if check:
                entry["reindexed"].append(dict(t, done=False))
                continue
            psql(db, f"REINDEX INDEX CONCURRENTLY {t['index']}")
            after = psql(db, f"SELECT pg_relation_size('{t['index']}'::regclass)")
            entry["reindexed"].append(dict(t, done=True, size_after=int(after[0][0])))
        entry["seconds"] = round(time.monotonic() - started, 2)
        entry["freed_bytes"] = sum(r["size"] - r.get("size_after", r["size"]) for r in entry["reindexed"])
        report["databases"].append(entry)
    report["freed_bytes"] = sum(d["freed_bytes"] for d in report["databases"])
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (MaintError, subprocess.SubprocessError, OSError) as exc:
        print(json.dumps({"error": str(exc)}))
        sys.exit(1)
