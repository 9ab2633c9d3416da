"""A JSON Schema subset, enough to check tool arguments and structured outputs.

Supported: type (one or a list), enum, anyOf, required, properties, additionalProperties
(false or a schema), items, minimum/maximum, minLength/maxLength. Anything else is ignored.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["validate_arguments"]

_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def validate_arguments(schema: dict[str, Any], arguments: Any) -> list[str]:
    """Human-readable problems, e.g. ``["q: expected string", "limit: must be <= 50"]``."""
    errors: list[str] = []
    _check(schema, arguments, "", errors)
    return errors


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _same(a: Any, b: Any) -> bool:
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _check(schema: dict[str, Any], value: Any, path: str, errors: list[str]) -> None:
    label = path or "arguments"
    if "anyOf" in schema:
        if all(validate_arguments(option, value) for option in schema["anyOf"]):
            errors.append(f"{label}: does not match any of the allowed types")
            return
    if "type" in schema:
        types = [schema["type"]] if isinstance(schema["type"], str) else list(schema["type"])
        if not any(_TYPES.get(t, lambda _: True)(value) for t in types):
            errors.append(f"{label}: expected {' or '.join(types)}")
            return
    if "enum" in schema and not any(_same(value, option) for option in schema["enum"]):
        errors.append(f"{label}: must be one of {', '.join(json.dumps(o) for o in schema['enum'])}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{label}: must be at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{label}: must be at most {schema['maxLength']} characters")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{label}: must be >= {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{label}: must be <= {schema['maximum']}")
    if isinstance(value, dict):
        _check_object(schema, value, path, errors)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _check(schema["items"], item, _join(path, i), errors)


def _check_object(schema: dict[str, Any], value: dict[str, Any], path: str, errors: list[str]) -> None:
    properties: dict[str, Any] = schema.get("properties", {})
    additional = schema.get("additionalProperties", True)
    for name in schema.get("required", []):
        if name not in value:
            errors.append(f"{_join(path, name)}: is required")
    for key, item in value.items():
        if key in properties:
            _check(properties[key], item, _join(path, key), errors)
        elif additional is False:
            errors.append(f"{_join(path, key)}: is not allowed")
        elif isinstance(additional, dict):
            _check(additional, item, _join(path, key), errors)
