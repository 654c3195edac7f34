"""A fake ZoneEdit for the lab: the dynamic DNS endpoint and a "what is my IP" page, over HTTPS on
the lab host's loopback. Each request is appended to requests.log as one JSON line: path, query,
the basic-auth user and a SHA-256 of the password (never the password itself).

  GET /checkip.html          -> "Current IP Address: <the address in ./ip>"
  GET /auth/dynamic.html?host=a,b&dnsto=IP
                             -> one <SUCCESS CODE="200" .../> line per host, as ZoneEdit answers
                                (an <ERROR CODE="702" .../> line per host when ./reject-auth exists)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        user, digest = None, None
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            raw = base64.b64decode(auth[6:]).decode(errors="replace")
            user, _, password = raw.partition(":")
            digest = hashlib.sha256(password.encode()).hexdigest()
        with open(os.path.join(HERE, "requests.log"), "a", encoding="utf-8") as f:
            f.write(json.dumps({"time": time.time(), "path": url.path, "query": query, "user": user,
                                "password_sha256": digest}) + "\n")
        if url.path == "/checkip.html":
            with open(os.path.join(HERE, "ip"), encoding="utf-8") as f:
                body = f"<html><body>Current IP Address: {f.read().strip()}</body></html>\n"
        elif url.path == "/auth/dynamic.html":
            ip = query.get("dnsto", "")
            lines = []
            for host in filter(None, query.get("host", "").split(",")):
                if os.path.exists(os.path.join(HERE, "reject-auth")):
                    lines.append(f'<ERROR CODE="702" TEXT="Authentication failed" ZONE="{host}">')
                else:
                    lines.append(f'<SUCCESS CODE="200" TEXT="Update succeeded." ZONE="{host}" IP="{ip}">')
            body = "\n".join(lines) + "\n"
        else:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8443
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(HERE, "ca.pem"), os.path.join(HERE, "key.pem"))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
