"""Parameters reach ansible as data, never as templates.

Ansible templates the extra vars it is given: a value such as ``{{ lookup('pipe', 'id') }}`` (or
one that redefines Jinja's delimiters with a ``#jinja2:`` header) would run on the controller. A
blocklist of markers cannot know every way Jinja can be told where an expression starts, so the
cause is removed instead: every string that comes from outside (web form, API, CLI, schedules,
Jarvis rules and LLM proposals all go through the catalog and then here) is written to a vars
file as YAML tagged ``!unsafe``, nested values and mapping keys included. Ansible loads such
strings as unsafe text and never evaluates them, whatever their characters.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

UNSAFE_TAG = "!unsafe"


class _UnsafeDumper(yaml.SafeDumper):  # type: ignore[misc,unused-ignore]  # (no stubs for PyYAML here)
    """SafeDumper whose every string is `!unsafe` and double-quoted (every character escaped)."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar(UNSAFE_TAG, data, style='"')


_UnsafeDumper.add_representer(str, _represent_str)
# Aliases (&id001) would let one value stand for another: every value is written out in full.
_UnsafeDumper.ignore_aliases = lambda self, data: True  # type: ignore[method-assign,unused-ignore]


def dump_unsafe(variables: dict[str, Any]) -> str:
    """YAML for ansible's `-e @file`: every string, at any depth, as `!unsafe` text.

    Raises ValueError for a value that is not plain data (str, int, float, bool, None, lists and
    mappings of those) or a string that is not valid Unicode (a lone surrogate)."""
    _check(variables, "extra vars")
    text: str = yaml.dump(
        variables,
        Dumper=_UnsafeDumper,
        allow_unicode=False,
        width=float("inf"),
        default_flow_style=False,
        sort_keys=True,
    )
    return text


def _check(value: Any, where: str) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, (int, float)):
        return
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{where} is not valid Unicode text") from None
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where} has a key that is not text: {k!r}"[:120])
            _check(k, f"{where} key")
            _check(v, f"{where}.{k}")
        return
    raise ValueError(f"{where} is a {type(value).__name__}, not plain data")


def write_vars_file(path: Path, variables: dict[str, Any]) -> Path:
    """Write the variables as unsafe YAML to a new 0600 file (it may hold secrets)."""
    text = dump_unsafe(variables)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path
