"""Request-head limits for every HTTP request at Serve's proxy, upgrades or not.

Serve's proxy runs uvicorn with httptools, which sets no limit on a request's head: a header of
any size is buffered (quadratically, as it trickles in) and forwarded to the ingress, and one
that never ends holds the connection and the proxy's CPU. uvicorn has no setting for it (only
its h11 parser is bounded, and Serve passes uvicorn no options), so the proxy runs this subclass
of uvicorn's httptools protocol instead: it applies the limits the ``websockets`` library applies
to an upgrade (``WEBSOCKETS_MAX_LINE_LENGTH``, ``WEBSOCKETS_MAX_NUM_HEADERS``) to every request,
plus a bound on the whole head, and answers at once: 414 for the request line, 431 for headers.

Serve's one hook into its proxy process is ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``, a
callback run as the proxy starts and before its uvicorn loads its protocol; :func:`install` is
that callback. The variable must be in the environment of the Ray nodes that run proxies
(:func:`proxy_environment`: ``start_runtime`` sets it for the Ray it starts; a cluster's nodes
get it from deploy/cluster.env.example).
"""

from __future__ import annotations

import os
from typing import Any

import uvicorn.config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from websockets.http11 import MAX_LINE_LENGTH, MAX_NUM_HEADERS

from mozaiks.protocol.errors import ErrorBody, ErrorEnvelope

PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
MAX_HEAD_BYTES = 64 * 1024  # the whole head; nginx allows 32 KiB, h11 16 KiB
# After a refusal, what the client still sends is read and dropped for this long before the
# connection closes: closing on unread data resets it, and the client may lose the answer.
LINGER_S = 2.0

_REFUSALS = {
    414: ("uri_too_long", f"The request line exceeds {MAX_LINE_LENGTH} bytes"),
    431: ("request_header_fields_too_large",
          f"The request headers exceed their limits: {MAX_LINE_LENGTH} bytes a line, "
          f"{MAX_NUM_HEADERS} headers, {MAX_HEAD_BYTES} bytes in all"),
}


class _HeadTooLarge(Exception):
    """Raised in a parser callback; httptools turns it into the parse error uvicorn answers."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing a request head over the limits as soon as it is."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refusal: int | None = None
        self._between = True  # no request in progress: a chunk received now begins with a head
        self._ended = False  # a request ended in the chunk being parsed
        self._in_head = False
        self._head_bytes = 0  # received of a head still incomplete
        self._line = 0  # received of its line still incomplete
        self._head_total = 0  # of the head's complete header lines

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # answered: the rest is dropped until the connection closes
        head_first = self._in_head or self._between
        self._ended = False
        super().data_received(data)
        if self._refusal is not None or not self._in_head:
            return
        # The head is still incomplete (a complete one is checked exactly by the callbacks). A
        # chunk that also ended a pipelined request does not count: the next one will.
        if not head_first or self._ended:
            return
        self._head_bytes += len(data)
        newline = data.rfind(b"\n")
        self._line = self._line + len(data) if newline < 0 else len(data) - newline - 1
        if self._line > MAX_LINE_LENGTH:  # the line being received, request line if the first
            self._refuse(414 if self._line == self._head_bytes else 431)
        elif self._head_bytes > MAX_HEAD_BYTES:
            self._refuse(431)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._between, self._in_head = False, True
        self._head_bytes = self._line = self._head_total = 0

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._between = self._ended = True

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_LINE_LENGTH:
            self._refusal = 414
            raise _HeadTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        line = len(name) + len(value) + 2
        self._head_total += line + 2
        if line > MAX_LINE_LENGTH or len(self.headers) >= MAX_NUM_HEADERS or self._head_total > MAX_HEAD_BYTES:
            self._refusal = 431
            raise _HeadTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if self._refusal is None:
            super().send_400_response(msg)
        else:
            self._refuse(self._refusal)

    def _refuse(self, status: int) -> None:
        self._refusal = status
        code, message = _REFUSALS[status]
        body = ErrorEnvelope(error=ErrorBody(code=code, message=message)).model_dump_json().encode()
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-type: application/json\r\ncontent-length: ", str(len(body)).encode(),
                 b"\r\nconnection: close\r\n\r\n"]
        self.transport.write(b"".join(head) + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)


def install() -> list[Any]:
    """The proxy callback: the proxy's uvicorn loads this protocol; no middleware is added."""
    uvicorn.config.HTTP_PROTOCOLS["auto"] = f"{__name__}:{BoundedHttpToolsProtocol.__name__}"
    return []


def proxy_environment() -> None:
    """Make the Ray started after this call run its proxies with :func:`install` (an operator's
    own value of the variable is kept)."""
    os.environ.setdefault(PROXY_CALLBACK_ENV, f"{__name__}.{install.__name__}")
