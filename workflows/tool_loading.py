"""Runtime side of tools, used inside the Ray tasks that run them."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import importlib.util
import inspect
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from workflows.json_schema import validate_arguments
from workflows.tool_context import ContextVariables, ToolContext

__all__ = ["ToolContext", "call_tool", "import_tool", "validate_arguments"]

_modules: dict[tuple[str, int], ModuleType] = {}
_lock = threading.Lock()


def import_tool(workflow_path: Path, file: str, function: str) -> Callable[..., Any]:
    """The tool function from `<workflow>/tools/<file>`, imported once per file version.

    Tool files are loaded by path under a unique module name, so two workflows may both have a
    `tools/search.py`, and an edited file (new mtime) is picked up by long-lived workers.
    """
    path = (Path(workflow_path) / "tools" / file).resolve()
    module = _module(path)
    fn: Callable[..., Any] | None = getattr(module, function, None)
    if not callable(fn):
        raise ImportError(f"{path}: no function {function!r}")
    return fn


def _module(path: Path) -> ModuleType:
    key = (str(path), path.stat().st_mtime_ns)
    with _lock:
        if key in _modules:
            return _modules[key]
        name = f"_mozaiks_tool_{hashlib.sha1(key[0].encode()).hexdigest()[:16]}_{key[1]}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"{path}: not a Python module")
        module = importlib.util.module_from_spec(spec)
        # Registered before running it: dataclasses and pickling look classes up in sys.modules.
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        _modules[key] = module
        return module


def _context_parameter(fn: Callable[..., Any]) -> str | None:
    for parameter in inspect.signature(fn).parameters.values():
        annotation = parameter.annotation
        if (
            parameter.name == "ctx"
            or annotation is ToolContext
            or (isinstance(annotation, str) and annotation.rsplit(".", 1)[-1] == "ToolContext")
        ):
            return parameter.name
    return None


# The ToolContext of the call running in this thread (or task), for use_ui_tool.
current_context: contextvars.ContextVar[ToolContext] = contextvars.ContextVar("mozaiks_tool_context")


def call_tool(fn: Callable[..., Any], arguments: dict[str, Any], ctx: ToolContext) -> Any:
    """Call a sync or async tool; `ctx` goes to a parameter named `ctx` or typed ToolContext, and a
    parameter named `context_variables` gets the chat's context (MozaiksAI's tool API).

    Meant for a plain Ray task (no running event loop): coroutines are run with asyncio.run.
    """
    kwargs = dict(arguments)
    if (name := _context_parameter(fn)) is not None:
        kwargs[name] = ctx
    if "context_variables" in inspect.signature(fn).parameters:
        kwargs["context_variables"] = ContextVariables(ctx)
    token = current_context.set(ctx)
    try:
        result = fn(**kwargs)
        if inspect.isawaitable(result):
            result = asyncio.run(_wait(result))  # the running task inherits current_context
        return result
    finally:
        current_context.reset(token)


async def _wait(awaitable: Any) -> Any:
    return await awaitable
