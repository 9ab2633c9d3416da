"""Every HTTP error leaves as the protocol's envelope; FastAPI's ``{"detail": …}`` never does."""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mozaiks.protocol.errors import ApiError, ErrorEnvelope

log = logging.getLogger("mozaiks.http")

_HTTP_CODES = {400: "invalid_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type",
               429: "rate_limited"}


# What every route may answer besides success, for the OpenAPI document: all in the one envelope.
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorEnvelope, "description": description} for status, description in {
        401: "Missing or invalid credentials", 403: "Not entitled (gate refusal) or not yours",
        404: "No such chat, workflow or route", 409: "Conflicts with the chat's state",
        413: "Body too large", 422: "Invalid request (details.fields names each field)",
        429: "Rate or budget limit reached", 500: "Internal error (details.correlation_id)",
    }.items()
}


def envelope(status: int, code: str, message: str, details: dict | None = None,
              headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "details": details or {}}},
                        status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return envelope(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [{"field": ".".join(str(p) for p in err.get("loc", ()) if p != "body"), "message": err.get("msg")}
                  for err in exc.errors()]
        return envelope(422, "invalid_request", "The request body is invalid", {"fields": fields})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        return envelope(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        correlation_id = uuid.uuid4().hex
        log.exception("internal error (correlation_id=%s)", correlation_id)
        return envelope(500, "internal_error", "Internal error", {"correlation_id": correlation_id})
