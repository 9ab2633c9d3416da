"""Client → server messages (PROTOCOL §4.3)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StrictInt, TypeAdapter, ValidationError

from mozaiks.errors import InvalidClientMessage

MessageId = Annotated[str, Field(min_length=1, max_length=128)]
# Seqs are 64-bit signed integers in every store; a larger number is a client error, not a crash.
MAX_SEQ = 2**63 - 1
# Strict: "7" or true is a client bug to report, not a seq to guess.
Seq = Annotated[StrictInt, Field(ge=0, le=MAX_SEQ)]


class _Msg(BaseModel):
    model_config = ConfigDict(extra="ignore")


class UserInputSubmit(_Msg):
    type: Literal["user.input.submit"]
    id: MessageId
    text: str = Field(max_length=32_000)
    input_request_id: str | None = None


class UiToolResponse(_Msg):
    type: Literal["ui_tool_response"]
    id: MessageId
    call_id: str = Field(validation_alias=AliasChoices("call_id", "eventId"))
    response: Any = None


class ClientResume(_Msg):
    type: Literal["client.resume"]
    last_seq: Seq


class ChatCancel(_Msg):
    type: Literal["chat.cancel"]
    id: MessageId
    mode: Literal["immediate", "after_turn"] = "immediate"


class Auth(_Msg):
    type: Literal["auth"]
    token: str
    last_seq: Seq | None = None


class Ping(_Msg):
    type: Literal["ping"]


ClientMessage = Annotated[
    UserInputSubmit | UiToolResponse | ClientResume | ChatCancel | Auth | Ping,
    Field(discriminator="type"),
]
client_message_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)

# The messages a chat's session handles; the socket answers the others itself.
ChatMessage = UserInputSubmit | UiToolResponse | ChatCancel


def parse_client_message(frame: dict[str, Any]) -> ClientMessage:
    """The message a decoded frame is; ``InvalidClientMessage`` carries the ack's reason if none."""
    try:
        return client_message_adapter.validate_python(frame)
    except ValidationError as exc:
        error = exc.errors()[0]
        if error["type"] == "union_tag_invalid":
            raise InvalidClientMessage("unsupported_message_type") from None
        where = ".".join(str(p) for p in error.get("loc", ())[1:])  # [0] is the message type
        detail = f"{where}: {error['msg']}" if where else error["msg"]
        raise InvalidClientMessage(f"invalid_message: {detail}") from None
