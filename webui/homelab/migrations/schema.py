"""What the migrations describe: every table mapped on homelab.store.Base, and nothing else in the database."""

from __future__ import annotations

import importlib
from typing import Any

from sqlalchemy import MetaData

from homelab.store import Base

# The core's tables (homelab.store) and Jarvis's (jarvis.models: a higher layer, so named here as data;
# the migrations describe the whole database).
MODEL_MODULES = ("homelab.store", "jarvis.models")


def metadata() -> MetaData:
    for module in MODEL_MODULES:
        importlib.import_module(module)
    return Base.metadata


def include_name(name: str | None, type_: str, _parent: Any) -> bool:
    """Only the store's own tables: the scheduler's (apscheduler_jobs) share the database."""
    return type_ != "table" or name in Base.metadata.tables
