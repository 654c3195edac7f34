"""What adopt would do on the user's own server (inventory/production, vault.yml.example's values as
the vault), resolved by Ansible itself; no host, no network.

Its defaults point at the old compose file in his project tree, it only plans unless told
otherwise, and every service of the seed's compose file (tests/fixtures/seed-compose.unified.yml)
is either taken over by a registry service (whose role is enabled there) or listed as not adopted
in the inventory: none falls through as "no registry service matches".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from labenv import ROOT, inventory_copy, resolve

SEED = ROOT / "tests" / "fixtures" / "seed-compose.unified.yml"


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return inventory_copy(ROOT / "inventory" / "production", tmp_path_factory.mktemp("prod") / "production")


@pytest.fixture(scope="module")
def prod(production: Path) -> dict[str, Any]:
    return resolve(
        production,
        "{'file': adopt_compose_file, 'plan_only': adopt_plan_only, 'overrides': adopt_overrides, 'plan':"
        f" (lookup('ansible.builtin.file', '{SEED}') | from_yaml"
        " | homelab_adopt_plan(homelab_registry, adopt_known, adopt_overrides, adopt_compose_file))}",
    )


def test_adopt_reads_the_unified_compose_file_in_the_project_tree_and_only_plans_by_default(
    prod: dict[str, Any],
) -> None:
    assert prod["file"] == "/home/evin/contain/docker-compose.unified.yml"
    assert prod["plan_only"] is True
    assert prod["plan"]["project"] == "contain"


def test_every_seed_service_is_adopted_or_listed_as_not_adopted(prod: dict[str, Any]) -> None:
    seed = set(yaml.safe_load(SEED.read_text())["services"])
    plan = prod["plan"]
    adopted = {s["old"]: s["service"] for s in plan["services"]}
    platform = {plan["postgres"]["old"]: "postgres", plan["caddy"]["old"]: "caddy"}
    not_adopted = {n["old"]: n["why"] for n in plan["not_adopted"]}
    assert set(adopted) | set(platform) | set(not_adopted) == seed
    assert not_adopted == {"minio": "listed as not adopted (adopt_overrides)"}
    assert set(not_adopted) == {k for k, v in prod["overrides"].items() if v is False}
    assert adopted == {
        "discord-bot": "discord_bot",
        "stream-bot": "stream_bot",
        "n8n": "n8n",
        "plex": "plex",
        "homeassistant": "home_assistant",
        "vnc-desktop": "vnc_desktop",
        "homelab-dashboard": "dashboard",
        "redis": "redis",
        "code-server": "code_server",
    }


def test_the_seed_s_databases_go_into_each_role_s_own_database_and_data_into_its_data_directory(
    prod: dict[str, Any],
) -> None:
    by_old = {s["old"]: s for s in prod["plan"]["services"]}
    assert by_old["discord-bot"]["databases"] == [{"old": "ticketbot", "new": "discord_bot", "owner": "discord_bot"}]
    assert by_old["stream-bot"]["databases"] == [{"old": "streambot", "new": "stream_bot", "owner": "stream_bot"}]
    assert by_old["n8n"]["databases"] == [{"old": "n8n", "new": "n8n", "owner": "n8n"}]
    assert by_old["n8n"]["data"] == [
        {"from": "/home/evin/contain/volumes/n8n", "to": "/opt/homelab/n8n/data", "target": "/home/node/.n8n"}
    ]
    assert by_old["plex"]["data"][0]["to"] == "/opt/homelab/plex/config"
    assert by_old["redis"]["data"] == [
        {"from": "/home/evin/contain/volumes/redis", "to": "/opt/homelab/redis/data", "target": "/data"}
    ]
    assert by_old["redis"]["databases"] == []
    # code-server's settings are copied; the project tree it mounted is the one code_server opens.
    assert by_old["code-server"]["not_copied"] == ["/home/evin/contain"]
    assert by_old["code-server"]["data"] == [
        {
            "from": "/home/evin/contain/volumes/code-server",
            "to": "/opt/homelab/code_server/config",
            "target": "/home/coder/.config",
        }
    ]
    assert by_old["plex"]["not_copied"] == ["/srv/media"], "media is mounted, not copied"
    assert prod["plan"]["caddy"]["data"] == "/home/evin/contain/volumes/caddy/data"
    assert prod["plan"]["postgres"] == {
        "old": "homelab-postgres",
        "container": "homelab-postgres",
        "superuser": "postgres",
        "keep": [],
    }
