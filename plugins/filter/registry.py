"""`homelab_registry_check`: every role's `<role>_registry` entry, checked, keyed by name.

Used once, by `homelab_registry` (plugins/vars/homelab_roles.py). The rules live in
homelab.registry, which the web UI and Jarvis use too, so Ansible and Python refuse the same
entries with the same message (naming the service and the field) before any task runs.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

try:
    from homelab.registry import RegistryError, as_ansible, check_entries, data_dirs, data_excludes, redis_users
except ImportError as exc:  # pragma: no cover - the venv installs homelab (make venv)
    raise ImportError(f"the homelab package is not installed in ansible's Python ({exc}); run `make venv`") from exc


def homelab_registry_check(entries):  # noqa: ANN001, ANN201
    try:
        return as_ansible(check_entries(entries))
    except RegistryError as exc:
        raise AnsibleFilterError(str(exc)) from None


def homelab_registry_data_dirs(registry):  # noqa: ANN001, ANN201
    """name -> path of every enabled service's data directories (backups)."""
    return data_dirs(_services(registry))


def homelab_registry_data_excludes(registry):  # noqa: ANN001, ANN201
    """name -> exclude patterns, for the archives of homelab_registry_data_dirs."""
    return data_excludes(_services(registry))


def homelab_registry_redis_users(registry):  # noqa: ANN001, ANN201
    """The enabled services that declare `redis: true`, by name (roles/redis makes their users)."""
    return redis_users(_services(registry))


def _services(registry):  # noqa: ANN001, ANN202
    try:
        return check_entries(registry)
    except RegistryError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    def filters(self):  # noqa: ANN201
        return {
            "homelab_registry_check": homelab_registry_check,
            "homelab_registry_data_dirs": homelab_registry_data_dirs,
            "homelab_registry_data_excludes": homelab_registry_data_excludes,
            "homelab_registry_redis_users": homelab_registry_redis_users,
        }
