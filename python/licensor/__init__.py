"""licensor: a self-hosted software-licensing gateway.

This module is the public API for plugin authors: everything a backend or a route plugin needs is imported from
here (``from licensor import Backend, Operation, hookimpl``), besides the data model (:mod:`licensor.model`),
the store interface (:mod:`licensor.store`), device fingerprints (:mod:`licensor.fingerprint`), signed documents
(:mod:`licensor.tokens`), JSON schemas (:mod:`licensor.schema`), batched verification of device-signed tokens
(:mod:`licensor.batching`), the client distribution's formats (``licensor_client``: what a backend signs, the
software reads) and, in tests, :mod:`licensor.testing`. ``docs/plugins.md`` is its reference; nothing under ``licensor.gateway``
or ``licensor.central`` is.
"""

from licensor.backend import Backend
from licensor.errors import (
    AuthenticationError,
    ConflictError,
    InvalidStateError,
    LicensorError,
    MalformedRequestError,
    NotFoundError,
    PermissionDeniedError,
    RequestRefusedError,
    TokenError,
    ValidationError,
)
from licensor.hookspecs import hookimpl
from licensor.license import CheckRequest, Licensed, LicenseTerms, license_terms_verdict, licensed_in
from licensor.operations import (
    ADMIN_ROLES,
    CATALOG_ROLES,
    PAGE_PARAMS,
    PRODUCT_ROLES,
    PUBLIC,
    READ_ROLES,
    SUPPORT_ROLES,
    Auth,
    ByBody,
    Call,
    Operation,
    OptionalToken,
    Param,
    Principal,
    Reply,
    SecretInput,
    SecretOutput,
    Services,
    Token,
    decode_cursor,
    encode_cursor,
    id_cursor,
    license_of,
    list_license_items,
    list_reply,
    list_schema,
)
from licensor.tokens import TokenKind
from licensor.verdict import Code, Entitlement, Verdict

__version__ = "0.1.0"

__all__ = [
    "ADMIN_ROLES",
    "CATALOG_ROLES",
    "PAGE_PARAMS",
    "PRODUCT_ROLES",
    "PUBLIC",
    "READ_ROLES",
    "SUPPORT_ROLES",
    "Auth",
    "AuthenticationError",
    "Backend",
    "ByBody",
    "Call",
    "CheckRequest",
    "Code",
    "ConflictError",
    "Entitlement",
    "InvalidStateError",
    "LicenseTerms",
    "Licensed",
    "LicensorError",
    "MalformedRequestError",
    "NotFoundError",
    "Operation",
    "OptionalToken",
    "Param",
    "PermissionDeniedError",
    "Principal",
    "Reply",
    "RequestRefusedError",
    "SecretInput",
    "SecretOutput",
    "Services",
    "Token",
    "TokenError",
    "TokenKind",
    "ValidationError",
    "Verdict",
    "decode_cursor",
    "encode_cursor",
    "hookimpl",
    "id_cursor",
    "license_of",
    "license_terms_verdict",
    "licensed_in",
    "list_license_items",
    "list_reply",
    "list_schema",
]
