from typing import Any, Optional


def open_desk(context_variables: Optional[Any] = None) -> dict[str, Any]:
    context_variables.set("desk_open", True)
    return {"status": "open"}


def brief_writer(context_variables: Optional[Any] = None) -> str:
    brief = "Write for commuters, in 120 words." if context_variables.get("desk_open") else "No brief."
    context_variables.set("writer_brief", brief)
    return brief


async def check_wire(context_variables: Optional[Any] = None) -> None:
    raise ConnectionError("the news wire is down")


def count_turn(context_variables: Optional[Any] = None) -> int:
    turns = context_variables.get("turns_logged", 0) + 1
    context_variables.set("turns_logged", turns)
    return turns


def archive(context_variables: Optional[Any] = None) -> dict[str, Any]:
    context_variables.set("archived", True)
    return {"archived": context_variables.get("turns_logged")}
