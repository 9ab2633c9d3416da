"""Property-based tests of the edges (issue 14): whatever arrives, each parser answers with a clean
error of its own kind or a valid value, never another exception."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mozaiks.protocol.broker_api import CreateSessionRequest, RuntimeSessionRequest
from mozaiks.protocol.client_messages import MAX_SEQ, ClientResume, client_message_adapter
from workflows import WorkflowError, load_workflow
from workflows.expressions import ExpressionError, evaluate, parse

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)
TYPES = ["user.input.submit", "ui_tool_response", "client.resume", "chat.cancel", "auth", "ping", "nope"]
KEYS = ["type", "id", "text", "input_request_id", "call_id", "eventId", "response", "last_seq", "mode", "token"]
frames = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6).flatmap(
    lambda d: st.sampled_from(TYPES).map(lambda t: {**d, "type": t}) | st.just(d))


# The machine running the suite is shared: the property matters, not how fast examples are drawn.
edge = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@edge
@given(frames)
def test_any_client_frame_is_a_message_or_a_validation_error(frame: dict[str, Any]) -> None:
    try:
        message = client_message_adapter.validate_python(frame)
    except ValidationError:
        return
    assert message.type == frame["type"]
    if isinstance(message, ClientResume):
        assert 0 <= message.last_seq <= MAX_SEQ


@edge
@given(st.integers())
def test_resume_seqs_are_exactly_the_64_bit_range(seq: int) -> None:
    try:
        client_message_adapter.validate_python({"type": "client.resume", "last_seq": seq})
    except ValidationError:
        assert seq < 0 or seq > MAX_SEQ
    else:
        assert 0 <= seq <= MAX_SEQ


@edge
@given(st.dictionaries(st.sampled_from(["workflow_name", "chat_id", "context", "app_id", "user_id", "x"]),
                       json_values, max_size=5))
def test_any_broker_body_is_a_request_or_a_validation_error(body: dict[str, Any]) -> None:
    for model in (CreateSessionRequest, RuntimeSessionRequest):
        try:
            request = model.model_validate(body)
        except ValidationError:
            continue
        if isinstance(request, RuntimeSessionRequest):
            assert "/" not in request.user_id and "/" not in request.app_id


# Token-shaped pieces reach the parser's deeper paths far more often than random text does.
expression_text = st.lists(st.sampled_from(list("ab_.()[]'\"=!<>,0123456789 ") + [
    " and ", " or ", "not ", " in ", "null", "true", "false", "context.", "==", "!="]), max_size=20).map("".join)


@edge
@given(st.one_of(st.text(max_size=40), expression_text), st.dictionaries(st.text(max_size=5), json_values, max_size=3))
def test_any_expression_parses_or_raises_expression_error(text: str, variables: dict[str, Any]) -> None:
    try:
        node = parse(text)
    except ExpressionError:
        return
    try:
        assert isinstance(evaluate(node, variables), bool)
    except ExpressionError:
        pass


documents = st.dictionaries(st.sampled_from(["name", "agents", "initial_agent", "max_turns", "startup_mode",
                                             "system_message", "tools", "handoffs", "model", "x"]),
                            json_values, max_size=5) | json_values


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents, documents, st.sampled_from(["json", "yaml", "garbage"]))
def test_any_workflow_folder_loads_or_raises_workflow_error(orchestrator: Any, agents: Any, form: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "fuzzed"
        folder.mkdir()
        for stem, doc in (("orchestrator", orchestrator), ("agents", agents)):
            if form == "json":
                (folder / f"{stem}.json").write_text(json.dumps(doc))
            elif form == "yaml":
                (folder / f"{stem}.yaml").write_text(yaml.safe_dump(doc))
            else:
                (folder / f"{stem}.yaml").write_text(str(doc) + ": [")
        try:
            load_workflow(folder)
        except WorkflowError:
            pass
