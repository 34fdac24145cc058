"""Bearer API tokens: ``tok_<26 characters>.<secret>``.

The token id finds the row (and so the tenant); the secret is compared with the stored SHA-256 hash in
constant time. The secret has 256 random bits, so a plain hash suffices. Messages never repeat the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

from aiohttp import web

from licensor.errors import AuthenticationError
from licensor.gateway import keys as app_keys
from licensor.operations import Principal

_TOKEN = re.compile(r"^(tok_[0-9A-HJKMNP-TV-Z]{26})\.([A-Za-z0-9_-]{43})$")


def new_secret() -> tuple[str, bytes]:
    """A new token secret and the hash to store."""
    secret = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    return secret, hash_secret(secret)


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(b"licensor.token.v1\x00" + secret.encode()).digest()


async def authenticate(request: web.Request) -> Principal:
    """The principal of a request's ``Authorization: Bearer`` token.

    :raises AuthenticationError: no token, a malformed, unknown or revoked one (401).
    """
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential:
        raise AuthenticationError("send an API token as Authorization: Bearer <token>", code="UNAUTHENTICATED")
    match = _TOKEN.fullmatch(credential.strip())
    if match is None:
        raise AuthenticationError("the API token is malformed", code="TOKEN_MALFORMED")
    token_id, secret = match.groups()
    row = await request.app[app_keys.CACHE].token(token_id)
    if row is None or not hmac.compare_digest(bytes(row["secret_hash"]), hash_secret(secret)):
        raise AuthenticationError("the API token is not valid", code="TOKEN_INVALID")
    if row["revoked_at"] is not None:
        raise AuthenticationError("the API token was revoked", code="TOKEN_REVOKED")
    return Principal(row["tenant_id"], token_id, row["role"], row["product_id"])
