"""`homelab_packages_missing`: which of the packages a role installs dpkg does not hold installed.

The roles ask dpkg once (`dpkg-query -W -f='${db:Status-Abbrev}${Package}\\n' <names>`, a tenth of a
second) and run the apt module only when something is missing: apt opens the whole package cache
(a second or more per call on a small server) just to report that nothing changed. Anything this
cannot confirm as installed (an unknown or virtual package, `name=version`, a failed query) counts
as missing, so apt still decides every case it decided before.
"""

from __future__ import annotations


def homelab_packages_missing(query, names):  # noqa: ANN001, ANN201
    """names (a list or one name) not reported as installed ("ii ") by the registered dpkg-query."""
    wanted = [names] if isinstance(names, str) else list(names)
    installed = {
        line[3:].strip().split(":", 1)[0] for line in (query or {}).get("stdout_lines") or [] if line.startswith("ii ")
    }
    return [name for name in wanted if name not in installed]


class FilterModule:
    def filters(self):  # noqa: ANN201
        return {"homelab_packages_missing": homelab_packages_missing}
