"""The ChatUI against the real runtime: artifacts, reloads, dropped sockets, streaming, hostile
text, the overlay, ask mode and keyboard-only use. Each test leaves screenshots (see conftest)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import expect

from tests.fake_openai import FakeOpenAI, FakeResponse
from tests.fake_openai import fake_openai, fake_openai_factory  # noqa: F401  (fixtures)

TIMEOUT_MS = 45_000


async def _send(chat: Any, text: str) -> None:
    await chat.get_by_role("textbox", name="Message").fill(text)
    await chat.get_by_role("button", name="Send").click()


async def _durable_log(runtime: Any, page: Any, chat_id: str) -> list[dict[str, Any]]:
    token = await page.evaluate("fetch('/api/mozaiks/dev/token', {method: 'POST'}).then(r => r.json())")
    async with httpx.AsyncClient(base_url=runtime.http_url) as http:
        r = await http.get(f"/api/mozaiks/sessions/{chat_id}/events", params={"limit": 1000},
                           headers={"Authorization": f"Bearer {token['token']}"})
        r.raise_for_status()
        return r.json()["events"]


async def test_campaign_board_artifact_mounts_survives_reload_and_approves(page: Any) -> None:
    await page.goto("/chat/?workflow=campaign_builder")
    chat = page.locator("mozaiks-chat")
    await expect(chat.locator(".conn")).to_have_attribute("data-state", "connected", timeout=TIMEOUT_MS)
    await _send(chat, "a solar-powered kettle")
    panel = chat.get_by_role("complementary", name="CampaignBoard panel")
    await expect(panel.get_by_text("Campaign: a solar-powered kettle")).to_be_visible(timeout=TIMEOUT_MS)
    await expect(panel.get_by_role("button", name="Approve campaign")).to_be_visible()
    await expect(chat.get_by_text("Waiting for your answer in the panel.")).to_be_visible()
    await page.shots.take("artifact")

    await page.reload()  # mid-chat: the artifact and its open wait come back from the log
    panel = chat.get_by_role("complementary", name="CampaignBoard panel")
    await expect(panel.get_by_role("button", name="Approve campaign")).to_be_enabled(timeout=TIMEOUT_MS)
    await expect(chat.get_by_text("Waiting for your answer in the panel.")).to_be_visible()
    await expect(chat.locator(".msg", has_text="APPROVED. Ship it.")).to_have_count(1)
    await page.shots.take("restored")

    await panel.get_by_role("button", name="Approve campaign").click()
    await expect(chat.get_by_text("Thanks for signing off the campaign board.")).to_be_visible(timeout=TIMEOUT_MS)
    await expect(chat.get_by_text("Completed", exact=True)).to_be_visible()
    await expect(panel.get_by_text("Answered")).to_be_visible()
    await expect(chat.locator("details.tool", has_text="campaign_board").locator(".status")).to_contain_text("ok")
    assert page.errors == []


async def test_reload_mid_run_and_dropped_socket_render_each_event_once(page: Any, runtime: Any) -> None:
    await page.goto("/chat/?workflow=campaign_builder")
    chat = page.locator("mozaiks-chat")
    await expect(chat.locator(".conn")).to_have_attribute("data-state", "connected", timeout=TIMEOUT_MS)
    await _send(chat, "a bamboo bike")
    await expect(chat.locator("details.tool", has_text="market_research")).to_be_visible(timeout=TIMEOUT_MS)
    await page.reload()  # while the research tools run
    await expect(chat.locator(".conn")).to_have_attribute("data-state", "connected", timeout=TIMEOUT_MS)
    await expect(chat.locator(".msg", has_text="Draft: Meet a bamboo bike")).to_be_visible(timeout=TIMEOUT_MS)
    await page.evaluate("document.querySelector('mozaiks-chat').simulateDrop()")
    await expect(chat.locator(".conn")).to_have_attribute("data-state", "connected", timeout=TIMEOUT_MS)
    panel = chat.get_by_role("complementary", name="CampaignBoard panel")
    await panel.get_by_role("button", name="Approve campaign").click(timeout=TIMEOUT_MS)
    await expect(chat.get_by_text("Completed", exact=True)).to_be_visible(timeout=TIMEOUT_MS)
    await page.shots.take("completed")

    chat_id = await page.evaluate("document.querySelector('mozaiks-chat').chatId")
    log = await _durable_log(runtime, page, chat_id)
    texts = [e["data"]["content"] for e in log if e["type"] == "chat.text" and e["data"].get("visibility") != "trace"]
    rendered = await chat.locator(".msg .md, .msg .text").all_inner_texts()
    assert [t.strip() for t in rendered] == [t.strip() for t in texts]
    handoffs = [e for e in log if e["type"] == "chat.handoff"]
    await expect(chat.get_by_role("separator")).to_have_count(len(handoffs))
    calls = [e["data"]["call_id"] for e in log if e["type"] == "chat.tool_call"]
    assert await chat.locator("details.tool").count() == len(set(calls))
    assert page.errors == []


XSS_PROBE = "() => window.__xss ?? null"


async def test_hostile_agent_text_tool_results_and_user_text_stay_inert(page: Any) -> None:
    await page.goto("/chat/?workflow=xss_lab")
    chat = page.locator("mozaiks-chat")
    await expect(chat.locator(".msg", has_text="Look:")).to_be_visible(timeout=TIMEOUT_MS)
    await _send(chat, "<img src=x onerror=\"window.__xss='user'\"> [me](javascript:window.__xss='user-link')")
    await expect(chat.get_by_text("Completed", exact=True)).to_be_visible(timeout=TIMEOUT_MS)
    tool = chat.locator("details.tool", has_text="payload")
    await tool.locator("summary").click()
    await expect(tool).to_contain_text("onerror=")  # shown as text, not parsed
    await expect(chat.locator(".msg", has_text="Done:").locator("strong")).to_have_text("bold")
    for link in await chat.locator("a").all():  # every link click is harmless too
        href = await link.get_attribute("href")
        assert href is None or not href.lower().startswith("javascript:"), href
        await link.click(modifiers=["Alt"], no_wait_after=True)
    await page.shots.take("inert")
    assert await chat.locator("img").count() == 0
    assert await chat.locator("script").count() == 0
    assert await page.evaluate(XSS_PROBE) is None
    assert page.errors == []


async def test_streamed_reply_grows_before_the_final_message(page: Any, workflows_dir: Path,
                                                             fake_openai: FakeOpenAI) -> None:  # noqa: F811
    folder = workflows_dir / "stream_lab"
    folder.mkdir(exist_ok=True)
    (folder / "orchestrator.json").write_text(json.dumps({
        "name": "stream_lab", "startup_mode": "AgentDriven", "initial_agent": "Streamer", "max_turns": 2,
        "human_in_the_loop": False}))
    (folder / "agents.json").write_text(json.dumps({"agents": [{
        "name": "Streamer", "system_message": "Tell a story.",
        "model": {"provider": "openai", "name": "fake-model", "base_url": fake_openai.base_url}}]}))
    story = " ".join(f"word{i}" for i in range(60)) + "."
    fake_openai.enqueue(FakeResponse(text=story, chunks=30, chunk_delay_s=0.08))
    await page.goto("/chat/")
    await page.evaluate("""() => {
      const chat = document.querySelector('mozaiks-chat');
      window.__seen = [];
      const observe = () => new MutationObserver(() => {
        const live = chat.shadowRoot.querySelector('.msg[aria-busy="true"] .text');
        if (live) window.__seen.push(live.textContent.length);
      }).observe(chat.shadowRoot, {subtree: true, childList: true, characterData: true});
      chat.updateComplete.then(observe);
    }""")
    await page.evaluate("customElements.whenDefined('mozaiks-chat').then(() => "
                        "document.querySelector('mozaiks-chat').openWorkflow('stream_lab'))")
    chat = page.locator("mozaiks-chat")
    await expect(chat.locator('.msg[aria-busy="true"]')).to_be_visible(timeout=TIMEOUT_MS)
    await page.shots.take("streaming")
    final = chat.locator('.msg[aria-busy="false"]', has_text="word59.")
    await expect(final).to_be_visible(timeout=TIMEOUT_MS)
    seen = await page.evaluate("window.__seen")
    growing = sorted(set(seen))
    assert len(growing) >= 3 and growing[0] < len(story), seen  # several partial lengths, shown as they came
    assert (await final.locator(".md").inner_text()).strip() == story
    await expect(chat.locator(".msg", has_text="word0")).to_have_count(1)


HOST_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>host app</title>
<script type="module" src="/chat/mozaiks-chat.js"></script></head>
<body style="font-family: sans-serif"><h1>A host app</h1><p>Content under the widget.</p>
<mozaiks-chat presentation="overlay" heading="Help"></mozaiks-chat>
<script type="module">
  const chat = document.querySelector("mozaiks-chat");
  chat.getToken = async () => (await (await fetch("/api/mozaiks/dev/token", {method: "POST"})).json()).token;
</script></body></html>"""


async def _host(page: Any, runtime: Any) -> Any:
    """A host app's page embedding the widget, same origin as the runtime."""
    url = f"{runtime.http_url}/host.html"
    await page.route(url, lambda route: route.fulfill(status=200, content_type="text/html", body=HOST_PAGE))
    await page.goto("/host.html")
    chat = page.locator("mozaiks-chat")
    await page.wait_for_function("document.querySelector('mozaiks-chat').getToken !== null")
    return chat


FOCUSED_COMPOSER = "document.querySelector('mozaiks-chat').shadowRoot.activeElement?.id === 'composer'"


async def _focused(page: Any) -> str:
    return await page.evaluate("""() => {
      const el = document.querySelector('mozaiks-chat').shadowRoot.activeElement;
      return el ? (el.getAttribute('aria-label') || el.id || el.textContent.trim()) : '';
    }""")


async def test_overlay_opens_closes_and_ask_mode_keeps_both_chats(page: Any, runtime: Any) -> None:
    chat = await _host(page, runtime)
    launcher = chat.get_by_role("button", name="Open chat")
    await expect(launcher).to_be_visible()
    await expect(chat.get_by_role("dialog")).to_have_count(0)
    await launcher.click()
    dialog = chat.get_by_role("dialog", name="Help")
    await expect(dialog).to_be_visible()
    await page.evaluate("document.querySelector('mozaiks-chat').openWorkflow('hello')")
    await expect(dialog.locator(".msg", has_text="What's your name?")).to_be_visible(timeout=TIMEOUT_MS)
    await page.shots.take("overlay-open")

    await dialog.get_by_role("button", name="Ask").click()
    await expect(dialog.get_by_role("button", name="Ask")).to_have_attribute("aria-pressed", "true")
    await expect(dialog.locator(".conn")).to_have_attribute("data-state", "connected", timeout=TIMEOUT_MS)
    await _send(dialog, "what is ray?")
    await expect(dialog.locator(".msg", has_text="You asked: what is ray?")).to_be_visible(timeout=TIMEOUT_MS)
    await expect(dialog.locator(".msg", has_text="What's your name?")).to_have_count(0)
    await page.shots.take("ask-mode")
    await dialog.get_by_role("button", name="Workflow", exact=True).click()  # the workflow chat is still there
    await expect(dialog.locator(".msg", has_text="What's your name?")).to_be_visible()

    await page.keyboard.press("Escape")
    await expect(chat.get_by_role("dialog")).to_have_count(0)
    assert await _focused(page) == "Open chat"
    await page.shots.take("overlay-closed")
    assert page.errors == []


async def test_hello_with_the_keyboard_only(page: Any, runtime: Any) -> None:
    chat = await _host(page, runtime)

    async def tab_to(prefix: str, key: str = "Tab", limit: int = 80) -> None:
        for _ in range(limit):
            if (await _focused(page)).startswith(prefix):
                return
            await page.keyboard.press(key)
        raise AssertionError(f"{prefix!r} never got the focus")

    await tab_to("Open chat")  # the launcher
    await page.keyboard.press("Enter")
    await expect(chat.get_by_role("dialog")).to_be_visible()
    await page.wait_for_function(FOCUSED_COMPOSER)  # opening moves the focus to the message box
    await tab_to("Chats and workflows", key="Shift+Tab")
    await page.keyboard.press("Enter")
    await expect(chat.get_by_role("navigation").get_by_role("button", name="Hello A greeter")).to_be_visible(timeout=TIMEOUT_MS)
    await tab_to("Hello")
    await page.keyboard.press("Enter")
    await expect(chat.locator(".msg", has_text="What's your name?")).to_be_visible(timeout=TIMEOUT_MS)
    await page.wait_for_function(FOCUSED_COMPOSER)  # the question moves the focus to the answer box
    await page.keyboard.type("Grace")
    await page.keyboard.press("Enter")
    await expect(chat.get_by_text("Goodbye, Grace! Come back soon.")).to_be_visible(timeout=TIMEOUT_MS)
    await expect(chat.get_by_text("Completed", exact=True)).to_be_visible()
    await page.shots.take("keyboard")
    await page.keyboard.press("Escape")
    await expect(chat.get_by_role("dialog")).to_have_count(0)
    assert await _focused(page) == "Open chat"
    assert page.errors == []
