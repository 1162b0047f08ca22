#!/usr/bin/env python3
"""The project's own import graph, with imports anywhere in a file (inside functions too, where
circles hide). `python scripts/import_graph.py` prints every import cycle among the modules of
routing/, agents/ and jobrouter/ (migrations excluded) and exits 1 when there is one.
`tests/test_architecture.py` runs the same checks in the suite."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("routing", "agents", "jobrouter")


def modules(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Dotted module name → file, for every module of the packages except migrations."""
    found = {}
    for package in packages:
        for path in (root / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imported_names(module: str, path: Path) -> set[str]:
    names: set[str] = set()
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph(found: dict[str, Path] | None = None) -> dict[str, set[str]]:
    """Module → the project modules it imports (a name resolves to its longest known prefix)."""
    found = found or modules()
    graph: dict[str, set[str]] = {}
    for module, path in found.items():
        targets = set()
        for name in _imported_names(module, path):
            while name and name not in found:
                name = name.rpartition(".")[0]
            # A package's own submodules and the module itself are not edges.
            if name and name != module and not module.startswith(name + "."):
                targets.add(name)
        graph[module] = targets
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return seen


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that import each other, directly or through others (the strongly
    connected components with more than one module). The graph has tens of modules, so plain
    reachability is fast enough and easy to trust."""
    reach = {node: _reachable(graph, node) for node in graph}
    found: list[list[str]] = []
    placed: set[str] = set()
    for node in sorted(graph):
        if node in placed or node not in reach[node]:
            continue
        component = sorted(other for other in reach[node] if node in reach[other])
        placed.update(component)
        found.append(component)
    return found


def main() -> int:
    graph = import_graph()
    found = cycles(graph)
    for component in found:
        print("cycle:", " ↔ ".join(component))
    print(f"{len(found)} import cycles among {len(graph)} modules")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
