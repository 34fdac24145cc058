"""Signed documents: canonical JSON payloads in licensor's signed-token format (``KIND.KID.PAYLOAD.SIGNATURE``).

Every document licensor signs (``lf1`` license file, ``ls1`` lease, ``en1`` entitlement token, ``rs1`` check
answer, ``dv1`` device request, ...) goes through :func:`sign_document`, and every reader through
:func:`read_document`, which also insists that the payload is the canonical JSON of an object, so one document
has one signed form. The server signs and reads with its native core and the same :func:`document_of`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import orjson

from licensor_client import codec
from licensor_client.errors import MalformedTokenError

__all__ = ["TokenKind", "canonical_json", "document_of", "read_document", "sign_document"]


def canonical_json(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces, UTF-8): the form stored, hashed and signed."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


class TokenKind(StrEnum):
    """The kind of every signed document licensor makes: the kind is signed with the payload, so a token of
    one kind is never taken for another (DESIGN §5)."""

    ANSWER = "rs1"
    """A check's answer, signed over the caller's nonce (``POST /v1/check`` with a nonce)."""
    LEASE = "ls1"
    """A cloud seat lease."""
    LICENSE_FILE = "lf1"
    """An activation's license file, bound to one device."""
    DEVICE_REQUEST = "dv1"
    """A device's signed request (activate, check in, deactivate, recover)."""
    ENTITLEMENT = "en1"
    """A cloud-lite subject's entitlements."""
    RELEASE_MANIFEST = "rm1"
    """A release a license may install, with its files' sizes and hashes."""
    UPDATE = "up1"
    """A license's state at a generation, pushed to its devices when it changes in License Central."""


def sign_document(kind: str, kid: str, seed: bytes, document: Mapping[str, Any]) -> str:
    """The token of ``document`` (a JSON object) of ``kind``, signed with the key ``kid`` / ``seed``."""
    return codec.encode_token(kind, kid, canonical_json(dict(document)).encode(), seed)


def read_document(token: str, kind: str, public_keys: Mapping[str, bytes]) -> dict[str, Any]:
    """The document a token of ``kind`` carries, once its signature verifies.

    :raises licensor_client.errors.TokenError: malformed, another kind, an unknown key id or a bad signature,
        and MalformedTokenError when the payload is not the canonical JSON of an object.
    """
    return document_of(codec.decode_token(token, kind, public_keys))


def document_of(payload: bytes) -> dict[str, Any]:
    """The JSON object a verified token's payload holds.

    :raises licensor_client.errors.MalformedTokenError: the payload is not the canonical JSON of an object.
    """
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise MalformedTokenError("token is malformed: payload is not JSON") from None
    if not isinstance(document, dict) or canonical_json(document).encode() != payload:
        raise MalformedTokenError("token is malformed: payload is not a canonical JSON object")
    return document
