"""Who is calling: the result of a verified user JWT."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Identity(BaseModel):
    model_config = ConfigDict(frozen=True)

    user_id: str
    app_id: str
    tenant_id: str | None = None
    plan: str | None = None
    roles: list[str] = Field(default_factory=list)
    claims: dict[str, Any] = Field(default_factory=dict)  # the verified payload, unmapped
