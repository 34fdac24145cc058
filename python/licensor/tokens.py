"""Signed documents: canonical JSON payloads in the signed-token format of the core (DESIGN §5).

Every document licensor signs (``lf1`` license file, ``ls1`` lease, ``en1`` entitlement token, ``rs1`` check
answer, ...) goes through :func:`sign_document`, and every reader through :func:`read_document`, which also
insists that the payload is the canonical JSON of an object, so one document has one signed form.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import orjson

from licensor import _impl as core
from licensor.errors import MalformedTokenError
from licensor.model import canonical_json


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


def sign_document(kind: str, kid: str, seed: bytes, document: Mapping[str, Any]) -> str:
    """The token of ``document`` (a JSON object) of ``kind``, signed with the key ``kid`` / ``seed``."""
    return core.encode_token(kind, kid, canonical_json(dict(document)).encode(), seed)


def read_document(token: str, kind: str, public_keys: Mapping[str, bytes]) -> dict[str, Any]:
    """The document a token of ``kind`` carries, once its signature verifies.

    :raises licensor.errors.TokenError: as :func:`licensor._core.decode_token`, and MalformedTokenError when
        the payload is not the canonical JSON of an object.
    """
    return document_of(core.decode_token(token, kind, public_keys))


def document_of(payload: bytes) -> dict[str, Any]:
    """The JSON object a verified token's payload holds.

    :raises licensor.errors.MalformedTokenError: the payload is not the canonical JSON of an object.
    """
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise MalformedTokenError("token is malformed: payload is not JSON") from None
    if not isinstance(document, dict) or canonical_json(document).encode() != payload:
        raise MalformedTokenError("token is malformed: payload is not a canonical JSON object")
    return document
