"""Switching a service on or off: `<role>_enabled: true|false` in the inventory's own file for that
service, `group_vars/all/<role>.yml` (inventory/production/README.md: "a service is switched on
and placed in its own group_vars/all/<service>.yml").

Why it is built this way (the schedules editor's rules, homelab.schedule.definitions.Schedules.save):
- The name is only ever looked up in the service registry; a platform service (PostgreSQL, Caddy,
  Docker, the base system: what the others stand on) is not switchable, nor a role without an
  `<role>_enabled` default.
- Only that one line changes: the file is edited as text, so its comments and every other key stay
  as they were, and the result is parsed back and must equal the old mapping with that one key
  changed. It is written to a temporary file beside it and moved into place (os.replace): a reader
  never sees half a file.
- A value set anywhere else in the inventory (another group_vars file, host vars in hosts.yml,
  host_vars/, a vault file) would override or fight the written one, so the switch refuses and
  names the file; an encrypted file it cannot read is refused too, rather than guessed at. After
  writing, the registry is read back from the inventory: if it does not say what was written, the
  old file is put back and the switch refuses.
Writing the inventory starts nothing: the next deploy (or site converge) applies it.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from homelab.registry import Registry, Service

VALUES = {"true": True, "on": True, "false": False, "off": False}
LITERAL_RE = re.compile(r"^(?P<space>\s*)(?P<value>true|false|yes|no|on|off)(?P<rest>\s*(#.*)?)$", re.I)
SKIPPED_SUFFIXES = (".md", ".txt", ".rst", ".example", ".orig", ".bak", ".swp", "~")
VAULT_HEADER = "$ANSIBLE_VAULT;"
_LOCK = threading.Lock()  # one switch at a time in this process: read, check, write, read back


class SwitchError(ValueError):
    """A switch refused; nothing was written. status is the HTTP status that fits."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Switched:
    service: str
    variable: str
    value: bool
    path: Path  # the file written
    before: bool | None  # the value the file held (None: the file did not set it)
    created: bool  # the file did not exist


def parse_value(raw: Any) -> bool:
    """'true'/'on' or 'false'/'off' from a form; anything else is refused."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in VALUES:
        return VALUES[raw.strip().lower()]
    raise SwitchError(f"the value must be true or false, not {str(raw)[:20]!r}")


def variable(service: Service) -> str:
    return f"{service.name}_enabled"


def not_switchable(service: Service, roles: Path) -> str:
    """Why this service cannot be switched here ("" when it can)."""
    if service.kind == "platform":
        return (
            f"{service.title} is a platform service (what the others stand on): it is not switched off from here; "
            f"its role's defaults (roles/{service.name}/defaults/main.yml) say how it is configured"
        )
    defaults = roles / service.name / "defaults" / "main.yml"
    try:
        text = defaults.read_text()
    except OSError:
        text = ""
    if not re.search(rf"^{re.escape(variable(service))}\s*:", text, re.M):
        return f"the role {service.name} has no {variable(service)} default, so it has no on/off switch"
    return ""


def inventory_base(inventory: Path) -> Path:
    """The directory whose group_vars/ and host_vars/ Ansible reads for this inventory source."""
    return inventory if inventory.is_dir() else inventory.parent


def target(inventory: Path, service: Service) -> Path:
    return inventory_base(inventory) / "group_vars" / "all" / f"{service.name}.yml"


def _inventory_files(inventory: Path) -> list[Path]:
    """Every file Ansible may read variables from for this inventory source."""
    base = inventory_base(inventory)
    if inventory.is_dir():
        roots = [inventory]
    else:
        roots = [inventory] + [d for d in (base / "group_vars", base / "host_vars") if d.exists()]
    files: list[Path] = []
    for r in roots:
        for p in [r] if r.is_file() else sorted(r.rglob("*")):
            if p.is_file() and not p.name.startswith(".") and not p.name.endswith(SKIPPED_SUFFIXES):
                files.append(p)
    return files


def _vault_text(path: Path, text: str) -> str | None:
    """An encrypted file's plain text, with the vault password the registry reads with; None if unknown."""
    password_file = os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE")
    if not password_file:
        return None
    try:
        from ansible.parsing.dataloader import DataLoader
        from ansible.parsing.vault import VaultLib, get_file_vault_secret

        loader = DataLoader()
        secret = get_file_vault_secret(filename=password_file, loader=loader)
        secret.load()
        return VaultLib([("default", secret)]).decrypt(text.encode()).decode()
    except Exception:  # a wrong password or a broken file: unknown, and so refused
        return None


def conflicts(inventory: Path, service: Service, keep: Path) -> list[str]:
    """The inventory files other than `keep` that set the service's variable (or may: unreadable ones)."""
    key = re.escape(variable(service))
    pattern = re.compile(rf"""^\s*(-\s*)?["']?{key}["']?\s*[:=]""", re.M)
    base = inventory_base(inventory)
    out = []
    for p in _inventory_files(inventory):
        if p.resolve() == keep.resolve():
            continue
        try:
            text = p.read_text()
        except (OSError, UnicodeDecodeError):
            continue
        shown = str(p.relative_to(base)) if p.is_relative_to(base) else p.name
        if text.lstrip().startswith(VAULT_HEADER):
            plain = _vault_text(p, text.strip())
            if plain is None:
                out.append(f"{shown} (encrypted, and it cannot be read here to tell)")
                continue
            text = plain
        if pattern.search(text):
            out.append(shown)
    return out


def edited(text: str, key: str, value: bool) -> tuple[str, bool | None]:
    """The file's text with `key: value` (that line only changed, or appended), and the value it held."""
    try:
        old = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise SwitchError(f"the file is not plain YAML ({str(exc)[:120]}): edit it by hand", status=409) from None
    old = {} if old is None else old
    if not isinstance(old, dict):
        raise SwitchError("the file is not a mapping of variables: edit it by hand", status=409)
    word = "true" if value else "false"
    lines = text.splitlines(keepends=True)
    at = [i for i, line in enumerate(lines) if re.match(rf"^{re.escape(key)}\s*:", line)]
    before: bool | None = None
    if len(at) > 1:
        raise SwitchError(f"{key} is set {len(at)} times in the file: edit it by hand", status=409)
    if at:
        line = lines[at[0]]
        head, _, tail = line.rstrip("\r\n").partition(":")
        m = LITERAL_RE.match(tail)
        if m is None or not isinstance(old.get(key), bool):
            raise SwitchError(
                f"{key} is set to an expression in the file ({tail.strip()[:60]}), not true or false: edit it by hand",
                status=409,
            )
        before = old[key]
        ending = line[len(line.rstrip("\r\n")) :]
        lines[at[0]] = f"{head}:{m['space'] or ' '}{word}{m['rest']}{ending}"
    elif key in old:
        raise SwitchError(f"{key} is set in the file in a way this switch cannot edit: edit it by hand", status=409)
    else:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(f"{key}: {word}\n")
    new_text = "".join(lines)
    new = yaml.safe_load(new_text) or {}
    if new != {**old, key: value}:  # the one key changed, nothing else
        raise SwitchError(f"editing {key} would change more than that line: edit the file by hand", status=409)
    return new_text, before


def _write(path: Path, text: str | None) -> None:
    """Replace the file atomically (None: remove it)."""
    if text is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".yml")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def switch(registry: Registry, name: str, raw_value: Any) -> Switched:
    """Write `<name>_enabled: <value>` into the service's own inventory file, or SwitchError (nothing written)."""
    value = parse_value(raw_value)
    with _LOCK:
        services = registry.union()
        service = services.get(name) if isinstance(name, str) else None
        if service is None:
            raise SwitchError(f"'{str(name)[:64]}' is not a service of this homelab", status=404)
        why = not_switchable(service, registry.roles)
        if why:
            raise SwitchError(why, status=409)
        key, path = variable(service), target(registry.inventory, service)
        others = conflicts(registry.inventory, service, path)
        if others:
            raise SwitchError(
                f"{key} is also set in {', '.join(others)}; a value written here would conflict with it: "
                f"change it there (or remove it there and switch here)",
                status=409,
            )
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise SwitchError(f"{path.name} is not a plain file: edit the inventory by hand", status=409)
        old_text = path.read_text() if path.exists() else None
        header = f"---\n# {service.title} ({service.name}): switched on or off on the web UI's service page.\n"
        new_text, before = edited(old_text if old_text is not None else header, key, value)
        _write(path, new_text)
        try:
            resolved = {host: s[name].enabled for host, s in registry.by_host().items() if name in s}
        except Exception as exc:
            _write(path, old_text)
            raise SwitchError(f"the inventory could not be read back after writing, so it was put back: {exc}") from exc
        if not resolved or any(v != value for v in resolved.values()):
            _write(path, old_text)
            wrong = sorted(h for h, v in resolved.items() if v != value)
            raise SwitchError(
                f"after writing {key}: {str(value).lower()} the inventory still resolves it differently"
                f"{' on ' + ', '.join(wrong) if wrong else ''} (something else sets it): the file was put back",
                status=409,
            )
        return Switched(name, key, value, path, before, old_text is None)
