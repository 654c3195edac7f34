#!/usr/bin/python
"""GET a service's public URL through the host's own Caddy, as a visitor would, until it answers.

The delivery pipeline's Verify stage (roles/node_app/tasks/deliver.yml): after a release is
deployed and its container is healthy, the route a visitor takes (DNS name, TLS with that name as
SNI, Caddy's site, the upstream) must answer too. The request goes to this host (connect,
127.0.0.1:443 by default) with the URL's host name as SNI and Host header, so it needs no DNS and
no curl on the host. The certificate is not judged here unless ca_file is given (Jarvis checks
certificates); the status is. It never changes anything.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
import urllib.parse

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: route_probe
short_description: GET an https URL through this host's Caddy (connect to 127.0.0.1:443, SNI = the URL's host) until it answers
options:
  url: {description: The public URL (https://domain/path)., type: str, required: true}
  connect: {description: Where to connect instead of resolving the domain., type: str, default: "127.0.0.1:443"}
  status: {description: The statuses that pass., type: list, elements: int, default: [200]}
  retries: {description: Attempts before failing., type: int, default: 10}
  delay: {description: Seconds between attempts., type: float, default: 2}
  timeout: {description: Seconds per attempt., type: float, default: 10}
  ca_file: {description: Verify the certificate against this CA file; empty = do not judge the certificate., type: path, default: ""}
"""

RETURN = r"""
status: {description: The last status (0 when no answer)., type: int, returned: always}
attempts: {description: How many attempts were made., type: int, returned: always}
error: {description: The last error or unexpected answer, empty when it passed., type: str, returned: always}
"""


class _Routed(http.client.HTTPSConnection):
    """An HTTPS connection to `address` that speaks to `host` (SNI, Host header)."""

    def __init__(self, host: str, address: tuple[str, int], context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(host, 443, context=context, timeout=timeout)
        self._address = address
        self._ctx = context

    def connect(self) -> None:
        sock = socket.create_connection(self._address, self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self.host)


def probe(url: str, address: tuple[str, int], context: ssl.SSLContext, timeout: float) -> tuple[int, str]:
    parts = urllib.parse.urlsplit(url)
    conn = _Routed(parts.hostname or "", address, context, timeout)
    try:
        path = parts.path or "/"
        conn.request(
            "GET", path + (f"?{parts.query}" if parts.query else ""), headers={"User-Agent": "homelab-deliver"}
        )
        res = conn.getresponse()
        body = res.read(300).decode("utf-8", "replace")
        return res.status, body
    finally:
        conn.close()


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "connect": {"type": "str", "default": "127.0.0.1:443"},
            "status": {"type": "list", "elements": "int", "default": [200]},
            "retries": {"type": "int", "default": 10},
            "delay": {"type": "float", "default": 2},
            "timeout": {"type": "float", "default": 10},
            "ca_file": {"type": "path", "default": ""},
        },
        supports_check_mode=True,
    )
    p = module.params
    parts = urllib.parse.urlsplit(p["url"])
    if parts.scheme != "https" or not parts.hostname:
        module.fail_json(msg=f"route_probe: {p['url']!r} is not an https URL")
    host, _, port = p["connect"].rpartition(":")
    if not host or not port.isdigit():
        module.fail_json(msg=f"route_probe: connect {p['connect']!r} is not host:port")
    if p["ca_file"]:
        context = ssl.create_default_context(cafile=p["ca_file"])
    else:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    status, error = 0, ""
    attempts = 0
    for attempts in range(1, max(p["retries"], 1) + 1):
        try:
            status, body = probe(p["url"], (host, int(port)), context, p["timeout"])
            if status in p["status"]:
                module.exit_json(changed=False, status=status, attempts=attempts, error="")
            error = f"answered {status} (expected {', '.join(map(str, p['status']))}): {body[:200]}"
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            status, error = 0, f"{type(exc).__name__}: {exc}"
        if attempts < p["retries"]:
            time.sleep(p["delay"])
    module.fail_json(
        msg=f"{p['url']} did not answer through Caddy after {attempts} attempt(s): {error}",
        status=status,
        attempts=attempts,
        error=error,
    )


if __name__ == "__main__":
    main()
