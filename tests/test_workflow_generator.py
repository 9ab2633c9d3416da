"""The workflow_generator example over the real WebSocket: an interview, the draft as an artifact,
then the workflow's agents written in parallel by child chats (one workflow_agent_writer chat per
agent, each its own session actor), assembled and installed by the generator's own tool
(ctx.install_workflow), after which a new chat of it runs. No file is copied anywhere by the test."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from mozaiks.client import BrokerClient, ChatConnection
from mozaiks.settings import Settings
from tests.conftest import APP_ID
from tests.helpers import collect_until, of_type


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


async def written_workflow(conn: ChatConnection, agents: list[str]) -> dict[str, Any]:
    """The write_workflow tool's result, once the chat wrote ``agents`` as child chats and ended."""
    events = await collect_until(conn, "chat.run_complete")
    await conn.close()
    assert events[-1]["data"]["status"] == "completed"
    started = [e["data"] for e in of_type(events, "chat.child_started")]
    assert [s["workflow_name"] for s in started] == ["workflow_agent_writer"] * len(agents)
    assert len({s["child_chat_id"] for s in started}) == len(agents)
    [merged] = [e["data"] for e in of_type(events, "chat.children_merged")]
    assert (merged["merge_mode"], merged["completed"], merged["resume_agent"]) == ("structured", len(agents), "Builder")
    [definitions] = [e["data"]["value"] for e in of_type(events, "context_update")
                     if e["data"]["variable"] == "agent_definitions"]
    assert sorted(definitions) == sorted(agents)
    [written] = [e["data"] for e in of_type(events, "chat.tool_response") if e["data"]["name"] == "write_workflow"]
    assert written["status"] == "ok"
    assert of_type(events, "chat.text")[-1]["data"]["content"] == (
        f"Your workflow {written['result']['workflow_name']} is installed (version {written['result']['version']}): "
        "start a new chat of it.")
    return written["result"]


async def installed(http: httpx.AsyncClient, settings: Settings, name: str) -> dict[str, Any]:
    assert settings.service_credential is not None
    response = await http.get(f"/api/runtime/workflows/{name}", params={"app_id": APP_ID},
                              headers={"Authorization": f"Bearer {settings.service_credential.get_secret_value()}"})
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_generated_workflow_is_installed_and_a_new_chat_of_it_runs(broker_for, http, settings):
    broker = broker_for("generator", plan="pro")  # installs are gated by default: this user has a plan
    tag = uuid.uuid4().hex[:6]
    conn, artifact = await interview(broker, f"Plan the team newsletter {tag}", "researcher, writer and editor")
    name = f"plan_the_team_newsletter_{tag}"
    assert (artifact["name"], artifact["component"], artifact["display"]) == ("review_draft", "WorkflowDraft", "artifact")
    assert artifact["props"]["workflow_name"] == name
    assert [a["name"] for a in artifact["props"]["agents"]] == ["Researcher", "Writer", "Editor"]
    assert (await conn.respond_ui(artifact["call_id"], {"decision": "approve"}))["status"] == "accepted"
    result = await written_workflow(conn, ["Researcher", "Writer", "Editor"])

    assert result["workflow_name"] == name and result["agents"] == ["Researcher", "Writer", "Editor"]
    # Each agent was written by a child chat of this user, which ran once and completed.
    children = [s for s in (await broker.list_sessions(limit=100))["sessions"]
                if s["workflow_name"] == "workflow_agent_writer"]
    assert len(children) == 3 and {c["status"] for c in children} == {"completed"}
    record = await installed(http, settings, name)
    assert (record["version"], record["capability"]) == (result["version"], {"gated": True})
    assert record["installed_by"].startswith("workflow:workflow_generator/")
    assert name in {w["name"] for w in await broker.list_workflows()}

    generated = await broker.create_session(name)
    async with await broker.connect(generated) as run:
        events = await collect_until(run, "chat.run_complete")
    assert events[-1]["data"]["status"] == "completed"
    assert [e["agent"] for e in of_type(events, "chat.text")] == ["Researcher", "Writer", "Editor"]


async def test_an_edited_draft_is_what_gets_installed(broker_for, http, settings):
    conn, artifact = await interview(broker_for("generator-editor"), "Triage support tickets", "sorter")
    edited = {**artifact["props"], "workflow_name": f"ticket_triage_{uuid.uuid4().hex[:6]}",
              "agents": [{"name": "Sorter", "role": "Sorts tickets."}, {"name": "Replier", "role": "Answers them."}]}
    assert (await conn.respond_ui(artifact["call_id"], {"decision": "edit", "draft": edited}))["status"] == "accepted"
    result = await written_workflow(conn, ["Sorter", "Replier"])
    assert (result["workflow_name"], result["agents"]) == (edited["workflow_name"], ["Sorter", "Replier"])
    assert '"name": "Replier"' in (await installed(http, settings, edited["workflow_name"]))["files"]["agents.json"]
