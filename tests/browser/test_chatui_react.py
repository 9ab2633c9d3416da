"""The React example host page (examples/react) in a real browser: served from another origin the
runtime allows, it loads the element from the runtime, hands it a token through the hook's
getToken, and chats `hello` to completion through useChatUI().openWorkflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from tests.conftest import ALLOWED_ORIGIN

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "react"
TIMEOUT_MS = 45_000


async def test_react_example_page_opens_a_workflow_and_chats(page: Any, runtime: Any) -> None:
    if not (EXAMPLE / "dist" / "app.js").exists():
        pytest.skip("examples/react/dist/app.js is not built (scripts/test.sh builds it; or npm run build in chatui/)")

    async def serve(route: Any) -> None:  # the host app's own static server, on its own origin
        name = route.request.url.removeprefix(ALLOWED_ORIGIN).split("?")[0].lstrip("/") or "index.html"
        path = EXAMPLE / name
        if path.is_file():
            kind = "text/html" if name.endswith(".html") else "text/javascript"
            await route.fulfill(status=200, content_type=kind, body=path.read_bytes())
        else:
            await route.fulfill(status=404, body="")

    await page.route(f"{ALLOWED_ORIGIN}/**", serve)
    await page.goto(f"{ALLOWED_ORIGIN}/index.html?runtime={runtime.http_url}")
    await expect(page.get_by_role("heading", name="Acme dashboard")).to_be_visible()
    chat = page.locator("mozaiks-chat")
    await expect(chat.get_by_role("button", name="Open chat")).to_be_visible(timeout=TIMEOUT_MS)  # element loaded
    await page.get_by_role("button", name="Say hello").click()
    dialog = chat.get_by_role("dialog", name="Acme assistant")
    await expect(dialog.locator(".msg", has_text="What's your name?")).to_be_visible(timeout=TIMEOUT_MS)
    await page.shots.take("question")
    await dialog.get_by_role("textbox", name="Message").fill("Lin")
    await dialog.get_by_role("button", name="Send").click()
    await expect(dialog.get_by_text("Goodbye, Lin! Come back soon.")).to_be_visible(timeout=TIMEOUT_MS)
    await expect(page.get_by_role("status").filter(has_text="Last run")).to_have_text("Last run: completed")
    await page.shots.take("completed")
    assert page.errors == []
