"""Verifying the gateway's signed answers (``rs1``) offline, with the tenant's public keys from ``/v1/keys``.

A signed answer covers the client's nonce, the request's path, the time and the verdict, so it cannot be
replayed for another request, moved to another endpoint, kept past its freshness, or forged by anyone without
the tenant's signing key.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from typing import Any

from licensor_client.errors import TokenError
from licensor_client.tokens import TokenKind, read_document

ANSWER_KIND = TokenKind.ANSWER
DEFAULT_MAX_AGE_S = 300


class AnswerRejectedError(TokenError):
    """A signed answer verified but does not answer this request: another nonce, path, or a stale time."""

    code = "ANSWER_REJECTED"


def answer_document(nonce: str, path: str, issued_at: int, verdict: Mapping[str, Any]) -> dict[str, Any]:
    """What the gateway signs for a check answer (``issued_at`` in seconds since the epoch)."""
    return {"nonce": nonce, "path": path, "iat": issued_at, "verdict": dict(verdict)}


def verify_answer(
    token: str,
    public_keys: Mapping[str, bytes],
    *,
    nonce: str,
    path: str,
    now: float | None = None,
    max_age_s: int = DEFAULT_MAX_AGE_S,
) -> dict[str, Any]:
    """The verdict of a signed answer to the request made with ``nonce`` on ``path``.

    :raises licensor_client.errors.TokenError: a token that is malformed, of another kind, signed by an unknown key or
        not signed by the named key; :class:`AnswerRejectedError` (with code NONCE_MISMATCH, PATH_MISMATCH,
        ANSWER_STALE or ANSWER_MALFORMED) for a genuine answer to something else or without a verdict.
    """
    document = read_document(token, ANSWER_KIND, public_keys)
    if not isinstance(document.get("nonce"), str) or not hmac.compare_digest(document["nonce"].encode(), nonce.encode()):
        raise AnswerRejectedError("the answer was given for another nonce", code="NONCE_MISMATCH")
    if document.get("path") != path:
        raise AnswerRejectedError("the answer was given for another request path", code="PATH_MISMATCH")
    issued_at = document.get("iat")
    moment = time.time() if now is None else now
    if not isinstance(issued_at, int) or isinstance(issued_at, bool) or abs(moment - issued_at) > max_age_s:
        raise AnswerRejectedError(f"the answer is not from the last {max_age_s} seconds", code="ANSWER_STALE")
    verdict = document.get("verdict")
    if not isinstance(verdict, dict):
        raise AnswerRejectedError("the answer carries no verdict", code="ANSWER_MALFORMED")
    return verdict
