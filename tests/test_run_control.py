"""Durable waits, cancel, double-texting and truthful statuses (issue 4)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from actors.handles import DirectoryHandle
from mozaiks.client import ChatConnection
from tests.helpers import collect_until, durable, of_type


async def session_pid(app_id: str, user_id: str, chat_id: str) -> int:
    directory = DirectoryHandle.lookup()
    actor = await directory.session(app_id, user_id, chat_id)
    return await actor.pid()


async def kill_session(user: str, chat_id: str) -> None:
    pid = await session_pid("test-app", user, chat_id)
    os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(0.5)


async def open_waiting_chat(broker) -> tuple[Any, dict[str, Any]]:
    """A new `waits` chat, left with its first input request open and no socket attached."""
    session = await broker.create_session("waits")
    conn = await broker.connect(session, last_seq=0)
    request = (await collect_until(conn, "chat.input_request"))[-1]
    await conn.close()
    return session, request


async def test_input_request_and_ui_tool_survive_a_killed_session(broker_for):
    broker = broker_for("survivor")
    session, request = await open_waiting_chat(broker)
    await kill_session("survivor", session.chat_id)

    conn = await broker.connect(session, last_seq=request["seq"])
    pending = conn.meta["pending"]
    assert pending["kind"] == "input_request" and pending["request_id"] == request["data"]["request_id"]
    assert conn.meta["phase"] == "waiting_input"
    await conn.say("launch", input_request_id=pending["request_id"])
    ui_call = (await collect_until(conn, "chat.tool_call"))[-1]
    assert ui_call["data"]["kind"] == "ui_tool" and ui_call["data"]["awaiting_response"] is True
    assert ui_call["data"]["display"] == "artifact" and ui_call["data"]["component"] == "PlanBoard"
    assert ui_call["data"]["props"]["title"] == "LAUNCH"  # prepared by the UI tool's own function
    await conn.close()
    await kill_session("survivor", session.chat_id)

    conn = await broker.connect(session, last_seq=ui_call["seq"])
    pending = conn.meta["pending"]
    assert pending["kind"] == "ui_tool" and pending["call_id"] == ui_call["data"]["call_id"]
    assert pending["props"]["title"] == "LAUNCH"
    ack = await conn.respond_ui(pending["call_id"], {"decision": "approved"})
    assert ack["status"] == "accepted"
    events = await collect_until(conn, "chat.run_complete")
    await conn.close()
    assert of_type(events, "chat.ui_tool_dismiss")[0]["data"]["call_id"] == pending["call_id"]
    assert of_type(events, "chat.text")[-1]["data"]["content"] == "Thanks, the decision was approved."
    assert events[-1]["data"]["status"] == "completed"
    history = (await broker.events(session.chat_id, limit=1000))["events"]
    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))
    assert len(of_type(history, "chat.input_request")) == 1  # nothing was asked twice


async def test_reconnecting_never_answers_a_pending_request(broker_for):
    broker = broker_for("reconnector")
    session, request = await open_waiting_chat(broker)
    for _ in range(3):
        conn = await broker.connect(session, last_seq=None)
        assert conn.meta["pending"]["request_id"] == request["data"]["request_id"]
        await conn.close()
    history = (await broker.events(session.chat_id))["events"]
    assert history[-1]["type"] == "chat.input_request"
    assert not of_type(history, "chat.input_ack")


async def test_only_the_chat_itself_can_answer_its_waits(broker_for):
    owner = broker_for("owner")
    target, request = await open_waiting_chat(owner)
    # The same user's other chat: the request id of the first chat is unknown there.
    other = await owner.create_session("waits")
    other_conn = await owner.connect(other, last_seq=0)
    await collect_until(other_conn, "chat.input_request")
    ack = await other_conn.say("hijack", input_request_id=request["data"]["request_id"])
    assert ack["status"] == "rejected"
    ui_ack = await other_conn.respond_ui("call_Asker_1_0", {"decision": "stolen"})
    assert ui_ack["status"] == "rejected"
    await other_conn.close()
    # Another user cannot even open the socket with the owner's path and their own token.
    intruder = await broker_for("intruder").create_session("waits")
    forged_url = target.ws_url
    try:
        await ChatConnection.open(forged_url, intruder.runtime_token, last_seq=None, open_timeout_s=5)
        raise AssertionError("the intruder's token opened another user's chat")
    except Exception as exc:  # closed 4403 before any event
        assert "4403" in str(exc) or getattr(exc, "code", None) == 4403
    history = (await owner.events(target.chat_id))["events"]
    assert history[-1]["type"] == "chat.input_request" and not of_type(history, "chat.input_ack")


async def test_input_timeout_takes_the_workflow_path(broker_for):
    broker = broker_for("sleeper")
    session = await broker.create_session("waits_timeout")
    conn = await broker.connect(session, last_seq=0)
    events = await collect_until(conn, "chat.run_complete", timeout=20)
    await conn.close()
    timeout = of_type(events, "chat.input_timeout")[0]["data"]
    assert timeout["outcome"] == "continue"
    assert timeout["request_id"] == of_type(events, "chat.input_request")[0]["data"]["request_id"]
    assert of_type(events, "chat.text")[-1]["data"]["content"] == "No answer, moving on."
    assert events[-1]["data"]["status"] == "completed"


async def _streaming_chat(broker, workflow: str) -> tuple[Any, ChatConnection]:
    session = await broker.create_session(workflow)
    conn = await broker.connect(session, last_seq=0)
    return session, conn


async def test_cancel_immediate_keeps_the_partial_reply_and_its_usage(broker_for):
    broker = broker_for("canceller")
    session, conn = await _streaming_chat(broker, "dt_enqueue")
    await conn.say("tell me everything")
    await collect_until(conn, "chat.text_delta")
    ack = await conn.cancel("immediate")
    assert ack["status"] == "accepted"
    events = await collect_until(conn, "chat.run_complete")
    assert events[-1]["data"]["status"] == "cancelled"
    partial = of_type(events, "chat.text")[-1]["data"]
    assert partial["partial"] is True and 0 < len(partial["content"]) < 200
    assert "First reply to tell me everything: Lorem ipsum".startswith(partial["content"][:45])
    usage = of_type(events, "chat.usage_delta")[-1]["data"]
    assert usage["completion_tokens"] > 0
    assert events[-1]["data"]["usage"]["completion_tokens"] == usage["completion_tokens"]
    sessions = (await broker.list_sessions())["sessions"]
    assert next(s for s in sessions if s["chat_id"] == session.chat_id)["status"] == "cancelled"
    await conn.say("and now?")
    events = await collect_until(conn, "chat.run_complete")
    await conn.close()
    assert of_type(events, "chat.run_start")  # a new run
    assert events[-1]["data"]["status"] == "completed"
    assert of_type(events, "chat.text")[-1]["data"]["content"].startswith("Second reply to and now?")


async def test_cancel_after_turn_lets_the_reply_finish(broker_for):
    broker = broker_for("patient")
    session, conn = await _streaming_chat(broker, "dt_enqueue")
    await conn.say("go")
    await collect_until(conn, "chat.text_delta")
    assert (await broker.cancel(session.chat_id, "after_turn"))["cancelled"] is True
    events = await collect_until(conn, "chat.run_complete")
    await conn.close()
    reply = of_type(events, "chat.text")[-1]["data"]
    assert "partial" not in reply and reply["content"].endswith("laboris.")
    assert events[-1]["data"]["status"] == "cancelled"


async def test_double_text_enqueue(broker_for):
    session, conn = await _streaming_chat(broker_for("dt-e"), "dt_enqueue")
    assert (await conn.say("one"))["status"] == "accepted"
    await collect_until(conn, "chat.text_delta")
    assert (await conn.say("two"))["status"] == "accepted"
    events = await collect_until(conn, "chat.run_complete")
    events += await collect_until(conn, "chat.run_complete")
    await conn.close()
    replies = [e["data"]["content"] for e in of_type(events, "chat.text") if e["agent"] == "Talker"]
    assert replies[0].startswith("First reply to one") and replies[1] == "Second reply to two: short."
    assert [e["data"]["status"] for e in of_type(events, "chat.run_complete")] == ["completed", "completed"]


async def test_double_text_reject(broker_for):
    session, conn = await _streaming_chat(broker_for("dt-r"), "dt_reject")
    await conn.say("one")
    await collect_until(conn, "chat.text_delta")
    ack = await conn.say("two")
    assert ack["status"] == "rejected" and ack["reason"] == "run_in_progress"
    events = await collect_until(conn, "chat.run_complete")
    await conn.close()
    assert "two" not in [e["data"]["content"] for e in of_type(events, "chat.text")]
    assert events[-1]["data"]["status"] == "completed"


async def test_double_text_interrupt(broker_for):
    session, conn = await _streaming_chat(broker_for("dt-i"), "dt_interrupt")
    await conn.say("one")
    await collect_until(conn, "chat.text_delta")
    assert (await conn.say("two"))["status"] == "accepted"
    events = await collect_until(conn, "chat.run_complete")
    assert events[-1]["data"]["status"] == "cancelled"
    events += await collect_until(conn, "chat.run_complete")
    await conn.close()
    assert events[-1]["data"]["status"] == "completed"
    assert of_type(events, "chat.text")[-1]["data"]["content"] == "Second reply to two: short."


async def test_duplicate_message_ids_are_processed_once(broker_for):
    session, conn = await _streaming_chat(broker_for("dupe"), "dt_reject")
    first = await conn.say("once", message_id="fixed-id")
    again = await conn.say("once", message_id="fixed-id")
    assert first["status"] == "accepted" and again["status"] == "duplicate"
    events = await collect_until(conn, "chat.run_complete")
    await conn.close()
    assert [e["data"]["content"] for e in durable(events) if e["type"] == "chat.text"].count("once") == 1


async def test_cancel_immediate_stops_running_tool_tasks(broker_for, tmp_path):
    broker = broker_for("tool-canceller")
    session = await broker.create_session("cancel_tools")
    conn = await broker.connect(session, last_seq=0)
    marker = tmp_path / "written-by-tool"
    await conn.say(str(marker))
    await collect_until(conn, "tool_progress")  # the Ray task is running
    running_since = time.monotonic()
    assert (await conn.cancel("immediate"))["status"] == "accepted"
    events = await collect_until(conn, "chat.run_complete")
    await conn.close()
    assert events[-1]["data"]["status"] == "cancelled"
    await asyncio.sleep(max(0.0, running_since + 7 - time.monotonic()))  # past the tool's 6 s
    assert not marker.exists()  # the task was cancelled, not left running


async def test_session_killed_mid_tools_reruns_only_idempotent_tools(broker_for):
    broker = broker_for("mid-tools")
    session = await broker.create_session("restart_tools")
    conn = await broker.connect(session, last_seq=0)
    await conn.say("go")
    await collect_until(conn, "tool_progress")
    await kill_session("mid-tools", session.chat_id)
    events = await collect_until(conn, "chat.run_complete", timeout=60)  # same socket: it follows the new actor
    await conn.close()
    results = {e["data"]["name"]: e["data"] for e in of_type(events, "chat.tool_response")}
    assert results["safe_step"]["status"] == "ok" and results["safe_step"]["result"] == "safe done"
    assert results["unsafe_step"]["status"] == "error" and "not idempotent" in results["unsafe_step"]["error"]
    assert events[-1]["data"]["status"] == "completed"
    history = (await broker.events(session.chat_id, limit=1000))["events"]
    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))
    assert len(of_type(history, "chat.tool_response")) == 2
