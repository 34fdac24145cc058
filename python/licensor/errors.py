"""Every error licensor raises, defined once.

The native core (``licensor._core``) and its pure-Python twin (``licensor._fallback``) raise these same
classes, so callers catch one set of types whichever implementation is loaded. Each class carries a stable,
machine-readable ``code`` and the HTTP status the gateway answers it with; the gateway's error middleware is
the one place that turns them into HTTP responses.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "LicensorError",
    "InvalidInputError",
    "TokenError",
    "MalformedTokenError",
    "UnknownKeyError",
    "WrongTokenKindError",
    "BadSignatureError",
]


class LicensorError(Exception):
    """Base of every licensor error: ``code`` is stable and machine-readable, ``http_status`` fits it."""

    code: ClassVar[str] = "INTERNAL"
    http_status: ClassVar[int] = 500

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
