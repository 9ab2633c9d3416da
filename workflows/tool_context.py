"""What a tool function sees of its chat: `def lookup(q: str, ctx: ToolContext) -> dict`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

ProgressSink = Callable[[float, str], None]
Installer = Callable[[str, dict[str, str], "dict[str, Any] | None"], dict[str, Any]]


class InstallRefused(Exception):
    """``ctx.install_workflow`` was refused; ``code`` and ``issues`` are the API's (docs/workflows.md)."""

    def __init__(self, code: str, message: str, issues: list[str] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.issues = code, message, issues or []

    def __reduce__(self) -> tuple[Any, ...]:  # intact across Ray/pickle
        return type(self), (self.code, self.message, self.issues)


class ToolContext:
    """Plain picklable object: built by the session, shipped with the Ray task that runs the tool.

    Context changes are not applied here: the session applies `context_changes` (and emits
    `context_update`) when the tool's result comes back, so a failed tool changes nothing.
    """

    def __init__(
        self,
        *,
        chat_id: str,
        app_id: str,
        user_id: str,
        workflow_name: str,
        variables: Mapping[str, Any] | None = None,
        progress_sink: ProgressSink | None = None,
    ) -> None:
        self.chat_id = chat_id
        self.app_id = app_id
        self.user_id = user_id
        self.workflow_name = workflow_name
        self._variables = dict(variables or {})
        self.context_changes: dict[str, Any] = {}
        self.progress_sink = progress_sink  # injected by the runtime inside the task
        self.installer: Installer | None = None  # likewise; the session decides who may install
        # A UI tool written against MozaiksAI awaits the user inside its function (use_ui_tool):
        # it runs once to get the props, then again with the user's answer, which use_ui_tool returns.
        self.ui_answered = False
        self.ui_response: Any = None
        self.children_request: dict[str, Any] | None = None  # see start_children

    @property
    def context(self) -> Mapping[str, Any]:
        # A proxy cannot be pickled, so it is made on access over the stored dict.
        return MappingProxyType(self._variables)

    def set_context(self, name: str, value: Any) -> None:
        """Record a change; later reads through `context` in this call already see it."""
        self._variables[name] = value
        self.context_changes[name] = value

    def progress(self, fraction: float, message: str = "") -> None:
        # Progress is cosmetic: an out-of-range fraction is clamped rather than failing the tool.
        if self.progress_sink is not None:
            self.progress_sink(min(max(float(fraction), 0.0), 1.0), message)

    def start_children(self, children: list[dict[str, Any] | str], *, merge_mode: str = "collect_all",
                       inject_as: str = "child_results", resume_agent: str | None = None,
                       on_partial_failure: str = "resume_with_available", max_children: int = 0,
                       timeout_seconds: float | None = None, output_contract: list[str] | None = None) -> None:
        """Fan out from code: child chats (each ``{"workflow", "message", "context", "key"}``, as a
        trigger agent's ``children``) start once this reply's tools are done; the agent's run waits
        for them, then goes on at ``resume_agent`` (default: the agent that called the tool) with
        the merged result in the context under ``inject_as`` — the same fan-out a
        ``_pack/workflow_graph.json`` trigger declares. The request is checked by the session: a
        bad one fails the run with ``invalid_fan_out``."""
        self.children_request = {
            "children": list(children),
            "fan_out": {"max_children": max_children, "timeout_seconds": timeout_seconds},
            "fan_in": {"merge_mode": merge_mode, "inject_as": inject_as, "resume_agent": resume_agent,
                       "on_partial_failure": on_partial_failure, "output_contract": output_contract or []},
        }


    def install_workflow(self, name: str, files: dict[str, str],
                         capability: dict[str, Any] | None = None) -> dict[str, Any]:
        """Install a workflow for this chat's app, as ``PUT /api/runtime/workflows/{name}`` does:
        validated whole, stored, startable at once. Only a generator workflow may (the operator's
        ``settings.generator_workflows``); anything else raises InstallRefused, as does an invalid
        workflow (with the loader's ``file: path: message`` lines in ``issues``)."""
        if self.installer is None:
            raise InstallRefused("forbidden", "this tool runs outside a chat session")
        answer = self.installer(name, dict(files), capability)
        if "error" in answer:
            error = answer["error"]
            raise InstallRefused(error["code"], error["message"], error["details"].get("issues"))
        return answer


class ContextVariables:
    """The `context_variables` argument MozaiksAI (AG2) tools take: get/set over the chat's context.

    Changes go through the ToolContext, so they are applied (and emitted) like `ctx.set_context`.
    """

    def __init__(self, ctx: ToolContext) -> None:
        self._ctx = ctx

    def _identity(self) -> dict[str, Any]:
        c = self._ctx
        return {"chat_id": c.chat_id, "app_id": c.app_id, "user_id": c.user_id, "workflow_name": c.workflow_name}

    def get(self, key: str, default: Any = None) -> Any:
        context = self._ctx.context
        return context[key] if key in context else self._identity().get(key, default)

    def set(self, key: str, value: Any) -> None:
        self._ctx.set_context(key, value)

    def update(self, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            self.set(key, value)

    def contains(self, key: str) -> bool:
        return key in self._ctx.context or key in self._identity()

    def to_dict(self) -> dict[str, Any]:
        return {**self._identity(), **self._ctx.context}

    def keys(self) -> list[str]:
        return list(self.to_dict())

    @property
    def data(self) -> dict[str, Any]:
        return self.to_dict()

    def __getitem__(self, key: str) -> Any:
        if not self.contains(key):
            raise KeyError(key)
        return self.get(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self.set(key, value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.contains(key)
