"""Network-side checks, run in Python with timeouts: DNS (dnspython, configurable resolvers), TLS
(expiry and chain/name validity per domain) and HTTP health per service.

Each returns findings and never raises: a resolver that does not answer, a refused connection or
a timeout is itself a finding with the error as evidence. Every check is bounded by its timeout;
run_all also bounds the whole batch, so a stuck socket can never stall a diagnosis cycle.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
from dataclasses import dataclass
from typing import Any, Callable

from homelab import probes
from jarvis.config import Checks
from jarvis.findings import Finding


@dataclass(frozen=True)
class Target:
    """One network check to run: kind (dns, tls, http), its name and what it needs."""

    kind: str
    name: str
    spec: dict[str, Any]

    @property
    def scope(self) -> str:
        return f"{self.kind}:{self.name}"


def check_dns(domain: str, expected: tuple[str, ...], resolvers: tuple[str, ...], timeout: float) -> list[Finding]:
    import dns.exception
    import dns.resolver

    scope = f"dns:{domain}"
    target = f"dns:{domain}"
    r = dns.resolver.Resolver(configure=not resolvers)
    if resolvers:
        hosts = [probes.split_hostport(x, 53) for x in resolvers]
        r.nameservers = [h for h, _ in hosts]
        r.nameserver_ports = {h: p for h, p in hosts}
    r.timeout = r.lifetime = timeout
    addresses: list[str] = []
    try:
        for rdtype in ("A", "AAAA") if any(":" in e for e in expected) else ("A",):
            try:
                ans = r.resolve(domain, rdtype, search=False)
                addresses += [a.to_text() for a in ans]
            except dns.resolver.NoAnswer:
                continue
    except dns.resolver.NXDOMAIN:
        return [
            Finding(
                "dns.missing",
                "critical",
                target,
                f"{domain} does not exist in DNS (NXDOMAIN)",
                {"domain": domain, "resolvers": list(resolvers) or ["system"]},
                params={"domain": domain},
                scope=scope,
            )
        ]
    except (dns.exception.Timeout, dns.resolver.LifetimeTimeout):
        return [
            Finding(
                "dns.error",
                "warning",
                target,
                f"no DNS answer for {domain} within {timeout:g}s",
                {"domain": domain, "resolvers": list(resolvers) or ["system"], "error": "timeout"},
                params={"domain": domain},
                scope=scope,
            )
        ]
    except Exception as exc:  # NoNameservers, a refused resolver, anything dnspython raises
        return [
            Finding(
                "dns.error",
                "warning",
                target,
                f"DNS lookup of {domain} failed: {type(exc).__name__}",
                {"domain": domain, "resolvers": list(resolvers) or ["system"], "error": str(exc)[:300]},
                params={"domain": domain},
                scope=scope,
            )
        ]
    if not addresses:
        return [
            Finding(
                "dns.missing",
                "critical",
                target,
                f"{domain} has no address record",
                {"domain": domain},
                params={"domain": domain},
                scope=scope,
            )
        ]
    if expected and not set(expected) & set(addresses):
        return [
            Finding(
                "dns.mismatch",
                "critical",
                target,
                f"{domain} resolves to {', '.join(sorted(addresses))}, the server is at {', '.join(expected)}",
                {"domain": domain, "addresses": sorted(addresses), "expected": list(expected)},
                params={"domain": domain},
                scope=scope,
            )
        ]
    return []


def check_tls(
    domain: str,
    connect: str,
    timeout: float,
    ca_file: str,
    warn_days: float,
    critical_days: float,
    now: dt.datetime | None = None,
) -> list[Finding]:
    """The TLS probe (homelab.probes, shared with the status cycle) as findings: no handshake,
    expired, expiring within warn_days (critical within critical_days), does not verify."""
    scope = f"tls:{domain}"
    target = f"tls:{domain}"
    params = {"domain": domain}
    p = probes.probe_tls(domain, connect, timeout, ca_file, now)
    if p.ms is None:
        return [
            Finding(
                "tls.error",
                "warning",
                target,
                f"no TLS handshake with {domain} at {p.connect}: {p.error_type}",
                {"domain": domain, "connect": p.connect, "error": p.error},
                params=params,
                scope=scope,
            )
        ]
    out: list[Finding] = []
    evidence: dict[str, Any] = {"domain": domain, "connect": p.connect}
    if p.error:
        evidence["parse_error"] = p.error[:200]
    if p.not_after is not None and p.days_left is not None:
        days = p.days_left
        evidence.update(not_after=p.not_after.isoformat() + "Z", days_left=days)
        if days <= 0:
            out.append(
                Finding(
                    "tls.expired",
                    "critical",
                    target,
                    f"the certificate of {domain} expired on {p.not_after:%Y-%m-%d}",
                    evidence,
                    params=params,
                    scope=scope,
                )
            )
        elif days <= warn_days:
            sev = "critical" if days <= critical_days else "warning"
            out.append(
                Finding(
                    "tls.expiring",
                    sev,
                    target,
                    f"the certificate of {domain} expires in {days:.1f} days",
                    evidence,
                    params=params,
                    scope=scope,
                )
            )
    if p.invalid and not any(f.code == "tls.expired" for f in out):
        out.append(
            Finding(
                "tls.invalid",
                "critical",
                target,
                f"the certificate of {domain} does not verify: {p.invalid[:160]}",
                {**evidence, "error": p.invalid[:300]},
                params=params,
                scope=scope,
            )
        )
    return out


def check_http(name: str, url: str, expect: tuple[int, ...], timeout: float, ca_file: str) -> list[Finding]:
    """The HTTP probe (homelab.probes, shared with the status cycle) as findings: no answer, or
    an answer that is not one of the expected statuses."""
    scope = f"http:{name}"
    target = f"http:{name}"
    params = {"service": name}
    p = probes.probe_http(url, timeout, ca_file)
    if p.status is None:  # refused, timeout, TLS, DNS: the service does not answer
        return [
            Finding(
                "http.down",
                "critical",
                target,
                f"{name} does not answer at {url}: {p.error_type}",
                {"url": url, "error": p.error},
                params=params,
                scope=scope,
            )
        ]
    if p.status not in expect:
        return [
            Finding(
                "http.bad_status",
                "critical",
                target,
                f"{name} answers {p.status} at {url} (expected {', '.join(map(str, expect))})",
                {"url": url, "status": p.status, "expected": list(expect)},
                params=params,
                scope=scope,
            )
        ]
    return []


@dataclass(frozen=True)
class ServiceTarget:
    """What Jarvis checks of one enabled service of the registry: its domains, and the URL and
    statuses of its health check through its route (empty when it declares none)."""

    name: str
    domains: tuple[str, ...]
    health_url: str = ""
    expect: tuple[int, ...] = ()


def service_targets(services: Any) -> list[ServiceTarget]:
    """The enabled services of the registry (homelab.registry.Service values) as check targets."""
    out = []
    for s in services:
        if getattr(s, "enabled", False) and s.domains:
            out.append(ServiceTarget(s.name, tuple(s.domains), s.health_url, tuple(s.health.get("status") or ())))
    return sorted(out, key=lambda t: t.name)


def targets(checks: Checks, services: list[ServiceTarget], ddclient_addresses: tuple[str, ...] = ()) -> list[Target]:
    """What to check this cycle: the rules file's lists, else every enabled service of the
    registry: DNS and TLS of each of its domains, HTTP on its health path (or its front page)."""
    if not checks.from_inventory:
        services = []
    out: list[Target] = []
    expected = checks.dns_expected or ddclient_addresses
    domains = sorted({d for s in services for d in s.domains})
    for d in checks.dns_domains or domains:
        out.append(Target("dns", d, {"expected": tuple(expected)}))
    for t in checks.tls_domains or tuple({"domain": d} for d in domains):
        out.append(Target("tls", str(t["domain"]), {"connect": str(t.get("connect") or "")}))
    http = checks.http or tuple(
        {
            "name": s.name,
            "url": s.health_url or f"https://{s.domains[0]}/",
            **({"expect": list(s.expect)} if s.expect else {}),
        }
        for s in services
    )
    for h in http:
        expect = tuple(int(x) for x in (h.get("expect") or probes.FRONT_PAGE_OK))
        out.append(Target("http", str(h["name"]), {"url": str(h["url"]), "expect": expect}))
    return out


def run_target(t: Target, checks: Checks) -> list[Finding]:
    try:
        if t.kind == "dns":
            return check_dns(t.name, t.spec["expected"], checks.dns_resolvers, checks.timeout)
        if t.kind == "tls":
            return check_tls(
                t.name,
                t.spec["connect"],
                checks.timeout,
                checks.tls_ca_file,
                checks.tls_warn_days,
                checks.tls_critical_days,
            )
        if t.kind == "http":
            return check_http(t.name, t.spec["url"], t.spec["expect"], checks.timeout, checks.tls_ca_file)
        raise ValueError(f"unknown check kind {t.kind}")
    except Exception as exc:  # a bug or surprise in a check is a finding, not a crash
        return [error_finding(t, f"{type(exc).__name__}: {exc}")]


def error_finding(t: Target, why: str) -> Finding:
    return Finding(
        "check.error",
        "warning",
        f"{t.kind}:{t.name}",
        f"the {t.kind} check of {t.name} failed: {why[:200]}",
        {"check": t.kind, "name": t.name, "error": why[:500]},
        scope=t.scope,
    )


def run_all(
    ts: list[Target], checks: Checks, workers: int = 8, runner: Callable[[Target, Checks], list[Finding]] = run_target
) -> tuple[list[Finding], set[str]]:
    """Run every target concurrently; (findings, scopes that were checked). Bounded in time as a whole."""
    if not ts:
        return [], set()
    findings: list[Finding] = []
    scopes: set[str] = set()
    budget = checks.timeout * 3 + 5  # a DNS lookup may try A and AAAA; TLS may connect twice
    pool = cf.ThreadPoolExecutor(max_workers=min(workers, len(ts)), thread_name_prefix="jarvis-net")
    try:
        futs = {pool.submit(runner, t, checks): t for t in ts}
        done, pending = cf.wait(futs, timeout=budget)
        for f in done:
            try:
                findings += f.result()
            except Exception as exc:  # a custom runner that raises
                findings.append(error_finding(futs[f], f"{type(exc).__name__}: {exc}"))
            scopes.add(futs[f].scope)
        for f in pending:
            t = futs[f]
            findings.append(error_finding(t, f"did not finish within {budget:g}s"))
            scopes.add(t.scope)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return findings, scopes
