"""The workflow_generator example over the real WebSocket: an interview, the draft as an artifact,
then a workflow folder written by one Ray task per agent that loads with our loader and runs."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

from mozaiks.client import BrokerClient, ChatConnection
from tests.helpers import collect_until, of_type
from workflows.loader import load_workflow


async def interview(broker: BrokerClient, purpose: str, agents: str) -> tuple[ChatConnection, dict[str, Any]]:
    """Answer both questions; returns the open connection and the draft artifact's tool call."""
    conn = await broker.connect(await broker.create_session("workflow_generator"))
    for answer in (purpose, agents):
        request = (await collect_until(conn, "chat.input_request"))[-1]
        ack = await conn.say(answer, input_request_id=request["data"]["request_id"])
        assert ack["status"] == "accepted"
    while not (call := await conn.wait_for("chat.tool_call"))["data"]["awaiting_response"]:
        pass
    return conn, call["data"]


async def written_workflow(conn: ChatConnection) -> dict[str, Any]:
    events = await collect_until(conn, "chat.run_complete")
    await conn.close()
    assert events[-1]["data"]["status"] == "completed"
    [written] = [e["data"] for e in of_type(events, "chat.tool_response") if e["data"]["name"] == "write_workflow"]
    assert written["status"] == "ok"
    assert of_type(events, "chat.text")[-1]["data"]["content"].startswith(
        f"Your workflow {written['result']['workflow_name']} is ready in {written['result']['path']}")
    return written["result"]


async def test_generated_workflow_loads_and_runs(broker_for, workflows_dir: Path):
    broker = broker_for("generator")
    tag = uuid.uuid4().hex[:6]
    conn, artifact = await interview(broker, f"Plan the team newsletter {tag}", "researcher, writer and editor")
    name = f"plan_the_team_newsletter_{tag}"
    assert (artifact["name"], artifact["component"], artifact["display"]) == ("review_draft", "WorkflowDraft", "artifact")
    assert artifact["props"]["workflow_name"] == name
    assert [a["name"] for a in artifact["props"]["agents"]] == ["Researcher", "Writer", "Editor"]
    assert (await conn.respond_ui(artifact["call_id"], {"decision": "approve"}))["status"] == "accepted"
    result = await written_workflow(conn)

    folder = Path(result["path"])
    try:
        assert folder.name == name and result["agents"] == ["Researcher", "Writer", "Editor"]
        assert [task["agent"] for task in result["tasks"]] == result["agents"]  # one Ray task per agent
        assert load_workflow(folder).agent_names == result["agents"]

        shutil.copytree(folder, workflows_dir / name)
        generated = await broker.create_session(name)
        async with await broker.connect(generated) as run:
            events = await collect_until(run, "chat.run_complete")
        assert events[-1]["data"]["status"] == "completed"
        assert [e["agent"] for e in of_type(events, "chat.text")] == ["Researcher", "Writer", "Editor"]
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)


async def test_an_edited_draft_is_what_gets_written(broker_for):
    conn, artifact = await interview(broker_for("generator-editor"), "Triage support tickets", "sorter")
    edited = {**artifact["props"], "workflow_name": f"ticket_triage_{uuid.uuid4().hex[:6]}",
              "agents": [{"name": "Sorter", "role": "Sorts tickets."}, {"name": "Replier", "role": "Answers them."}]}
    assert (await conn.respond_ui(artifact["call_id"], {"decision": "edit", "draft": edited}))["status"] == "accepted"
    result = await written_workflow(conn)
    try:
        assert Path(result["path"]).name == edited["workflow_name"]
        assert load_workflow(Path(result["path"])).agent_names == ["Sorter", "Replier"]
    finally:
        shutil.rmtree(Path(result["path"]).parent, ignore_errors=True)
