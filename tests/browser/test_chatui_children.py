"""A real fan-out through the widget (issue 13's runtime): the parent's live list of child
workflows, its waiting_children state, a child opened from the list and answered in its own chat,
and back in the parent the merge and the resumed run. Screenshots as in conftest."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.async_api import expect

from tests.children_support import CHILDREN, write_children, write_parent

TIMEOUT_MS = 60_000
# A child that asks its user first: it holds the parent in waiting_children until answered.
ASKING_CHILD = {"workflow": "fo_child_ask", "key": "q0", "context": {"item": "0"}}


async def test_fan_out_children_listed_live_opened_answered_and_merged(page: Any, workflows_dir: Path) -> None:
    write_children(workflows_dir)
    parent = write_parent(workflows_dir, "fo_parent_ui", [CHILDREN[0], ASKING_CHILD], {"merge_mode": "collect_all"})
    await page.goto(f"/chat/?workflow={parent}")
    chat = page.locator("mozaiks-chat")
    await expect(chat.locator(".conn")).to_have_attribute("data-state", "connected", timeout=TIMEOUT_MS)
    await chat.get_by_role("textbox", name="Message").fill("split the work")
    await chat.get_by_role("button", name="Send").click()

    children = chat.get_by_role("region", name="Child workflows")
    await expect(children.locator("li")).to_have_count(2, timeout=TIMEOUT_MS)
    await expect(children.locator(".children-head")).to_have_text("Child workflows: 1 of 2 done", timeout=TIMEOUT_MS)
    await expect(children.locator("li .child-status")).to_have_text(["completed", "running"])
    await expect(chat.locator(".status-line")).to_have_text("Waiting for 1 child workflow to finish.")
    await page.shots.take("waiting")

    await children.get_by_role("button", name=re.compile(r"^Open the fo_child_ask chat")).click()
    await expect(chat.locator(".msg", has_text="Which colour for part 0?")).to_be_visible(timeout=TIMEOUT_MS)
    await expect(chat.get_by_role("heading", level=2).first).to_contain_text("fo_child_ask")
    await chat.get_by_role("textbox", name="Message").fill("blue")
    await chat.get_by_role("button", name="Send").click()
    await expect(chat.get_by_text("Completed", exact=True)).to_be_visible(timeout=TIMEOUT_MS)
    await page.shots.take("child")

    await chat.get_by_role("button", name=f"← Back to {parent}").click()
    await expect(children.locator(".children-head")).to_have_text(
        "Child workflows merged: 2 completed, 0 failed", timeout=TIMEOUT_MS)
    await expect(children.locator("li .child-status")).to_have_text(["completed", "completed"])
    await expect(chat.locator(".msg", has_text="Merged:")).to_have_count(1, timeout=TIMEOUT_MS)
    await expect(chat.get_by_text("Completed", exact=True)).to_be_visible()
    await expect(chat.locator(".status-line")).to_have_text("Chat completed.")  # no longer waiting
    await page.shots.take("merged")
    assert page.errors == []
