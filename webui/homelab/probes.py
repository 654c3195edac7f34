"""Network probes from the controller, with timeouts: one HTTP request (status, time to the answer)
and one TLS handshake (certificate validity and days left). They never raise: a refused connection,
a timeout or a certificate that does not verify is part of the result, as text.

One code for everything that probes a service: the status cycle (homelab.status) stores their
results as samples, Jarvis (jarvis.netchecks) turns them into findings.
"""

from __future__ import annotations

import datetime as dt
import http.client
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass

# What a service's front page may answer when its registry entry names no health path: it is up
# (a redirect to a login page, a login wall).
FRONT_PAGE_OK = (200, 204, 301, 302, 401, 403)
USER_AGENT = "homelab-probe"


def split_hostport(raw: str, default_port: int) -> tuple[str, int]:
    """("host", port) of "host:port", "[v6]:port" or "host" (then default_port)."""
    host, sep, port = raw.rpartition(":")
    if sep and port.isdigit() and host and not host.endswith(":"):
        return host.strip("[]"), int(port)
    return raw.strip("[]"), default_port


@dataclass(frozen=True)
class HttpProbe:
    """One GET: the status it answered (None: no answer), how long the answer took, why not."""

    url: str
    status: int | None
    ms: float | None
    error: str = ""  # "" when it answered
    error_type: str = ""  # the exception's class name (ConnectionRefusedError, TimeoutError, SSLCertVerificationError)


@dataclass(frozen=True)
class TlsProbe:
    """One handshake with a domain: the certificate's expiry, and why it does not verify or no handshake happened."""

    domain: str
    connect: str  # host:port connected to
    ms: float | None
    not_after: dt.datetime | None = None  # naive UTC
    days_left: float | None = None
    invalid: str = ""  # the verification error: the certificate was read but does not verify
    error: str = ""  # no handshake at all (refused, timeout, not TLS)
    error_type: str = ""


class _Connection(http.client.HTTPSConnection):
    """HTTPS to `address` while SNI, certificate name and Host stay the URL's host (a probe through a
    known address, as Caddy answers for every domain on one server)."""

    def __init__(self, host: str, port: int, address: tuple[str, int], ctx: ssl.SSLContext, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ctx)
        self._address = address
        self._ctx = ctx

    def connect(self) -> None:
        sock = socket.create_connection(self._address, self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self.host)


def probe_http(url: str, timeout: float, ca_file: str = "", connect: str = "") -> HttpProbe:
    """GET url without following redirects (a redirect is an answer). connect: "host[:port]" to
    reach instead of the URL's host (its name still goes in SNI and Host)."""
    parts = urllib.parse.urlsplit(url)
    https = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if https else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    started = time.monotonic()
    conn: http.client.HTTPConnection
    try:
        if https:
            ctx = ssl.create_default_context(cafile=ca_file or None)
            address = split_hostport(connect, port) if connect else (host, port)
            conn = _Connection(host, port, address, ctx, timeout)
        elif connect:
            h, p = split_hostport(connect, port)
            conn = http.client.HTTPConnection(h, p, timeout=timeout)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            host_header = host if parts.port is None else f"{host}:{parts.port}"
            conn.request("GET", path, headers={"User-Agent": USER_AGENT, "Host": host_header})
            resp = conn.getresponse()
            status = resp.status
            ms = (time.monotonic() - started) * 1000
            resp.read(65536)  # a little of the body, so the server does not see a reset mid-answer
        finally:
            conn.close()
    except Exception as exc:  # refused, timeout, TLS, DNS, a broken answer: the service does not answer
        return HttpProbe(url, None, None, _why(exc), type(exc).__name__)
    return HttpProbe(url, status, round(ms, 1))


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"[:300]
    return (str(exc) or type(exc).__name__)[:300]


def _not_after(der: bytes) -> dt.datetime:
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    return cert.not_valid_after_utc.replace(tzinfo=None)


def _peer_cert(host: str, port: int, domain: str, ctx: ssl.SSLContext, timeout: float) -> bytes:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        with ctx.wrap_socket(sock, server_hostname=domain) as tls:
            return tls.getpeercert(binary_form=True) or b""


def probe_tls(domain: str, connect: str, timeout: float, ca_file: str = "", now: dt.datetime | None = None) -> TlsProbe:
    """A verified handshake with domain at connect ("host[:port]", default the domain on 443). A
    certificate that does not verify is read again without verification, to report its expiry too."""
    host, port = split_hostport(connect or domain, 443)
    where = f"{host}:{port}"
    now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    invalid = ""
    started = time.monotonic()
    try:
        der = _peer_cert(host, port, domain, ssl.create_default_context(cafile=ca_file or None), timeout)
    except ssl.SSLCertVerificationError as exc:
        invalid = (exc.verify_message or str(exc))[:300]
        der = b""
    except (OSError, ssl.SSLError) as exc:
        return TlsProbe(domain, where, None, error=_why(exc), error_type=type(exc).__name__)
    ms = round((time.monotonic() - started) * 1000, 1)
    if invalid:
        raw = ssl.create_default_context()
        raw.check_hostname = False
        raw.verify_mode = ssl.CERT_NONE
        try:
            der = _peer_cert(host, port, domain, raw, timeout)
        except (OSError, ssl.SSLError):
            der = b""
    if not der:
        return TlsProbe(domain, where, ms, invalid=invalid or "the server sent no certificate")
    try:
        not_after = _not_after(der)
    except Exception as exc:
        return TlsProbe(domain, where, ms, invalid=invalid, error=f"unreadable certificate: {exc}"[:300])
    days = (not_after - now).total_seconds() / 86400
    return TlsProbe(domain, where, ms, not_after, days, invalid)  # unrounded: thresholds compare it
