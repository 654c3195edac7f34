"""The state the app factory composes and every blueprint reads (homelab()): the only state kept
between requests. A module of its own so that blueprints import it without importing the factory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import current_app

from homelab.catalog import Catalog
from homelab.drift import DriftService
from homelab.facts import FactsService
from homelab.inventory import Inventory
from homelab.jobs import JobEngine
from homelab.schedule.definitions import Schedules
from homelab.schedule.runner import Scheduler
from homelab.settings import Settings
from homelab.status import StatusService
from homelab.store import Store

if TYPE_CHECKING:
    from jarvis.service import Jarvis


@dataclass
class Homelab:
    """The extension object (app.extensions["homelab"])."""

    settings: Settings
    store: Store
    catalog: Catalog
    inventory: Inventory
    engine: JobEngine
    limiter: Any
    schedules: Schedules
    drift: DriftService
    scheduler: Scheduler
    jarvis: "Jarvis | None" = None  # unless HOMELAB_JARVIS=0
    status: StatusService | None = None  # the services' status cycle and its samples
    facts: FactsService | None = None  # the host and container facts cycle and its samples


def homelab() -> Homelab:
    h: Homelab = current_app.extensions["homelab"]
    return h
