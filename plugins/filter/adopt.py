"""`homelab_adopt_plan`: the adoption plan of an old compose file (homelab.adoption), for roles/adopt.

The compose file arrives parsed (from_yaml of its bytes: data, never a template); the rules live in
homelab.adoption, so the role, the contract test and anyone reading the code see one mapping.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

try:
    from homelab.adoption import AdoptError, plan
except ImportError as exc:  # pragma: no cover - the venv installs homelab (make venv)
    raise ImportError(f"the homelab package is not installed in ansible's Python ({exc}); run `make venv`") from exc


def _plain(value):  # noqa: ANN001, ANN202
    """Ansible's tagged containers as plain dicts, lists and strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    return str(value)


def homelab_adopt_plan(compose, registry, known, overrides=None, compose_file="/docker-compose.yml"):  # noqa: ANN001, ANN201
    try:
        return plan(_plain(compose), _plain(registry), _plain(known), _plain(overrides or {}), str(compose_file))
    except (AdoptError, KeyError, TypeError, AttributeError) as exc:
        raise AnsibleFilterError(f"adopt: {exc}") from None


class FilterModule:
    def filters(self):  # noqa: ANN201
        return {"homelab_adopt_plan": homelab_adopt_plan}
