"""Durations as the files people edit write them: a number with s, m, h or d ("30s", "15m", "6h", "1d")."""

from __future__ import annotations

import re

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
UNIT_WORDS = {"s": "second", "m": "minute", "h": "hour", "d": "day"}
_RE = {n: re.compile(rf"^(\d{{1,{n}}})\s*(s|m|h|d)$") for n in range(1, 10)}


def split_duration(text: str, max_digits: int = 7) -> tuple[int, str] | None:
    """(number, unit) of "15m" (surrounding space ignored), or None when it is not a duration."""
    m = _RE[max_digits].match(text.strip())
    return (int(m[1]), m[2]) if m else None


def duration_seconds(text: str, max_digits: int = 7) -> int | None:
    """Seconds of "15m", or None when it is not a duration."""
    parts = split_duration(text, max_digits)
    return parts[0] * UNIT_SECONDS[parts[1]] if parts else None
