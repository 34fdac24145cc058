"""Every error licensor raises, defined once.

The native core (``licensor._core``) and its pure-Python twin (``licensor._fallback``) raise these same
classes, so callers catch one set of types whichever implementation is loaded. Each class carries a stable,
machine-readable ``code`` and the HTTP status the gateway answers it with; the gateway's error middleware is
the one place that turns them into HTTP responses.
"""

from __future__ import annotations

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
    "RequestError",
    "RequestRefusedError",
    "RequestTimeoutError",
    "StoreUnavailableError",
    "TokenError",
    "UnknownKeyError",
    "UnsupportedMediaTypeError",
    "ValidationError",
    "WrongTokenKindError",
]


class LicensorError(Exception):
    """Base of every licensor error: ``code`` is stable and machine-readable, ``http_status`` fits it."""

    code: str = "INTERNAL"
    http_status: int = 500

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        super().__init__(message if message is not None else type(self).code)
        if code is not None:
            self.code = code  # a more specific code than the class's, e.g. PRODUCT_CODE_TAKEN

    @property
    def message(self) -> str:
        """The human-readable message (never contains a secret)."""
        return str(self.args[0]) if self.args else self.code


class InvalidInputError(LicensorError, ValueError):
    """An argument has the right type but an unusable value: a seed that is not 32 bytes, a token kind or
    key id outside its alphabet, a string that is not valid UTF-8, a weight or threshold out of range."""

    code = "INVALID_INPUT"
    http_status = 400


class TokenError(LicensorError):
    """A signed token was refused. Subclasses tell why; catch this one to refuse any bad token."""

    code = "TOKEN_INVALID"
    http_status = 401


class MalformedTokenError(TokenError):
    """The text is not a token: wrong shape, characters, encoding, signature length, or too long."""

    code = "TOKEN_MALFORMED"


class UnknownKeyError(TokenError):
    """The token names a key id that is not among the keys it was checked against."""

    code = "TOKEN_UNKNOWN_KEY"


class WrongTokenKindError(TokenError):
    """The token is well formed but of another kind than the one expected (e.g. ``ls1`` where ``lf1`` was)."""

    code = "TOKEN_WRONG_KIND"


class BadSignatureError(TokenError):
    """The token's signature does not verify under the key its key id names."""

    code = "TOKEN_BAD_SIGNATURE"


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


class RequestRefusedError(LicensorError):
    """A request the license, or the backend's state for it, does not allow; nothing was recorded. The code is
    a verdict code (SEAT_LIMIT_REACHED, ...) or one of the backend's own (CREDENTIAL_REVOKED, ...)."""

    code = "REQUEST_REFUSED"
    http_status = 409

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message, code=str(code))
        if status is not None:
            self.http_status = status
