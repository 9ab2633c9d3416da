"""Log redaction: no token, key or credential reaches a log line, whoever logs it.

Installed as a filter on the root handlers and on the loggers of the libraries that log request
lines (uvicorn, Ray Serve), because a token can hide in a URL, a header dump or an exception text.
"""

from __future__ import annotations

import logging
import re

_PATTERNS = [
    re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),  # any JWT
    re.compile(r"(?i)(bearer[ .])[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)((?:access_token|token|api_key|secret)=)[^&\s\"']+"),
]
REDACTED = "[redacted]"


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


_LOGGERS = ("", "uvicorn", "uvicorn.access", "uvicorn.error", "ray.serve", "mozaiks", "fastapi")


def configure_logging() -> None:
    filt = RedactingFilter()
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(filt)
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(filt)
