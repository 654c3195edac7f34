"""The services' status over the API: GET /api/v1/services and /api/v1/services/<name>[?history=24h];
the charts' history, bucketed (homelab.history): GET /api/v1/services/<name>/history?range=24h|7d and
GET /api/v1/hosts/<host>/history?range=24h|7d."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, jsonify, request

from homelab.catalog import ValidationError
from homelab.durations import duration_seconds
from homelab.history import RANGES, Range, host_history, service_history
from homelab.status import StatusService
from homelab.web.context import homelab
from homelab.web.inputs import refused

api_bp = Blueprint("services_api", __name__, url_prefix="/api/v1")
api_bp.register_error_handler(ValidationError, refused)
# ?history=: a number (1 to 9999, no leading zero) and a unit, read by homelab.durations; the
# OpenAPI document publishes this very pattern.
HISTORY_PATTERN = r"^[1-9][0-9]{0,3}[smhd]$"
HISTORY_RE = re.compile(HISTORY_PATTERN)


def _status() -> StatusService:
    status = homelab().status
    if status is None:
        raise ValidationError("the status cycle is not part of this server", status=404)
    return status


def _current(status: StatusService) -> list[dict[str, Any]]:
    try:
        return status.current()
    except Exception as exc:  # a broken inventory or registry entry: say why, never a traceback
        raise ValidationError(f"the service registry cannot be read: {str(exc)[:300]}", status=409) from None


@api_bp.get("/services")
def services() -> Any:
    return jsonify(_current(_status()))


def _probed(status: StatusService, name: str) -> dict[str, Any]:
    row = next((r for r in _current(status) if r["name"] == name), None)
    if row is None:
        raise ValidationError(
            f"'{name[:64]}' is not an enabled service with a status: a domain or containers (GET /api/v1/services)", 404
        )
    return row


def _range() -> Range:
    """?range=: one of the charts' ranges (24h when absent)."""
    raw = request.args.get("range", "24h")
    r = RANGES.get(raw)
    if r is None:
        raise ValidationError(f"range must be one of {', '.join(RANGES)}", field="range")
    return r


@api_bp.get("/services/<name>")
def service(name: str) -> Any:
    status = _status()
    row = _probed(status, name)
    history = request.args.get("history")
    if history is None:
        return jsonify(row)
    seconds = duration_seconds(history, 4) if HISTORY_RE.fullmatch(history) else None
    if not seconds:
        raise ValidationError("history must be a duration such as 90m, 24h or 7d", field="history")
    return jsonify({**row, "history": status.history(name, seconds)})


@api_bp.get("/services/<name>/history")
def service_chart(name: str) -> Any:
    """The service's probes of the range in buckets, and its containers' restarts: what its charts draw.
    Any service of the registry: one without a domain is never probed, but its containers are seen."""
    status = _status()
    try:
        known = name in homelab().inventory.registry.union()
    except Exception as exc:  # a broken inventory or registry entry: say why, never a traceback
        raise ValidationError(f"the service registry cannot be read: {str(exc)[:300]}", status=409) from None
    if not known:
        raise ValidationError(f"'{name[:64]}' is not a service of this homelab (GET /api/v1/services)", 404)
    r = _range()
    return jsonify(service_history(homelab().store, name, r, status.clock()))


@api_bp.get("/hosts/<host>/history")
def host_chart(host: str) -> Any:
    """A host's CPU, memory and disk of the range in buckets (the facts cycle's samples)."""
    h = homelab()
    if h.facts is None:
        raise ValidationError("the facts cycle is not part of this server", status=404)
    try:
        known = host in h.inventory.groups().get("all", [])
    except Exception as exc:  # a broken inventory: say why, never a traceback
        raise ValidationError(f"the inventory cannot be read: {str(exc)[:300]}", status=409) from None
    if not known:
        raise ValidationError(f"'{host[:64]}' is not a host of the inventory", status=404)
    r = _range()
    return jsonify(host_history(h.store, host, r, h.facts.clock()))
