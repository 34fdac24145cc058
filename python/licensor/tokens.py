"""Signed documents on the server: the client's format (:mod:`licensor_client.tokens`: the kinds, canonical JSON
and the payload rule), signed and read with the loaded core (native when built), so the gateway verifies fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from licensor_client.tokens import TokenKind, canonical_json, document_of

from licensor import _impl as core

__all__ = ["TokenKind", "document_of", "read_document", "sign_document"]


def sign_document(kind: str, kid: str, seed: bytes, document: Mapping[str, Any]) -> str:
    """The token of ``document`` (a JSON object) of ``kind``, signed with the key ``kid`` / ``seed``."""
    return core.encode_token(kind, kid, canonical_json(dict(document)).encode(), seed)


def read_document(token: str, kind: str, public_keys: Mapping[str, bytes]) -> dict[str, Any]:
    """The document a token of ``kind`` carries, once its signature verifies.

    :raises licensor.errors.TokenError: as :func:`licensor._core.decode_token`, and MalformedTokenError when
        the payload is not the canonical JSON of an object.
    """
    return document_of(core.decode_token(token, kind, public_keys))
