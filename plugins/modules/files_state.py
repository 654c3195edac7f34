#!/usr/bin/python
"""Say which of a role's files and directories are already exactly as declared, in one round trip.

A service role writes the same few paths on every converge: its project directory, its data
directories, its secrets file, its compose file and its Caddy site. Each `file` or `template` task
costs a round trip to the host (a `template` two: stat, then file) even when nothing differs, and
on a converged host that is most of a no-op converge. This module reads them all at once and
returns the paths whose whole declared state already holds (type, owner, group, mode and, for a
file, the SHA-1 of the content the role would write, rendered on the controller). The roles skip
the tasks of those paths; any path that differs in any way, or that this module cannot judge,
is left to the real task, which reports and fixes it as before (and shows its diff in a check run).
It never changes anything.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import stat

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: files_state
short_description: Which declared files and directories already hold their declared state (read-only)
options:
  paths:
    description: What each path should be.
    type: list
    elements: dict
    required: true
    suboptions:
      path: {description: Absolute path., type: path, required: true}
      state: {description: C(directory) or C(file)., type: str, choices: [directory, file], default: file}
      owner: {description: User name or uid; omitted means any., type: str}
      group: {description: Group name or gid; omitted means any., type: str}
      mode: {description: Octal mode as a string (C(0640)); omitted means any., type: str}
      checksum: {description: SHA-1 of the content (files only)., type: str}
"""

RETURN = r"""
current:
  description: The paths whose declared state already holds.
  type: list
  returned: always
differs:
  description: Path to why it is not current (no content, only what differs).
  type: dict
  returned: always
"""


def _uid(owner: str) -> int | None:
    try:
        return int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid
    except KeyError:
        return None


def _gid(group: str) -> int | None:
    try:
        return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        return None


def _sha1(path: str) -> str:
    digest = hashlib.sha1()  # noqa: S324 (what ansible's stat and copy compare)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def judge(spec: dict) -> str | None:
    """None when the path is as declared, else why not."""
    path = spec["path"]
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return f"unreadable: {e.strerror}"
    want_dir = spec.get("state") == "directory"
    if want_dir and not stat.S_ISDIR(st.st_mode):
        return "not a directory"
    if not want_dir and not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if spec.get("owner") not in (None, "") and _uid(str(spec["owner"])) != st.st_uid:
        return "owner"
    if spec.get("group") not in (None, "") and _gid(str(spec["group"])) != st.st_gid:
        return "group"
    if spec.get("mode") not in (None, ""):
        try:
            mode = int(str(spec["mode"]), 8)
        except ValueError:
            return "mode not octal"  # the real task says what is wrong with it
        if stat.S_IMODE(st.st_mode) != mode:
            return "mode"
    if not want_dir:
        if not spec.get("checksum"):
            return "no checksum to compare"
        if _sha1(path) != spec["checksum"]:
            return "content"
    return None


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "paths": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "path": {"type": "path", "required": True},
                    "state": {"type": "str", "choices": ["directory", "file"], "default": "file"},
                    "owner": {"type": "str"},
                    "group": {"type": "str"},
                    "mode": {"type": "str"},
                    "checksum": {"type": "str", "no_log": False},
                },
            }
        },
        supports_check_mode=True,
    )
    current, differs = [], {}
    for spec in module.params["paths"]:
        why = judge(spec)
        if why is None:
            current.append(spec["path"])
        else:
            differs[spec["path"]] = why
    module.exit_json(changed=False, current=current, differs=differs)


if __name__ == "__main__":
    main()
