"""Helpers for the service scenarios' testinfra suites: requests through the lab host's Caddy.

Requests go to the lab host's own published ports on 127.0.0.1 (curl --resolve), from a throwaway
container of the caddy image on the lab host's network namespace (the lab host ships no curl), and
trust Caddy's internal CA: a passing request proves the route and the certificate chain.
"""

from __future__ import annotations

import json
import os

CADDY_DATA = "/opt/homelab/caddy/data"
ROOT_CA = "/data/caddy/pki/authorities/local/root.crt"


def curl(host, url: str, *args: str):
    """curl <args> <url> through Caddy from the lab host, retrying while a certificate is issued."""
    domain = url.split("/")[2]
    port = 443 if url.startswith("https") else 80
    image = os.environ["LAB_CADDY_IMAGE"]
    return host.run(
        f"docker run --rm --network host -v {CADDY_DATA}:/data:ro {image} "
        f"curl -sS --max-time 10 --retry 5 --retry-delay 1 --retry-all-errors --cacert {ROOT_CA} "
        f"--resolve {domain}:{port}:127.0.0.1 " + " ".join(args) + f" {url}"
    )


def get_json(host, url: str) -> dict:
    """The JSON body of a 200 answer (the stand-in image answers JSON)."""
    res = curl(host, url, "--fail-with-body")
    assert res.rc == 0, f"{url}: rc={res.rc} {res.stdout[-500:]} {res.stderr[-500:]}"
    return json.loads(res.stdout)


def status(host, url: str, *args: str) -> int:
    res = curl(host, url, "-o /dev/null", "-w '%{http_code}'", *args)
    assert res.rc == 0, res.stderr
    return int(res.stdout.strip())
