"""A MozaiksAI workflow folder, unchanged, run end to end on real Ray against the fake OpenAI server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest


from tests.fake_openai import FakeOpenAI, FakeResponse, FakeToolCall
from tests.helpers import collect_until, of_type

FIXTURES = Path(__file__).parent / "mozaiksai"


def _deploy(workflows_dir: Path, name: str, base_url: str) -> None:
    """Copy a fixture and point its agents at the fake server: the deployment's one addition."""
    folder = workflows_dir / name
    shutil.copytree(FIXTURES / name, folder, dirs_exist_ok=True)
    model = {"provider": "openai", "name": "fake-model", "base_url": base_url}
    orchestrator = folder / "orchestrator.yaml"
    if orchestrator.is_file():
        orchestrator.write_text(orchestrator.read_text() + "model:\n" + "".join(f"  {k}: {v}\n" for k, v in model.items()))
        return
    orchestrator = folder / "orchestrator.json"
    data = json.loads(orchestrator.read_text())
    data["orchestrator"]["model"] = model
    orchestrator.write_text(json.dumps(data))


async def test_trip_planner_runs_as_written(broker_for, workflows_dir: Path, fake_model: FakeOpenAI) -> None:
    _deploy(workflows_dir, "TripPlanner", fake_model.base_url)
    itinerary = {"title": "Lisbon", "stops": [{"city": "Lisbon", "nights": 4, "kind": "city"}],
                 "budget": "flexible", "notes": None}
    with_porto = {**itinerary, "stops": [*itinerary["stops"], {"city": "Porto", "nights": 2, "kind": "city"}]}
    fake_model.enqueue(
        FakeResponse(tool_calls=[FakeToolCall(name="note_destination", arguments={"city": "Lisbon", "nights": 4})]),
        FakeResponse(text="Lisbon for four nights, noted.", chunks=4),
        FakeResponse.json_text(itinerary),
        FakeResponse(tool_calls=[FakeToolCall(name="transfer_to_ItineraryAgent", arguments={})]),
        FakeResponse.json_text(with_porto),
        FakeResponse(tool_calls=[FakeToolCall(name="confirm_booking", arguments={"summary": "4 nights in Lisbon"})]),
        FakeResponse(text="Booked. Enjoy Lisbon!", chunks=3),
    )
    broker = broker_for("traveller")
    session = await broker.create_session("TripPlanner")
    conn = await broker.connect(session, last_seq=0)

    # IntakeAgent's tool takes context_variables: it reads the config default and sets runtime variables.
    events = await collect_until(conn, "chat.input_request", timeout=60)
    noted = of_type(events, "chat.tool_response")[0]["data"]
    assert noted["status"] == "ok", noted
    assert noted["result"] == {"status": "noted", "city": "Lisbon", "currency": "EUR"}
    first_tools = fake_model.requests[0].body["tools"]
    assert [t["function"]["name"] for t in first_tools] == ["note_destination"]
    assert "context_variables" not in first_tools[0]["function"]["parameters"]["properties"]
    # the expression handoff read the values the tool set (nights 4 > 0) and chose ItineraryAgent
    handoff = of_type(events, "chat.handoff")[0]["data"]
    assert (handoff["from_agent"], handoff["to_agent"], handoff["reason"]) == ("IntakeAgent", "ItineraryAgent",
                                                                               "condition")
    structured_request = fake_model.requests[2].body
    schema = structured_request["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["stops"]["items"]["properties"]["kind"] == {"enum": ["city", "beach", "mountains"]}
    offered = {t["function"]["name"]: t["function"]["description"] for t in structured_request.get("tools", [])}
    assert offered == {"save_itinerary": "Keeps the itinerary the planner settled on.",
                       "transfer_to_ConciergeAgent": "The itinerary is ready to be booked",
                       "transfer_to_user": "The traveller must choose between options"}
    planned = next(e["data"] for e in of_type(events, "chat.text") if "structured_output" in e["data"])
    assert planned["structured_output"] == itinerary
    assert planned["visibility"] == "trace"  # ui_config.yaml's visual_agents leaves ItineraryAgent out
    # auto_invoke: the runtime called save_itinerary with the output's fields the tool takes (`Stops`
    # matched to `stops`), then the turn went on to its handoff without another model call
    saved = next(e["data"] for e in of_type(events, "chat.tool_call") if e["data"]["name"] == "save_itinerary")
    assert saved["agent"] == "ItineraryAgent" and saved["message_id"] == planned["message_id"]
    assert saved["arguments"] == {"title": "Lisbon", "Stops": itinerary["stops"]}
    saved_answer = next(e["data"] for e in of_type(events, "chat.tool_response") if e["data"]["call_id"] == saved["call_id"])
    assert saved_answer["status"] == "ok" and saved_answer["result"] == {"saved": "Lisbon", "stops": ["Lisbon"]}
    assert len(fake_model.requests) == 3

    # the user's answer goes where the user-sourced expression says (destination known →
    # ConciergeAgent), not back to ItineraryAgent, which asked; the user-sourced llm rule is offered
    # to ConciergeAgent's model, which takes it: the change of plan goes back to ItineraryAgent
    request = of_type(events, "chat.input_request")[0]["data"]
    assert (await conn.say("Can we add Porto?", input_request_id=request["request_id"]))["status"] == "accepted"
    events = await collect_until(conn, "chat.input_request", timeout=60)
    handoffs = [(h["data"]["from_agent"], h["data"]["to_agent"], h["data"]["reason"]) for h in of_type(events, "chat.handoff")]
    assert handoffs == [("ConciergeAgent", "ItineraryAgent", "llm")]
    offered = {t["function"]["name"]: t["function"]["description"] for t in fake_model.requests[3].body["tools"]}
    assert offered["transfer_to_ItineraryAgent"] == "The traveller wants to change the itinerary"
    assert next(e["data"] for e in of_type(events, "chat.text") if "structured_output" in e["data"])[
        "structured_output"] == with_porto
    assert [e["data"]["result"] for e in of_type(events, "chat.tool_response")] == [
        {"saved": "Lisbon", "stops": ["Lisbon", "Porto"]}]

    request = of_type(events, "chat.input_request")[-1]["data"]
    assert (await conn.say("Book it", input_request_id=request["request_id"]))["status"] == "accepted"
    events = await collect_until(conn, "chat.tool_call", timeout=60)
    card = of_type(events, "chat.tool_call")[-1]["data"]
    assert card["awaiting_response"] is True and card["component"] == "BookingCard"
    assert card["props"] == {"summary": "4 nights in Lisbon", "city": "Lisbon"}  # use_ui_tool's payload

    assert (await conn.respond_ui(card["call_id"], {"confirmed": True}))["status"] == "accepted"
    events = await collect_until(conn, "chat.run_complete", timeout=60)
    await conn.close()
    answered = of_type(events, "chat.tool_response")[0]["data"]
    assert answered["status"] == "ok" and answered["result"] == {"status": "answered", "confirmed": True}
    updates = {e["data"]["variable"]: e["data"]["value"] for e in of_type(events, "context_update")}
    assert updates.get("booking_confirmed") is True
    assert of_type(events, "chat.text")[-1]["data"]["content"] == "Booked. Enjoy Lisbon!"
    assert events[-1]["data"]["status"] == "completed"  # ${booking_confirmed} → TERMINATE
    assert len(fake_model.requests) == 7
    # an agent whose turn does not follow the user's message is not offered the user's rules
    assert "transfer_to_ItineraryAgent" not in {t["function"]["name"] for t in fake_model.requests[6].body["tools"]}


# How a UI tool's props function fails: its file cannot be imported, or the function raises.
BROKEN = {
    "import": ("from mozaiksai.engine", "import mozaiks_no_such_module\nfrom mozaiksai.engine",
               "No module named 'mozaiks_no_such_module'"),
    "raises": ("    try:\n        answer = await use_ui_tool(",
               "    raise LookupError(\"no fares for \" + summary)\n    try:\n        answer = await use_ui_tool(",
               "LookupError: no fares for 2 nights in Oslo"),
}


@pytest.mark.parametrize("how", sorted(BROKEN))
async def test_a_ui_tool_whose_function_fails_reports_an_error_and_the_run_goes_on(
        broker_for, workflows_dir: Path, fake_model: FakeOpenAI, how: str) -> None:
    name = f"TripPlannerBroken{how.title()}"
    folder = workflows_dir / name
    _deploy(workflows_dir, "TripPlanner", fake_model.base_url)
    shutil.copytree(workflows_dir / "TripPlanner", folder)
    orchestrator = folder / "orchestrator.yaml"
    orchestrator.write_text(orchestrator.read_text().replace("workflow_name: TripPlanner", f"workflow_name: {name}"))
    tool = folder / "tools" / "concierge.py"
    old, new, error = BROKEN[how]
    assert old in tool.read_text()
    tool.write_text(tool.read_text().replace(old, new))
    fake_model.enqueue(
        FakeResponse(tool_calls=[FakeToolCall(name="note_destination", arguments={"city": "Oslo", "nights": 2})]),
        FakeResponse(text="Oslo, two nights."),
        FakeResponse.json_text({"title": "Oslo", "stops": [], "budget": 900, "notes": "winter"}),
        FakeResponse(tool_calls=[FakeToolCall(name="confirm_booking", arguments={"summary": "2 nights in Oslo"})]),
        FakeResponse(text="The booking card is unavailable; shall I book by message instead?"),
    )
    broker = broker_for("traveller")
    session = await broker.create_session(name)
    conn = await broker.connect(session, last_seq=0)
    request = (await collect_until(conn, "chat.input_request", timeout=60))[-1]["data"]
    await conn.say("Book it", input_request_id=request["request_id"])
    events = await collect_until(conn, "chat.input_request", timeout=60)
    await conn.close()
    failed = [e["data"] for e in of_type(events, "chat.tool_response") if e["data"]["name"] == "confirm_booking"]
    assert len(failed) == 1 and failed[0]["status"] == "error"
    assert error in failed[0]["error"]
    assert not [e for e in of_type(events, "chat.tool_call") if e["data"].get("awaiting_response")]
    # the error went back to the model, which answered; then the after_work rule handed to the user
    tool_message = fake_model.requests[4].body["messages"][-1]
    assert tool_message["role"] == "tool" and error in tool_message["content"]
    assert of_type(events, "chat.text")[-1]["data"]["content"].startswith("The booking card is unavailable")


def _trace(events: list[dict[str, Any]]) -> list[str]:
    """What the user would see happen, in order: hooks by trigger, speakers, model tools, handoffs."""
    names = {e["data"]["call_id"]: e["data"]["name"] for e in of_type(events, "chat.tool_call")}
    out = []
    for e in events:
        data = e["data"]
        if e["type"] == "chat.tool_call":
            out.append(f"{data.get('trigger') or 'tool'}:{data['agent']}:{data['name']}")
        elif e["type"] == "chat.tool_response":
            out.append(f"  {names[data['call_id']]} {data['status']}")
        elif e["type"] == "chat.select_speaker":
            out.append(f"speaks:{data['agent']}")
        elif e["type"] == "chat.handoff":
            out.append(f"handoff:{data['from_agent']}->{data['to_agent']}:{data['reason']}")
        elif e["type"] == "chat.run_complete":
            out.append(f"end:{data['status']}")
    return out


async def test_lifecycle_tools_run_at_their_points(broker_for, workflows_dir: Path, fake_model: FakeOpenAI) -> None:
    """NewsDesk (JSON files): a greeting, the four lifecycle points, a `pre` handoff, a hidden NEXT."""
    _deploy(workflows_dir, "NewsDesk", fake_model.base_url)
    fake_model.enqueue(
        FakeResponse(text="NEXT", chunks=2),
        FakeResponse(tool_calls=[FakeToolCall(name="publish_story", arguments={"headline": "Tram line opens"})]),
        FakeResponse(text="Published.", chunks=2),
        FakeResponse(text="Published, shorter.", chunks=2),
    )
    broker = broker_for("editor-in-chief")
    session = await broker.create_session("NewsDesk")
    conn = await broker.connect(session, last_seq=0)
    greeting = (await collect_until(conn, "chat.text", timeout=30))[-1]["data"]
    assert greeting["content"] == "Welcome to the news desk. What should we write about?"
    assert greeting["visibility"] == "user" and greeting["agent"] == "Editor"

    await conn.say("Write about the new tram line")
    events = await collect_until(conn, "chat.run_complete", timeout=90)
    assert _trace(events) == [
        "before_chat:runtime:open_desk", "  open_desk ok",
        "before_agent:Editor:check_wire", "  check_wire error",  # logged, and the run goes on
        "speaks:Editor",
        "after_agent:Editor:count_turn", "  count_turn ok",
        "handoff:Editor->Writer:condition",  # the post rule: NEXT set angle_ready
        "before_agent:Writer:brief_writer", "  brief_writer ok",
        "speaks:Writer", "tool:Writer:publish_story", "  publish_story ok", "speaks:Writer",
        "after_agent:Writer:count_turn", "  count_turn ok",
        "after_chat:runtime:archive", "  archive ok",
        "end:completed",
    ]
    responses = {e["data"]["name"]: e["data"] for e in of_type(events, "chat.tool_response")}
    assert "ConnectionError: the news wire is down" in responses["check_wire"]["error"]
    # what before_agent set is what the Writer's own tool read in the same turn
    assert responses["publish_story"]["result"] == {"published": "Tram line opens",
                                                    "brief": "Write for commuters, in 120 words."}
    assert responses["archive"]["result"] == {"archived": 2}
    next_word = next(e["data"] for e in of_type(events, "chat.text") if e["data"]["content"] == "NEXT")
    assert next_word["visibility"] == "trace"  # ui_hidden: the control word is not shown to the user
    # hooks are the runtime's calls, not a model's: no model is shown them as its own tool calls
    for request in fake_model.requests:
        called = [c["function"]["name"] for m in request.body["messages"] for c in m.get("tool_calls") or []]
        assert set(called) <= {"publish_story"}, called
    # the greeting is part of the conversation: the Editor's model sees it as what it said first
    editor_saw = [(m["role"], m.get("content")) for m in fake_model.requests[0].body["messages"]]
    assert editor_saw[-2:] == [("assistant", greeting["content"]), ("user", "Write about the new tram line")]

    # a second run: before_chat runs again; the `pre` rule hands the Editor's turn on before it speaks
    await conn.say("Make it shorter")
    events = await collect_until(conn, "chat.run_complete", timeout=90)
    await conn.close()
    assert _trace(events) == [
        "before_chat:runtime:open_desk", "  open_desk ok",
        "handoff:Editor->Writer:condition",
        "before_agent:Writer:brief_writer", "  brief_writer ok",
        "speaks:Writer",
        "after_agent:Writer:count_turn", "  count_turn ok",
        "after_chat:runtime:archive", "  archive ok",
        "end:completed",
    ]
    updates = [(e["data"]["variable"], e["data"]["value"]) for e in of_type(events, "context_update")]
    assert ("turns_logged", 3) in updates and ("archived", True) in updates
    assert len(fake_model.requests) == 4  # the Editor made no model call in the second run
