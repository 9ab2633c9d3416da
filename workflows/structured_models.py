"""MozaiksAI's model form of structured outputs, translated to JSON Schema.

MozaiksAI describes a structured output as `{type: model, fields: {name: {type: str, …}}}`, a
pydantic-like notation. Models sent to the provider must be JSON Schema, so the loader translates
each model-form entry once, resolving references to other models of the same file.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ModelFormError", "is_model_form", "translate_models"]

_SCALARS: dict[str, dict[str, Any]] = {
    "str": {"type": "string"}, "string": {"type": "string"},
    "int": {"type": "integer"}, "integer": {"type": "integer"},
    "float": {"type": "number"}, "number": {"type": "number"},
    "bool": {"type": "boolean"}, "boolean": {"type": "boolean"},
    "dict": {"type": "object"}, "object": {"type": "object"},
    "any": {},
}
_TYPE_LIST = "str, int, float, bool, dict, any, list, literal, union, optional_<type> or a model name"


class ModelFormError(ValueError):
    """`path` is the position inside the model (e.g. `fields.workflows.items`)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(message)


def is_model_form(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "model"


def translate_models(models: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, ModelFormError]]:
    """Every entry as JSON Schema (JSON Schema entries are kept as they are), and the per-model errors."""
    errors: dict[str, ModelFormError] = {}
    out: dict[str, dict[str, Any]] = {}
    for name, schema in models.items():
        if not is_model_form(schema):
            out[name] = schema
            continue
        try:
            out[name] = _model(name, models, (), "")
        except ModelFormError as exc:
            errors[name] = exc
    return out, errors


def _model(name: str, models: dict[str, Any], seen: tuple[str, ...], path: str) -> dict[str, Any]:
    if name in seen:
        # OpenAI's strict schemas cannot express recursion through inline definitions.
        raise ModelFormError(path, f"model {name!r} refers to itself ({' -> '.join((*seen, name))})")
    spec = models[name]
    fields = spec.get("fields")
    if not isinstance(fields, dict) or not fields:
        raise ModelFormError(path or "fields", "a model needs a non-empty mapping of fields")
    properties = {
        field: _field(value, models, (*seen, name), f"{path}.fields.{field}" if path else f"fields.{field}")
        for field, value in fields.items()
    }
    schema: dict[str, Any] = {"type": "object", "properties": properties,
                              "required": list(properties), "additionalProperties": False}
    if spec.get("description"):
        schema["description"] = spec["description"]
    return schema


def _field(spec: Any, models: dict[str, Any], seen: tuple[str, ...], path: str) -> dict[str, Any]:
    if isinstance(spec, str):  # `items: WorkflowSpec`, `items: str`
        spec = {"type": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise ModelFormError(path, f"a field needs a type ({_TYPE_LIST})")
    schema = _type(spec, models, seen, path)
    if spec.get("description"):
        schema = {**schema, "description": spec["description"]}
    return schema


def _type(spec: dict[str, Any], models: dict[str, Any], seen: tuple[str, ...], path: str) -> dict[str, Any]:
    kind: str = spec["type"]
    if kind.startswith("optional_"):
        inner = _type({**spec, "type": kind.removeprefix("optional_")}, models, seen, path)
        return {"anyOf": [inner, {"type": "null"}]}
    if kind in _SCALARS:
        return dict(_SCALARS[kind])
    if kind == "list":
        if "items" not in spec:
            raise ModelFormError(path, "a list field needs items (a type or a model name)")
        return {"type": "array", "items": _field(spec["items"], models, seen, f"{path}.items")}
    if kind == "literal":
        values = spec.get("values", spec.get("enum"))
        if not isinstance(values, list) or not values:
            raise ModelFormError(path, "a literal field needs a non-empty list of values")
        return {"enum": values}
    if kind == "union":
        variants = spec.get("variants", spec.get("types"))
        if not isinstance(variants, list) or len(variants) < 2:
            raise ModelFormError(path, "a union field needs variants: a list of at least two types")
        return {"anyOf": [_field(v, models, seen, f"{path}.variants[{i}]") for i, v in enumerate(variants)]}
    if kind in models and is_model_form(models[kind]):
        return _model(kind, models, seen, path)
    raise ModelFormError(path, f"unknown type {kind!r} (expected {_TYPE_LIST})")
