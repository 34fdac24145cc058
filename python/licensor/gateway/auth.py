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

from licensor.errors import AuthenticationError, NotFoundError, TokenError
from licensor.gateway import keys as app_keys
from licensor.license import Licensed
from licensor.model import CODE_SCHEMA, id_pattern
from licensor.operations import ByBody, Call, Param, Principal
from licensor.tokens import TokenKind, read_document

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
    limits = request.app[app_keys.LIMITS]
    counted = limits.before_key_lookup()
    try:
        row = await request.app[app_keys.CACHE].token(token_id)
    except BaseException:  # the store away, the client gone: no guess was made
        limits.after_key_lookup(counted, found=True)
        raise
    known = row is not None and hmac.compare_digest(bytes(row["secret_hash"]), hash_secret(secret))
    limits.after_key_lookup(counted, found=known)
    if row is None or not known:
        raise AuthenticationError("the API token is not valid", code="TOKEN_INVALID")
    if row["revoked_at"] is not None:
        raise AuthenticationError("the API token was revoked", code="TOKEN_REVOKED")
    return Principal(row["tenant_id"], token_id, row["role"], row["product_id"])


# --- the license a device presents (releases, updates) -------------------------------------------------------
_HOLDER_KINDS = (TokenKind.LICENSE_FILE, TokenKind.LEASE)


async def license_principal(call: Call) -> Principal:
    """Authenticate the license the request presents (kept on the request for the handler), of the product the
    query names.

    :raises NotFoundError: PRODUCT_MISMATCH, a license of another product."""
    licensed = await asking_license(call, call.query["tenant"])
    if licensed.product["code"] != call.query["product"]:
        raise NotFoundError("the license is not of this product", code="PRODUCT_MISMATCH")
    call.request[app_keys.ASKING_LICENSE] = licensed
    return Principal(call.query["tenant"], licensed.id, "license", licensed.product["id"], f"license:{licensed.id}")


async def asking_license(call: Call, tenant_id: str) -> Licensed:
    """The license the request presents (in ``tenant_id`` only).

    :raises AuthenticationError: LICENSE_REQUIRED (nothing presented), LICENSE_INVALID (an unknown key, or a token
        the tenant did not sign for one of its licenses, or one past its validity: a lease token after its expiry, a
        license file after it lapsed)."""
    scheme, _, presented = call.request.headers.get("Authorization", "").strip().partition(" ")
    presented = presented.strip()
    licensed = None
    if scheme.lower() == "license" and presented:
        licensed = await call.services.license_by_key(tenant_id, presented)
    elif scheme.lower() == "bearer" and presented.split(".", 1)[0] in _HOLDER_KINDS:
        keys = await call.services.public_keys(tenant_id)
        try:
            document = read_document(presented, presented.split(".", 1)[0], keys)
        except TokenError:
            document = {}
        valid_until = document.get("lapses_at" if presented.startswith(TokenKind.LICENSE_FILE) else "exp")
        current = isinstance(valid_until, int) and call.services.now_us() // 1_000_000 < valid_until
        if current and document.get("tenant") == tenant_id and isinstance(document.get("license"), str):
            licensed = await call.services.license_by_id(tenant_id, document["license"])
    elif not presented:
        raise AuthenticationError(
            "present the license: Authorization: License <license key>, or Bearer <its license file or lease token>",
            code="LICENSE_REQUIRED",
        )
    if licensed is None:
        raise AuthenticationError("no license of this tenant matches what was presented", code="LICENSE_INVALID")
    return licensed


LICENSE_HOLDER = ByBody(license_principal, carried_in="header")
"""The auth of the routes a device calls with what it holds (releases, updates): its license key, license file or
lease token in the Authorization header, for the tenant and product of :data:`LICENSE_HOLDER_QUERY`."""
LICENSE_HOLDER_QUERY = (
    Param("tenant", {"type": "string", "pattern": id_pattern("ten")}, "The vendor's tenant id.", required=True),
    Param("product", CODE_SCHEMA, "The product's code.", required=True),
)
