"""Every role's defaults, and the registry they declare, for every playbook and for Python.

DOCUMENTATION is below; why this exists: each service role declares its own registry entry once,
in its defaults (`<role>_registry`: name, domains, health, data, ...). A role's defaults are only
loaded where the role runs, yet the ops playbooks, backups, Jarvis and the web UI need every
service's entry. This plugin loads the defaults of every role under roles/ at the inventory
stage, onto the group `all`, so they sit just above role defaults: the inventory file's own
group and host vars, group_vars/ and host_vars/ files, play vars and extra vars all still win.
Adding a service is adding a role: nothing else lists it. `homelab_registry` assembles the
entries (plugins/filter/registry.py checks them, homelab.registry holds the rules).
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: homelab_roles
short_description: the defaults of every role in roles/, and the assembled service registry
description:
  - Loads roles/*/defaults/main.yml onto the group all when the inventory is parsed.
  - Defines homelab_registry from every <role>_registry variable.
options:
  stage:
    default: inventory
    choices: [all, task, inventory]
    type: str
    ini:
      - key: stage
        section: vars_homelab_roles
"""

from pathlib import Path

from ansible.errors import AnsibleParserError
from ansible.plugins.vars import BaseVarsPlugin
from ansible.template import trust_as_template

HERE = Path(__file__).resolve().parents[2]


def _roles_of(inventory_dir: str) -> Path:
    """The roles/ of the project this inventory belongs to (the nearest ancestor holding roles/
    and ansible.cfg), else this plugin's own project's (molecule's inventories live elsewhere)."""
    for d in (Path(inventory_dir).resolve(), *Path(inventory_dir).resolve().parents):
        if (d / "roles").is_dir() and (d / "ansible.cfg").is_file():
            return d / "roles"
    return HERE / "roles"
# Every `<role>_registry` variable, checked and keyed by name (plugins/filter/registry.py).
REGISTRY_EXPR = (
    "{{ query('ansible.builtin.vars', *query('ansible.builtin.varnames', '^(?!homelab_registry$)[a-z][a-z0-9_]*_registry$'))"
    " | homelab_registry_check }}"
)


class VarsModule(BaseVarsPlugin):
    REQUIRES_ENABLED = True
    is_stateless = True

    def get_vars(self, loader, path, entities, cache=True):  # noqa: ANN001, ANN201
        if not isinstance(entities, list):
            entities = [entities]
        if not any(getattr(e, "name", None) == "all" and not hasattr(e, "address") for e in entities):
            return {}
        data: dict = {}
        owner: dict[str, str] = {}
        for defaults in sorted(_roles_of(path).glob("*/defaults/main.yml")):
            role = defaults.parent.parent.name
            loaded = loader.load_from_file(str(defaults), cache="all", unsafe=True, trusted_as_template=True) or {}
            if not isinstance(loaded, dict):
                raise AnsibleParserError(f"{defaults}: role defaults must be a mapping")
            for key, value in loaded.items():
                if key in owner:
                    raise AnsibleParserError(f"role {role} and role {owner[key]} both define the default {key!r}: "
                                             f"every knob is role-prefixed and has one owner")
                owner[key] = role
                data[key] = value
        data["homelab_registry"] = trust_as_template(REGISTRY_EXPR)
        return data
