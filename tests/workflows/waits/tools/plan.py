def approve_plan(title: str, ctx) -> dict:
    return {"title": title.upper(), "steps": ["draft", "review", "ship"], "chat_id": ctx.chat_id}
