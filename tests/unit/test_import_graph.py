"""The actors package has no import cycle: a module imports only modules below it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imports_of(path: Path) -> set[str]:
    """Every first-party module a file imports, at top level or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] in ("actors", "serve_app", "broker", "capabilities")}


def test_no_import_cycle_among_the_runtime_modules() -> None:
    graph: dict[str, set[str]] = {}
    for package in ("actors", "serve_app", "broker", "capabilities"):
        for path in (ROOT / package).glob("*.py"):
            graph[f"{package}.{path.stem}"] = imports_of(path)
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", " -> ".join(trail + [module])
        state[module] = "open"
        for target in graph.get(module, ()):
            visit(target, trail + [module])
        state[module] = "done"

    for module in graph:
        visit(module, [])


def test_capabilities_and_the_broker_do_not_import_each_other() -> None:
    """Both sit in the middle layer: what they share (Identity) lives below them, in mozaiks.protocol."""
    for package, other in (("capabilities", "broker"), ("broker", "capabilities")):
        for path in (ROOT / package).glob("*.py"):
            assert not any(name.split(".")[0] == other for name in imports_of(path)), path
