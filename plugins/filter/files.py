"""`homelab_dir_specs`: a role's declared directories as plugins/modules/files_state.py reads them.

Each entry is what the role's `file: state=directory` task is given (path, and owner, group and
mode where set; mode defaults as in the task), so a directory counts as current only when that
task would change nothing.
"""

from __future__ import annotations


def homelab_dir_specs(dirs, default_mode="0750"):  # noqa: ANN001, ANN201
    """[{path, owner?, group?, mode?}] -> files_state specs of directories."""
    specs = []
    for d in dirs or []:
        spec = {"path": d["path"], "state": "directory", "mode": str(d.get("mode") or default_mode)}
        for key in ("owner", "group"):
            if d.get(key) not in (None, ""):
                spec[key] = str(d[key])
        specs.append(spec)
    return specs


class FilterModule:
    def filters(self):  # noqa: ANN201
        return {"homelab_dir_specs": homelab_dir_specs}
