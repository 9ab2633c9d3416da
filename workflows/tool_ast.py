"""Load-time inspection of tool files through their syntax tree.

Tool files are never imported by the loader: importing runs arbitrary module-level code in the
process that serves every chat, and tools may depend on packages only present on worker nodes.
"""

from __future__ import annotations

import ast
from typing import Any

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


class UnsupportedAnnotation(ValueError):
    pass


def find_function(module: ast.Module, name: str) -> FunctionNode | None:
    """A top-level `def` / `async def` of that name (the last one wins, as at run time)."""
    found = None
    for node in module.body:
        if isinstance(node, FunctionNode) and node.name == name:
            found = node
    return found


def is_context_parameter(arg: ast.arg) -> bool:
    # `context_variables` is how MozaiksAI (AG2) tools receive the chat's context.
    return arg.arg in ("ctx", "context_variables") or (
        arg.annotation is not None and _name(arg.annotation) == "ToolContext")


def infer_parameters(function: FunctionNode) -> dict[str, Any]:
    """JSON Schema of a tool's arguments from its type hints. Raises UnsupportedAnnotation."""
    args = function.args
    positional = [*args.posonlyargs, *args.args]
    first_default = len(positional) - len(args.defaults)
    params = [(arg, i >= first_default) for i, arg in enumerate(positional)]
    params += [(arg, default is not None) for arg, default in zip(args.kwonlyargs, args.kw_defaults)]

    properties: dict[str, Any] = {}
    required: list[str] = []
    for arg, has_default in params:
        if is_context_parameter(arg):
            continue
        try:
            properties[arg.arg] = _schema(arg.annotation) if arg.annotation is not None else {}
        except UnsupportedAnnotation as exc:
            raise UnsupportedAnnotation(f"parameter {arg.arg!r}: unsupported type hint {exc}") from None
        if not has_default:
            required.append(arg.arg)

    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if args.kwarg is None:  # the call would fail with a TypeError on any other argument
        schema["additionalProperties"] = False
    return schema


_SIMPLE: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "list": {"type": "array"},
    "List": {"type": "array"},
    "dict": {"type": "object"},
    "Dict": {"type": "object"},
    "Any": {},
    "None": {"type": "null"},
}
_ARRAYS = {"list", "List", "Sequence", "set", "Set"}
_OBJECTS = {"dict", "Dict", "Mapping"}
_JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null"}


def _name(node: ast.expr) -> str | None:
    match node:
        case ast.Name(id=name) | ast.Attribute(attr=name):
            return name
        case ast.Constant(value=str() as text):  # a quoted annotation
            return text.rsplit(".", 1)[-1]
    return None


def _schema(node: ast.expr) -> dict[str, Any]:
    match node:
        case ast.Constant(value=None):
            return {"type": "null"}
        case ast.Constant(value=str() as text):
            try:
                return _schema(ast.parse(text, mode="eval").body)
            except SyntaxError:
                raise UnsupportedAnnotation(repr(text)) from None
        case ast.Name() | ast.Attribute() if _name(node) in _SIMPLE:
            return dict(_SIMPLE[_name(node) or ""])
        case ast.BinOp(op=ast.BitOr()):
            return _union(_flatten_union(node))
        case ast.Subscript(value=base, slice=subscript):
            args = list(subscript.elts) if isinstance(subscript, ast.Tuple) else [subscript]
            return _generic(_name(base), args, node)
    raise UnsupportedAnnotation(ast.unparse(node))


def _generic(name: str | None, args: list[ast.expr], node: ast.expr) -> dict[str, Any]:
    if name in _ARRAYS and len(args) == 1:
        return {"type": "array", "items": _schema(args[0])}
    if name in _OBJECTS and len(args) == 2:
        return {"type": "object", "additionalProperties": _schema(args[1])}
    if name == "Optional" and len(args) == 1:
        return _union([args[0], ast.Constant(None)])
    if name == "Union":
        return _union([member for arg in args for member in _flatten_union(arg)])
    if name == "Literal" and all(isinstance(arg, ast.Constant) for arg in args):
        values = [arg.value for arg in args if isinstance(arg, ast.Constant)]
        types = {type(value) for value in values}
        if len(types) != 1 or not types <= _JSON_TYPES.keys():
            raise UnsupportedAnnotation(ast.unparse(node))
        return {"type": _JSON_TYPES[types.pop()], "enum": values}
    if name == "Annotated" and args:
        schema = _schema(args[0])
        descriptions = [a.value for a in args[1:] if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        return {**schema, "description": descriptions[0]} if descriptions else schema
    raise UnsupportedAnnotation(ast.unparse(node))


def _flatten_union(node: ast.expr) -> list[ast.expr]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return [*_flatten_union(node.left), *_flatten_union(node.right)]
    return [node]


def _union(members: list[ast.expr]) -> dict[str, Any]:
    schemas = [_schema(member) for member in members]
    nullable = {"type": "null"} in schemas
    others = [s for s in schemas if s != {"type": "null"}]
    if len(others) != 1:
        return {"anyOf": schemas}
    schema = others[0]
    if not nullable or schema == {}:
        return schema
    if "enum" in schema:
        schema = {**schema, "enum": [*schema["enum"], None]}
    if isinstance(schema.get("type"), str):
        return {**schema, "type": [schema["type"], "null"]}
    return {"anyOf": schemas}
