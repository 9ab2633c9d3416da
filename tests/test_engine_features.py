"""Workflow engine features, each seen through the real WebSocket on real Ray (issue 3)."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from mozaiks.store import open_store
from tests.fake_openai import FakeResponse, FakeToolCall, FakeUsage
from tests.helpers import collect_until, durable, of_type


async def start(broker, workflow: str, text: str | None = None, **kwargs: Any):
    session = await broker.create_session(workflow, **kwargs)
    conn = await broker.connect(session, last_seq=0)
    if text is not None:
        assert (await conn.say(text))["status"] == "accepted"
    return session, conn


async def test_tools_fan_out_in_parallel_and_failures_do_not_end_the_run(broker_for):
    session, conn = await start(broker_for("tools"), "tool_lab", "go")
    events = await collect_until(conn, "chat.run_complete", timeout=60)
    await conn.close()
    responses = {e["data"]["call_id"]: e["data"] for e in of_type(events, "chat.tool_response")}
    calls = of_type(events, "chat.tool_call")
    by_name: dict[str, list[dict[str, Any]]] = {}
    for call in calls:
        by_name.setdefault(call["data"]["name"], []).append(responses[call["data"]["call_id"]])
    a, b = (r["result"] for r in by_name["meet"])
    # The two calls of one reply run at once: each saw the other running, in another process.
    assert a["met"] and b["met"] and a["pid"] != b["pid"]
    boom = by_name["boom"][0]
    assert boom["status"] == "error" and "always fails" in boom["error"]
    invalid, valid = by_name["strict"]
    assert invalid["status"] == "error" and invalid["error"].startswith("invalid arguments: count")
    assert valid["status"] == "ok" and valid["result"] == {"counted": 3}
    assert by_name["slowpoke"][0]["status"] == "timeout"
    assert by_name["progress_demo"][0]["status"] == "ok"
    progress = of_type(events, "tool_progress")
    assert [p["data"]["progress"] for p in progress] == [0.25, 0.5, 0.75, 1.0]
    assert all(p["seq"] is None for p in progress)
    assert {"variable": "counted", "value": 3} in [e["data"] for e in of_type(events, "context_update")]
    final = of_type(events, "chat.text")[-1]
    assert final["data"]["content"] == "All tools done; counted 3."
    assert events[-1]["data"]["status"] == "completed"


async def test_campaign_builder_completes_offline(broker_for):
    session, conn = await start(broker_for("campaigner"), "campaign_builder", "a solar-powered kettle")
    events = await collect_until(conn, "chat.tool_call", timeout=60)
    while not events[-1]["data"].get("awaiting_response"):
        events += await collect_until(conn, "chat.tool_call", timeout=60)
    board = events[-1]["data"]
    assert (board["component"], board["display"]) == ("CampaignBoard", "artifact")
    assert board["props"]["product"] == "a solar-powered kettle"
    assert (await conn.respond_ui(board["call_id"], {"decision": "approve"}))["status"] == "accepted"
    events += await collect_until(conn, "chat.run_complete", timeout=60)
    await conn.close()
    assert events[-1]["data"]["status"] == "completed"
    plan = next(e for e in of_type(events, "chat.text") if e["agent"] == "Planner")
    assert plan["data"]["structured_output"]["product"] == "a solar-powered kettle"
    assert plan["data"]["structured_output"]["channels"] == ["email", "social"]
    handoffs = [(h["data"]["from_agent"], h["data"]["to_agent"], h["data"]["reason"])
                for h in of_type(events, "chat.handoff")]
    assert handoffs == [("Planner", "Researcher", "after_work"), ("Researcher", "Copywriter", "llm"),
                        ("Copywriter", "Reviewer", "after_work"), ("Reviewer", "Copywriter", "after_work"),
                        ("Copywriter", "Reviewer", "after_work"), ("Reviewer", "Board", "condition")]
    speakers = [e["data"]["agent"] for e in of_type(events, "chat.select_speaker")]
    assert speakers[0] == "Planner" and speakers.count("Reviewer") == 2
    research = {e["data"]["name"]: e["data"] for e in of_type(events, "chat.tool_response")}
    assert research["market_research"]["result"]["demand"] == "growing"
    assert len(research["competitor_scan"]["result"]["competitors"]) == 3
    updates = [e["data"] for e in of_type(events, "context_update")]
    assert {"variable": "approved", "value": True} in updates
    assert {"variable": "board_review", "value": {"decision": "approve"}} in updates
    researcher_text = next(e for e in of_type(events, "chat.text") if e["agent"] == "Researcher")
    assert researcher_text["data"]["visibility"] == "trace"  # not one of the visual agents


async def test_usage_is_attributed_to_each_of_three_concurrent_chats(broker_for, settings):
    names = ["Al", "Bartholomew", "Cleopatra-Maximiliana"]

    async def one(name: str) -> tuple[str, list[dict[str, Any]]]:
        session, conn = await start(broker_for(f"usage-{name}"), "hello")
        events = await collect_until(conn, "chat.input_request")
        await conn.say(name, input_request_id=events[-1]["data"]["request_id"])
        events += await collect_until(conn, "chat.run_complete")
        await conn.close()
        return session.chat_id, events

    results = await asyncio.gather(*(one(n) for n in names))
    store = open_store(settings.resolved_store_url)
    await store.init()
    totals = []
    for (chat_id, events), name in zip(results, names, strict=True):
        deltas = of_type(events, "chat.usage_delta")
        summary = of_type(events, "chat.usage_summary")[0]["data"]
        from_deltas = sum(d["data"]["total_tokens"] for d in deltas)
        assert summary["totals"]["total_tokens"] == from_deltas
        assert set(summary["by_agent"]) == {"Greeter", "Farewell"}
        stored = await store.usage_totals("test-app", f"usage-{name}", chat_id=chat_id)
        assert stored["total_tokens"] == from_deltas
        totals.append(from_deltas)
    await store.close()
    assert totals[0] < totals[1] < totals[2]  # longer names, more tokens: nobody got another's usage


MOZAIKS_YAML = {
    "orchestrator.yaml": """
workflow_name: yaml_flow
max_turns: 6
startup_mode: UserDriven
human_in_the_loop: true
recipient: Echo
""",
    "agents.yaml": """
agents:
  Echo:
    system_message: Repeat after the user.
    max_consecutive_auto_reply: 3
    model:
      provider: scripted
      script:
        - text: "You said: {last_user_message}"
  Closer:
    system_message: Close.
    model:
      provider: scripted
      script:
        - text: Bye.
""",
    "handoffs.yaml": """
handoff_rules:
  - source_agent: Echo
    target_agent: Closer
    handoff_type: after_work
  - source_agent: Closer
    target_agent: TERMINATE
    handoff_type: after_work
""",
}


async def test_mozaiksai_yaml_workflow_loads_and_runs(broker_for, workflows_dir: Path):
    folder = workflows_dir / "yaml_flow"
    folder.mkdir(exist_ok=True)
    for name, text in MOZAIKS_YAML.items():
        (folder / name).write_text(text)
    session, conn = await start(broker_for("yaml"), "yaml_flow", "hello yaml")
    events = await collect_until(conn, "chat.run_complete")
    await conn.close()
    assert [e["data"]["content"] for e in of_type(events, "chat.text")] == ["hello yaml", "You said: hello yaml", "Bye."]
    assert events[-1]["data"]["status"] == "completed"


def _openai_workflow(root: Path, name: str, base_url: str, **orchestrator: Any) -> None:
    folder = root / name
    (folder / "tools").mkdir(parents=True, exist_ok=True)
    (folder / "orchestrator.json").write_text(json.dumps(
        {"name": name, "startup_mode": "UserDriven", "initial_agent": "Assistant", **orchestrator}))
    (folder / "agents.json").write_text(json.dumps({"agents": [
        {"name": "Assistant", "system_message": "Be brief.", "tools": ["lookup"],
         "model": {"provider": "openai", "name": "fake-model", "base_url": base_url, "temperature": 0.1}}]}))
    (folder / "handoffs.json").write_text(json.dumps({"handoff_rules": [
        {"source_agent": "Assistant", "target_agent": "terminate", "handoff_type": "after_work"}]}))
    (folder / "tools.json").write_text(json.dumps({"tools": [
        {"name": "lookup", "description": "Look a word up", "file": "lookup.py", "agents": ["Assistant"]}]}))
    (folder / "tools" / "lookup.py").write_text("def lookup(word: str) -> dict:\n    return {'word': word, 'meaning': 'a test'}\n")


async def test_openai_model_streams_calls_tools_and_reports_usage(broker_for, workflows_dir, fake_model):
    _openai_workflow(workflows_dir, "openai_live", fake_model.base_url)
    fake_model.enqueue(
        FakeResponse(tool_calls=[FakeToolCall(name="lookup", arguments={"word": "kettle"}, pieces=3)],
                     usage=FakeUsage(prompt_tokens=40, completion_tokens=9)),
        FakeResponse(text="A kettle boils water. It is a test word.", chunks=12, chunk_delay_s=0.01,
                     usage=FakeUsage(prompt_tokens=70, completion_tokens=11)),
    )
    session, conn = await start(broker_for("openai"), "openai_live", "what is a kettle?")
    events = await collect_until(conn, "chat.run_complete", timeout=60)
    await conn.close()
    assert events[-1]["data"]["status"] == "completed"
    deltas = of_type(events, "chat.text_delta")
    final = of_type(events, "chat.text")[-1]
    assert final["data"]["content"] == "A kettle boils water. It is a test word."
    assert "".join(d["data"]["delta"] for d in deltas) == final["data"]["content"]
    assert 1 <= len(deltas) <= 12  # coalesced, never more than the model sent
    assert all(d["data"]["message_id"] == final["data"]["message_id"] for d in deltas)
    tool = of_type(events, "chat.tool_response")[0]["data"]
    assert tool["status"] == "ok" and tool["result"] == {"word": "kettle", "meaning": "a test"}
    usage = [(u["data"]["prompt_tokens"], u["data"]["completion_tokens"]) for u in of_type(events, "chat.usage_delta")]
    assert usage == [(40, 9), (70, 11)]
    second_request = fake_model.requests[1].body
    assert second_request["model"] == "fake-model" and second_request["temperature"] == 0.1
    assert [t["function"]["name"] for t in second_request["tools"]] == ["lookup"]
    roles = [m["role"] for m in second_request["messages"]]
    assert roles == ["system", "user", "assistant", "tool"]


async def test_model_failures_are_retried_then_reported(broker_for, workflows_dir, fake_model):
    _openai_workflow(workflows_dir, "openai_flaky", fake_model.base_url)
    fake_model.enqueue(FakeResponse.http_error(429, retry_after_s=0.1), FakeResponse.http_error(500),
                       FakeResponse(text="Recovered.", chunks=2))
    session, conn = await start(broker_for("flaky"), "openai_flaky", "hi")
    events = await collect_until(conn, "chat.run_complete", timeout=60)
    assert events[-1]["data"]["status"] == "completed"
    assert of_type(events, "chat.text")[-1]["data"]["content"] == "Recovered."
    assert len(fake_model.requests) == 3
    for _ in range(8):
        fake_model.enqueue(FakeResponse.http_error(500))
    await conn.say("again")
    events = await collect_until(conn, "chat.run_complete", timeout=90)
    await conn.close()
    error = of_type(events, "chat.error")[0]["data"]
    # the provider's retries ran out and the run has failed: nothing will retry it
    assert error["retryable"] is False and error["code"] == "server_error"
    assert events[-1]["data"]["status"] == "failed"


async def test_handoff_select_speaker_and_context_events_are_durable(broker_for):
    session, conn = await start(broker_for("events"), "hello")
    events = await collect_until(conn, "chat.input_request")
    await conn.say("zed", input_request_id=events[-1]["data"]["request_id"])
    events += await collect_until(conn, "chat.run_complete")
    await conn.close()
    for type_ in ("chat.select_speaker", "chat.handoff", "context_update", "chat.usage_delta"):
        assert of_type(events, type_) and all(e["seq"] for e in of_type(events, type_))
    assert [e["seq"] for e in durable(events)] == list(range(1, len(durable(events)) + 1))


def test_example_folders_are_valid(tmp_path):
    from workflows.loader import load_workflows
    examples = Path(__file__).resolve().parent.parent / "workflows" / "examples"
    shutil.copytree(examples, tmp_path / "w")
    loaded = load_workflows(tmp_path / "w")
    assert {"hello", "campaign_builder"} <= set(loaded)


async def test_max_turns_ends_the_run_with_its_own_status(broker_for):
    broker = broker_for("pinger")
    session, conn = await start(broker, "pingpong", "serve")
    events = await collect_until(conn, "chat.run_complete")
    await conn.close()
    assert [e["data"]["content"] for e in of_type(events, "chat.text")][1:] == ["ping 1", "pong 1", "ping 2", "pong 2"]
    assert events[-1]["data"]["status"] == "max_turns"
    listed = next(s for s in (await broker.list_sessions())["sessions"] if s["chat_id"] == session.chat_id)
    assert listed["status"] == "failed"  # a run cut off by max_turns is never counted as completed


async def test_without_human_in_the_loop_handing_back_to_the_user_ends_the_run(broker_for):
    session, conn = await start(broker_for("solo"), "no_hitl", "go")
    events = await collect_until(conn, "chat.run_complete")
    await conn.close()
    assert not of_type(events, "chat.input_request")
    assert events[-1]["data"]["status"] == "completed"


async def test_tool_worker_crash_is_retried_only_for_idempotent_tools(broker_for):
    marker = f"m{time.time_ns()}"
    session, conn = await start(broker_for("crasher"), "crashy", marker)
    events = await collect_until(conn, "chat.run_complete", timeout=90)
    await conn.close()
    results = {e["data"]["name"]: e["data"] for e in of_type(events, "chat.tool_response")}
    assert results["retried"]["status"] == "ok" and results["retried"]["result"] == {"attempt": 2}
    assert results["fragile"]["status"] == "error"  # ran once, its failure reported to the model
    assert events[-1]["data"]["status"] == "completed"


async def test_invalid_structured_output_goes_back_to_the_agent(broker_for):
    session, conn = await start(broker_for("structurer"), "structured_check", "plan it")
    events = await collect_until(conn, "chat.run_complete")
    await conn.close()
    texts = of_type(events, "chat.text")
    note = next(t for t in texts if t["data"]["role"] == "system")
    assert "steps: is required" in note["data"]["content"] and note["data"]["visibility"] == "trace"
    assert texts[-1]["data"]["structured_output"] == {"title": "Fixed", "steps": 2}
    assert events[-1]["data"]["status"] == "completed"


def test_model_override_runs_scripted_examples_on_the_configured_model(settings, workflows_dir):
    from actors.agent_turn import resolve_model
    from workflows.catalog import WorkflowCatalog

    hello = WorkflowCatalog(workflows_dir).get("hello")
    assert resolve_model(hello, "Greeter", settings).provider == "scripted"
    live = settings.model_copy(update={"model_override": "openai", "default_model": "my-model"})
    model = resolve_model(hello, "Greeter", live)
    assert (model.provider, model.name) == ("openai", "my-model")


async def test_a_reactivated_session_gives_the_model_the_whole_history(broker_for, workflows_dir, fake_model):
    """The MozaiksAI runtime dropped assistant messages on resume; ours rebuilds them from the log."""
    import os
    import signal

    from actors.handles import DirectoryHandle

    _openai_workflow(workflows_dir, "openai_resume", fake_model.base_url)
    fake_model.enqueue(FakeResponse(text="Hello there, I remember kettles."),
                       FakeResponse(text="Still here."))
    broker = broker_for("resumer")
    session, conn = await start(broker, "openai_resume", "hi")
    await collect_until(conn, "chat.run_complete")
    await conn.close()
    directory = DirectoryHandle.lookup()
    actor = await directory.session("test-app", "resumer", session.chat_id)
    os.kill(await actor.pid(), signal.SIGKILL)
    await asyncio.sleep(0.5)
    conn = await broker.connect(session, last_seq=None)
    await conn.say("are you still there?")
    await collect_until(conn, "chat.run_complete")
    await conn.close()
    messages = fake_model.requests[-1].body["messages"]
    assert [(m["role"], m.get("content")) for m in messages[1:]] == [
        ("user", "hi"), ("assistant", "Hello there, I remember kettles."), ("user", "are you still there?")]
