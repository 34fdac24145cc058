"""Errors of the HTTP layer in the gateway's error format.

aiohttp's HTTP parser refuses some requests before any middleware runs (a header or request line over its
limit, too many headers, bytes that do not belong in a path or a method) and answers them itself, as
``text/plain`` quoting the offending bytes, an ``Authorization`` header included, and logs each one as an ERROR
with a traceback. aiohttp offers no public hook for these answers (the request handler class is fixed, and
``web.Application`` may not be subclassed), so :func:`install` wraps ``RequestHandler.handle_error`` once
(and ``data_received``, so that a body whose framing breaks half-way is refused rather than waited for). The
wrapper acts only for gateway applications (those built by :func:`licensor.gateway.app.create_app`); any other
aiohttp server in the process keeps aiohttp's behaviour. The gateway's answers carry a stable code, a fixed
message that repeats nothing of the request and a fitting status, and the connection is closed after them (the
parser cannot tell where the next request would start); each is logged as one INFO line without a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
)
from aiohttp.web_protocol import RequestHandler, RequestPayloadError, _ErrInfo

from licensor.gateway import keys as app_keys

log = logging.getLogger("licensor.gateway")

MAX_REQUEST_LINE = 64 * 1024
"""The longest request line (method, target, version). A query the OpenAPI document allows is longer than
aiohttp's default of 8190 bytes once percent-encoded (``GET /v1/admin/customers`` at its maximum lengths: about
970 characters, up to 12 bytes each), so every documented request reaches the gateway's own validation."""
MAX_HEADER_FIELD = 8190
"""The longest header line (name and value), aiohttp's default."""
MAX_HEADERS = 128
"""The most header lines in one request, aiohttp's default."""

# code -> (status, message): the messages are fixed and name the limits, never anything that was sent.
HTTP_LAYER_ERRORS: dict[str, tuple[int, str]] = {
    "REQUEST_LINE_TOO_LONG": (414, f"the request line is longer than {MAX_REQUEST_LINE} bytes"),
    "HEADER_TOO_LARGE": (431, f"a header is longer than {MAX_HEADER_FIELD} bytes"),
    "TOO_MANY_HEADERS": (431, f"the request has more than {MAX_HEADERS} headers"),
    "INVALID_METHOD": (400, "the request method is not a valid HTTP method"),
    "INVALID_REQUEST_TARGET": (400, "the request target (path and query) holds bytes an HTTP URL may not hold"),
    "INVALID_REQUEST_LINE": (400, "the request line is not METHOD TARGET HTTP/1.x"),
    "INVALID_HEADER": (400, "a header has a name or value that HTTP does not allow"),
    "MALFORMED_HTTP": (400, "the request is not valid HTTP/1.1 (framing, Content-Length or Transfer-Encoding)"),
}
_INTERNAL = {"code": "INTERNAL", "message": "an unexpected error occurred; it has been logged"}
_TIMEOUT = {"code": "TIMEOUT", "message": "the request took too long"}


def http_layer_code(error: HttpProcessingError) -> str:
    """The code of :data:`HTTP_LAYER_ERRORS` for an error aiohttp's parser raised."""
    if isinstance(error, LineTooLong):
        # Both parsers give the limit that was passed; the two limits differ, so it tells line from header.
        return "REQUEST_LINE_TOO_LONG" if str(error.args[1]) == str(MAX_REQUEST_LINE) else "HEADER_TOO_LARGE"
    if isinstance(error, BadHttpMethod):
        return "INVALID_METHOD"
    if isinstance(error, InvalidURLError):
        return "INVALID_REQUEST_TARGET"
    if isinstance(error, BadStatusLine):
        return "INVALID_REQUEST_LINE"
    # llhttp's messages are "<description>:\n\n  <an excerpt of the request>\n  <pointer>": only the
    # description may decide, never bytes the client chose.
    description = error.message.split(":\n", 1)[0].lower()
    if description.startswith("too many headers"):
        return "TOO_MANY_HEADERS"
    if isinstance(error, InvalidHeader) or "header" in description:  # llhttp: "Invalid header value char"
        return "INVALID_HEADER"
    return "MALFORMED_HTTP"


def _json_answer(status: int, error: dict[str, str]) -> web.Response:
    answer = web.Response(status=status, body=orjson.dumps({"error": error}), content_type="application/json")
    answer.force_close()
    return answer


def _serves_gateway(handler: RequestHandler) -> bool:
    manager = getattr(handler, "_manager", None)
    app = getattr(getattr(manager, "request_handler", None), "__self__", None)
    return isinstance(app, web.Application) and app_keys.SETTINGS in app


def install() -> None:
    """Answer the HTTP layer's errors of gateway applications in the gateway's format (idempotent)."""
    original = RequestHandler.handle_error
    if getattr(original, "_licensor", False):
        return
    original_data_received = RequestHandler.data_received

    def data_received(self: RequestHandler, data: bytes) -> None:
        # When the parser refuses bytes in the middle of a body (a broken chunk), aiohttp queues an error for the
        # next request but leaves the one being read waiting for the rest of its body forever. Tell it instead.
        queued = len(self._messages)
        original_data_received(self, data)
        current = self._current_request
        if current is not None and len(self._messages) > queued and _serves_gateway(self):
            refused = self._messages[-1][0]
            if isinstance(refused, _ErrInfo) and not current.content.is_eof():
                current.content.set_exception(RequestPayloadError("the body's framing is broken"))

    def handle_error(
        self: RequestHandler, request: Any, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if not _serves_gateway(self):
            return original(self, request, status, exc, message)
        if isinstance(exc, HttpProcessingError):
            code = http_layer_code(exc)
            log.info("refused a request from %s at the HTTP layer: %s", request.remote, code)
            if request.writer.output_size > 0:  # as aiohttp: an answer was already on its way
                raise ConnectionError("an answer was sent already; the connection is closed")
            answer_status, text = HTTP_LAYER_ERRORS[code]
            return _json_answer(answer_status, {"code": code, "message": text})
        # Anything else that escaped the middleware: aiohttp logs it (with its traceback) as before.
        plain = original(self, request, status, exc, message)
        return _json_answer(plain.status, _TIMEOUT if plain.status == 504 else _INTERNAL)

    handle_error._licensor = True  # type: ignore[attr-defined]  # the mark install() checks: mypy types no function attributes
    RequestHandler.handle_error = handle_error  # type: ignore[method-assign]  # replacing aiohttp's methods is the point
    RequestHandler.data_received = data_received  # type: ignore[method-assign]  # (mypy refuses any method assignment)


HANDLER_ARGS = {
    "max_line_size": MAX_REQUEST_LINE,
    "max_field_size": MAX_HEADER_FIELD,
    "max_headers": MAX_HEADERS,
    "auto_decompress": False,
}
"""The parser's settings of every gateway (``web.Application(handler_args=...)``): its limits, and no inflating
of compressed bodies (the gateway refuses them: a few bytes can inflate to megabytes)."""
