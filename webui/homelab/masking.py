"""Secrets never reach the store: task results, diffs and parameters are masked before writing.

Ansible's own no_log already censors results of tasks that handle secrets; this is the second
line: any mapping key that names a secret, and any value known to be secret, becomes MASK.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

MASK = "********"
SECRET_KEY_RE = re.compile(r"(pass(word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key|credential|vault)", re.I)
# Keys that look secret but carry no secret (booleans/counters ansible emits).
_HARMLESS = {"no_log", "password_hash_algorithm", "_ansible_no_log", "update_password"}
# key=value / key: value secrets inside free text (command lines, stdout).
_INLINE_RE = re.compile(
    r"(?P<k>\b[\w.-]*(?:password|passwd|secret|token|api[_-]?key)[\w.-]*\b\s*[=:]\s*)(?P<q>['\"]?)(?P<v>[^\s'\",}\x1b]+)",
    re.I,
)


def mask(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A deep copy of value with secret-named keys and the given secret strings masked."""
    known = [s for s in secrets if s and len(s) >= 4]
    return _mask(value, known)


def _mask(value: Any, known: list[str]) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(k, str) and k not in _HARMLESS and SECRET_KEY_RE.search(k) and isinstance(v, (str, int, float)) and not isinstance(v, bool) and v != "":
                out[k] = MASK
            else:
                out[k] = _mask(v, known)
        return out
    if isinstance(value, (list, tuple)):
        return [_mask(v, known) for v in value]
    if isinstance(value, str):
        return mask_text(value, known)
    return value


def mask_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask known secret values and `password=...`-style assignments in free text."""
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, MASK)
    return _INLINE_RE.sub(lambda m: f"{m.group('k')}{m.group('q')}{MASK}", text)
