"""The shared Redis as every consumer sees it, on the user's own inventory (inventory/production,
vault.yml.example's values as the vault) and the lab's, resolved by Ansible itself: the registry
entry, the backups, the ACL the role writes, and the REDIS_URL a service that declares Redis gets.
No host, no network (molecule's postgres and bots scenarios run them on a lab host).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from homelab.registry import Registry

from labenv import ROOT, inventory_copy, resolve

ACL = ROOT / "roles" / "redis" / "templates" / "users.acl.j2"
ENV = ROOT / "roles" / "compose_service" / "templates" / "service.env.j2"
VAULT_EXAMPLE = ROOT / "inventory" / "production" / "group_vars" / "all" / "vault.yml.example"


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return inventory_copy(ROOT / "inventory" / "production", tmp_path_factory.mktemp("prod") / "production")


def _rendered(inventory: Path) -> dict[str, Any]:
    """The ACL and stream_bot's secrets.env as the roles would write them on this inventory."""
    return resolve(
        inventory,
        "{'users': homelab_registry | homelab_registry_redis_users,"
        f" 'acl': lookup('ansible.builtin.template', '{ACL}',"
        " template_vars=dict(redis_service_users=homelab_registry | homelab_registry_redis_users)),"
        f" 'env': lookup('ansible.builtin.template', '{ENV}',"
        " template_vars=dict(compose_service_name='stream_bot', compose_service_env=dict())),"
        " 'password': stream_bot_redis_password | default(''), 'admin': redis_admin_password,"
        " 'backups': backup_data_dirs}",
    )


def test_production_runs_the_seed_s_redis_as_a_platform_service_that_is_backed_up(production: Path) -> None:
    redis = Registry(production).union()["redis"]
    assert (redis.enabled, redis.kind, redis.containers) == (True, "platform", ("redis",))
    assert redis.ops == ("deploy", "restart")
    assert redis.domains == () and redis.data == ("/opt/homelab/redis/data",)
    got = _rendered(production)
    assert got["backups"]["redis"] == "/opt/homelab/redis/data"
    # No service declares Redis there yet: the ACL holds the admin and the ping-only default user.
    assert got["users"] == []
    lines = got["acl"].strip().splitlines()
    assert lines == [
        "user default on nopass resetkeys resetchannels -@all +ping",
        f"user admin on #{hashlib.sha256(got['admin'].encode()).hexdigest()} ~* &* +@all",
    ]
    vault = yaml.safe_load(VAULT_EXAMPLE.read_text())
    assert got["admin"] == vault["vault_redis_admin_password"] and got["admin"] not in got["acl"]
    assert "REDIS_URL" not in got["env"], "stream_bot does not declare Redis in production"


def test_a_service_that_declares_redis_gets_its_own_user_and_url(tmp_path: Path) -> None:
    """The lab's stream bot says stream_bot_redis: true; enabled, it has a user allowed only its own
    keys, and its secrets.env carries REDIS_URL with the password whose hash the ACL holds."""
    inv = tmp_path / "lab"
    shutil.copytree(ROOT / "inventory" / "lab", inv)
    # A password with what a URL cannot carry as is: it is percent-encoded in REDIS_URL only.
    password = "p@ss/w:rd%20#-0123456789"
    (inv / "group_vars" / "all" / "zz_enable.yml").write_text(
        f"stream_bot_enabled: true\nstream_bot_redis_password: '{password}'\n"
    )
    got = _rendered(inv)
    assert got["users"] == ["stream_bot"] and got["password"] == password
    digest = hashlib.sha256(password.encode()).hexdigest()
    assert (
        f"user stream_bot on #{digest} resetkeys ~stream_bot:* resetchannels &stream_bot:* "
        "+@all -@dangerous -@admin -scan -randomkey" in got["acl"]
    )
    assert password not in got["acl"]
    env = dict(re.findall(r"^([A-Z_]+)='(.*)'$", got["env"], re.M))
    assert env["REDIS_URL"] == "redis://stream_bot:p%40ss%2Fw%3Ard%2520%23-0123456789@redis:6379/0"
    assert env["REDIS_KEY_PREFIX"] == "stream_bot:"
