"""Signed documents on the server: the client's format (:mod:`licensor_client.tokens`: the kinds, canonical JSON
and the payload rule), signed and read with the loaded core (native when built), so the gateway verifies fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from licensor_client.tokens import TokenKind, document_of

from licensor import _impl as core

__all__ = ["MAX_SIGNERS", "TokenKind", "document_of", "read_document", "sign_document", "signer_of"]

MAX_SIGNERS = 4096
"""How many expanded signing keys a process keeps at most (one per tenant key that signed lately); beyond it,
they are all dropped and expanded again as they sign."""
_signers: dict[bytes, core.Signer] = {}


def signer_of(seed: bytes) -> core.Signer:
    """The signing key of ``seed``, expanded once and kept (:class:`licensor._core.Signer`): a tenant's key signs
    answer after answer, and expanding it (deriving its public key) costs as much as a signature.

    :raises licensor.errors.InvalidInputError: ``seed`` is not 32 bytes."""
    signer = _signers.get(seed)
    if signer is None:
        signer = core.Signer(seed)
        if len(_signers) >= MAX_SIGNERS:
            _signers.clear()
        _signers[seed] = signer
    return signer


def sign_document(kind: str, kid: str, seed: bytes, document: Mapping[str, Any]) -> str:
    """The token of ``document`` (a JSON object) of ``kind``, signed with the key ``kid`` / ``seed``."""
    # canonical_json's bytes, without its round trip through str (a signed check answer is on the hot path)
    payload = orjson.dumps(document if type(document) is dict else dict(document), option=orjson.OPT_SORT_KEYS)
    return signer_of(seed).encode_token(kind, kid, payload)


def read_document(token: str, kind: str, public_keys: Mapping[str, bytes]) -> dict[str, Any]:
    """The document a token of ``kind`` carries, once its signature verifies.

    :raises licensor.errors.TokenError: as :func:`licensor._core.decode_token`, and MalformedTokenError when
        the payload is not the canonical JSON of an object.
    """
    return document_of(core.decode_token(token, kind, public_keys))
