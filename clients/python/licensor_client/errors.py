"""The errors of licensor's token codec and of the client, defined once and shared with the server.

The server's ``licensor.errors`` re-exports these classes (its native core and its pure-Python twin raise
them too), so a program catches one set of types whether it runs the client, the server, or both. Each class
carries a stable, machine-readable ``code`` and the HTTP status the gateway answers it with.
"""

from __future__ import annotations

__all__ = [
    "BadSignatureError",
    "InvalidInputError",
    "LicensorError",
    "MalformedTokenError",
    "TokenError",
    "UnknownKeyError",
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
