"""The hello workflow completed entirely through the full page (/chat/), in a real browser."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

TIMEOUT_MS = 30_000


async def test_hello_completes_through_the_widget(page: Any) -> None:
    await page.goto("/chat/?workflow=hello")
    chat = page.locator("mozaiks-chat")
    await expect(chat.locator(".msg", has_text="What's your name?")).to_be_visible(timeout=TIMEOUT_MS)
    await expect(chat.locator(".conn")).to_have_attribute("data-state", "connected")
    await expect(chat.get_by_role("group", name="Question from Greeter")).to_contain_text("waiting for your answer")
    await page.shots.take("question")

    await chat.get_by_role("textbox", name="Message").fill("Ada")
    await chat.get_by_role("button", name="Send").click()

    tool = chat.locator("details.tool", has_text="make_greeting")
    await expect(tool.locator(".status")).to_contain_text("ok", timeout=TIMEOUT_MS)
    await expect(chat.get_by_role("separator")).to_have_text("Greeter → Farewell")
    await expect(chat.get_by_text("Goodbye, Ada! Come back soon.")).to_be_visible(timeout=TIMEOUT_MS)
    await expect(chat.get_by_text("Completed", exact=True)).to_be_visible()
    await tool.locator("summary").click()  # the card opens to show its arguments and result
    await expect(tool.locator("pre").first).to_contain_text('"name": "Ada"')
    await expect(tool).to_contain_text("Nice to meet you, Ada!")
    await page.shots.take("completed")
    # The typed answer is shown once, as the user's message; nothing rendered twice.
    await expect(chat.locator(".msg.user")).to_have_count(1)
    await expect(chat.locator(".msg", has_text="Goodbye, Ada!")).to_have_count(1)
    assert page.errors == []
