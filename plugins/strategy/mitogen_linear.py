"""The opt-in Mitogen execution strategy: `ANSIBLE_STRATEGY=mitogen_linear` (or `strategy =` in an
ansible.cfg). Mitogen keeps one Python interpreter per host for the whole run instead of starting
one per task, which removes most of a task's cost (lab/README.md and bench/converge.py measure it).

Mitogen ships this file in its own package (ansible_mitogen/plugins/strategy); this copy lets
ansible.cfg's strategy_plugins point inside the repository instead of at the virtualenv. The
default strategy stays ansible's linear one.
"""

from __future__ import annotations

import ansible_mitogen.loaders
import ansible_mitogen.strategy

Base = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, Base):  # type: ignore[misc,valid-type]
    pass
