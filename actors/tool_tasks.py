"""Agent tools run as Ray tasks: placed by the tool's execution options, in parallel per reply."""

from __future__ import annotations

import asyncio
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import ray
from pydantic import BaseModel, Field

from actors.handles import SessionHandle
from mozaiksai.engine.outputs.ui_tools import UiRequested
from workflows.installed import materialize, sources_of
from workflows.model import ToolSpec
from workflows.tool_context import ToolContext
from workflows.tool_loading import call_tool, import_tool


class ToolOutcome(BaseModel):
    status: str  # ok | error | timeout | cancelled
    result: Any = None
    error: str | None = None
    context_changes: dict[str, Any] = Field(default_factory=dict)
    started_at: float = 0.0
    ended_at: float = 0.0
    node_id: str | None = None
    ui_requested: bool = False
    children: dict[str, Any] | None = None  # ToolContext.start_children's request


PROGRESS_FLUSH_S = 2.0  # how long a finished tool waits for its last progress report to be taken

# An installed workflow's files as one object per version, put once by the session's process.
_shipped: dict[Path, ray.ObjectRef] = {}


@ray.remote(num_cpus=0.1)
def _run_tool(workflow_path: str, file: str, function: str, arguments: dict[str, Any],
              ctx: ToolContext, session: SessionHandle | None, call_id: str, name: str,
              sources: list[ray.ObjectRef] | None = None) -> dict[str, Any]:
    started = time.time()
    last_progress: list[ray.ObjectRef] = []
    if session is not None:
        def report(fraction: float, message: str) -> None:
            # The chat id lets a session actor that has since been recycled to another chat drop it.
            last_progress[:] = [session.report_progress(ctx.chat_id, call_id, name, fraction, message)]
        ctx.progress_sink = report
        ctx.installer = lambda *install: session.install_workflow(ctx.chat_id, *install)
    try:
        return _outcome(workflow_path, file, function, arguments, ctx, sources, started)
    finally:
        # Progress goes fire and forget, but it must reach the session before the result does:
        # a bar that still moves after its tool answered reads as the tool running again.
        if last_progress:
            ray.wait(last_progress, timeout=PROGRESS_FLUSH_S)


def _outcome(workflow_path: str, file: str, function: str, arguments: dict[str, Any], ctx: ToolContext,
             sources: list[ray.ObjectRef] | None, started: float) -> dict[str, Any]:
    node_id = ray.get_runtime_context().get_node_id()
    try:
        folder = Path(workflow_path)
        if sources is not None:  # an installed workflow: its folder may not exist on this node yet
            folder = materialize(folder.name, ray.get(sources[0]))
        fn = import_tool(folder, file, function)
        # Tool modules live under generated names other workers cannot import: whatever a tool
        # sends to Ray tasks of its own must carry the module's code, not a reference to it.
        ray.cloudpickle.register_pickle_by_value(sys.modules[fn.__module__])
        result = call_tool(fn, arguments, ctx)
        return ToolOutcome(status="ok", result=result, context_changes=ctx.context_changes,
                           children=ctx.children_request, started_at=started, ended_at=time.time(),
                           node_id=node_id).model_dump()
    except UiRequested as request:  # a MozaiksAI UI tool asked for the user: its payload is the props
        return ToolOutcome(status="ok", result=request.payload, context_changes=ctx.context_changes,
                           ui_requested=True, started_at=started, ended_at=time.time(),
                           node_id=node_id).model_dump()
    except Exception as exc:  # a tool's failure is data for the model, not a crash of the session
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return ToolOutcome(status="error", error=detail, started_at=started, ended_at=time.time(),
                           node_id=node_id).model_dump()


async def run_tool(spec: ToolSpec, workflow_path: Path, arguments: dict[str, Any], ctx: ToolContext,
                   session: SessionHandle | None, call_id: str) -> ToolOutcome:
    """Run one tool call as a Ray task honouring num_cpus, resources, timeout and retries."""
    opts = spec.execution
    files = sources_of(workflow_path)
    if files is not None and workflow_path not in _shipped:
        _shipped[workflow_path] = ray.put(dict(files))
    ref = _run_tool.options(
        num_cpus=opts.num_cpus, resources=opts.resources or None,
        # The calls of one reply are independent and meant to run at once: spread them over the
        # nodes that offer what they ask for, rather than packing the session's own node first.
        scheduling_strategy="SPREAD",
        # Ray re-runs a task whose worker or node died; a tool that is not idempotent runs at most once.
        max_retries=opts.max_retries if opts.idempotent else 0,
        retry_exceptions=False,
    ).remote(str(workflow_path), spec.file or f"{spec.name}.py", spec.function or spec.name,
             arguments, ctx, session, call_id, spec.name,
             # In a list, so Ray hands the task the reference and the task fetches only if it must.
             [_shipped[workflow_path]] if files is not None else None)
    started = time.time()
    try:
        raw = await asyncio.wait_for(ref, timeout=opts.timeout_s)
        return ToolOutcome.model_validate(raw)
    except TimeoutError:
        ray.cancel(ref, force=True)
        return ToolOutcome(status="timeout", error=f"tool timed out after {opts.timeout_s:g}s",
                           started_at=started, ended_at=time.time())
    except asyncio.CancelledError:
        ray.cancel(ref, force=True)
        raise
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as exc:
        # Ray has already re-run an idempotent tool max_retries times; any other tool may have had
        # its effects before the node died, so it is reported, never re-run.
        retried = opts.max_retries if opts.idempotent else 0
        return ToolOutcome(status="error", error=f"tool task lost with its worker or node "
                           f"({type(exc).__name__}) after {retried} retries", started_at=started,
                           ended_at=time.time())
    except (ray.exceptions.TaskCancelledError, ray.exceptions.RayTaskError) as exc:
        return ToolOutcome(status="error", error=f"tool task failed: {type(exc).__name__}",
                           started_at=started, ended_at=time.time())
