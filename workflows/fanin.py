"""Fan-in: merging the outcomes of a fan-out's child chats into one value for the parent.

Every merge mode is a pure function of the outcomes (in the order the children finished), so the
value a parent resumes with is the same however often the merge is recomputed after a restart.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel

from workflows.fanout import Contract, MergeMode

ChildStatus = Literal["completed", "failed", "cancelled", "timed_out"]


class ChildOutcome(BaseModel):
    key: str
    workflow: str
    chat_id: str
    status: ChildStatus
    result: Any = None  # the child's last structured output, else its last agent text
    error: str | None = None


class MergeError(ValueError):
    """The children's results cannot be merged as declared (e.g. none satisfies output_contract)."""


def contract_problem(contract: Contract, result: Any) -> str | None:
    if not contract.required:
        return None
    if not isinstance(result, dict):
        return "expected an object with " + ", ".join(contract.required)
    missing = [k for k in contract.required if k not in result]
    return f"missing {', '.join(missing)}" if missing else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def deep_merge(a: Any, b: Any) -> Any:
    """Objects merge key by key, lists concatenate, anything else: the later value wins."""
    if isinstance(a, dict) and isinstance(b, dict):
        merged = dict(a)
        for key, value in b.items():
            merged[key] = deep_merge(a[key], value) if key in a else value
        return merged
    if isinstance(a, list) and isinstance(b, list):
        return [*a, *b]
    return b


def merge(mode: MergeMode, outcomes: list[ChildOutcome], output_contract: Contract = Contract()) -> Any:
    """The merged value of the completed children (`collect_all` also reports the others)."""
    done = [o for o in outcomes if o.status == "completed"]
    if mode == "collect_all":
        return [o.model_dump() for o in outcomes]
    if mode == "concatenate":
        return "\n\n".join(_text(o.result) for o in done if o.result is not None)
    if mode == "structured":
        problems = {o.key: p for o in done if (p := contract_problem(output_contract, o.result))}
        if problems:
            raise MergeError("; ".join(f"child {k}: {p}" for k, p in problems.items()))
        return {o.key: o.result for o in done}
    if mode == "deep_merge":
        merged: Any = {}
        for o in done:
            if not isinstance(o.result, dict):
                raise MergeError(f"child {o.key}: deep_merge needs an object result")
            merged = deep_merge(merged, o.result)
        return merged
    if mode == "first_success":
        return done[0].result if done else None
    if mode == "majority_vote":
        if not done:
            return None
        votes = Counter(_text(o.result) for o in done)
        # Ties go to the answer that finished first: Counter keeps first-insertion order.
        winner, count = votes.most_common(1)[0]
        value = next(o.result for o in done if _text(o.result) == winner)
        return {"value": value, "votes": count, "of": len(done)}
    raise MergeError(f"unknown merge mode {mode!r}")
