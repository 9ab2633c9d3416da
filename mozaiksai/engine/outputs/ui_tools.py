"""`use_ui_tool` as MozaiksAI UI tools call it, on this runtime's durable UI waits.

A MozaiksAI UI tool awaits the user in the middle of its function. Here a wait must survive
restarts and passivation, so no task may sit blocked on it: the function runs once, and its
`use_ui_tool` call stops it there, handing the payload over as the component's props; when the
user answers, the function runs again from the top and `use_ui_tool` returns the answer. Work
before the call therefore runs twice: keep it free of side effects other than context changes.
"""

from __future__ import annotations

from typing import Any

from workflows.tool_loading import current_context

__all__ = ["UIToolError", "UiRequested", "use_ui_tool"]


class UIToolError(Exception):
    """The UI interaction cannot happen (called outside a tool, bad payload)."""


class UiRequested(BaseException):
    """Ends the first run of the function; a BaseException so a tool's `except Exception` lets it by."""

    def __init__(self, tool_id: str, payload: dict[str, Any], display: str | None) -> None:
        self.tool_id = tool_id
        self.payload = payload
        self.display = display
        super().__init__(tool_id)


async def use_ui_tool(tool_id: str, payload: dict[str, Any], chat_id: str | None = None,
                      workflow_name: str | None = None, display: str | None = None,
                      **_options: Any) -> dict[str, Any]:
    """The user's answer to the component. `chat_id` and `workflow_name` are the running call's own."""
    ctx = current_context.get(None)
    if ctx is None:
        raise UIToolError("use_ui_tool must be called from a UI tool the runtime is running")
    if chat_id is not None and chat_id != ctx.chat_id:
        raise UIToolError(f"use_ui_tool: chat_id {chat_id!r} is not the chat running this tool")
    if not isinstance(payload, dict):
        raise UIToolError("use_ui_tool: payload must be a dict (the component's props)")
    if not ctx.ui_answered:
        raise UiRequested(tool_id, payload, display)
    response = ctx.ui_response
    return response if isinstance(response, dict) else {"value": response}
