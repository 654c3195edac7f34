"""Secrets never reach the store: task results, diffs and parameters are masked before writing.

Ansible's own no_log already censors results of tasks that handle secrets; this is the second
line: any mapping key that names a secret, and any value known to be secret, becomes MASK.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from typing import Any, Iterable

import yaml

MASK = "********"
SECRET_KEY_RE = re.compile(r"(pass(word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key|credential|vault)", re.I)
# Keys that look secret but carry no secret (booleans/counters ansible emits).
_HARMLESS = {"no_log", "password_hash_algorithm", "_ansible_no_log", "update_password"}
# key=value / key: value secrets inside free text (command lines, stdout).
_INLINE_RE = re.compile(
    r"(?P<k>\b[\w.-]*(?:password|passwd|secret|token|api[_-]?key)[\w.-]*\b\s*[=:]\s*)(?P<q>['\"]?)(?P<v>[^\s'\",}\x1b]+)",
    re.I,
)


# Parts of a multi-line secret shorter than this are not masked on their own (they would mask
# ordinary text); the catalog refuses secret values shorter than catalog.SECRET_MIN_LENGTH.
_MIN_PART = 4
_INVISIBLE = "\ufeff\u200b\u200c\u200d\u2060"


def secret_forms(secrets: Iterable[str]) -> list[str]:
    return list(_secret_forms(tuple(s for s in secrets if isinstance(s, str) and s)))


@functools.lru_cache(maxsize=256)
def _secret_forms(secrets: tuple[str, ...]) -> tuple[str, ...]:
    """Every form a secret value can take in ansible's output, longest first.

    Ansible prints a value raw (stdout of a command), JSON-escaped (a task result: a newline
    becomes \\n, a byte-order mark \\ufeff), YAML-escaped (\\uFEFF), as Python's repr, with invisible characters or
    surrounding whitespace dropped, or split over lines; each of these is masked, not only the
    value as it was typed."""
    forms: set[str] = set()
    for s in secrets:
        variants = {s, s.strip(), s.strip(_INVISIBLE + " \t\r\n"), unicodedata.normalize("NFC", s)}
        variants.add("".join(ch for ch in s if ch not in _INVISIBLE))
        for v in list(variants):
            if not v:
                continue
            variants.add(json.dumps(v)[1:-1])
            variants.add(json.dumps(v, ensure_ascii=False)[1:-1])
            variants.add(repr(v)[1:-1])
            quoted = yaml.dump(v, Dumper=yaml.SafeDumper, default_style='"', width=float("inf"), allow_unicode=False)
            variants.add(quoted.strip().removesuffix("...").strip()[1:-1])  # ansible's YAML output
            variants.add(re.sub(r"\\u([0-9a-f]{4})", lambda m: "\\u" + m[1].upper(), json.dumps(v)[1:-1]))
            variants.add(v.replace("\r\n", "\n"))
            for part in re.split(r"[\r\n]+", v):
                part = part.strip(_INVISIBLE)
                if len(part) >= _MIN_PART:
                    variants.add(part)
        forms |= {v for v in variants if v}
    return tuple(sorted(forms, key=len, reverse=True))


def mask(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A deep copy of value with secret-named keys and the given secret strings (in every form) masked."""
    return _mask(value, secret_forms(secrets))


def _mask(value: Any, known: list[str]) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if (
                isinstance(k, str)
                and k not in _HARMLESS
                and SECRET_KEY_RE.search(k)
                and isinstance(v, (str, int, float))
                and not isinstance(v, bool)
                and v != ""
            ):
                out[k] = MASK
            else:
                out[k] = _mask(v, known)
        return out
    if isinstance(value, (list, tuple)):
        return [_mask(v, known) for v in value]
    if isinstance(value, str):
        return _mask_text(value, known)
    return value


def mask_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask known secret values (in every form) and `password=...`-style assignments in free text."""
    return _mask_text(text, secret_forms(secrets))


def _mask_text(text: str, forms: list[str]) -> str:
    for s in forms:
        text = text.replace(s, MASK)
    return _INLINE_RE.sub(lambda m: f"{m.group('k')}{m.group('q')}{MASK}", text)
