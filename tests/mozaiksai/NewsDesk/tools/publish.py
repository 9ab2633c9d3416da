from typing import Annotated, Any, Optional


def publish_story(headline: Annotated[str, "The story's headline"],
                  context_variables: Annotated[Optional[Any], "the chat's context"] = None) -> dict[str, Any]:
    return {"published": headline, "brief": context_variables.get("writer_brief")}
