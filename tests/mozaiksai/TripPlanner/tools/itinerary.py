from typing import Annotated, Any, Optional


def save_itinerary(title: Annotated[str, "The itinerary's title"],
                   Stops: Annotated[list[dict[str, Any]], "Where the traveller stays"],
                   context_variables: Annotated[Optional[Any], "the chat's context"] = None) -> dict[str, Any]:
    context_variables.set("itinerary_title", title)
    return {"saved": title, "stops": [stop["city"] for stop in Stops]}
