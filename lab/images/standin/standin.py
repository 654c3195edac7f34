#!/usr/bin/env python3
"""Answer HTTP on the ports of the services it stands in for, and prove the database works.

GET on any path returns 200 with JSON: which service this is (STANDIN_NAME or the hostname), the
path, "redis": "ok <user> <key>" when REDIS_URL is set and a key under REDIS_KEY_PREFIX can be
written and read, and "database": "ok" when the database configured the way the real image reads it
(DATABASE_URL, as the Node bots do, or n8n's DB_POSTGRESDB_*) answers a query, "none" when no
database is configured. When one is configured and does not answer, every request gets 503, so a
compose healthcheck fails exactly as the real service's would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORTS = [int(p) for p in os.environ.get("STANDIN_PORTS", "80 3000 5678 6080 8080 8123 32400").split()]


def database() -> str:
    """'none', 'ok' or the error, from the environment the real services read."""
    url = os.environ.get("DATABASE_URL")
    kwargs: dict[str, str] = {}
    if not url and os.environ.get("DB_POSTGRESDB_HOST"):
        kwargs = {
            "host": os.environ["DB_POSTGRESDB_HOST"],
            "port": os.environ.get("DB_POSTGRESDB_PORT", "5432"),
            "dbname": os.environ.get("DB_POSTGRESDB_DATABASE", "n8n"),
            "user": os.environ.get("DB_POSTGRESDB_USER", ""),
            "password": os.environ.get("DB_POSTGRESDB_PASSWORD", ""),
        }
    if not url and not kwargs:
        return "none"
    try:
        import psycopg2

        conn = psycopg2.connect(url, connect_timeout=3) if url else psycopg2.connect(connect_timeout=3, **kwargs)
        try:
            with conn.cursor() as cur:
                cur.execute("select current_database(), current_user")
                db, user = cur.fetchone()
            return f"ok {db} {user}"
        finally:
            conn.close()
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return f"error: {type(exc).__name__}"


def redis_check() -> str:
    """'none', 'ok <user> <key>' or the error: REDIS_URL as a service of the redis role gets it, used
    as an app would (a write and a read of a key under REDIS_KEY_PREFIX). Reported, never a 503: a
    service's health does not hang on Redis unless the service says so."""
    url = os.environ.get("REDIS_URL")
    if not url:
        return "none"
    try:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
        key = os.environ.get("REDIS_KEY_PREFIX", "") + "standin"
        client.set(key, "ok")
        value = client.get(key)
        user = client.acl_whoami()
        return (
            f"ok {user.decode() if isinstance(user, bytes) else user} {key}" if value == b"ok" else "error: read back"
        )
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return f"error: {type(exc).__name__}"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        db = database()
        body = json.dumps(
            {
                "service": os.environ.get("STANDIN_NAME", socket.gethostname()),
                "path": self.path,
                "port": self.server.server_address[1],
                "database": db,
                "redis": redis_check(),
                "env": sorted(k for k in os.environ if k.isupper()),  # names only, never values
            }
        ).encode()
        self.send_response(503 if db.startswith("error") else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, fmt: str, *args: object) -> None:
        print(f"{self.address_string()} {fmt % args}", flush=True)


def main() -> None:
    # PID 1 gets no default signal actions: without this, `docker stop` (every redeploy, rollback and
    # uninstall) waits its full 10 s grace period and then kills, where the real images stop at once.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    servers = []
    for port in PORTS:
        try:
            servers.append(ThreadingHTTPServer(("", port), Handler))
        except OSError as exc:  # host networking: a port may be taken
            print(f"port {port}: {exc}", flush=True)
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"standin listening on {[s.server_address[1] for s in servers]}", flush=True)
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
