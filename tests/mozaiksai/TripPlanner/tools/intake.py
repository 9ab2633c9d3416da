from typing import Annotated, Any, Optional


def note_destination(
    city: Annotated[str, "Where the traveller wants to go"],
    nights: Annotated[int, "How many nights"],
    context_variables: Annotated[Optional[Any], "the chat's context"] = None,
) -> dict[str, Any]:
    context_variables.set("destination", city)
    context_variables.set("nights", nights)
    context_variables.set("destination_known", True)
    return {"status": "noted", "city": city, "currency": context_variables.get("currency")}
