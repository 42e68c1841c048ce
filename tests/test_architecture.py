"""The package's layering: no import cycle between serkit's packages, no oversized module."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SERKIT = Path(__file__).resolve().parents[1] / "serkit"
#: Longest module accepted ("about 500 lines" in the architecture issue; a little slack for docstrings).
MAX_LINES = 550


def _unit(module: str) -> str:
    """The layer a module belongs to: its sub-package (``serkit.models``) or, at top level, itself."""
    parts = module.split(".")
    if len(parts) > 1 and (SERKIT / parts[1]).is_dir():
        return f"serkit.{parts[1]}"
    return ".".join(parts[:2])


def _imports() -> dict[str, set[str]]:
    """Unit -> the other units its modules import (every import statement, lazy ones included)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for path in SERKIT.rglob("*.py"):
        module = ".".join(path.relative_to(SERKIT.parent).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name.startswith("serkit.") and _unit(name) != _unit(module):
                    edges[_unit(module)].add(_unit(name))
    return edges


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return path + [node, nxt]
            if nxt not in state and (found := visit(nxt, path + [node])):
                return found
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node, [])):
            return found
    return None


def test_no_import_cycle_between_packages():
    edges = _imports()
    assert "serkit.training" in edges.get("serkit.models", set())  # the check sees real edges
    assert _cycle(edges) is None, f"import cycle: {' -> '.join(_cycle(edges))}"


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_training_loop_knows_no_model():
    assert not {"serkit.models", "serkit.derived", "serkit.features"} & _imports().get("serkit.training", set())


def test_no_module_is_oversized():
    long = {str(p.relative_to(SERKIT.parent)): n for p in SERKIT.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}  # fmt: skip
    assert not long, f"modules over {MAX_LINES} lines: {long}"
