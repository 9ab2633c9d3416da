import ast
import pickle
import textwrap
from pathlib import Path
from typing import Any

import pytest

from workflows import ToolContext, call_tool, import_tool, validate_arguments
from workflows.tool_ast import UnsupportedAnnotation, find_function, infer_parameters


def schema_of(source: str, name: str = "tool") -> dict[str, Any]:
    function = find_function(ast.parse(textwrap.dedent(source)), name)
    assert function is not None
    return infer_parameters(function)


def test_schema_inference_from_hints() -> None:
    schema = schema_of('''
        from __future__ import annotations
        from typing import Annotated, Any, Literal, Optional

        async def tool(
            q: str, n: int, ratio: float, flag: bool, tags: list[str], meta: dict[str, int],
            maybe: Optional[int], either: str | None, color: Literal["red", "blue"], anything: Any,
            untyped, quoted: "list[int]", described: Annotated[str, "what to find"],
            ctx: ToolContext, *, limit: int = 10, mode: str | int = "a",
        ) -> dict:
            ...
    ''')
    assert schema["properties"] == {
        "q": {"type": "string"}, "n": {"type": "integer"}, "ratio": {"type": "number"},
        "flag": {"type": "boolean"}, "tags": {"type": "array", "items": {"type": "string"}},
        "meta": {"type": "object", "additionalProperties": {"type": "integer"}},
        "maybe": {"type": ["integer", "null"]}, "either": {"type": ["string", "null"]},
        "color": {"type": "string", "enum": ["red", "blue"]}, "anything": {}, "untyped": {},
        "quoted": {"type": "array", "items": {"type": "integer"}},
        "described": {"type": "string", "description": "what to find"},
        "limit": {"type": "integer"}, "mode": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
    }
    assert schema["required"] == [
        "q", "n", "ratio", "flag", "tags", "meta", "maybe", "either", "color", "anything", "untyped",
        "quoted", "described",
    ]
    assert schema["additionalProperties"] is False


def test_context_parameter_by_type_and_kwargs() -> None:
    schema = schema_of("def tool(q: str, context: 'ToolContext', **extra): ...")
    assert schema == {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}


def test_unsupported_hint() -> None:
    with pytest.raises(UnsupportedAnnotation, match="parameter 'point'"):
        schema_of("def tool(point: tuple[int, int]): ...")


def test_argument_validation_messages() -> None:
    schema = {
        "type": "object",
        "properties": {
            "q": {"type": "string", "minLength": 2, "maxLength": 5},
            "limit": {"type": "integer", "minimum": 1, "maximum": 50},
            "color": {"type": "string", "enum": ["red", "blue"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "when": {"type": ["string", "null"]},
            "filter": {"type": "object", "properties": {"field": {"type": "string"}}, "required": ["field"]},
        },
        "required": ["q", "limit"],
        "additionalProperties": False,
    }
    assert validate_arguments(schema, {"q": "abc", "limit": 3, "when": None}) == []
    assert validate_arguments(schema, {"q": 3, "limit": True}) == ["q: expected string", "limit: expected integer"]
    assert validate_arguments(schema, {"q": "a", "limit": 99, "color": "green", "extra": 1}) == [
        "q: must be at least 2 characters",
        "limit: must be <= 50",
        'color: must be one of "red", "blue"',
        "extra: is not allowed",
    ]
    assert validate_arguments(schema, {"tags": ["a", 2], "filter": {}}) == [
        "q: is required", "limit: is required", "tags[1]: expected string", "filter.field: is required",
    ]
    assert validate_arguments(schema, [1]) == ["arguments: expected object"]
    assert validate_arguments({"anyOf": [{"type": "string"}, {"type": "integer"}]}, 1.5) == [
        "arguments: does not match any of the allowed types"
    ]


def test_tool_context_records_changes_and_pickles() -> None:
    ctx = ToolContext(chat_id="c1", app_id="app", user_id="u1", workflow_name="Greeter", variables={"score": 1})
    ctx.set_context("score", 2)
    assert ctx.context["score"] == 2 and ctx.context_changes == {"score": 2}
    with pytest.raises(TypeError):
        ctx.context["score"] = 3  # type: ignore[index]

    clone = pickle.loads(pickle.dumps(ctx))
    assert (clone.chat_id, clone.workflow_name, dict(clone.context), clone.context_changes) == (
        "c1", "Greeter", {"score": 2}, {"score": 2}
    )

    seen: list[tuple[float, str]] = []
    ctx.progress(0.5)  # no sink: nothing happens
    ctx.progress_sink = lambda fraction, message: seen.append((fraction, message))
    ctx.progress(1.5, "almost")
    assert seen == [(1.0, "almost")]


def test_import_and_call_sync_and_async_tools(tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "lookup.py").write_text(textwrap.dedent('''
        import asyncio
        from dataclasses import dataclass

        @dataclass
        class Hit:
            q: str

        async def lookup(q: str, ctx) -> dict:
            await asyncio.sleep(0)
            ctx.set_context("last_q", q)
            return {"hit": Hit(q).q, "chat": ctx.chat_id}

        def double(n: int) -> int:
            return 2 * n
    '''))
    ctx = ToolContext(chat_id="c1", app_id="app", user_id="u1", workflow_name="W")

    lookup = import_tool(tmp_path, "lookup.py", "lookup")
    assert import_tool(tmp_path, "lookup.py", "lookup") is lookup  # cached per file version
    assert call_tool(lookup, {"q": "cats"}, ctx) == {"hit": "cats", "chat": "c1"}
    assert ctx.context_changes == {"last_q": "cats"}
    assert call_tool(import_tool(tmp_path, "lookup.py", "double"), {"n": 21}, ctx) == 42

    with pytest.raises(ImportError, match="no function 'missing'"):
        import_tool(tmp_path, "lookup.py", "missing")


def test_same_file_name_in_two_workflows_stays_separate(tmp_path: Path) -> None:
    for name, value in (("A", 1), ("B", 2)):
        (tmp_path / name / "tools").mkdir(parents=True)
        (tmp_path / name / "tools" / "t.py").write_text(f"def value() -> int:\n    return {value}\n")
    ctx = ToolContext(chat_id="c", app_id="a", user_id="u", workflow_name="W")
    assert [call_tool(import_tool(tmp_path / n, "t.py", "value"), {}, ctx) for n in "AB"] == [1, 2]
