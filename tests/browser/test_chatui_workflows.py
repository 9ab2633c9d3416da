"""The ChatUI against the real runtime: the workflow generator's WorkflowDraft artifact, and the three
double-texting policies as the user sees them (a message sent mid-run is queued, refused, or
interrupts the turn), each text shown exactly once. Each test leaves screenshots (see conftest)."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

TIMEOUT_MS = 45_000


async def _open(page: Any, workflow: str) -> Any:
    await page.goto(f"/chat/?workflow={workflow}")
    chat = page.locator("mozaiks-chat")
    await expect(chat.locator(".conn")).to_have_attribute("data-state", "connected", timeout=TIMEOUT_MS)
    return chat


async def _send(chat: Any, text: str) -> None:
    await chat.get_by_role("textbox", name="Message").fill(text)
    await chat.get_by_role("button", name="Send").click()


async def test_workflow_generator_draft_is_edited_and_approved_in_the_panel(page: Any) -> None:
    chat = await _open(page, "workflow_generator")
    await expect(chat.locator(".msg", has_text="What should it do?")).to_be_visible(timeout=TIMEOUT_MS)
    await _send(chat, "Summarise support tickets")
    await expect(chat.locator(".msg", has_text="Which agents should it have?")).to_be_visible(timeout=TIMEOUT_MS)
    await _send(chat, "reader, writer")

    panel = chat.get_by_role("complementary", name="WorkflowDraft panel")
    name = panel.get_by_role("textbox", name="Workflow name")
    await expect(name).to_have_value("summarise_support_tickets", timeout=TIMEOUT_MS)
    await expect(panel.get_by_role("textbox", name="Agent 1 name")).to_have_value("Reader")
    await expect(panel.get_by_role("textbox", name="Agent 2 name")).to_have_value("Writer")
    await expect(chat.get_by_text("Waiting for your answer in the panel.")).to_be_visible()
    await page.shots.take("draft")

    await name.fill("ticket_digest")  # an edit: the approved draft is the edited one
    await panel.get_by_role("button", name="Approve").click()
    await expect(panel.get_by_role("status")).to_have_text("Edited draft approved.")
    await expect(chat.locator(".msg", has_text="Your workflow ticket_digest is ")).to_be_visible(timeout=TIMEOUT_MS)
    await expect(chat.get_by_text("Completed", exact=True)).to_be_visible()
    await expect(panel.get_by_text("Answered")).to_be_visible()
    await expect(chat.locator("details.tool", has_text="review_draft").locator(".status")).to_contain_text("ok")
    await expect(chat.locator("details.tool", has_text="write_workflow").locator(".status")).to_contain_text("ok")
    await page.shots.take("approved")
    assert page.errors == []


async def _mid_run(chat: Any) -> None:
    """Send "one", and "two" while the reply to "one" is still streaming."""
    await _send(chat, "one")
    await expect(chat.locator('.msg[aria-busy="true"]')).to_be_visible(timeout=TIMEOUT_MS)
    await _send(chat, "two")


async def test_double_text_enqueue_shows_the_message_queued_then_answers_it(page: Any) -> None:
    chat = await _open(page, "dt_enqueue")
    await _mid_run(chat)
    queued = chat.locator(".msg.user", has_text="two")
    await expect(queued.locator(".queued")).to_have_text("Queued: sent after the current turn")
    await page.shots.take("queued")
    await expect(chat.locator(".msg", has_text="Second reply to two: short.")).to_be_visible(timeout=TIMEOUT_MS)
    await expect(queued.locator(".queued")).to_have_count(0)
    await expect(chat.get_by_text("Completed", exact=True)).to_have_count(2)
    await expect(chat.locator(".msg.user")).to_have_text(["You\none", "You\ntwo"])
    await expect(chat.locator(".msg", has_text="First reply to one")).to_have_count(1)
    await expect(chat.locator(".msg", has_text="Second reply to two")).to_have_count(1)
    assert page.errors == []


async def test_double_text_reject_says_so_and_drops_the_message(page: Any) -> None:
    chat = await _open(page, "dt_reject")
    await _mid_run(chat)
    await expect(chat.get_by_role("alert")).to_have_text(
        "Not sent: this workflow takes one message at a time. Wait for the reply, then send again.")
    await expect(chat.locator(".msg.user", has_text="two")).to_have_count(0)
    await expect(chat.get_by_text("Completed", exact=True)).to_be_visible(timeout=TIMEOUT_MS)
    await page.shots.take("rejected")
    await expect(chat.locator(".msg.user")).to_have_text(["You\none"])
    await expect(chat.locator(".msg", has_text="First reply to one")).to_have_count(1)
    assert page.errors == []


async def test_double_text_interrupt_labels_the_cut_turn_and_shows_each_text_once(page: Any) -> None:
    chat = await _open(page, "dt_interrupt")
    await _mid_run(chat)
    await expect(chat.get_by_text("Stopped: your new message interrupted the running turn.")).to_be_visible(timeout=TIMEOUT_MS)
    await expect(chat.locator(".msg", has_text="Second reply to two: short.")).to_be_visible(timeout=TIMEOUT_MS)
    await expect(chat.get_by_text("Completed", exact=True)).to_be_visible()
    await page.shots.take("interrupted")
    await expect(chat.locator(".msg.user")).to_have_text(["You\none", "You\ntwo"])
    partial = chat.locator(".msg", has_text="First reply to one")
    await expect(partial).to_have_count(1)  # the cut reply stays, once, no longer streaming
    await expect(partial).to_have_attribute("aria-busy", "false")
    await expect(chat.locator(".msg", has_text="Second reply to two")).to_have_count(1)
    assert page.errors == []
