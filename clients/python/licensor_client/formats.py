"""The shapes of the identifiers on the wire, shared by the gateway (its request schemas) and the client."""

from __future__ import annotations

__all__ = ["PRODUCT_CODE_PATTERN", "id_pattern"]

PRODUCT_CODE_PATTERN = "^[a-z0-9][a-z0-9._-]{0,63}$"
"""A product's (or feature's) code, as a JSON-schema pattern."""


def id_pattern(prefix: str) -> str:
    """The JSON-schema pattern of an object's id: its prefix (``lic``, ``act``, ...) and a 26-character ULID."""
    return f"^{prefix}_[0-9A-HJKMNP-TV-Z]{{26}}$"
