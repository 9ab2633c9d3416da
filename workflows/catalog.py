"""The workflows of a directory plus the built-in ones, loaded on first use and reloaded when their
files change; and the directory's pack graph (`_pack/workflow_graph.json`)."""

from __future__ import annotations

from pathlib import Path

from workflows.loader import load_pack, load_workflow, load_workflows
from workflows.model import Workflow
from workflows.pack import PackGraph

# Shipped with the runtime (the `ask` assistant): available whatever workflows_dir is configured.
BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"


def _stamp(folder: Path) -> float:
    return max((p.stat().st_mtime for p in folder.rglob("*") if p.is_file()), default=0.0)


def _folders(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


class WorkflowCatalog:
    def __init__(self, root: Path, builtin: Path | None = BUILTIN_DIR) -> None:
        self.root = Path(root)
        # The configured directory comes first, so a deployment can replace a built-in by name.
        self.roots = [self.root] + ([Path(builtin)] if builtin is not None else [])
        self._cache: dict[str, tuple[float, Workflow]] = {}
        self._pack: tuple[tuple[float, tuple[str, ...]], PackGraph | None] | None = None

    def _folder(self, name: str) -> Path:
        if name.startswith(("_", ".")) or "/" in name or "\\" in name:
            raise KeyError(name)
        folder = next((root / name for root in self.roots if (root / name).is_dir()), None)
        if folder is None:
            raise KeyError(name)
        return folder

    def get(self, name: str) -> Workflow:
        """The workflow called ``name``; KeyError if there is none."""
        folder = self._folder(name)
        stamp = _stamp(folder)
        cached = self._cache.get(name)
        if cached is None or cached[0] != stamp or cached[1].path != folder.resolve():
            cached = (stamp, load_workflow(folder))
            self._cache[name] = cached
        return cached[1]

    def names(self) -> list[str]:
        return sorted({name for root in self.roots for name in _folders(root)})

    def all(self) -> dict[str, Workflow]:
        """Every workflow; a bad folder raises WorkflowError naming its file and field."""
        workflows: dict[str, Workflow] = {}
        for root in reversed(self.roots):  # later roots first: the configured directory wins
            if root.is_dir():
                workflows.update(load_workflows(root))
        self._cache = {name: (_stamp(wf.path), wf) for name, wf in workflows.items()}
        return workflows

    def pack(self) -> PackGraph | None:
        """The configured directory's pack graph, or None. A graph naming an unknown workflow
        raises WorkflowError: gating on a workflow that cannot exist would block users silently."""
        folder = self.root / "_pack"
        names = tuple(self.names())
        key = (_stamp(folder) if folder.is_dir() else -1.0, names)
        if self._pack is None or self._pack[0] != key:
            self._pack = (key, load_pack(self.root, known=names))
        return self._pack[1]
