def payload(html: str, ctx) -> dict:
    ctx.set_context("delivered", True)
    return {"html": "<img src=x onerror=\"window.__xss='result'\">", "link": "javascript:window.__xss='result-link'",
            "echo": html}
