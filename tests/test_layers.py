"""The Python imports one way, in layers (README.md, "The Python layout"): core <- jobs <- schedule
and drift <- jarvis <- web and cli (and the test support). A module imports its own layer or lower
ones, never a higher one, and no two modules import each other, directly or through others."""

from __future__ import annotations

import ast
from pathlib import Path

from labenv import ROOT

LAYERS = ("core", "jobs", "schedule", "jarvis", "top")


def _modules() -> dict[str, Path]:
    out = {}
    for base, package in ((ROOT / "webui" / "homelab", "homelab"), (ROOT / "jarvis", "jarvis")):
        for path in base.rglob("*.py"):
            parts = [package, *path.relative_to(base).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def layer(module: str) -> str:
    if module.startswith("jarvis"):
        return "jarvis"
    if module.startswith(("homelab.web", "homelab.cli", "homelab.__main__", "homelab.testing")):
        return "top"
    if module.startswith(("homelab.schedule", "homelab.drift")):
        return "schedule"
    if module.startswith("homelab.jobs"):
        return "jobs"
    return "core"


def _imports(path: Path, known: set[str]) -> set[str]:
    """The project modules a file imports (at any depth, not those only imported for type checking)."""
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for n in ast.walk(node)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {m: _imports(p, known) - {m} for m, p in modules.items()}


def test_no_module_imports_a_higher_layer() -> None:
    wrong = [
        f"{m} ({layer(m)}) imports {d} ({layer(d)})"
        for m, deps in _graph().items()
        for d in sorted(deps)
        if LAYERS.index(layer(d)) > LAYERS.index(layer(m))
    ]
    assert not wrong, "\n".join(wrong)


def test_there_is_no_import_cycle() -> None:
    graph = _graph()
    # A package's __init__ importing its own submodules is how a package re-exports, not a cycle.
    edges = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    cycles, state = [], {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = "open"
        for d in sorted(edges.get(m, ())):
            if state.get(d) == "open":
                cycles.append(" -> ".join(path[path.index(d) :] + [d]) if d in path else f"{m} -> {d}")
            elif d not in state:
                visit(d, [*path, d])
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)
