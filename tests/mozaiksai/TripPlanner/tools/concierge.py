from typing import Annotated, Any, Optional

from mozaiksai.engine.outputs.ui_tools import UIToolError, use_ui_tool


def note_destination(city: Annotated[str, "The new destination"],
                     context_variables: Annotated[Optional[Any], "the chat's context"] = None) -> dict[str, Any]:
    previous = context_variables.get("destination")
    context_variables.set("destination", city)
    return {"status": "changed", "from": previous, "to": city}


async def confirm_booking(summary: Annotated[str, "What is being booked"],
                          context_variables: Annotated[Optional[Any], "the chat's context"] = None) -> dict[str, Any]:
    try:
        answer = await use_ui_tool(
            tool_id="BookingCard",
            payload={"summary": summary, "city": context_variables.get("destination")},
            chat_id=context_variables.get("chat_id"),
            workflow_name=context_variables.get("workflow_name"),
            display="inline",
        )
    except UIToolError as exc:
        return {"status": "error", "message": str(exc)}
    return {"status": "answered", "confirmed": bool(answer.get("confirmed"))}
