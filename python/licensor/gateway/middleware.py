"""The gateway's middlewares: a request id on every answer, and the one place errors become HTTP."""

from __future__ import annotations

import logging
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler

from licensor.errors import LicensorError, MalformedRequestError, NotFoundError, PayloadTooLargeError, RequestError
from licensor.gateway import keys as app_keys
from licensor.gateway.api import MAX_BODY_BYTES, json_error

log = logging.getLogger("licensor.gateway")


class MethodNotAllowedError(RequestError):
    code = "METHOD_NOT_ALLOWED"
    http_status = 405


@web.middleware
async def request_id(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-Id", "")
    rid = incoming if 0 < len(incoming) <= 64 and incoming.isascii() and incoming.isprintable() else uuid.uuid4().hex
    request[app_keys.REQUEST_ID] = rid
    response = await handler(request)
    response.headers["X-Request-Id"] = rid
    return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as ``{"error": {"code", "message"}}`` with a fitting status; never a traceback."""
    try:
        return await handler(request)
    except LicensorError as error:
        return json_error(error)
    except web.HTTPException as error:
        if error.status == 404:
            return json_error(NotFoundError("no such route", code="ROUTE_NOT_FOUND"))
        if error.status == 405:
            return json_error(MethodNotAllowedError(f"{request.method} is not allowed here"))
        if error.status == 413:
            return json_error(PayloadTooLargeError(f"the body is larger than {MAX_BODY_BYTES} bytes"))
        if 400 <= error.status < 500:
            return json_error(MalformedRequestError(error.reason or "bad request"))
        raise
    except Exception:
        # Log the failure with the request id, not the request itself (it may carry secrets).
        log.exception("unexpected failure in %s %s (request %s)", request.method, request.path, request.get(app_keys.REQUEST_ID))
        return json_error(LicensorError("an unexpected error occurred; it has been logged"))
