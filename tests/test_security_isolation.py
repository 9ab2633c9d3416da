"""Tenant isolation: another user's (or app's) chat id behaves exactly like a missing one, and no
socket can answer another chat's input request or UI tool."""

from __future__ import annotations

from typing import Any

import pytest

from broker.runtime_token import RuntimeTokenMinter
from mozaiks.client import BrokerClient, BrokerError
from tests.conftest import APP_ID
from tests.helpers import refused_socket


async def broker_errors(broker: BrokerClient, chat_id: str) -> list[tuple[int, str]]:
    calls = [broker.create_session("hello", chat_id=chat_id), broker.events(chat_id),
             broker.cancel(chat_id), broker.refresh_token(chat_id)]
    errors = []
    for call in calls:
        with pytest.raises(BrokerError) as caught:
            await call
        errors.append((caught.value.status, caught.value.code))
    return errors


async def test_someone_elses_chat_is_not_found_anywhere(broker_for: Any, settings: Any) -> None:
    alice = broker_for("iso-alice")
    chat = await alice.create_session("hello")
    missing = await broker_errors(alice, "no-such-chat")
    assert missing == [(404, "chat_not_found")] * 4
    for intruder in (broker_for("iso-mallory"), broker_for("iso-alice", app_id="other-app")):
        assert await broker_errors(intruder, chat.chat_id) == missing  # never reveal that it exists

    # Even with a runtime token in its name (say a leaked signing key), the store's scoping holds.
    token, _ = RuntimeTokenMinter(settings).mint("iso-mallory", APP_ID, chat.chat_id, "hello")
    url = chat.ws_url.rsplit("/", 1)[0] + "/iso-mallory"
    assert await refused_socket(url, ["mozaiks.v1", f"bearer.{token}"]) == (4404, [])


async def test_a_socket_cannot_answer_another_chats_input_request_or_ui_tool(broker_for: Any) -> None:
    alice, mallory = broker_for("iso-alice2"), broker_for("iso-mallory2")
    async with await alice.connect(await alice.create_session("waits")) as alice_chat, \
            await mallory.connect(await mallory.create_session("waits")) as mallory_chat:
        alice_request = (await alice_chat.wait_for("chat.input_request"))["data"]["request_id"]
        await mallory_chat.wait_for("chat.input_request")
        stolen = await mallory_chat.say("hijacked", input_request_id=alice_request)
        assert (stolen["status"], stolen["reason"]) == ("rejected", "unknown_input_request")

        assert (await alice_chat.say("Plan A", input_request_id=alice_request))["status"] == "accepted"
        call_id = (await alice_chat.wait_for("chat.tool_call"))["data"]["call_id"]
        stolen = await mallory_chat.respond_ui(call_id, {"decision": "approved by mallory"})
        assert (stolen["status"], stolen["reason"]) == ("rejected", "no_such_ui_tool")

        assert (await alice_chat.respond_ui(call_id, {"decision": "mine"}))["status"] == "accepted"
        response = await alice_chat.wait_for("chat.tool_response")
        assert response["data"]["result"] == {"decision": "mine"}
