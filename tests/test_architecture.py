"""The code's shape, checked: modules import only downward, reads never import writes, and no
function is too complex (ruff C901 in scripts/test covers the last)."""

from __future__ import annotations

import importlib.util
import sys

from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
assert _spec and _spec.loader
import_graph = importlib.util.module_from_spec(_spec)
sys.modules["import_graph"] = import_graph
_spec.loader.exec_module(import_graph)


def test_no_import_cycles_in_routing_agents_or_jobrouter():
    graph = import_graph.import_graph()
    assert "routing.services.jobs" in graph and len(graph) > 40
    assert import_graph.cycles(graph) == []


def test_queries_do_not_import_the_services():
    graph = import_graph.import_graph()
    assert not {m for m in graph["routing.queries"] if m.startswith("routing.services")}


def test_a_cycle_hidden_in_a_function_is_found(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from pkg.b import g\n\ndef f():\n    return g()\n")
    (tmp_path / "pkg" / "b.py").write_text("def g():\n    from pkg import a\n    return a\n")
    (tmp_path / "pkg" / "c.py").write_text("from . import a\n")
    graph = import_graph.import_graph(import_graph.modules(tmp_path, ("pkg",)))
    assert graph["pkg.c"] == {"pkg.a"}
    assert import_graph.cycles(graph) == [["pkg.a", "pkg.b"]]
