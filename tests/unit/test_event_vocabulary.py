"""The event vocabulary: the documented list, the models, and what the engine really emits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from mozaiks.protocol.events import DURABLE_TYPES, EPHEMERAL_TYPES, EVENT_MODELS, ChatText, parse_data

DOCS = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def documented() -> dict[str, bool]:
    section = DOCS.read_text().split("## Every event", 1)[1].split("\n## ", 1)[0]
    return {m[1]: m[2] == "yes" for m in re.finditer(r"^\| `([\w.]+)` \| (yes|no) \|$", section, re.M)}


def test_the_models_are_exactly_the_documented_events_with_their_durability() -> None:
    assert {t: m.DURABLE for t, m in EVENT_MODELS.items()} == documented()
    assert DURABLE_TYPES | EPHEMERAL_TYPES == set(EVENT_MODELS) and not DURABLE_TYPES & EPHEMERAL_TYPES


def test_a_payload_with_a_misspelt_field_is_refused_and_an_unknown_type_passes() -> None:
    with pytest.raises(ValidationError):
        parse_data("chat.text", {"message_id": "m", "agent": "a", "role": "user", "content": "x",
                                 "visibility": "user", "contnet": "typo"})
    assert parse_data("chat.someday", {"anything": 1}) is None


def test_optional_fields_left_unset_stay_off_the_wire() -> None:
    text = ChatText(message_id="m", agent="a", role="assistant", content="hi", visibility="user")
    assert "partial" not in text.dump() and "structured_output" not in text.dump()
