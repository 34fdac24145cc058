"""Every error licensor raises, defined once.

The native core (``licensor._core``) and its pure-Python twin (``licensor._fallback``) raise these same
classes, so callers catch one set of types whichever implementation is loaded. Each class carries a stable,
machine-readable ``code`` and the HTTP status the gateway answers it with; the gateway's error middleware is
the one place that turns them into HTTP responses.
"""

from __future__ import annotations

import math

from licensor_client.errors import (
    BadSignatureError,
    InvalidInputError,
    LicensorError,
    MalformedTokenError,
    TokenError,
    UnknownKeyError,
    WrongTokenKindError,
)

__all__ = [
    "AuthenticationError",
    "BadSignatureError",
    "ConflictError",
    "IdempotencyKeyReusedError",
    "InvalidInputError",
    "InvalidStateError",
    "LicensorError",
    "MalformedRequestError",
    "MalformedTokenError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RequestError",
    "RequestRefusedError",
    "RequestTimeoutError",
    "SchemaTooNewError",
    "SchemaTooOldError",
    "StoreFullError",
    "StoreUnavailableError",
    "TokenError",
    "UnknownKeyError",
    "UnsupportedMediaTypeError",
    "ValidationError",
    "WrongTokenKindError",
]


class RequestError(LicensorError):
    """A request the gateway refuses; the subclasses fix the HTTP status."""

    code = "BAD_REQUEST"
    http_status = 400


class MalformedRequestError(RequestError):
    """The body is not JSON, nests too deeply, or a query parameter cannot be read."""

    code = "MALFORMED_REQUEST"
    http_status = 400


class ValidationError(RequestError):
    """Well-formed JSON that breaks the operation's schema: unknown or missing fields, wrong types or values.
    The code says which (UNKNOWN_FIELD, MISSING_FIELD, WRONG_TYPE, INVALID_FIELD)."""

    code = "INVALID_FIELD"
    http_status = 422


class AuthenticationError(RequestError):
    """No credential, or one that is unknown, malformed or revoked."""

    code = "UNAUTHENTICATED"
    http_status = 401


class PermissionDeniedError(RequestError):
    """The credential is valid but its role may not do this."""

    code = "FORBIDDEN"
    http_status = 403


class NotFoundError(RequestError):
    """No such object for this tenant (another tenant's object is not found either)."""

    code = "NOT_FOUND"
    http_status = 404


class ConflictError(RequestError):
    """The change collides with existing data: a taken code or e-mail, or an object still in use."""

    code = "CONFLICT"
    http_status = 409


class InvalidStateError(ConflictError):
    """The object's state does not allow the action (reinstating a revoked license, say)."""

    code = "INVALID_STATE"


class IdempotencyKeyReusedError(RequestError):
    """The Idempotency-Key was used before with another request."""

    code = "IDEMPOTENCY_KEY_REUSED"
    http_status = 422


class PayloadTooLargeError(RequestError):
    """The body is larger than the gateway accepts."""

    code = "PAYLOAD_TOO_LARGE"
    http_status = 413


class UnsupportedMediaTypeError(RequestError):
    """The body is not declared as JSON (``Content-Type: application/json``, UTF-8)."""

    code = "UNSUPPORTED_MEDIA_TYPE"
    http_status = 415


class RequestTimeoutError(RequestError):
    """The client did not send its whole request in time."""

    code = "REQUEST_TIMEOUT"
    http_status = 408


class StoreUnavailableError(LicensorError):
    """The database cannot be reached or is busy beyond its timeout; the request may be retried."""

    code = "STORE_UNAVAILABLE"
    http_status = 503


class StoreFullError(StoreUnavailableError):
    """The database's disk is full (SQLite: ``database or disk is full``): the change was not made, nothing of it
    was written, and it may be retried once space is freed. Reads go on."""

    code = "STORE_FULL"


class SchemaTooNewError(LicensorError):
    """The database's schema is newer than this licensor knows (a newer licensor migrated it): this one must not
    run on it, nor change it. Upgrade licensor, or restore a backup made before the database was migrated."""

    code = "SCHEMA_TOO_NEW"
    http_status = 503


class SchemaTooOldError(LicensorError):
    """The database's schema is older than this licensor's, and the operation reads it as it is (a backup):
    migrating it under the gateway that serves it would change production. Back it up with that gateway's
    licensor, or let the upgraded gateway migrate it first."""

    code = "SCHEMA_TOO_OLD"
    http_status = 503


class RequestRefusedError(LicensorError):
    """A request the license, or the backend's state for it, does not allow; nothing was recorded. The code is
    a verdict code (SEAT_LIMIT_REACHED, ...) or one of the backend's own (CREDENTIAL_REVOKED, ...)."""

    code = "REQUEST_REFUSED"
    http_status = 409

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message, code=str(code))
        if status is not None:
            self.http_status = status


class RateLimitedError(RequestError):
    """A rate limit refuses the request until ``retry_after_s`` has passed (429, with ``Retry-After`` and the IETF
    ``RateLimit-Policy`` / ``RateLimit`` header fields in :attr:`headers`)."""

    code = "RATE_LIMITED"
    http_status = 429

    def __init__(self, message: str, *, policy: str, quota: int, window_s: float, retry_after_s: float) -> None:
        super().__init__(message)
        seconds = max(1, math.ceil(retry_after_s))
        self.headers = {
            "Retry-After": str(seconds),
            "RateLimit-Policy": f'"{policy}";q={quota};w={max(1, math.ceil(window_s))}',
            "RateLimit": f'"{policy}";r=0;t={seconds}',
        }
