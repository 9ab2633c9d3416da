"""The one error envelope of PROTOCOL §2, and the errors that map onto it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class ApiError(Exception):
    """Raised anywhere below the HTTP layer; rendered as the error envelope with its status."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}

    def envelope(self) -> dict[str, Any]:
        return ErrorEnvelope(error=ErrorBody(code=self.code, message=self.message, details=self.details)).model_dump()


def unauthenticated(message: str = "Missing or invalid credentials") -> ApiError:
    return ApiError(401, "unauthenticated", message)


def chat_not_found() -> ApiError:
    # Same answer for "absent" and "someone else's": never reveal which.
    return ApiError(404, "chat_not_found", "Chat not found")
