"""The request pipeline: what runs each declared :class:`licensor.operations.Operation`.

Every route is wrapped with authentication (as its ``auth`` declares), role checks, strict parsing and
validation of the body and query, and, for changes, one store transaction carrying the Idempotency-Key.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from licensor.errors import (
    LicensorError,
    MalformedRequestError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RequestTimeoutError,
    UnsupportedMediaTypeError,
    ValidationError,
)
from licensor.gateway import keys as app_keys
from licensor.gateway.auth import authenticate
from licensor.model import canonical_json
from licensor.operations import MAX_BODY_BYTES, ByBody, Call, Operation, OptionalToken, Principal, Reply, Services, Token
from licensor.schema import read_json
from licensor.store import IdempotentRequest

__all__ = ["MAX_BODY_BYTES", "RETRY_AFTER_S", "Api", "ClientDisconnectedError", "json_error", "run", "run_as"]

BODY_READ_TIMEOUT_S: float | None = None
"""How long a client may take to send its body (a trickle would hold its handler for as long as it likes): the
setting ``body_timeout_s`` unless set here (tests)."""
RETRY_AFTER_S = 5
"""What a 503 answer's ``Retry-After`` asks a client to wait, in seconds."""
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


async def run(operation: Operation, services: Services, request: web.Request) -> web.StreamResponse:
    """Answer ``request`` with ``operation``: authenticate, parse, validate, run its handler (in a transaction
    when it changes state) and write its reply."""
    op = operation
    if (
        op.quick_answer is not None
        and not request.query_string
        and "Authorization" not in request.headers
        and _is_json_content(request)
    ):
        quick = op.quick_answer(services, request, await _read(request, op.max_body_bytes))
        if quick is not None:
            return quick
    auth = op.auth
    principal = None
    if isinstance(auth, Token) or (isinstance(auth, ByBody) and auth.roles is not None):
        principal = await authenticate(request)
        assert auth.roles is not None
        if principal.role not in auth.roles:
            raise PermissionDeniedError(f"the {principal.role} role may not {op.summary[0].lower()}{op.summary[1:]}")
    path = dict(request.match_info)
    for name, pattern in op.path_patterns.items():
        if not re.fullmatch(pattern, path.get(name, "")):
            raise NotFoundError(f"no such {name.removesuffix('_id')}")
    query = _parse_query(op, request)
    body, raw = await _parse_body(op, request)
    call = Call(request, services, principal, path, query, body, raw)
    if isinstance(auth, ByBody):
        call.principal = principal = await auth.authenticate(call)
    if principal is not None and (tenant_budget := request.app[app_keys.LIMITS].tenant) is not None:
        tenant_budget.take(principal.tenant_id, "requests for this tenant")
    if not op.changes_state:
        reply = await op.handler(call)
        return reply if isinstance(reply, web.StreamResponse) else _respond(reply)  # a stream answers by itself
    assert principal is not None, "operations that change state are authenticated"
    assert not isinstance(auth, OptionalToken), "an operation that changes state names who may call it"
    idempotency = _idempotency(request, body, services.now_us())
    secrets = request.app[app_keys.SECRETS]
    async with call.store.transaction(principal.tenant_id, idempotency) as tx:
        if tx.replay is not None:
            assert idempotency is not None
            replayed = secrets.open_answer(principal.tenant_id, idempotency.key, tx.replay.body)
            return _respond_text(tx.replay.status, replayed, replayed=True)
        call.tx = tx
        reply = await op.handler(call)
        text = "" if reply.body is None else orjson.dumps(reply.body).decode()
        if idempotency is not None:  # sealed: an answer may hold a license key or an API token
            tx.remember(reply.status, secrets.seal_answer(principal.tenant_id, idempotency.key, text))
    return _respond_text(reply.status, text)


async def run_as(
    operation: Operation,
    services: Services,
    request: web.Request,
    principal: Principal,
    path: dict[str, str],
    body: dict[str, Any],
) -> Reply:
    """Run an operation's handler for a caller inside the gateway (the License Portal acting for a customer), as
    ``principal``: the body is validated, a body-authenticated operation authenticates, and a change runs in one
    transaction (the caller checks beforehand that the objects named are its to touch).

    :raises licensor.errors.LicensorError: what the operation refuses."""
    if operation.body_schema is not None:
        operation.body_schema.validate(body)
    call = Call(request, services, principal, path, {}, body, orjson.dumps(body))
    if isinstance(operation.auth, ByBody):
        call.principal = await operation.auth.authenticate(call)
    if not operation.changes_state:
        reply = await operation.handler(call)
        assert isinstance(reply, Reply), "run_as runs operations that answer JSON"
        return reply
    async with services.store.transaction(principal.tenant_id) as tx:
        call.tx = tx
        reply = await operation.handler(call)
    return reply


def _parse_query(op: Operation, request: web.Request) -> dict[str, Any]:
    if not request.query_string and not op.query_required:
        return {}  # nothing to check (the hot path: /v1/check has no query)
    raw: dict[str, Any] = {}
    for name, value in request.query.items():
        if name in raw:
            raise MalformedRequestError(f"query parameter {name} is given twice", code="DUPLICATE_PARAMETER")
        raw[name] = value
    declared = {p.name: p for p in op.query}
    for name, value in raw.items():
        param = declared.get(name)
        if param is None:
            raise MalformedRequestError(f"unknown query parameter {name}", code="UNKNOWN_PARAMETER")
        if param.schema.get("type") == "integer":
            if not re.fullmatch(r"-?[0-9]{1,18}", value):
                raise MalformedRequestError(f"query parameter {name} must be an integer", code="INVALID_PARAMETER")
            raw[name] = int(value)
    try:
        op.query_schema.validate(raw, where="query parameter", code_prefix="PARAMETER")
        if any("\x00" in value for value in raw.values() if isinstance(value, str)):
            raise ValidationError("a query parameter contains a NUL character", code="INVALID_CHARACTER")
    except ValidationError as error:
        # A query parameter that cannot be used is a malformed request (400), like one that cannot be read.
        raise MalformedRequestError(error.message, code=error.code) from None
    return raw


async def _parse_body(op: Operation, request: web.Request) -> tuple[dict[str, Any], bytes]:
    """The validated body and the bytes it was read from."""
    if op.raw_body:
        return {}, await _read(request, op.max_body_bytes)
    if op.body_schema is None:
        if request.can_read_body and (await _read(request, op.max_body_bytes)).strip():
            raise MalformedRequestError("this operation takes no body", code="UNEXPECTED_BODY")
        return {}, b""
    raw = await _read(request, op.max_body_bytes)
    if not raw.strip():
        body: Any = {}
    else:
        _require_json_content(request)
        body = read_json(raw)
    op.body_schema.validate(body)
    return body, raw


def _is_json_content(request: web.Request) -> bool:
    charset = request.charset
    return request.content_type == "application/json" and (charset is None or charset.lower() in ("utf-8", "utf8"))


def _require_json_content(request: web.Request) -> None:
    """A body is JSON only when it says so: another reading of the same bytes (a form, text) must never be
    taken for a request.

    :raises UnsupportedMediaTypeError: another content type, or another charset than UTF-8 (415)."""
    if not _is_json_content(request):
        raise UnsupportedMediaTypeError("send the body as Content-Type: application/json (UTF-8)")


async def _read(request: web.Request, limit: int) -> bytes:
    """The body, at most ``limit`` bytes, read within the setting ``body_timeout_s`` (a declared larger one is
    refused before anything is read; a streamed one as soon as it grows past the limit).

    :raises PayloadTooLargeError: the body is larger.
    :raises UnsupportedMediaTypeError: the body is compressed (``Content-Encoding``).
    :raises MalformedRequestError: MALFORMED_BODY, its chunked encoding is broken.
    :raises RequestTimeoutError: the client is too slow to send it.
    :raises ClientDisconnectedError: the client went away before it had sent the whole body.
    """
    if app_keys.BODY in request:
        return request[app_keys.BODY]
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLargeError(f"the body is larger than {limit} bytes")
    if request.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity"):
        # Inflating costs far more than the bytes sent; no client of this API needs to compress its requests.
        raise UnsupportedMediaTypeError("compressed request bodies (Content-Encoding) are not accepted")
    body = bytearray()
    content = request.content
    try:
        if content.is_eof():  # the whole body came with the request (most do): take it, no timer to arm
            body += content.read_nowait()
        else:
            async with asyncio.timeout(_body_timeout_s(request)):
                while len(body) <= limit and (chunk := await content.readany()):
                    body += chunk
    except TimeoutError:
        raise RequestTimeoutError(f"the body was not sent within {_body_timeout_s(request):g} s") from None
    except ConnectionError as error:
        raise ClientDisconnectedError(str(error)) from None
    except RequestPayloadError:  # a broken chunked encoding; its text may quote the body
        request.content.feed_eof()  # nothing more will be read: aiohttp must not linger on it and log it again
        raise MalformedRequestError("the body's transfer encoding is broken", code="MALFORMED_BODY") from None
    if len(body) > limit:
        raise PayloadTooLargeError(f"the body is larger than {limit} bytes")
    request[app_keys.BODY] = raw = bytes(body)
    return raw


def _body_timeout_s(request: web.Request) -> float:
    return BODY_READ_TIMEOUT_S or request.app[app_keys.SETTINGS].body_timeout_s


class ClientDisconnectedError(Exception):
    """The client closed the connection before its request was read: nobody is there to answer (the error
    middleware logs it at INFO and the access log shows 499)."""


def _idempotency(request: web.Request, body: dict[str, Any], now: int) -> IdempotentRequest | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise MalformedRequestError("Idempotency-Key must be 1-255 printable ASCII characters", code="INVALID_IDEMPOTENCY_KEY")
    fingerprint = f"{request.method}\x00{request.path}\x00{canonical_json(body)}".encode()
    return IdempotentRequest(key, hashlib.sha256(fingerprint).digest(), at=now)


def _respond(reply: Reply) -> web.Response:
    if reply.body is None or reply.status == 204:
        return web.Response(status=reply.status)
    return web.Response(status=reply.status, body=orjson.dumps(reply.body), content_type="application/json")


def _respond_text(status: int, text: str, *, replayed: bool = False) -> web.Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    if status == 204 or not text:
        return web.Response(status=status, headers=headers)
    return web.Response(status=status, text=text, content_type="application/json", headers=headers)


class Api:
    """The registry of operations of one gateway."""

    def __init__(self) -> None:
        self.operations: list[Operation] = []

    def add(self, operation: Operation) -> Operation:
        """:raises ValueError: another operation has the same method and path, or the same operation id."""
        for known in self.operations:
            if (known.method, known.path) == (operation.method, operation.path) or known.operation_id == operation.operation_id:
                raise ValueError(
                    f"two operations are {operation.method} {operation.path} ({known.operation_id}, {operation.operation_id})"
                )
        self.operations.append(operation)
        return operation

    def install(self, app: web.Application, services: Services) -> None:
        """Add a route per operation to ``app``, each compiling its schemas now (a schema licensor cannot check
        fails at start-up, not on the first request).

        :raises ValueError: a schema keyword that is not checked (see :class:`licensor.schema.Schema`)."""
        for operation in self.operations:
            _ = operation.body_schema, operation.query_schema
            app.router.add_route(operation.method, operation.path, _route(operation, services))


def _route(operation: Operation, services: Services) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await run(operation, services, request)

    return handle


def json_error(error: LicensorError) -> web.Response:
    """The error as ``{"error": {"code", "message"}}`` with its status; a 503 (the store or a backend is away, the
    gateway is stopping) also says when to try again (``Retry-After``)."""
    body = {"error": {"code": error.code, "message": error.message}}
    headers = getattr(error, "headers", None)  # a rate limit's Retry-After and RateLimit fields
    if headers is None and error.http_status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_S)}
    return web.Response(
        status=error.http_status, text=orjson.dumps(body).decode(), content_type="application/json", headers=headers
    )
