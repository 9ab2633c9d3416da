"""The workflows of a directory, loaded on first use and reloaded when their files change."""

from __future__ import annotations

from pathlib import Path

from workflows.loader import load_workflow, load_workflows
from workflows.model import Workflow


def _stamp(folder: Path) -> float:
    return max((p.stat().st_mtime for p in folder.rglob("*") if p.is_file()), default=0.0)


class WorkflowCatalog:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._cache: dict[str, tuple[float, Workflow]] = {}

    def get(self, name: str) -> Workflow:
        """The workflow called ``name``; KeyError if there is none."""
        folder = self.root / name
        if name.startswith(("_", ".")) or "/" in name or not (folder.is_dir()):
            raise KeyError(name)
        stamp = _stamp(folder)
        cached = self._cache.get(name)
        if cached is None or cached[0] != stamp:
            cached = (stamp, load_workflow(folder))
            self._cache[name] = cached
        return cached[1]

    def all(self) -> dict[str, Workflow]:
        """Every workflow; a bad folder raises WorkflowError naming its file and field."""
        workflows = load_workflows(self.root)
        self._cache = {name: (_stamp(wf.path), wf) for name, wf in workflows.items()}
        return workflows
