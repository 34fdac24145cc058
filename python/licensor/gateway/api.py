"""Operations declared once: the route, who may call it, what it accepts and answers.

Each :class:`Operation` becomes an aiohttp route wrapped with authentication, role checks, strict parsing and
validation of the body and query, and, for changes, one store transaction carrying the Idempotency-Key. The
OpenAPI document is generated from the same declarations, so the two cannot drift apart.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import fastjsonschema
import jsonschema
import orjson
from aiohttp import web

from licensor.errors import (
    LicensorError,
    MalformedRequestError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    ValidationError,
)
from licensor.gateway import keys as app_keys
from licensor.gateway.auth import Principal, authenticate
from licensor.model import canonical_json
from licensor.store import IdempotentRequest, Store, Transaction

MAX_BODY_BYTES = 1 << 20
MAX_NESTING = 32
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

    def __post_init__(self) -> None:
        self._body_validator = _validator(self.request_schema) if self.request_schema else None
        self._body_accepts = _fast_acceptor(self.request_schema) if self.request_schema else None
        query_schema = {
            "type": "object",
            "properties": {p.name: p.schema for p in self.query},
            "required": [p.name for p in self.query if p.required],
            "additionalProperties": False,
        }
        self._query_validator = _validator(query_schema)
        self._query_required = any(p.required for p in self.query)

    # --- the request pipeline ---------------------------------------------------------------------------
    async def __call__(self, request: web.Request) -> web.StreamResponse:
        if self.quick_answer is not None and not request.query_string and "Authorization" not in request.headers:
            quick = self.quick_answer(request, await _read(request))
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
            _validate(self._query_validator, raw, where="query parameter", code_prefix="PARAMETER")
        except ValidationError as error:
            # A query parameter that cannot be used is a malformed request (400), like one that cannot be read.
            raise MalformedRequestError(error.message, code=error.code) from None
        return raw

    async def _parse_body(self, request: web.Request) -> dict[str, Any]:
        if self.request_schema is None:
            if request.can_read_body and (await _read(request)).strip():
                raise MalformedRequestError("this operation takes no body", code="UNEXPECTED_BODY")
            return {}
        raw = await _read(request)
        if not raw.strip():
            body: Any = {}
        else:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError as error:
                if "depth limit" in str(error):  # orjson stops at 1024 levels, far beyond MAX_NESTING
                    raise MalformedRequestError(f"the body nests deeper than {MAX_NESTING} levels", code="NESTING_TOO_DEEP") from None
                raise MalformedRequestError("the body is not valid JSON", code="MALFORMED_JSON") from None
        # Fewer brackets than the limit cannot nest deeper: the common small body skips the walk.
        if raw.count(b"{") + raw.count(b"[") > MAX_NESTING and _depth(body) > MAX_NESTING:
            raise MalformedRequestError(f"the body nests deeper than {MAX_NESTING} levels", code="NESTING_TOO_DEEP")
        assert self._body_validator is not None and self._body_accepts is not None
        # A body without a backslash has no escape, so no string in it holds a NUL or a newline (JSON allows
        # neither raw): there the quick validator's yes is jsonschema's yes, with _strict_pattern's reading.
        if b"\\" in raw or not self._body_accepts(body):
            _validate(self._body_validator, body, where="field", code_prefix="FIELD")
        return body  # type: ignore[no-any-return]


async def _read(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLargeError(f"the body is larger than {MAX_BODY_BYTES} bytes") from None


def _depth(value: Any) -> int:
    depth, frontier = 0, [value]
    while frontier:
        depth += 1
        if depth > MAX_NESTING:
            return depth
        frontier = [
            child
            for item in frontier
            for child in (item.values() if isinstance(item, dict) else item if isinstance(item, list) else ())
        ]
    return depth - 1 if depth else 0


def _strict_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    # JSON Schema patterns are ECMA-262, where "$" does not match before a final newline as Python's does.
    if isinstance(instance, str) and (not re.search(pattern, instance) or "\n" in instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _strict_pattern})


def _fast_acceptor(schema: dict[str, Any]) -> Callable[[Any], bool]:
    """A quick yes to a valid instance of ``schema``, compiled by fastjsonschema (about 20 times faster than
    jsonschema), so that the common valid request skips jsonschema; what it does not accept goes through
    jsonschema, which names the error. It checks formats too, so it never accepts what jsonschema refuses for
    strings without newlines (see :meth:`Operation._parse_body`)."""
    compiled = fastjsonschema.compile(schema, use_default=False)

    def accepts(instance: Any) -> bool:
        try:
            compiled(instance)
        except fastjsonschema.JsonSchemaException:
            return False
        return True

    return accepts


def _validator(schema: dict[str, Any]) -> Any:
    return _Validator(schema)


_CODES = {"additionalProperties": "UNKNOWN", "required": "MISSING", "type": "WRONG_TYPE"}


def _validate(validator: Any, instance: Any, *, where: str, code_prefix: str) -> None:
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is None:
        _refuse_nul(instance, where)
        return
    location = ".".join(str(part) for part in error.absolute_path) or "(body)"
    kind = _CODES.get(str(error.validator))
    if error.validator in ("anyOf", "oneOf") and error.context and all(sub.validator == "type" for sub in error.context):
        kind = "WRONG_TYPE"  # e.g. an object for a nullable string: of none of the allowed types
    if kind == "WRONG_TYPE":
        code = "WRONG_TYPE"
    elif kind:
        code = f"{kind}_{code_prefix}"
    else:
        code = f"INVALID_{code_prefix}"
    message = error.message if len(error.message) <= 300 else error.message[:297] + "..."
    raise ValidationError(f"{where} {location}: {message}", code=code)


def _refuse_nul(value: Any, where: str) -> None:
    # No NUL in any string: PostgreSQL cannot store it and nothing legitimate needs it.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise ValidationError(f"a {where} contains a NUL character", code="INVALID_CHARACTER")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


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
                raise ValueError(f"two operations are {operation.method} {operation.path} ({known.operation_id}, {operation.operation_id})")
        self.operations.append(operation)
        return operation

    def install(self, app: web.Application) -> None:
        for operation in self.operations:
            # The bound coroutine method: aiohttp deprecates handlers that are not coroutine functions.
            app.router.add_route(operation.method, operation.path, operation.__call__)


def json_error(error: LicensorError) -> web.Response:
    body = {"error": {"code": error.code, "message": error.message}}
    return web.Response(status=error.http_status, text=orjson.dumps(body).decode(), content_type="application/json")
