"""What a tool function sees of its chat: `def lookup(q: str, ctx: ToolContext) -> dict`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

ProgressSink = Callable[[float, str], None]


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
