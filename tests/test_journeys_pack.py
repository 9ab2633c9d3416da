"""The catalog's side of packs and built-ins, without Ray: the pack graph follows its file, and
built-in workflows sit behind the configured directory."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from workflows.catalog import BUILTIN_DIR, WorkflowCatalog
from workflows.loader import WorkflowError


def write_graph(root: Path, graph: dict[str, object], stamp: float) -> None:
    path = root / "_pack" / "workflow_graph.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(graph))
    os.utime(path, (stamp, stamp))  # distinct mtimes, however fast the test writes


def test_pack_graph_is_reloaded_when_its_file_changes(tmp_path: Path) -> None:
    for name in ("intro", "report"):
        (tmp_path / name).mkdir()
    catalog = WorkflowCatalog(tmp_path, builtin=None)
    assert catalog.pack() is None

    write_graph(tmp_path, {"workflows": [{"id": "report", "dependencies": ["intro"]}]}, 1_000)
    first = catalog.pack()
    assert first is not None and first.dependencies_of("report") == ["intro"]
    assert catalog.pack() is first  # cached while nothing changes

    write_graph(tmp_path, {"workflows": [{"id": "report", "dependencies": []}]}, 2_000)
    second = catalog.pack()
    assert second is not None and second.dependencies_of("report") == []

    write_graph(tmp_path, {"journeys": [{"id": "j", "steps": ["intro", "missing"]}]}, 3_000)
    with pytest.raises(WorkflowError, match="unknown workflow 'missing'"):
        catalog.pack()


def test_builtin_ask_is_found_behind_the_configured_directory(tmp_path: Path) -> None:
    catalog = WorkflowCatalog(tmp_path)
    assert catalog.get("ask").path == (BUILTIN_DIR / "ask").resolve()
    assert "ask" in catalog.all() and "ask" in catalog.names()

    shutil.copytree(BUILTIN_DIR / "ask", tmp_path / "ask")
    orchestrator = tmp_path / "ask" / "orchestrator.json"
    orchestrator.write_text(json.dumps({**json.loads(orchestrator.read_text()), "description": "Ours"}))
    assert catalog.get("ask").orchestrator.description == "Ours"
    assert catalog.all()["ask"].path == (tmp_path / "ask").resolve()
