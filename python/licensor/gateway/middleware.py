"""The gateway's middleware: a request id on every answer, the one place errors become HTTP, and every answer
counted in the metrics (:mod:`licensor.gateway.metrics`)."""

from __future__ import annotations

import logging
import os
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from licensor.errors import LicensorError, MalformedRequestError, NotFoundError, PayloadTooLargeError, RequestError
from licensor.gateway import keys as app_keys
from licensor.gateway.api import MAX_BODY_BYTES, ClientDisconnectedError, json_error
from licensor.gateway.limits import CLIENT_ADDRESS, client_address, limit_key

log = logging.getLogger("licensor.gateway")


CLIENT_CLOSED_REQUEST = 499


class MethodNotAllowedError(RequestError):
    code = "METHOD_NOT_ALLOWED"
    http_status = 405


@web.middleware
async def gateway_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request id on every answer (the client's ``X-Request-Id`` if sensible), and every failure as
    ``{"error": {"code", "message"}}`` with a fitting status; never a traceback. One middleware, not two: each
    costs a call layer on every request."""
    incoming = request.headers.get("X-Request-Id", "")
    rid = incoming if 0 < len(incoming) <= 64 and incoming.isascii() and incoming.isprintable() else os.urandom(16).hex()
    request[app_keys.REQUEST_ID] = rid
    started = time.perf_counter()
    limits = request.app[app_keys.LIMITS]
    request[app_keys.CLIENT] = address = client_address(request, limits.trusted_networks)
    CLIENT_ADDRESS.set(counted_as := limit_key(address))
    in_flight = request.app[app_keys.IN_FLIGHT]
    in_flight.count += 1  # a stopping process waits for these (licensor.gateway.drain)
    try:
        if limits.address is not None:
            limits.address.take(counted_as, "requests from this address")
        response = await handler(request)
    except LicensorError as error:
        response = json_error(error)
    except ClientDisconnectedError:
        # Nobody is left to answer: not a failure of the gateway. 499 (nginx's "client closed request") marks it
        # in the access log; the answer itself goes nowhere.
        log.info("the client closed the connection before sending its whole request (request %s)", rid)
        response = web.Response(status=CLIENT_CLOSED_REQUEST)
    except web.HTTPException as error:
        if error.status == 404:
            response = json_error(NotFoundError("no such route", code="ROUTE_NOT_FOUND"))
        elif error.status == 405:
            response = json_error(MethodNotAllowedError(f"{request.method} is not allowed here"))
        elif error.status == 413:
            response = json_error(PayloadTooLargeError(f"the body is larger than {MAX_BODY_BYTES} bytes"))
        elif 400 <= error.status < 500:
            response = json_error(MalformedRequestError(error.reason or "bad request"))
        else:  # a redirect (the portal's downloads), answered by aiohttp itself: counted here all the same
            request.app[app_keys.METRICS].observe_request(request, error.status, time.perf_counter() - started)
            raise
    except Exception:
        # Log the failure with the request id, not the request itself (it may carry secrets).
        log.exception("unexpected failure in %s %s (request %s)", request.method, request.path, rid)
        response = json_error(LicensorError("an unexpected error occurred; it has been logged"))
    finally:
        in_flight.count -= 1
    if in_flight.draining:
        response.force_close()
    response.headers["X-Request-Id"] = rid
    request.app[app_keys.METRICS].observe_request(request, response.status, time.perf_counter() - started)
    return response
