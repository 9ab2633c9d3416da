"""The runtime's log lines: redacted always, text or JSON as configured, with the chat they are about.

- **Redaction**: no token, key or credential reaches a log line, whoever logs it. A filter on the
  root handlers and on the loggers of the libraries that log request lines (uvicorn, Ray Serve),
  because a token can hide in a URL, a header dump or an exception text.
- **Context**: ``bind(chat_id=…, app_id=…, run_id=…, agent=…)`` sets fields in a context variable,
  so every line logged later in the same asyncio task (a run, a socket) carries them without
  each call passing them on.
- **Format**: ``text`` (readable, the context appended in brackets) or ``json`` (one object a line,
  for log collectors), and the level, from the settings (``log_format``, ``log_level``).

``configure`` is called in every process of the runtime that logs: the driver, the Serve ingress
replicas, the session directory and the session actors.
"""

from __future__ import annotations

import json
import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

_PATTERNS = [
    re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),  # any JWT
    re.compile(r"(?i)(bearer[ .])[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)((?:access_token|token|api_key|secret)=)[^&\s\"']+"),
]
REDACTED = "[redacted]"
CONTEXT_FIELDS = ("chat_id", "app_id", "workflow", "run_id", "agent")
_context: ContextVar[dict[str, str]] = ContextVar("mozaiks_log_context", default={})


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
    return text


def bind(**fields: str | None) -> None:
    """Add fields to this task's log context (None removes one)."""
    merged = {**_context.get(), **{k: v for k, v in fields.items() if v is not None}}
    for key in [k for k, v in fields.items() if v is None]:
        merged.pop(key, None)
    _context.set(merged)


def current() -> dict[str, str]:
    return dict(_context.get())


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
            **_context.get()}
        if record.exc_info:
            line["exc"] = record.exc_text or redact(self.formatException(record.exc_info))
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = _context.get()
        if not fields:
            return text
        first, newline, rest = text.partition("\n")
        context = " ".join(f"{key}={fields[key]}" for key in CONTEXT_FIELDS if key in fields)
        return f"{first} [{context}]{newline}{rest}"


_LOGGERS = ("", "uvicorn", "uvicorn.access", "uvicorn.error", "ray.serve", "mozaiks", "fastapi")


class _RuntimeHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root logger's stderr handler this module installs (once per process)."""


def configure(log_format: Literal["text", "json"] = "text", level: str = "INFO") -> None:
    """Idempotent: redaction everywhere, and a stderr handler of the runtime's format and level on
    the root logger (a Ray worker's root logger has none; Ray sends the worker's stderr to its log
    files and to the driver)."""
    root = logging.getLogger()
    root.setLevel(level)
    handler = next((h for h in root.handlers if isinstance(h, _RuntimeHandler)), None)
    if handler is None:
        handler = _RuntimeHandler()
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    filt = RedactingFilter()
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(filt)
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(filt)
