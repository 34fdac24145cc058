"""Operations declared once, as data: the route, how it is authenticated, what it accepts and answers.

The gateway turns each :class:`Operation` into a route wrapped with authentication, role checks, strict parsing
and validation of the body and query, and, for changes, one store transaction carrying the Idempotency-Key
(the request pipeline lives in ``licensor.gateway``). The OpenAPI document and the ``licensor admin`` commands
are generated from the same declarations, so none of them can drift apart.

A handler gets a :class:`Call`: the validated inputs, who made the request, and :class:`Services`, the one
object through which a plugin reaches the gateway (the store, the tenant's signing key, license lookups,
outcome counting).
"""

from __future__ import annotations

import base64
import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import orjson

from licensor.errors import MalformedRequestError, NotFoundError
from licensor.model import LICENSE, Resource, canonical_json
from licensor.schema import Schema

if TYPE_CHECKING:
    from aiohttp import web

    from licensor.license import Licensed
    from licensor.store import Row, Store, Transaction

MAX_BODY_BYTES = 1 << 20
"""The largest body any operation may declare that it takes (the gateway reads no more)."""
DEFAULT_BODY_BYTES = 64 << 10
"""The largest body of an operation that declares no limit of its own: parsing and validating a body costs
time in proportion to its size, so no operation reads more than its largest valid request needs."""

# --- roles ---------------------------------------------------------------------------------------------
ADMIN_ROLES = frozenset({"admin"})
"""Tenant administration: tokens, signing keys."""
CATALOG_ROLES = frozenset({"admin", "developer"})
"""Products, features and policies."""
SUPPORT_ROLES = frozenset({"admin", "developer", "support"})
"""Customers, licenses and what hangs off them (credentials, leases, activations)."""
READ_ROLES = frozenset({"admin", "developer", "support", "read-only"})
"""Reading anything of the tenant."""
PRODUCT_ROLES = frozenset({"product"})
"""A SaaS backend's product token (the license plane)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token of a tenant with a role (and, for a product token, its product), or a device or
    license a backend authenticated itself (``actor`` then names it in events, e.g. ``license:lic_...``)."""

    tenant_id: str
    token_id: str
    role: str
    product_id: str | None
    actor: str | None = None


# --- how an operation is authenticated ------------------------------------------------------------------
class Auth:
    """How a route is authenticated: one of :data:`PUBLIC`, :class:`Token`, :class:`OptionalToken`,
    :class:`ByBody`."""

    roles: frozenset[str] | None = None


@dataclass(frozen=True)
class _Public(Auth):
    """No authentication: anyone may call the route."""


PUBLIC: Auth = _Public()
"""No authentication (health, the published keys, the OpenAPI document)."""


@dataclass(frozen=True)
class Token(Auth):
    """An API token (``Authorization: Bearer``) of one of ``roles``; other roles get 403."""

    roles: frozenset[str]


@dataclass(frozen=True)
class OptionalToken(Auth):
    """The handler authenticates a token of ``roles`` itself, when the request needs one (``/v1/check``: a
    license key needs none, a subject needs a product token)."""

    roles: frozenset[str]


@dataclass(frozen=True)
class ByBody(Auth):
    """Authenticated by what the validated body carries (a license key, a device's signature), besides or
    instead of an API token: ``authenticate`` gets the call (with the token's principal when ``roles`` asks for
    a token first) and returns the principal whose tenant the request's transaction belongs to, or raises.
    ``carried_in`` says where the request carries it for the OpenAPI document: ``body``, or ``header`` (a
    scheme of the Authorization header other than an API token's, such as ``License <license key>``)."""

    authenticate: Callable[[Call], Awaitable[Principal]]
    roles: frozenset[str] | None = None
    carried_in: str = "body"


# --- declarations --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reply:
    """A handler's answer: the status and a JSON-serialisable body (None: no content)."""

    status: int
    body: Any


@dataclass(frozen=True)
class Param:
    """A query parameter: its name, JSON schema, description and whether it must be given."""

    name: str
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class SecretInput:
    """A body field the ``licensor admin`` command reads from standard input (or a prompt) instead of a flag,
    so the secret stays out of the shell's history and the process list (a license key)."""

    field: str
    prompt: str


@dataclass(frozen=True)
class SecretOutput:
    """A field of the answer holding a file's contents that ``licensor admin`` writes to a new file of mode
    0600 (``--out``) instead of printing it (a credential file)."""

    field: str
    default_file: str


Handler = Callable[["Call"], Awaitable[Reply]]


@dataclass(kw_only=True)
class Operation:
    """One route of the gateway, declared once."""

    method: str
    path: str
    operation_id: str
    summary: str
    handler: Handler
    tag: str
    auth: Auth
    response_schema: dict[str, Any] | None
    status: int = 200
    request_schema: dict[str, Any] | None = None
    query: tuple[Param, ...] = ()
    path_patterns: dict[str, str] = field(default_factory=dict)
    description: str = ""
    changes_state: bool = False  # runs in a store transaction and honours Idempotency-Key
    errors: tuple[int, ...] = ()
    response_content_type: str = "application/json"
    # Answers an identical repeat of an unauthenticated request from memory (None: go through the pipeline).
    quick_answer: Callable[[Services, web.Request, bytes], web.StreamResponse | None] | None = None
    max_body_bytes: int = DEFAULT_BODY_BYTES  # a larger body is refused (413) before it is parsed
    secret_input: SecretInput | None = None
    secret_output: SecretOutput | None = None
    # The body is handed over unparsed (Call.raw_body): a signed webhook, whose signature covers the exact bytes,
    # is checked before anything reads it. request_schema then only documents it.
    raw_body: bool = False

    def __post_init__(self) -> None:
        """:raises ValueError: a body limit over :data:`MAX_BODY_BYTES`."""
        if not 0 < self.max_body_bytes <= MAX_BODY_BYTES:
            raise ValueError(f"{self.operation_id}: max_body_bytes must lie between 1 and {MAX_BODY_BYTES}")

    @property
    def roles(self) -> frozenset[str] | None:
        """The token roles the route takes (None: it takes no token)."""
        return self.auth.roles

    @cached_property
    def body_schema(self) -> Schema | None:
        """The compiled request schema (compiled on first use: building the table costs little).

        :raises ValueError: a schema keyword that is not checked (see :class:`licensor.schema.Schema`)."""
        return Schema(self.request_schema) if self.request_schema else None

    @cached_property
    def query_schema(self) -> Schema:
        return Schema(
            {
                "type": "object",
                "properties": {p.name: p.schema for p in self.query},
                "required": [p.name for p in self.query if p.required],
                "additionalProperties": False,
            }
        )

    @cached_property
    def query_required(self) -> bool:
        return any(p.required for p in self.query)


# --- what a handler gets -------------------------------------------------------------------------------
class Services(ABC):
    """What the gateway offers operations and backends, handed to every handler and authenticator on
    :attr:`Call.services`. Lookups go through the gateway's license cache."""

    @property
    @abstractmethod
    def store(self) -> Store:
        """The gateway's store (outside a request's transaction: reads see what is committed)."""

    @property
    @abstractmethod
    def public_url(self) -> str | None:
        """The gateway's public base URL when it is configured (``--public-url``), else None."""

    @abstractmethod
    async def signing_key(self, tenant_id: str) -> tuple[str, bytes]:
        """(key id, seed) of the tenant's active signing key.

        :raises LookupError: the tenant has no active key (no such tenant)."""

    @abstractmethod
    async def public_keys(self, tenant_id: str) -> dict[str, bytes]:
        """Key id -> public key of every key of the tenant that is published (for verifying its tokens)."""

    @abstractmethod
    async def license_by_key(self, tenant_id: str, license_key: str) -> Licensed | None:
        """The tenant's license with this key (as the software sent it), or None.

        :raises licensor.errors.ValidationError: LICENSE_KEY_MALFORMED (a typo, not an unknown key)."""

    @abstractmethod
    async def license_by_id(self, tenant_id: str, license_id: str) -> Licensed | None:
        """The tenant's license with this id (as a signed document names it), or None."""

    @abstractmethod
    async def product_by_code(self, tenant_id: str, code: str) -> Row | None:
        """The tenant's product with this code, or None."""

    @abstractmethod
    async def licenses_of_subject(self, tenant_id: str, product_id: str, subject: str) -> list[Licensed]:
        """The licenses of the product assigned to ``subject`` (a SaaS user or customer id), oldest first."""

    @abstractmethod
    def record_outcome(self, tenant_id: str, license_id: str | None, code: str) -> None:
        """Count a check's outcome for the event log (off the hot path: batched)."""

    @abstractmethod
    def now_us(self) -> int:
        """The gateway's clock (µs since the epoch): one clock for verdicts and the answers signed over them."""

    @abstractmethod
    def count_churn(self, tenant_id: str, license_id: str) -> None:
        """Count one activation or deactivation of a license against the gateway's churn budget
        (``rate_limits.churn``).

        :raises licensor.errors.RateLimitedError: the license's budget is used up (429)."""


@dataclass
class Call:
    """What a handler gets: the request, who made it, the validated inputs and the gateway's services."""

    request: web.Request
    services: Services
    principal: Principal | None
    path: dict[str, str]
    query: dict[str, Any]
    body: dict[str, Any]
    raw_body: bytes = b""
    tx: Transaction | None = None
    context: dict[str, Any] = field(default_factory=dict)
    """What an authenticator resolved for the handler (a device's credential, the tenant's key)."""

    @property
    def store(self) -> Store:
        return self.services.store

    @property
    def tenant_id(self) -> str:
        assert self.principal is not None
        return self.principal.tenant_id

    @property
    def actor(self) -> str:
        if self.principal is None:
            return "anonymous"
        return self.principal.actor or f"token:{self.principal.token_id}"

    @property
    def base_url(self) -> str:
        """The gateway's base URL as its clients reach it (``--public-url``, or the request's scheme and host)."""
        return self.services.public_url or f"{self.request.scheme}://{self.request.host}"


# --- pagination ----------------------------------------------------------------------------------------
PAGE_PARAMS = (
    Param("limit", {"type": "integer", "minimum": 1, "maximum": 200}, "Page size (default 50)."),
    Param("cursor", {"type": "string", "minLength": 1, "maxLength": 512}, "The next_cursor of the previous page."),
)
DEFAULT_PAGE_SIZE = 50

_CURSOR_ID = re.compile(r"[a-z]{3}_[0-9A-HJKMNP-TV-Z]{26}")


def encode_cursor(scope: str, position: str | int) -> str:
    """An opaque cursor for the next page of ``scope`` (a list)."""
    return base64.urlsafe_b64encode(canonical_json([scope, position]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, scope: str) -> Any:
    """The position a cursor of ``scope`` holds (an object id or an event sequence number).

    :raises MalformedRequestError: INVALID_CURSOR, a cursor this API did not give out for ``scope`` (400)."""
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


def id_cursor(call: Call, scope: str) -> str | None:
    """The object id the call's ``cursor`` query parameter (of a list of ``scope``) continues after, if any.

    :raises MalformedRequestError: INVALID_CURSOR (400)."""
    if "cursor" not in call.query:
        return None
    after = decode_cursor(call.query["cursor"], scope)
    if not isinstance(after, str):
        raise MalformedRequestError("the cursor is not one this API gave out", code="INVALID_CURSOR")
    return after


def list_reply(scope: str, items: list[dict[str, Any]], has_more: bool, position: str | int | None) -> Reply:
    """A page of ``scope``: ``{"object": "list", "data", "has_more", "next_cursor"}``."""
    next_cursor = encode_cursor(scope, position) if has_more and position is not None else None
    return Reply(200, {"object": "list", "data": items, "has_more": has_more, "next_cursor": next_cursor})


def list_schema(item_schema: dict[str, Any]) -> dict[str, Any]:
    """The schema of a page of items of ``item_schema``."""
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


async def license_of(call: Call, license_id: str | None = None) -> Row:
    """The caller's tenant's license ``license_id`` (default: the path's ``id``).

    :raises NotFoundError: LICENSE_NOT_FOUND (404)."""
    license = await call.store.get(call.tenant_id, LICENSE, license_id or call.path["id"])
    if license is None:
        raise NotFoundError("no such license", code="LICENSE_NOT_FOUND")
    return license


async def list_license_items(
    call: Call, resource: Resource, shown: Callable[[Row], dict[str, Any]], filters: Mapping[str, Any] | None = None
) -> Reply:
    """A page of the path's license's items of ``resource`` (its credentials, leases, activations), each as
    ``shown`` presents it, filtered by ``filters`` and by the ``state`` query parameter when given.

    :raises NotFoundError: LICENSE_NOT_FOUND (404).
    :raises MalformedRequestError: INVALID_CURSOR (400)."""
    license = await license_of(call)
    after = id_cursor(call, resource.plural)
    where = {"license_id": license["id"], **(filters or {}), **({"state": call.query["state"]} if "state" in call.query else {})}
    page = await call.store.list(call.tenant_id, resource, where, after, call.query.get("limit", DEFAULT_PAGE_SIZE))
    items = [shown(row) for row in page.rows]
    return list_reply(resource.plural, items, page.has_more, items[-1]["id"] if items else None)
