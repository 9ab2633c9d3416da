"""An `auto_invoke` UI tool, without Ray: the runtime opens it with the agent's structured output,
and once the user answers, the agent's turn ends by its handoffs (the model is not called again)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from mozaiks.settings import Settings
from mozaiks.store.sqlite import SQLiteStore
from tests.unit.test_engine_parts import open_engine, wait_for_step
from workflows.loader import load_workflow


def _planner(root: Path) -> Path:
    folder = root / "planner"
    (folder / "tools").mkdir(parents=True)
    files = {
        "orchestrator": {"name": "planner", "startup_mode": "UserDriven", "human_in_the_loop": False},
        "agents": {"agents": [{"name": "Planner", "structured_output": "Plan", "tools": ["show_plan"],
                               "model": {"provider": "scripted", "script": [
                                   {"structured": {"Title": "Lisbon", "days": 4}},
                                   {"text": "never: the turn ends after the answer"}]}}]},
        "structured_outputs": {"models": {"Plan": {"type": "model", "fields": {
            "Title": {"type": "str"}, "days": {"type": "int"}}}}},
        "tools": {"tools": [{"name": "show_plan", "kind": "ui_tool", "auto_invoke": True,
                             "ui": {"component": "PlanCard", "display": "artifact"},
                             "parameters": {"type": "object", "properties": {"title": {"type": "string"}}}}]},
    }
    for stem, data in files.items():
        (folder / f"{stem}.json").write_text(json.dumps(data))
    return folder


async def test_an_auto_invoked_ui_tool_opens_with_the_output_and_ends_the_turn_when_answered(
        sqlite_store: SQLiteStore, tmp_path: Path) -> None:
    settings = Settings(mode="local", data_dir=tmp_path, workflows_dir=tmp_path)
    engine, _ = await open_engine(sqlite_store, settings, load_workflow(_planner(tmp_path)))
    await engine.submit_text("m1", "Plan my trip", None)
    await asyncio.wait_for(wait_for_step(engine, "ui"), 5)
    pending = engine.state.pending_ui
    assert pending is not None and pending.props == {"title": "Lisbon"} and pending.then_route
    await engine.submit_ui_response("m2", pending.call_id, {"ok": True})
    await asyncio.wait_for(wait_for_step(engine, "idle"), 5)
    stored = await sqlite_store.read_events("app", "u", "c1")
    call = next(e.data for e in stored if e.type == "chat.tool_call")
    assert call["awaiting_response"] is True and call["component"] == "PlanCard"
    answer = next(e.data for e in stored if e.type == "chat.tool_response")
    assert answer["status"] == "ok" and answer["result"] == {"ok": True}
    assert [e.data["content"] for e in stored if e.type == "chat.text" and e.data["role"] == "assistant"] == [
        json.dumps({"Title": "Lisbon", "days": 4})]
    assert stored[-1].type == "chat.run_complete" and stored[-1].data["status"] == "completed"
    assert engine.state.call_index == {"Planner": 1}
    await engine.stop()
