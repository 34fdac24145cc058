"""The shapes of identifiers and keys on the wire, shared by the gateway (its request schemas) and the client."""

from __future__ import annotations

import base64
import re
from typing import Any

__all__ = ["B64URL_32_BYTES", "KEY_ID", "PRODUCT_CODE_PATTERN", "b64url", "id_pattern", "public_key_of", "published_keys"]

KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""A signing key's id, as tokens name it."""
B64URL_32_BYTES = re.compile(r"[A-Za-z0-9_-]{43}")
"""32 bytes in unpadded base64url: a public key, a secret."""

PRODUCT_CODE_PATTERN = "^[a-z0-9][a-z0-9._-]{0,63}$"
"""A product's (or feature's) code, as a JSON-schema pattern."""


def id_pattern(prefix: str) -> str:
    """The JSON-schema pattern of an object's id: its prefix (``lic``, ``act``, ...) and a 26-character ULID."""
    return f"^{prefix}_[0-9A-HJKMNP-TV-Z]{{26}}$"


def b64url(raw: bytes) -> str:
    """Unpadded base64url, as keys, signatures and secrets are written."""
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def public_key_of(encoded: Any) -> bytes | None:
    """The 32-byte Ed25519 key that ``encoded`` is the canonical unpadded base64url of, or None."""
    if not isinstance(encoded, str) or not B64URL_32_BYTES.fullmatch(encoded):
        return None
    raw = base64.urlsafe_b64decode(encoded + "=")
    return raw if b64url(raw) == encoded else None


def published_keys(document: Any) -> dict[str, bytes]:
    """Key id -> public key of a ``GET /v1/keys`` answer (``{"keys": [{"kid", "public_key"}, ...]}``); entries
    that are not a key id with a canonical key are left out."""
    keys = {}
    for item in document.get("keys", []) if isinstance(document, dict) else []:
        if isinstance(item, dict) and isinstance(item.get("kid"), str) and KEY_ID.fullmatch(item["kid"]):
            public_key = public_key_of(item.get("public_key"))
            if public_key is not None:
                keys[item["kid"]] = public_key
    return keys
