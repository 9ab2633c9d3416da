"""The built-in `ask` assistant: listed beside the workflows, a run per message, history kept."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from mozaiks.client import ChatConnection
from tests.fake_openai import FakeOpenAI, FakeResponse
from tests.fake_openai import fake_openai, fake_openai_factory  # noqa: F401  (fixtures)
from tests.helpers import collect_until, of_type
from workflows.catalog import BUILTIN_DIR

QUESTIONS = ("What is Ray?", "And Ray Serve?")


async def ask(conn: ChatConnection, question: str) -> list[dict[str, Any]]:
    ack = await conn.say(question)
    assert ack["status"] == "accepted"
    return await collect_until(conn, "chat.run_complete")


def conversation(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["data"]["role"], e["data"]["content"]) for e in of_type(events, "chat.text")]


async def test_ask_is_listed_and_answers_offline_keeping_its_history(broker_for):
    broker = broker_for("asker")
    assert "ask" in [w["name"] for w in await broker.list_workflows()]
    session = await broker.create_session("ask")
    async with await broker.connect(session) as conn:
        runs = [await ask(conn, question) for question in QUESTIONS]
    for events, question in zip(runs, QUESTIONS):
        assert events[-1]["data"]["status"] == "completed"
        role, answer = conversation(events)[-1]
        assert role == "assistant" and answer.startswith("No language model is configured")
        assert answer.endswith(f"You asked: {question}")

    history = (await broker.events(session.chat_id))["events"]
    assert [role for role, _ in conversation(history)] == ["user", "assistant", "user", "assistant"]
    assert [text for role, text in conversation(history) if role == "user"] == list(QUESTIONS)
    assert len(of_type(history, "chat.run_start")) == 2
    async with await broker.connect(session, last_seq=0) as replay:
        replayed = await collect_until(replay, "chat.resume_boundary")
    assert conversation(replayed) == conversation(history)


async def test_ask_answers_with_the_configured_model_and_sends_it_the_conversation(
        broker_for, workflows_dir: Path, fake_openai: FakeOpenAI):
    # The built-in as shipped, with the endpoint a deployment would configure.
    live = workflows_dir / "ask_live"
    shutil.copytree(BUILTIN_DIR / "ask", live, dirs_exist_ok=True)
    orchestrator = json.loads((live / "orchestrator.json").read_text())
    (live / "orchestrator.json").write_text(json.dumps({**orchestrator, "name": "ask_live"}))
    agents = json.loads((live / "agents.json").read_text())
    agents["agents"][0]["model"]["base_url"] = fake_openai.base_url
    (live / "agents.json").write_text(json.dumps(agents))
    answers = ("Ray runs Python code across a cluster.", "Serve is Ray's library for serving models.")
    fake_openai.enqueue(*(FakeResponse(text=a) for a in answers))

    broker = broker_for("asker-live")
    session = await broker.create_session("ask_live")
    async with await broker.connect(session) as conn:
        runs = [await ask(conn, question) for question in QUESTIONS]
    assert [conversation(events)[-1] for events in runs] == [("assistant", a) for a in answers]
    sent = fake_openai.requests[1].body["messages"]
    assert sent[0]["role"] == "system" and "helpful" in sent[0]["content"]
    assert [(m["role"], m["content"]) for m in sent[1:]] == [
        ("user", QUESTIONS[0]), ("assistant", answers[0]), ("user", QUESTIONS[1])]
