"""The inventory as the engine needs it: which hosts a job touches, for limits and serialization."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from homelab.catalog import Entry, HostResolver, ValidationError, parse_limit
from homelab.registry import Registry


class Inventory(HostResolver):
    """Loads the inventory with ansible's own parser (every format ansible accepts)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.registry = Registry(path)  # the service registry of this inventory (homelab.registry)

    def _manager(self) -> Any:
        from ansible.inventory.manager import InventoryManager
        from ansible.parsing.dataloader import DataLoader

        return InventoryManager(loader=DataLoader(), sources=[str(self.path)])

    def groups(self) -> dict[str, list[str]]:
        """group -> sorted host names (every group ansible knows, 'all' included)."""
        with self._lock:
            im = self._manager()
            return {name: sorted(h.name for h in g.get_hosts()) for name, g in im.groups.items()}

    def hosts(self) -> list[dict[str, Any]]:
        """Host name, groups and connection, for the dashboard."""
        with self._lock:
            im = self._manager()
            out = []
            for h in sorted(im.get_hosts(), key=lambda h: h.name):
                v = h.get_vars()
                out.append(
                    {
                        "name": h.name,
                        "groups": sorted(g.name for g in h.get_groups() if g.name not in ("all", "ungrouped")),
                        "connection": v.get("ansible_connection", "ssh"),
                        "address": v.get("ansible_host", h.name),
                    }
                )
            return out

    def resolve(self, entry: Entry, limit: str) -> list[str]:
        groups = self.groups()
        allowed: set[str] = set()
        for t in entry.targets:
            allowed.update(groups.get(t, []))
        if not allowed:
            raise ValidationError(
                f"the inventory has no host in {', '.join(entry.targets)} for '{entry.id}'", status=409
            )
        tokens = parse_limit(limit)
        if not tokens:
            return sorted(allowed)
        all_hosts = set(groups.get("all", []))
        chosen: set[str] = set()
        for t in tokens:
            if t in groups:
                members = set(groups[t])
            elif t in all_hosts:
                members = {t}
            else:
                raise ValidationError(f"limit '{t}' is neither a host nor a group of the inventory", field="limit")
            outside = members - allowed
            if t in all_hosts and outside:
                raise ValidationError(
                    f"'{entry.id}' may only target {', '.join(entry.targets)}; '{t}' is not in them", field="limit"
                )
            chosen |= members & allowed
        if not chosen:
            raise ValidationError(f"limit '{limit[:60]}' matches no host '{entry.id}' may target", field="limit")
        return sorted(chosen)
