"""What the preflight checks on the user's own server (inventory/production, with vault.yml.example's
values as the vault), resolved by Ansible itself; no host, no network.

The domains it looks up are the enabled services' (rig-city.com, evindrake.net,
scarletredjoker.com), the OS it expects is Ubuntu 25.10 with the releases roles/base supports as
warnings, the ports are the ones Caddy and PostgreSQL publish there, and on Ubuntu 25.10 the docker
role installs the distribution's docker.io, so Docker's docker-ce and containerd.io are blockers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from homelab.registry import Registry

from labenv import ROOT, inventory_copy, resolve

ZONES = ("rig-city.com", "evindrake.net", "scarletredjoker.com")
EXPRESSIONS = (
    "preflight_dns_enabled",
    "preflight_dns_domains",
    "preflight_expected_os",
    "preflight_supported_os",
    "preflight_ports",
    "preflight_data_root",
    "preflight_min_free_gb",
    "preflight_docker_conflicts",
    "preflight_enabled",
    "base_converged_marker",
    "ansible_host",
    "docker_install_source",
    "docker_repo_releases",
    "docker_repo_packages",
    "caddy_http_port",
    "caddy_https_port",
    "postgres_host_port",
)


def _resolve(inventory: Path) -> dict[str, Any]:
    """Each of EXPRESSIONS as Ansible resolves it for the inventory's homelab host."""
    return resolve(inventory, "{" + ", ".join(f"'{e}': {e}" for e in EXPRESSIONS) + "}")


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return inventory_copy(ROOT / "inventory" / "production", tmp_path_factory.mktemp("prod") / "production")


@pytest.fixture(scope="module")
def prod(production: Path) -> dict[str, Any]:
    return _resolve(production)


def test_preflight_looks_up_every_enabled_service_domain_on_the_user_s_zones(
    prod: dict[str, Any], production: Path
) -> None:
    services = Registry(production).union()
    enabled = {d for s in services.values() if s.enabled for d in s.domains}
    assert prod["preflight_dns_enabled"] is True
    assert prod["preflight_dns_domains"] == sorted(enabled)
    assert {"n8n.evindrake.net", "bot.rig-city.com", "scarletredjoker.com"} <= enabled
    for zone in ZONES:
        assert any(d == zone or d.endswith("." + zone) for d in enabled), zone
    assert all(any(d == z or d.endswith("." + z) for z in ZONES) for d in enabled), enabled
    # ...compared with the host's public address, which the example gives as ansible_host.
    assert prod["ansible_host"] == "203.0.113.10"


def test_preflight_expects_ubuntu_25_10_and_warns_on_what_base_also_supports(prod: dict[str, Any]) -> None:
    assert prod["preflight_expected_os"] == {"distribution": "Ubuntu", "version": "25.10"}
    base = yaml.safe_load((ROOT / "roles" / "base" / "vars" / "main.yml").read_text())["__base_supported_os"]
    assert prod["preflight_supported_os"] == base, "preflight and roles/base disagree on the supported releases"
    assert "25" in base["Ubuntu"]


def test_on_ubuntu_25_10_the_docker_role_installs_docker_io_so_docker_ce_is_a_blocker(prod: dict[str, Any]) -> None:
    # roles/docker/tasks/validate.yml: auto = Docker's repository if it lists the release, else distro.
    assert prod["docker_install_source"] == "auto"
    assert "questing" not in prod["docker_repo_releases"]["ubuntu"]
    conflicts = prod["preflight_docker_conflicts"]
    assert {"docker-ce", "containerd.io"} <= set(conflicts["distro"])
    assert set(prod["docker_repo_packages"]) <= set(conflicts["distro"]), "a package of Docker's repository is missed"
    ubuntu = yaml.safe_load((ROOT / "roles" / "docker" / "vars" / "Ubuntu-25.yml").read_text())
    assert set(ubuntu["docker_distro_packages"]) <= set(conflicts["docker"])
    assert not set(conflicts["distro"]) & set(conflicts["docker"])


def test_preflight_checks_the_ports_and_disk_the_platform_uses(prod: dict[str, Any]) -> None:
    assert set(prod["preflight_ports"]) == {
        prod["caddy_http_port"],
        prod["caddy_https_port"],
        prod["postgres_host_port"],
    }
    assert prod["preflight_ports"] == [80, 443, 5432]
    assert prod["preflight_data_root"] == "/opt/homelab" and prod["preflight_min_free_gb"] >= 1
    assert prod["preflight_enabled"] is True and prod["base_converged_marker"] == "/etc/homelab/converged"


def test_the_lab_skips_dns_since_lab_test_resolves_nowhere() -> None:
    lab = _resolve(ROOT / "inventory" / "lab")
    assert lab["preflight_dns_enabled"] is False
    assert all(d.endswith(".lab.test") for d in lab["preflight_dns_domains"]), lab["preflight_dns_domains"]
