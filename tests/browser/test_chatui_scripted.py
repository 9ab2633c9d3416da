"""The ChatUI fed from a script (tests/browser/scripted.py) for events the runtime cannot be made to
send on demand: an input request with an ``input_schema`` form, and a parent chat's child workflows
(``chat.child_started`` / ``chat.child_completed`` / ``chat.children_merged``, shapes as in
docs/protocol.md), whose entries open the child's chat through the broker. Screenshots as in conftest."""

from __future__ import annotations

import json
import re
from typing import Any

from playwright.async_api import expect

from tests.browser.scripted import HOST_JWT, ScriptedChat, ScriptedRuntime

SCHEMA = {"type": "object", "required": ["name"], "properties": {
    "name": {"type": "string", "title": "Name"},
    "age": {"type": "integer", "title": "Age"},
    "plan": {"enum": ["free", "pro"], "title": "Plan"},
    "newsletter": {"type": "boolean", "title": "Newsletter"},
}}


async def test_input_request_schema_is_a_form_with_a_countdown_and_answers_once(scripted_page: Any) -> None:
    page = scripted_page
    chat_log = ScriptedChat("form-chat", "intake", phase="waiting_input")
    chat_log.event("chat.run_start", {"run_id": "r1"})
    chat_log.event("chat.text", {"message_id": "a1", "agent": "Intake", "role": "assistant", "visibility": "user",
                                 "content": "Before we start, **a few details**."}, agent="Intake")
    chat_log.event("chat.input_request", {"request_id": "q1", "agent": "Intake", "prompt": "Your details, please",
                                          "input_schema": SCHEMA, "timeout_s": 300}, agent="Intake")
    async with ScriptedRuntime(chat_log) as runtime:
        chat = await runtime.open(page, chat_log)
        question = chat.get_by_role("group", name="Question from Intake")
        await expect(question).to_contain_text("Intake asks: Your details, please")
        await expect(question.locator(".countdown")).to_have_text(re.compile(r"^[45]:\d\d left to answer$"))
        name = question.get_by_role("textbox", name="Name")
        await expect(name).to_be_focused()  # the question takes the focus to its first field
        await question.get_by_role("button", name="Answer").click()  # Name is required: nothing is sent
        await page.shots.take("form")

        await name.fill("Ada")
        await question.get_by_role("spinbutton", name="Age").fill("36")
        await question.get_by_role("combobox", name="Plan").select_option("pro")
        await question.get_by_role("checkbox", name="Newsletter").check()
        await question.get_by_role("button", name="Answer").click()
        sent = await chat_log.next_frame("user.input.submit")
        assert sent["input_request_id"] == "q1"
        assert json.loads(sent["text"]) == {"name": "Ada", "age": 36, "plan": "pro", "newsletter": True}
        assert [f["type"] for f in chat_log.received] == ["user.input.submit"]  # the empty try sent nothing

        # The runtime's confirmation: the user's text under the client's message id, then the ack.
        await chat_log.push("chat.text", {"message_id": sent["id"], "agent": "user", "role": "user",
                                          "visibility": "user", "content": sent["text"]})
        await chat_log.push("chat.input_ack", {"request_id": "q1"})
        await chat_log.push("chat.text", {"message_id": "a2", "agent": "Intake", "role": "assistant",
                                          "visibility": "user", "content": "Thanks, Ada."}, agent="Intake")
        await chat_log.push("chat.run_complete", {"run_id": "r1", "status": "completed"})
        await expect(chat.get_by_text("Completed", exact=True)).to_be_visible()
        await expect(chat.get_by_role("group", name="Question from Intake")).to_have_count(0)
        await expect(chat.locator(".msg.user")).to_have_count(1)
        await expect(chat.locator(".msg", has_text="Thanks, Ada.")).to_have_count(1)
        await page.shots.take("answered")
    assert page.errors == []


def _fan_out(parent: ScriptedChat) -> None:
    parent.event("chat.run_start", {"run_id": "r1"})
    parent.event("chat.text", {"message_id": "p1", "agent": "Planner", "role": "assistant", "visibility": "user",
                               "content": "Splitting the research into three journeys."}, agent="Planner")
    for index, (child, journey) in enumerate([("kid-web", "web"), ("kid-papers", "papers"), ("kid-news", "news")]):
        parent.event("chat.child_started", {"child_chat_id": child, "workflow_name": "research", "journey": journey,
                                            "index": index, "total": 3}, agent="Planner")
    parent.event("chat.child_completed", {"child_chat_id": "kid-web", "workflow_name": "research",
                                          "status": "completed", "summary": "Found 3 sources."})


async def test_child_workflows_are_a_live_list_that_opens_each_child(scripted_page: Any) -> None:
    page = scripted_page
    parent = ScriptedChat("parent-chat", "research_fanout", phase="waiting_children")
    _fan_out(parent)
    web = ScriptedChat("kid-web", "research", status="completed")
    web.event("chat.text", {"message_id": "w1", "agent": "Searcher", "role": "assistant", "visibility": "user",
                            "content": "Three sources on the web."}, agent="Searcher")
    web.event("chat.run_complete", {"run_id": "w", "status": "completed"})
    async with ScriptedRuntime(parent, web) as runtime:
        chat = await runtime.open(page, parent)
        children = chat.get_by_role("region", name="Child workflows")
        await expect(children.locator(".children-head")).to_have_text("Child workflows: 1 of 3 done")
        await expect(children.locator("li")).to_have_count(3)
        await expect(children.locator("li").first).to_contain_text("Found 3 sources.")
        await expect(children.locator("li .child-status")).to_have_text(["completed", "running", "running"])
        await expect(chat.locator(".status-line")).to_have_text("Waiting for 2 child workflows to finish.")
        await expect(chat.get_by_role("button", name="Stop", exact=True)).to_be_visible()  # the parent can be stopped
        await page.shots.take("waiting")

        await parent.push("chat.child_completed", {"child_chat_id": "kid-papers", "workflow_name": "research",
                                                   "status": "failed", "summary": None})
        await expect(children.locator(".children-head")).to_have_text("Child workflows: 2 of 3 done")
        await expect(chat.locator(".status-line")).to_have_text("Waiting for 1 child workflow to finish.")
        await parent.push("chat.child_completed", {"child_chat_id": "kid-news", "workflow_name": "research",
                                                   "status": "timed_out", "summary": "No answer in 60 s."})
        await parent.push("chat.children_merged", {"merge_mode": "concatenate", "inject_as": "message",
                                                   "resume_agent": "Writer", "completed": 1, "failed": 2})
        await parent.push("chat.text", {"message_id": "p2", "agent": "Writer", "role": "assistant",
                                        "visibility": "user", "content": "One journey came back; here it is."},
                          agent="Writer")
        await parent.push("chat.run_complete", {"run_id": "r1", "status": "completed"})
        await expect(children.locator(".children-head")).to_have_text(
            "Child workflows merged: 1 completed, 2 failed")
        await expect(children.locator("li .child-status")).to_have_text(["completed", "failed", "timed out"])
        await expect(chat.get_by_text("Completed", exact=True)).to_be_visible()
        await expect(chat.locator(".status-line")).to_have_text("")
        await page.shots.take("merged")

        await children.get_by_role("button", name="Open the research chat (web)").click()
        await expect(chat.locator(".msg", has_text="Three sources on the web.")).to_be_visible()
        opened = runtime.sessions[-1]
        assert opened["body"]["chat_id"] == "kid-web" and opened["body"]["workflow_name"] == "research"
        assert opened["authorization"] == f"Bearer {HOST_JWT}"  # the host's getToken, as for any chat
        assert web.auths[-1]["token"] == "rt-kid-web"  # the child's own runtime token, in the first frame
        await expect(chat.get_by_role("heading", level=2).first).to_contain_text("research")
        await page.shots.take("child")

        await chat.get_by_role("button", name="← Back to research_fanout").click()
        await expect(children.locator(".children-head")).to_have_text(
            "Child workflows merged: 1 completed, 2 failed")
        await expect(children.locator("li")).to_have_count(3)  # the reopened parent: each child once
        await expect(chat.locator(".msg", has_text="One journey came back")).to_have_count(1)
    assert page.errors == []
