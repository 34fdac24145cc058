"""License Central's domain, declared once: each resource's fields, how they are stored, validated and shown.

The store builds its SQL from these declarations (table and column names come only from here, never from a
request), the admin API builds its JSON schemas and routes from them, and the OpenAPI document follows.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from licensor_client.formats import PRODUCT_CODE_PATTERN, id_pattern
from licensor_client.tokens import canonical_json

from licensor.errors import ValidationError

FieldKind = Literal["text", "int", "bool", "time", "json", "ref"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def now_us() -> int:
    """The current time in microseconds since the epoch, the unit every stored time uses."""
    return time.time_ns() // 1000


def new_id(prefix: str) -> str:
    """A new object id: the prefix, then 48 bits of milliseconds and 80 random bits in Crockford base32, so
    ids sort by creation time (cursor pagination walks them in order) and cannot be guessed."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$")
TIME_SCHEMA = {"type": "string", "format": "date-time", "pattern": _TIME.pattern, "maxLength": 40}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME_US = int((datetime(9999, 1, 1, tzinfo=UTC) - _EPOCH).total_seconds()) * 1_000_000
"""Times run from the epoch to 9999-01-01, so any of them plus a policy's longest period still prints."""


def parse_time(text: str, name: str) -> int:
    """An RFC 3339 time with an offset, as microseconds since the epoch; refuses impossible dates."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        delta = parsed - _EPOCH
    except (ValueError, TypeError, OverflowError):
        raise ValidationError(f"{name} is not a valid date-time with an offset", code="INVALID_FIELD") from None
    return checked_time((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds, name)


def checked_time(micros: int, name: str) -> int:
    """``micros`` if it lies between the epoch and :data:`MAX_TIME_US`."""
    if not 0 <= micros <= MAX_TIME_US:
        raise ValidationError(f"{name} must lie between 1970 and 9999", code="INVALID_FIELD")
    return micros


def format_time(micros: int | None) -> str | None:
    if micros is None:
        return None
    moment = datetime.fromtimestamp(micros / 1_000_000, tz=UTC).replace(microsecond=micros % 1_000_000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Field:
    """One field of a resource: its JSON schema, storage kind, and what the API may do with it."""

    name: str
    schema: dict[str, Any]
    kind: FieldKind = "text"
    required: bool = False  # on create
    mutable: bool = True  # on update
    filterable: bool = False  # as a list filter (?name=value)
    default: Any = None  # on create when absent (a callable is called)
    references: str | None = None  # the resource a "ref" field points to (same tenant)
    writable: bool = True  # False: set by the server only, shown in responses
    shown: bool = True  # False: never in a response (a secret's hash)

    def api_to_column(self, value: Any) -> Any:
        if value is None:
            return None
        if self.kind == "bool":
            return 1 if value else 0
        if self.kind == "time":
            return parse_time(value, self.name)
        if self.kind == "json":
            return canonical_json(value)
        return value

    def column_to_api(self, value: Any) -> Any:
        if value is None:
            return None
        if self.kind == "bool":
            return bool(value)
        if self.kind == "time":
            return format_time(value)
        if self.kind == "json":
            return orjson.loads(value)
        return value


@dataclass(frozen=True)
class Resource:
    """A License Central resource stored in its own table and served under ``/v1/admin/{plural}``."""

    name: str
    plural: str
    id_prefix: str
    fields: tuple[Field, ...]
    unique: tuple[tuple[str, ...], ...] = ()
    deletable: bool = True
    # Resources whose rows point here: (resource plural, column), checked before a delete.
    referenced_by: tuple[tuple[str, str], ...] = ()
    description: str = ""
    actions: tuple[str, ...] = field(default=())
    # License Central objects are cached by the gateway: their writes are announced so every cache drops them.
    # A backend's own state (activations, leases) is read from the store each time and is not announced.
    announced: bool = True
    # False: the admin API only reads it (the server writes it: received order events).
    api_writable: bool = True

    @property
    def table(self) -> str:
        return self.plural

    @property
    def segment(self) -> str:
        """The resource's path segment under ``/v1/admin/`` (``order-sources`` for the table ``order_sources``)."""
        return self.plural.replace("_", "-")

    def field(self, name: str) -> Field:
        for candidate in self.fields:
            if candidate.name == name:
                return candidate
        raise KeyError(name)

    @property
    def filters(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.filterable)

    def to_api(self, row: dict[str, Any]) -> dict[str, Any]:
        shown: dict[str, Any] = {"id": row["id"], "object": self.name}
        for f in self.fields:
            if f.shown:
                shown[f.name] = f.column_to_api(row[f.name])
        shown["created_at"] = format_time(row["created_at"])
        shown["updated_at"] = format_time(row["updated_at"])
        return shown

    def create_schema(self) -> dict[str, Any]:
        writable = [f for f in self.fields if f.writable]
        return {
            "type": "object",
            "properties": {f.name: f.schema for f in writable},
            "required": [f.name for f in writable if f.required],
            "additionalProperties": False,
        }

    def update_schema(self) -> dict[str, Any]:
        mutable = [f for f in self.fields if f.writable and f.mutable]
        return {
            "type": "object",
            "properties": {f.name: f.schema for f in mutable},
            "additionalProperties": False,
            "minProperties": 1,
        }

    def response_schema(self) -> dict[str, Any]:
        properties: dict[str, Any] = {
            "id": {"type": "string", "pattern": id_pattern(self.id_prefix)},
            "object": {"const": self.name},
            "created_at": TIME_SCHEMA,
            "updated_at": TIME_SCHEMA,
        }
        for f in self.fields:
            if f.shown:
                properties[f.name] = f.schema
        return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


CODE_SCHEMA = {"type": "string", "pattern": PRODUCT_CODE_PATTERN}
NAME_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 200}


def _ref(
    name: str,
    prefix: str,
    *,
    required: bool = True,
    mutable: bool = False,
    may_be_null: bool = False,
    writable: bool = True,
    to: str | None = None,
) -> Field:
    """The field ``{name}_id`` naming an object of the resource ``to`` (default: ``name``) of the same tenant."""
    schema: dict[str, Any] = {"type": "string", "pattern": id_pattern(prefix)}
    return Field(
        f"{name}_id",
        nullable(schema) if may_be_null else schema,
        kind="ref",
        required=required,
        mutable=mutable,
        filterable=True,
        references=to or name,
        writable=writable,
    )


PRODUCT = Resource(
    "product",
    "products",
    "prd",
    (
        Field("code", CODE_SCHEMA, required=True, mutable=False, filterable=True),
        Field("name", NAME_SCHEMA, required=True),
        Field("description", nullable({"type": "string", "maxLength": 2000})),
    ),
    unique=(("code",),),
    referenced_by=(
        ("features", "product_id"),
        ("releases", "product_id"),
        ("policies", "product_id"),
        ("licenses", "product_id"),
    ),
    description="A product the vendor licenses, with its feature catalog and releases.",
)

FEATURE = Resource(
    "feature",
    "features",
    "fea",
    (
        _ref("product", "prd"),
        Field("code", CODE_SCHEMA, required=True, mutable=False, filterable=True),
        Field("name", NAME_SCHEMA, required=True),
        Field("metered", {"type": "boolean"}, kind="bool", default=False),
        Field("unit", nullable({"type": "string", "minLength": 1, "maxLength": 32})),
    ),
    unique=(("product_id", "code"),),
    description="A feature of a product that policies and licenses entitle.",
)

ARTIFACT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": "^[0-9A-Za-z][0-9A-Za-z._+-]{0,127}$"},
        "url": {"type": "string", "pattern": "^https?://[^\\s]{1,2000}$"},
        "size": {"type": "integer", "minimum": 0, "maximum": 1 << 50},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    },
    "required": ["name", "url", "size", "sha256"],
    "additionalProperties": False,
}
"""A file of a release: where to download it, and its size and SHA-256 (lower-case hex), which the client checks."""

RELEASE = Resource(
    "release",
    "releases",
    "rel",
    (
        _ref("product", "prd"),
        Field(
            "version",
            {"type": "string", "pattern": "^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$"},
            required=True,
            mutable=False,
            filterable=True,
        ),
        Field("channel", {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,31}$"}, default="stable", filterable=True),
        Field("released_at", TIME_SCHEMA, kind="time", default=lambda: format_time(now_us())),
        Field(
            "required_features",
            {"type": "array", "items": CODE_SCHEMA, "maxItems": 256, "uniqueItems": True},
            kind="json",
            default=list,
        ),
        Field("yanked", {"type": "boolean"}, kind="bool", default=False, filterable=True),
        Field("artifacts", {"type": "array", "items": ARTIFACT_SCHEMA, "maxItems": 32}, kind="json", default=list),
    ),
    unique=(("product_id", "channel", "version"),),
    description=(
        "A released version of a product on a channel, the features it requires and its files (artifacts). A yanked "
        "release is never offered again. A version with a pre-release part (1.2.0-beta.1) is offered only when asked for."
    ),
)

DURATION_SCHEMA = {
    "type": "object",
    "properties": {
        "kind": {"enum": ["perpetual", "subscription", "trial"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 36500},
    },
    "required": ["kind"],
    "additionalProperties": False,
}

POLICY = Resource(
    "policy",
    "policies",
    "pol",
    (
        _ref("product", "prd"),
        Field("name", NAME_SCHEMA, required=True),
        Field("backend", {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,31}$"}, required=True, mutable=False, filterable=True),
        Field("seats", {"type": "integer", "minimum": 1, "maximum": 1_000_000}, kind="int", default=1),
        Field("duration", DURATION_SCHEMA, kind="json", default=lambda: {"kind": "perpetual"}),
        Field("maintenance_days", nullable({"type": "integer", "minimum": 0, "maximum": 36500}), kind="int"),
        Field(
            "features",
            {
                "type": "array",
                "maxItems": 256,
                "items": {
                    "type": "object",
                    "properties": {
                        "code": CODE_SCHEMA,
                        "quantity": nullable({"type": "integer", "minimum": 1, "maximum": 1_000_000_000}),
                    },
                    "required": ["code"],
                    "additionalProperties": False,
                },
            },
            kind="json",
            default=list,
        ),
        Field("options", {"type": "object", "maxProperties": 64}, kind="json", default=dict),
    ),
    referenced_by=(("licenses", "policy_id"), ("order_mappings", "policy_id")),
    description="License Central's template: backend, seats, duration, maintenance and features of licenses.",
)

CUSTOMER = Resource(
    "customer",
    "customers",
    "cus",
    (
        Field("email", {"type": "string", "pattern": r"^[^@\s]{1,64}@[^@\s]{1,189}$"}, required=True, filterable=True),
        Field("name", NAME_SCHEMA, required=True),
        Field("external_ref", nullable({"type": "string", "minLength": 1, "maxLength": 200}), filterable=True),
        # The portal password (argon2id), set by the customer through a single-use link; never shown.
        Field("password_hash", nullable({"type": "string"}), writable=False, shown=False),
    ),
    unique=(("email",),),
    referenced_by=(("licenses", "customer_id"),),
    description="An end user or organisation that holds licenses and signs in to the portal.",
)

LICENSE_STATES = ("active", "suspended", "revoked")

SUBJECT_SCHEMA = {"type": "string", "pattern": "^[\\x21-\\x7e]{1,200}$"}
"""A SaaS backend's own id of a user or customer (cloud-lite): printable ASCII without spaces."""

LICENSE = Resource(
    "license",
    "licenses",
    "lic",
    (
        _ref("product", "prd", required=False, writable=False),
        _ref("policy", "pol", mutable=False),
        _ref("customer", "cus", required=False, mutable=True, may_be_null=True),
        Field("state", {"enum": list(LICENSE_STATES)}, filterable=True, writable=False),
        Field("key_hint", {"type": "string"}, writable=False),
        Field("starts_at", TIME_SCHEMA, kind="time", mutable=False),
        Field("expires_at", nullable(TIME_SCHEMA), kind="time"),
        Field("maintenance_until", nullable(TIME_SCHEMA), kind="time"),
        Field("overrides", {"type": "object", "maxProperties": 64}, kind="json", default=dict),
        Field("order_ref", nullable({"type": "string", "minLength": 1, "maxLength": 200}), filterable=True),
        Field("subject", nullable(SUBJECT_SCHEMA), filterable=True),
        Field("generation", {"type": "integer", "minimum": 1}, kind="int", writable=False),
        # The shop's time of the newest order event applied per aspect (licensor.commerce): never shown.
        Field("order_marks", {"type": "object"}, kind="json", writable=False, shown=False),
    ),
    deletable=False,
    description="A license of a product under a policy, optionally held by a customer. Its key is shown once.",
    actions=("suspend", "reinstate", "renew", "revoke"),
)

ACTIVATION_STATES = ("active", "suspended", "withdrawn", "replaced", "deactivated")

ACTIVATION = Resource(
    "activation",
    "activations",
    "act",
    (
        _ref("license", "lic"),
        Field("state", {"enum": list(ACTIVATION_STATES)}, filterable=True, writable=False),
        Field("device_key", {"type": "string"}, writable=False),
        Field("device_name", nullable({"type": "string", "maxLength": 200})),
        Field("fingerprint", {"type": "object"}, kind="json", writable=False),
        Field("generation", {"type": "integer"}, kind="int", writable=False),
        Field("mode", {"enum": ["online", "offline"]}, writable=False),
        Field("checkpoint_at", TIME_SCHEMA, kind="time", writable=False),
        Field("lapses_at", TIME_SCHEMA, kind="time", writable=False),
        Field("last_checkin_at", nullable(TIME_SCHEMA), kind="time", writable=False),
        Field("last_request_digest", nullable({"type": "string"}), writable=False),
        Field("recovery_of", nullable({"type": "string", "pattern": id_pattern("act")}), writable=False),
        Field("flagged", nullable({"enum": ["clone", "rollback"]}), writable=False),
        Field("ended_at", nullable(TIME_SCHEMA), kind="time", writable=False),
    ),
    deletable=False,
    description="A device bound to a license (the activation backend): written by that backend, not by the admin API.",
    announced=False,
)
"""Activations are not a License Central resource of the admin API (not in :data:`RESOURCES`); the activation
backend writes them through the store interface and serves its own routes for them."""

CREDENTIAL_STATES = ("active", "revoked")

CREDENTIAL = Resource(
    "credential",
    "credentials",
    "crd",
    (
        _ref("license", "lic"),
        Field("label", nullable({"type": "string", "minLength": 1, "maxLength": 200})),
        Field("state", {"enum": list(CREDENTIAL_STATES)}, filterable=True, writable=False),
        Field("secret_hash", {"type": "string"}, writable=False, shown=False),
        Field("reissue_of", nullable({"type": "string", "pattern": id_pattern("crd")}), writable=False),
        Field("revoked_at", nullable(TIME_SCHEMA), kind="time", writable=False),
    ),
    deletable=False,
    description="A credential file's identity (the cloud backend): its secret is stored only as a hash.",
    announced=False,
)

LEASE_STATES = ("active", "released", "expired", "taken_over", "revoked")

LEASE = Resource(
    "lease",
    "leases",
    "lse",
    (
        _ref("license", "lic"),
        _ref("credential", "crd"),
        Field("device_id", {"type": "string"}, filterable=True, writable=False),
        Field("device_name", nullable({"type": "string", "maxLength": 200})),
        Field("features", {"type": "array"}, kind="json", writable=False),
        Field("state", {"enum": list(LEASE_STATES)}, filterable=True, writable=False),
        Field("secret_hash", {"type": "string"}, writable=False, shown=False),
        Field("expires_at", TIME_SCHEMA, kind="time", writable=False),
        Field("renewed_at", nullable(TIME_SCHEMA), kind="time", writable=False),
        Field("renewals", {"type": "integer"}, kind="int", writable=False),
        Field("ended_at", nullable(TIME_SCHEMA), kind="time", writable=False),
        Field("taken_over_by", nullable({"type": "string", "pattern": id_pattern("lse")}), writable=False),
    ),
    deletable=False,
    description="A seat held by a device for a while (the cloud backend): renewed by heartbeats, counted on the server.",
    announced=False,
)
"""Credentials and leases, like activations, are written by their backend through the store interface and served
by its own routes, not by the admin API's generic resource routes."""

ORDER_EFFECTS = ("payment_failed", "cancellation", "refund", "dispute")
"""The order events whose effect on a license the vendor chooses per order source (revoke, suspend or none)."""

ORDER_SOURCE = Resource(
    "order_source",
    "order_sources",
    "osr",
    (
        Field("kind", {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,31}$"}, required=True, mutable=False, filterable=True),
        Field("name", NAME_SCHEMA, required=True),
        # Sealed with the master key before it is stored (licensor.commerce.admin); write-only.
        Field(
            "secrets",
            {"type": "array", "items": {"type": "string", "pattern": "^[\\x21-\\x7e]{8,500}$"}, "minItems": 1, "maxItems": 3},
            required=True,
            shown=False,
        ),
        Field(
            "effects",
            {
                "type": "object",
                "properties": {name: {"enum": ["revoke", "suspend", "none"]} for name in ORDER_EFFECTS},
                "additionalProperties": False,
            },
            kind="json",
            default=dict,
        ),
    ),
    referenced_by=(("order_mappings", "source_id"), ("order_events", "source_id")),
    description=(
        "A shop that sends orders to POST /v1/orders/{id}: its kind (stripe, paddle, shopify, fastspring, "
        "standard-webhooks or a plugin's), its signing secrets (write-only; up to three while one is rotated) and the "
        "effect of payment failures, cancellations, refunds and disputes (revoke, suspend or none)."
    ),
)

ORDER_MAPPING = Resource(
    "order_mapping",
    "order_mappings",
    "omp",
    (
        _ref("source", "osr", to="order_source"),
        Field("item", {"type": "string", "pattern": "^[\\x21-\\x7e]{1,200}$"}, required=True, mutable=False, filterable=True),
        _ref("policy", "pol", mutable=True),
    ),
    unique=(("source_id", "item"),),
    description="Which policy a shop's item (a SKU, a price id, a product code) is licensed under.",
)

ORDER_EVENT = Resource(
    "order_event",
    "order_events",
    "oev",
    (
        _ref("source", "osr", to="order_source", writable=False),
        Field("business_key", {"type": "string"}, writable=False),
        Field("type", {"type": "string"}, writable=False, filterable=True),
        Field("provider_event_id", {"type": "string"}, writable=False, filterable=True),
        Field("provider_type", {"type": "string"}, writable=False),
        Field("outcome", {"type": "string"}, writable=False, filterable=True),
        Field("detail", nullable({"type": "string"}), writable=False),
        Field("license_ids", {"type": "array", "items": {"type": "string"}}, kind="json", writable=False),
        Field("occurred_at", TIME_SCHEMA, kind="time", writable=False),
    ),
    deletable=False,
    api_writable=False,
    description="A business event received from an order source, once however often it was delivered, and its outcome.",
    announced=False,
)

ORDER_LINK = Resource(
    "order_link",
    "order_links",
    "olk",
    (
        _ref("source", "osr", to="order_source"),
        Field("reference", {"type": "string"}),
        Field("license_id", {"type": "string"}),  # "" for an order that licensed nothing
    ),
    description="A shop's id (order, subscription, invoice, payment) naming a license.",
    announced=False,
)

EVENT_TYPE_PATTERN = "^(\\*|[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)*(\\.\\*)?)$"
"""An event type a webhook endpoint subscribes to: exact (``license.created``), every type under a prefix
(``license.*``), or ``*``."""

WEBHOOK_ENDPOINT = Resource(
    "webhook_endpoint",
    "webhook_endpoints",
    "whe",
    (
        # An ASCII host (a name, an IPv4 address or a bracketed IPv6 one, and a port), then a path of printable ASCII.
        Field(
            "url", {"type": "string", "pattern": "^https?://[A-Za-z0-9.:\\[\\]-]{1,261}(/[\\x21-\\x7e]{0,2000})?$"}, required=True
        ),
        Field("description", nullable({"type": "string", "maxLength": 500})),
        Field(
            "event_types",
            {"type": "array", "items": {"type": "string", "pattern": EVENT_TYPE_PATTERN}, "minItems": 1, "maxItems": 64},
            kind="json",
            default=lambda: ["*"],
        ),
        # The optional HMAC secret (Standard Webhooks' v1, whsec_<base64>): sealed before it is stored; write-only.
        Field("secret", nullable({"type": "string", "pattern": "^whsec_[A-Za-z0-9+/=]{16,200}$"}), shown=False),
        Field("state", {"enum": ["enabled", "disabled"]}, default="enabled", filterable=True),
        Field("disabled_reason", nullable({"type": "string"}), writable=False),
        Field("failing_since", nullable(TIME_SCHEMA), kind="time", writable=False),
        Field("cursor_seq", {"type": "integer"}, kind="int", writable=False, shown=False),
    ),
    referenced_by=(("webhook_deliveries", "endpoint_id"),),
    description=(
        "A vendor's endpoint that receives the events of the types it subscribes to (exact, `prefix.*` or `*`), signed "
        "in the Standard Webhooks format with the tenant's Ed25519 key (v1a) and, given a secret, HMAC (v1). An endpoint "
        "failing for 5 days is disabled; set its state to enabled again to resume."
    ),
    announced=False,
)

WEBHOOK_DELIVERY = Resource(
    "webhook_delivery",
    "webhook_deliveries",
    "msg",
    (
        _ref("endpoint", "whe", to="webhook_endpoint", writable=False),
        Field("event_id", {"type": "string"}, writable=False),
        Field("event_seq", {"type": "integer"}, kind="int", writable=False),
        Field("event_type", {"type": "string"}, writable=False, filterable=True),
        Field("payload", {"type": "object"}, kind="json", writable=False),
        Field("state", {"enum": ["pending", "delivered", "failed"]}, writable=False, filterable=True),
        Field("attempts", {"type": "integer"}, kind="int", writable=False),
        Field("next_attempt_at", TIME_SCHEMA, kind="time", writable=False),
        Field("claimed_until", nullable(TIME_SCHEMA), kind="time", writable=False, shown=False),
        Field("last_status", nullable({"type": "integer"}), kind="int", writable=False),
        Field("last_error", nullable({"type": "string"}), writable=False),
        Field("delivered_at", nullable(TIME_SCHEMA), kind="time", writable=False),
    ),
    deletable=False,
    api_writable=False,
    description="An event owed to a webhook endpoint (its id is the webhook-id header), retried until delivered or 3 days old.",
    announced=False,
)

WEBHOOK_ATTEMPT = Resource(
    "webhook_attempt",
    "webhook_attempts",
    "wha",
    (
        _ref("delivery", "msg", to="webhook_delivery", writable=False),
        Field("attempt", {"type": "integer"}, kind="int", writable=False),
        Field("status", nullable({"type": "integer"}), kind="int", writable=False),
        Field("error", nullable({"type": "string"}), writable=False),
        Field("duration_ms", {"type": "integer"}, kind="int", writable=False),
    ),
    deletable=False,
    api_writable=False,
    description="One attempt to deliver a webhook: the HTTP status, or the error when no answer came.",
    announced=False,
)

COLOR_SCHEMA = {"type": "string", "pattern": "^#[0-9a-fA-F]{6}$"}

PORTAL_BRANDING = Resource(
    "portal_branding",
    "portal_brandings",
    "pbr",
    (
        Field("name", NAME_SCHEMA, required=True),
        Field("logo_url", nullable({"type": "string", "pattern": "^https://[^\\s\"'<>]{1,2000}$"})),
        Field("primary_color", COLOR_SCHEMA, default="#1f4e8c"),
        Field("accent_color", COLOR_SCHEMA, default="#0b7a5c"),
    ),
    description="How the tenant's License Portal looks: its name, logo (an https URL) and colours.",
)

PORTAL_SESSION = Resource(
    "portal_session",
    "portal_sessions",
    "pss",
    (
        Field("secret_hash", {"type": "string"}, writable=False, shown=False),
        Field("customer_id", nullable({"type": "string"}), writable=False),
        Field("license_id", nullable({"type": "string"}), writable=False),
        Field("expires_at", TIME_SCHEMA, kind="time", writable=False),
    ),
    description="A signed-in portal session (the cookie holds its id and secret; the secret is stored hashed).",
    announced=False,
)

PORTAL_TOKEN = Resource(
    "portal_token",
    "portal_tokens",
    "ptk",
    (
        Field("customer_id", {"type": "string"}, writable=False),
        Field("purpose", {"enum": ["password", "sign_in"]}, writable=False),
        Field("secret_hash", {"type": "string"}, writable=False, shown=False),
        Field("expires_at", TIME_SCHEMA, kind="time", writable=False),
        Field("used_at", nullable(TIME_SCHEMA), kind="time", writable=False),
    ),
    description="A single-use link mailed to a customer: setting a password, or signing in.",
    announced=False,
)

RESOURCES: dict[str, Resource] = {
    r.plural: r
    for r in (
        PRODUCT,
        FEATURE,
        RELEASE,
        POLICY,
        CUSTOMER,
        LICENSE,
        ORDER_SOURCE,
        ORDER_MAPPING,
        ORDER_EVENT,
        WEBHOOK_ENDPOINT,
        WEBHOOK_DELIVERY,
        WEBHOOK_ATTEMPT,
    )
}
"""The resources of the admin API (order links are commerce's own bookkeeping, not served)."""
BY_NAME: dict[str, Resource] = {r.name: r for r in RESOURCES.values()}

ROLES = ("admin", "developer", "support", "read-only", "product")
