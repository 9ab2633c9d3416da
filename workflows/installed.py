"""Workflows installed at runtime, as files: checked with the loader before they are stored, and
written out on each node that runs them.

An installed workflow is its files (relative path -> text). Its version is the hash of those
files, and each process writes them to a folder named by that version under a per-user temp
directory, once: the loader and the tool tasks read workflows from folders, and a folder that
never changes once written can be shared by every process of the node without locking.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from workflows.loader import WorkflowError, load_workflow
from workflows.model import Workflow

WORKFLOW_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
_MAX_DEPTH = 4
# The files behind each folder this process materialized: a tool task on another node has no such
# folder, so the session ships these with it (see sources_of).
_sources: dict[Path, Mapping[str, str]] = {}


@dataclass(frozen=True)
class InstallLimits:
    max_files: int
    max_file_bytes: int
    max_total_bytes: int


def installed_root() -> Path:
    """Where this node's processes write installed workflows: per OS user, so no other local
    account can plant code in a folder a session would then trust as already written."""
    return Path(tempfile.gettempdir()) / f"mozaiks-installed-{os.getuid()}"


def version_of(name: str, files: Mapping[str, str]) -> str:
    digest = hashlib.sha256(json.dumps([name, sorted(files.items())], separators=(",", ":")).encode())
    return digest.hexdigest()[:32]


def check_files(name: str, files: Mapping[str, str], limits: InstallLimits) -> None:
    """The shape checks before anything is written: WorkflowError naming the file otherwise."""
    if not re.fullmatch(WORKFLOW_NAME, name):
        raise WorkflowError(name, "$", f"workflow name must match {WORKFLOW_NAME}")
    if not files:
        raise WorkflowError(name, "$", "no files: a workflow needs orchestrator.json and agents.json")
    if len(files) > limits.max_files:
        raise WorkflowError(name, "$", f"{len(files)} files, at most {limits.max_files}")
    total = 0
    for path, content in files.items():
        shown = f"{name}/{path}"
        problem = _path_problem(path)
        if problem:
            raise WorkflowError(shown, "$", problem)
        size = len(content.encode())
        if size > limits.max_file_bytes:
            raise WorkflowError(shown, "$", f"{size} bytes, at most {limits.max_file_bytes}")
        total += size
    if total > limits.max_total_bytes:
        raise WorkflowError(name, "$", f"{total} bytes in all, at most {limits.max_total_bytes}")


def _path_problem(path: str) -> str | None:
    if not path or "\\" in path or "\x00" in path or path.startswith("/"):
        return "not a relative POSIX path"
    parts = PurePosixPath(path).parts
    if len(parts) > _MAX_DEPTH:
        return f"nested more than {_MAX_DEPTH} levels"
    if any(part in ("", ".", "..") or part.startswith(".") for part in parts) or path.endswith("/"):
        return "path parts may not be empty or start with '.'"
    return None


def validate(name: str, files: Mapping[str, str], limits: InstallLimits) -> Workflow:
    """Load the files as the workflow ``name`` without installing anything: the loader's
    WorkflowError (``name/file: path: message``) when they are not a valid workflow."""
    check_files(name, files, limits)
    with tempfile.TemporaryDirectory(prefix="mozaiks-check-") as scratch:
        folder = Path(scratch) / name
        _write(folder, files)
        return load_workflow(folder)


def sources_of(folder: Path) -> Mapping[str, str] | None:
    """The files of an installed workflow's folder, or None for any other folder."""
    return _sources.get(Path(folder))


def materialize(name: str, files: Mapping[str, str]) -> Path:
    """The folder holding these files on this node, written now if no process here has yet."""
    folder = installed_root() / version_of(name, files) / name
    _sources[folder] = files
    if folder.is_dir():
        return folder
    installed_root().mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = installed_root() / f".staging-{uuid.uuid4().hex}"
    _write(staging / name, files)
    try:
        # One rename publishes the whole folder: a reader never sees it half-written.
        staging.rename(folder.parent)
    except OSError:
        if not folder.is_dir():  # not another process winning the race: a real failure
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _write(folder: Path, files: Mapping[str, str]) -> None:
    for path, content in files.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
