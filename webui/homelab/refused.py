"""What the audit log keeps of a request the catalog refused.

A refused request never became a job, so nothing has masked it yet: its parameters are exactly what
the caller sent. They are masked here by the catalog's schema (Parameter.secret), not by how a name
looks: a secret called `colour` is still a secret, and a parameter the entry does not declare may be
a misspelt secret, so its value is not kept either.
"""

from __future__ import annotations

from typing import Any

from homelab.catalog import Catalog, Entry, ValidationError
from homelab.masking import MASK

MAX_KEPT = 50  # parameters kept per refused request; the rest are counted


def _entry(catalog: Catalog, entry_id: Any) -> Entry | None:
    return catalog.entries.get(entry_id) if isinstance(entry_id, str) else None


def _kept_names(entry: Entry | None) -> set[str]:
    return {p.name for p in entry.parameters if not p.secret} if entry else set()


def refused_params(catalog: Catalog, entry_id: Any, params: Any) -> Any:
    """The parameters as the audit log may store them: declared non-secret values as sent, MASK for
    the rest; for something that is not a mapping, only what it was."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        return f"({type(params).__name__}, not shown)"
    kept = _kept_names(_entry(catalog, entry_id))
    out: dict[str, Any] = {}
    for name, value in list(params.items())[:MAX_KEPT]:
        key = str(name)[:64]
        if key in kept and isinstance(value, (str, int, float, bool)):
            out[key] = value[:256] if isinstance(value, str) else value
        else:
            out[key] = MASK
    if len(params) > MAX_KEPT:
        out["(more)"] = f"{len(params) - MAX_KEPT} more not shown"
    return out


def refused_outcome(catalog: Catalog, entry_id: Any, params: Any, exc: ValidationError) -> str:
    """`refused: <why>` for the audit log, without the values refused_params masks (a message may
    quote the value it refuses, e.g. "must be a whole number, not '...'")."""
    message = str(exc)
    if not isinstance(params, dict):
        return f"refused: {message}"
    kept = _kept_names(_entry(catalog, entry_id))
    hidden = {str(k): v for k, v in params.items() if str(k) not in kept}
    if exc.field in hidden:
        return f"refused: parameter '{exc.field}' is not valid (its value is secret and not shown)"
    for value in hidden.values():
        text = str(value)
        for part in (text, text[:40]):  # the catalog quotes at most 40 characters of a value
            if len(part) >= 3:
                message = message.replace(part, MASK)
    return f"refused: {message}"
