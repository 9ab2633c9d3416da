"""What the socket does with a client frame is decided by the model it parses into (or the reason
it does not), before anything reaches a session."""

from __future__ import annotations

from typing import Any

import pytest

from mozaiks.errors import InvalidClientMessage
from mozaiks.protocol.client_messages import (
    Auth, ChatCancel, ClientResume, Ping, UiToolResponse, UserInputSubmit, parse_client_message,
)


@pytest.mark.parametrize(("frame", "model"), [
    ({"type": "user.input.submit", "id": "m1", "text": "hi"}, UserInputSubmit),
    ({"type": "ui_tool_response", "id": "m2", "eventId": "c1", "response": {"ok": True}}, UiToolResponse),
    ({"type": "chat.cancel", "id": "m3"}, ChatCancel),
    ({"type": "client.resume", "last_seq": 7}, ClientResume),
    ({"type": "auth", "token": "t"}, Auth),
    ({"type": "ping", "extra": 1}, Ping),
])
def test_each_client_message_parses_into_its_model(frame: dict[str, Any], model: type) -> None:
    assert isinstance(parse_client_message(frame), model)


@pytest.mark.parametrize(("frame", "reason"), [
    ({"type": "chat.explode", "id": "x"}, "unsupported_message_type"),
    ({"type": "user.input.submit", "id": "m1"}, "invalid_message: text: Field required"),
    ({"type": "client.resume", "last_seq": "7"}, "invalid_message: last_seq: Input should be a valid integer"),
    ({"type": "client.resume", "last_seq": True}, "invalid_message: last_seq: Input should be a valid integer"),
    ({"type": "client.resume", "last_seq": -1}, "invalid_message: last_seq: Input should be greater than or equal to 0"),
])
def test_a_frame_that_is_no_message_says_why(frame: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidClientMessage) as invalid:
        parse_client_message(frame)
    assert invalid.value.reason == reason


def test_a_frame_without_a_type_is_invalid_not_unsupported() -> None:
    with pytest.raises(InvalidClientMessage) as invalid:
        parse_client_message({"id": "m1", "text": "hi"})
    assert invalid.value.reason.startswith("invalid_message: ")
