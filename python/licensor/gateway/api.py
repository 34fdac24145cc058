"""Operations declared once: the route, who may call it, what it accepts and answers.

Each :class:`Operation` becomes an aiohttp route wrapped with authentication, role checks, strict parsing and
validation of the body and query, and, for changes, one store transaction carrying the Idempotency-Key. The
OpenAPI document is generated from the same declarations, so the two cannot drift apart.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
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
from licensor.gateway.auth import Principal, authenticate
from licensor.model import canonical_json
from licensor.schema import Schema, read_json
from licensor.store import IdempotentRequest, Store, Transaction

MAX_BODY_BYTES = 1 << 20
"""The largest body any operation may declare that it takes (the gateway reads no more)."""
DEFAULT_BODY_BYTES = 64 << 10
"""The largest body of an operation that declares no limit of its own: parsing and validating a body costs
time in proportion to its size, so no operation reads more than its largest valid request needs."""
BODY_READ_TIMEOUT_S = 30.0
"""How long a client may take to send its body (a trickle would hold its handler for as long as it likes)."""
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")

READ_ROLES = frozenset({"admin", "developer", "support", "read-only"})


@dataclass
class Call:
    """What a handler gets: the request, who made it, and the validated inputs."""

    request: web.Request
    principal: Principal | None
    path: dict[str, str]
    query: dict[str, Any]
    body: dict[str, Any]
    tx: Transaction | None = None

    @property
    def store(self) -> Store:
        return self.request.app[app_keys.STORE]

    @property
    def tenant_id(self) -> str:
        assert self.principal is not None
        return self.principal.tenant_id

    @property
    def actor(self) -> str:
        if self.principal is None:
            return "anonymous"
        return self.principal.actor or f"token:{self.principal.token_id}"


Handler = Callable[[Call], Awaitable["Reply"]]


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any  # JSON-serialisable, or None for no content


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    handler: Handler
    tag: str
    roles: frozenset[str] | None  # None: no authentication
    response_schema: dict[str, Any] | None
    status: int = 200
    request_schema: dict[str, Any] | None = None
    query: tuple[Param, ...] = ()
    path_patterns: dict[str, str] = field(default_factory=dict)
    description: str = ""
    changes_state: bool = False  # runs in a store transaction and honours Idempotency-Key
    errors: tuple[int, ...] = ()
    response_content_type: str = "application/json"
    token_optional: bool = False  # the handler authenticates a token of ``roles`` itself, when one is needed
    # Answers an identical repeat of an unauthenticated request from memory (None: go through the pipeline).
    quick_answer: Callable[[web.Request, bytes], web.StreamResponse | None] | None = None
    # Authenticates a request by what its validated body carries (a license key, a device's signature), besides
    # or instead of an API token (given the token's principal, if ``roles`` asked for one): the principal whose
    # tenant the request's transaction belongs to. Raises to refuse.
    authenticator: Callable[[web.Request, dict[str, Any], Principal | None], Awaitable[Principal]] | None = None
    max_body_bytes: int = DEFAULT_BODY_BYTES  # a larger body is refused (413) before it is parsed

    def __post_init__(self) -> None:
        """:raises ValueError: a schema keyword that is not checked (see :class:`licensor.schema.Schema`), or a
        body limit over :data:`MAX_BODY_BYTES`."""
        if not 0 < self.max_body_bytes <= MAX_BODY_BYTES:
            raise ValueError(f"{self.operation_id}: max_body_bytes must lie between 1 and {MAX_BODY_BYTES}")
        self._body_schema = Schema(self.request_schema) if self.request_schema else None
        query_schema = {
            "type": "object",
            "properties": {p.name: p.schema for p in self.query},
            "required": [p.name for p in self.query if p.required],
            "additionalProperties": False,
        }
        self._query_schema = Schema(query_schema)
        self._query_required = any(p.required for p in self.query)

    # --- the request pipeline ---------------------------------------------------------------------------
    async def __call__(self, request: web.Request) -> web.StreamResponse:
        if (
            self.quick_answer is not None
            and not request.query_string
            and "Authorization" not in request.headers
            and _is_json_content(request)
        ):
            quick = self.quick_answer(request, await _read(request, self.max_body_bytes))
            if quick is not None:
                return quick
        principal = None
        if self.roles is not None and not self.token_optional:
            principal = await authenticate(request)
            if principal.role not in self.roles:
                raise PermissionDeniedError(f"the {principal.role} role may not {self.summary[0].lower()}{self.summary[1:]}")
        path = dict(request.match_info)
        for name, pattern in self.path_patterns.items():
            if not re.fullmatch(pattern, path.get(name, "")):
                raise NotFoundError(f"no such {name.removesuffix('_id')}")
        query = self._parse_query(request)
        body = await self._parse_body(request)
        if self.authenticator is not None:
            principal = await self.authenticator(request, body, principal)
        call = Call(request, principal, path, query, body)
        if not self.changes_state:
            return _respond(await self.handler(call))
        assert principal is not None, "operations that change state are authenticated"
        idempotency = _idempotency(request, body)
        secrets = request.app[app_keys.SECRETS]
        async with call.store.transaction(principal.tenant_id, idempotency) as tx:
            if tx.replay is not None:
                assert idempotency is not None
                replayed = secrets.open_answer(principal.tenant_id, idempotency.key, tx.replay.body)
                return _respond_text(tx.replay.status, replayed, replayed=True)
            call.tx = tx
            reply = await self.handler(call)
            text = "" if reply.body is None else orjson.dumps(reply.body).decode()
            if idempotency is not None:  # sealed: an answer may hold a license key or an API token
                tx.remember(reply.status, secrets.seal_answer(principal.tenant_id, idempotency.key, text))
        return _respond_text(reply.status, text)

    def _parse_query(self, request: web.Request) -> dict[str, Any]:
        if not request.query_string and not self._query_required:
            return {}  # nothing to check (the hot path: /v1/check has no query)
        raw: dict[str, Any] = {}
        for name, value in request.query.items():
            if name in raw:
                raise MalformedRequestError(f"query parameter {name} is given twice", code="DUPLICATE_PARAMETER")
            raw[name] = value
        declared = {p.name: p for p in self.query}
        for name, value in raw.items():
            param = declared.get(name)
            if param is None:
                raise MalformedRequestError(f"unknown query parameter {name}", code="UNKNOWN_PARAMETER")
            if param.schema.get("type") == "integer":
                if not re.fullmatch(r"-?[0-9]{1,18}", value):
                    raise MalformedRequestError(f"query parameter {name} must be an integer", code="INVALID_PARAMETER")
                raw[name] = int(value)
        try:
            self._query_schema.validate(raw, where="query parameter", code_prefix="PARAMETER")
            if any("\x00" in value for value in raw.values() if isinstance(value, str)):
                raise ValidationError("a query parameter contains a NUL character", code="INVALID_CHARACTER")
        except ValidationError as error:
            # A query parameter that cannot be used is a malformed request (400), like one that cannot be read.
            raise MalformedRequestError(error.message, code=error.code) from None
        return raw

    async def _parse_body(self, request: web.Request) -> dict[str, Any]:
        if self.request_schema is None:
            if request.can_read_body and (await _read(request, self.max_body_bytes)).strip():
                raise MalformedRequestError("this operation takes no body", code="UNEXPECTED_BODY")
            return {}
        raw = await _read(request, self.max_body_bytes)
        if not raw.strip():
            body: Any = {}
        else:
            _require_json_content(request)
            body = read_json(raw)
        assert self._body_schema is not None
        self._body_schema.validate(body)
        return body


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
    """The body, at most ``limit`` bytes, read within :data:`BODY_READ_TIMEOUT_S` (a declared larger one is
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
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT_S):
            while chunk := await request.content.readany():
                body += chunk
                if len(body) > limit:
                    raise PayloadTooLargeError(f"the body is larger than {limit} bytes")
    except TimeoutError:
        raise RequestTimeoutError(f"the body was not sent within {BODY_READ_TIMEOUT_S:g} s") from None
    except ConnectionError as error:
        raise ClientDisconnectedError(str(error)) from None
    except RequestPayloadError:  # a broken chunked encoding; its text may quote the body
        request.content.feed_eof()  # nothing more will be read: aiohttp must not linger on it and log it again
        raise MalformedRequestError("the body's transfer encoding is broken", code="MALFORMED_BODY") from None
    request[app_keys.BODY] = raw = bytes(body)
    return raw


class ClientDisconnectedError(Exception):
    """The client closed the connection before its request was read: nobody is there to answer (the error
    middleware logs it at INFO and the access log shows 499)."""


def _idempotency(request: web.Request, body: dict[str, Any]) -> IdempotentRequest | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise MalformedRequestError("Idempotency-Key must be 1-255 printable ASCII characters", code="INVALID_IDEMPOTENCY_KEY")
    fingerprint = f"{request.method}\x00{request.path}\x00{canonical_json(body)}".encode()
    return IdempotentRequest(key, hashlib.sha256(fingerprint).digest())


def _respond(reply: Reply) -> web.Response:
    if reply.body is None or reply.status == 204:
        return web.Response(status=reply.status)
    return web.Response(status=reply.status, body=orjson.dumps(reply.body), content_type="application/json")


def _respond_text(status: int, text: str, *, replayed: bool = False) -> web.Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    if status == 204 or not text:
        return web.Response(status=status, headers=headers)
    return web.Response(status=status, text=text, content_type="application/json", headers=headers)


# --- cursors -------------------------------------------------------------------------------------------
def encode_cursor(scope: str, position: str | int) -> str:
    """An opaque cursor for the next page of ``scope`` (a list)."""
    return base64.urlsafe_b64encode(canonical_json([scope, position]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, scope: str) -> Any:
    """The position a cursor of ``scope`` holds; a cursor that is not one is a 400 INVALID_CURSOR."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, position = orjson.loads(raw)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise MalformedRequestError("the cursor is not one this API gave out", code="INVALID_CURSOR") from None
    # Positions are object ids or event sequence numbers; nothing else reaches a query (no NUL, no overflow).
    is_id = isinstance(position, str) and _CURSOR_ID.fullmatch(position) is not None
    is_seq = isinstance(position, int) and not isinstance(position, bool) and 0 <= position < 1 << 63
    if kind != scope or not (is_id or is_seq):
        raise MalformedRequestError("the cursor is not one this API gave out", code="INVALID_CURSOR")
    return position


_CURSOR_ID = re.compile(r"[a-z]{3}_[0-9A-HJKMNP-TV-Z]{26}")


def list_reply(scope: str, items: list[dict[str, Any]], has_more: bool, position: str | int | None) -> Reply:
    next_cursor = encode_cursor(scope, position) if has_more and position is not None else None
    return Reply(200, {"object": "list", "data": items, "has_more": has_more, "next_cursor": next_cursor})


PAGE_PARAMS = (
    Param("limit", {"type": "integer", "minimum": 1, "maximum": 200}, "Page size (default 50)."),
    Param("cursor", {"type": "string", "minLength": 1, "maxLength": 512}, "The next_cursor of the previous page."),
)


def list_schema(item_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": item_schema},
            "has_more": {"type": "boolean"},
            "next_cursor": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
        "required": ["object", "data", "has_more", "next_cursor"],
        "additionalProperties": False,
    }


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

    def install(self, app: web.Application) -> None:
        for operation in self.operations:
            # The bound coroutine method: aiohttp deprecates handlers that are not coroutine functions.
            app.router.add_route(operation.method, operation.path, operation.__call__)


def json_error(error: LicensorError) -> web.Response:
    body = {"error": {"code": error.code, "message": error.message}}
    return web.Response(status=error.http_status, text=orjson.dumps(body).decode(), content_type="application/json")
