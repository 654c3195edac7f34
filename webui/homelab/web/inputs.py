"""What a request sends, read strictly, so that malformed input is a 4xx and never a 500.

Python is lenient where the web must not be: `str.isdigit()` and `int()` accept '١٢' (Arabic-Indic
digits), SQLite refuses integers above 2**63-1 with OverflowError, `json.loads` recurses once per
nesting level (RecursionError) and turns a "\\ud800" escape into a lone surrogate that no later
`.encode()` survives. Every route reads ids, sequence numbers and JSON bodies through here.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import jsonify, request
from werkzeug.routing import IntegerConverter, Map

from homelab.catalog import ValidationError

MAX_ID = 2**63 - 1  # SQLite's INTEGER (and PostgreSQL's BIGINT) upper bound
MAX_JSON_DEPTH = 32  # a job request is three levels deep; nothing legitimate comes close
_DIGITS_RE = re.compile(r"[0-9]{1,18}")  # ASCII digits only; 18 of them stay below MAX_ID


class IdConverter(IntegerConverter):
    """`<int:...>` in every route: ASCII digits only, at most MAX_ID, else the route does not match (404)."""

    regex = r"[0-9]{1,19}"

    def __init__(
        self, map: Map, fixed_digits: int = 0, min: int | None = None, max: int | None = MAX_ID, signed: bool = False
    ) -> None:
        super().__init__(map, fixed_digits, min, max, signed)


def whole_number(raw: str | None, name: str, default: int, minimum: int = 0, maximum: int = 10**18 - 1) -> int:
    """A query parameter (or header) that must be a whole number between minimum and maximum; only
    an absent one (None) takes the default: `?after=` is as malformed as `?after=x`."""
    if raw is None:
        return default
    if not _DIGITS_RE.fullmatch(raw) or not minimum <= int(raw) <= maximum:
        raise ValidationError(f"{name} must be a whole number from {minimum} to {maximum}", field=name)
    return int(raw)


def json_body() -> Any:
    """The request's JSON body; None when it is not JSON (the caller says what it expected).

    Refused with 400: nesting deeper than MAX_JSON_DEPTH, and strings or keys that are not valid
    Unicode (lone surrogates). Larger than MAX_CONTENT_LENGTH is refused by Flask with 413.
    """
    if not request.is_json:
        return None
    data = request.get_data(cache=True)
    try:
        value = json.loads(data)
    except RecursionError:
        raise ValidationError(f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep") from None
    except ValueError:  # also UnicodeDecodeError
        return None
    _check_json(value)
    return value


def _check_json(value: Any) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, str):
            _check_text(v)
        elif isinstance(v, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise ValidationError(f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep")
            if isinstance(v, dict):
                for k in v:
                    _check_text(k)
                stack.extend((x, depth + 1) for x in v.values())
            else:
                stack.extend((x, depth + 1) for x in v)


def _check_text(s: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(
            "the JSON body holds text that is not valid Unicode (a lone surrogate such as \\ud800)"
        ) from None


def refused(exc: ValidationError) -> Any:
    """Every JSON API's answer to a refused request: the error, the field it names (if any), its status."""
    body: dict[str, Any] = {"error": str(exc)}
    if exc.field:
        body["field"] = exc.field
    return jsonify(body), exc.status
