"""The services' status over the API: GET /api/v1/services and /api/v1/services/<name>[?history=24h]."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, jsonify, request

from homelab.catalog import ValidationError
from homelab.durations import duration_seconds
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


@api_bp.get("/services/<name>")
def service(name: str) -> Any:
    status = _status()
    row = next((r for r in _current(status) if r["name"] == name), None)
    if row is None:
        raise ValidationError(f"'{name[:64]}' is not an enabled service with a domain (GET /api/v1/services)", 404)
    history = request.args.get("history")
    if history is None:
        return jsonify(row)
    seconds = duration_seconds(history, 4) if HISTORY_RE.fullmatch(history) else None
    if not seconds:
        raise ValidationError("history must be a duration such as 90m, 24h or 7d", field="history")
    return jsonify({**row, "history": status.history(name, seconds)})
