"""The portal's security: sessions, CSRF tokens, passwords and single-use links.

- **Sessions**: the cookie holds ``<session id>.<secret>``; the store holds the secret's hash only. The cookie is
  HttpOnly, SameSite=Lax, scoped to the tenant's portal path, and Secure when the portal is reached over TLS. A
  session lasts at most 7 days.
- **CSRF**: every form carries a token. Signed in, it is an HMAC of the session's secret (nothing to store, and a
  page of one session is useless to another). Before sign-in, a random cookie is repeated in the form (double
  submit): a page of another site can read neither.
- **Passwords**: argon2id (argon2-cffi's defaults: 64 MiB, 3 passes), hashed and checked off the event loop; an
  unknown e-mail costs the same check, so timing tells nothing.
- **Single-use links** (setting a password, signing in by e-mail): a random secret, stored hashed, valid
  :data:`LINK_LIFETIME_US`, spent atomically by the first use.
- **Rate limits**: sign-ins, link requests and links used per client address and per account: the gateway's
  ``rate_limits.sign_in`` budget (:mod:`licensor.gateway.limits`; with N workers each keeps 1/N of it).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from licensor.model import PORTAL_SESSION, PORTAL_TOKEN, new_id
from licensor.store import Row, Store, Transaction

SESSION_COOKIE = "licensor_portal"
FORM_COOKIE = "licensor_portal_form"
SESSION_LIFETIME_US = 7 * 86_400_000_000
LINK_LIFETIME_US = 30 * 60_000_000
"""A mailed link (set a password, sign in) works for 30 minutes, once."""
_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """A hash to check an unknown account's guess against (made on first use: a worker starts without it)."""
    return _HASHER.hash("not a password anyone has")


def _secret_hash(secret: str) -> bytes:
    return hashlib.sha256(b"licensor.portal.v1\x00" + secret.encode()).digest()


def _new_secret() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


# --- passwords -----------------------------------------------------------------------------------------
async def hash_password(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(None, _HASHER.hash, password)


async def password_matches(stored: str | None, password: str) -> bool:
    """Whether ``password`` is the one ``stored`` hashes; with no stored hash, as slow as a real check."""

    def check() -> bool:
        try:
            return _HASHER.verify(stored or _dummy_hash(), password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await asyncio.get_running_loop().run_in_executor(None, check)


# --- sessions and CSRF ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PortalSession:
    id: str
    tenant_id: str
    customer_id: str | None
    license_id: str | None
    csrf: str

    @property
    def actor(self) -> str:
        """Who the session's actions are recorded as in the event log."""
        return f"portal:{self.customer_id or self.license_id}"


def _csrf_of(secret: str) -> str:
    return base64.urlsafe_b64encode(hmac.new(secret.encode(), b"licensor portal csrf", hashlib.sha256).digest()).decode()


def portal_path(tenant_id: str) -> str:
    return f"/portal/{tenant_id}/"


def _secure(request: web.Request, public_url: str | None) -> bool:
    return request.secure or (public_url or "").startswith("https://")


async def open_session(
    tx: Transaction, response: web.StreamResponse, request: web.Request, public_url: str | None, now: int, **holder: str
) -> None:
    """Start a session for ``customer_id=`` or ``license_id=`` and set its cookie on ``response``."""
    secret = _new_secret()
    session_id = new_id("pss")
    await tx.insert(
        PORTAL_SESSION,
        {
            "id": session_id,
            "secret_hash": _secret_hash(secret),
            "customer_id": holder.get("customer_id"),
            "license_id": holder.get("license_id"),
            "expires_at": now + SESSION_LIFETIME_US,
            "created_at": now,
            "updated_at": now,
        },
    )
    response.set_cookie(
        SESSION_COOKIE,
        f"{session_id}.{secret}",
        path=portal_path(tx.tenant_id),
        httponly=True,
        samesite="Lax",
        secure=_secure(request, public_url),
        max_age=SESSION_LIFETIME_US // 1_000_000,
    )


_SESSION_COOKIE_VALUE = re.compile(r"^pss_[0-9A-HJKMNP-TV-Z]{26}\.[A-Za-z0-9_-]{43}$")
_FORM_COOKIE_VALUE = re.compile(r"^[A-Za-z0-9_-]{43}$")


async def current_session(request: web.Request, store: Store, tenant_id: str, now: int) -> PortalSession | None:
    value = request.cookies.get(SESSION_COOKIE, "")
    if not _SESSION_COOKIE_VALUE.fullmatch(value):  # also keeps odd bytes in a cookie away from the database
        return None
    session_id, _, secret = value.partition(".")
    row = await store.get(tenant_id, PORTAL_SESSION, session_id)
    if row is None or row["expires_at"] <= now or not hmac.compare_digest(bytes(row["secret_hash"]), _secret_hash(secret)):
        return None
    return PortalSession(row["id"], tenant_id, row["customer_id"], row["license_id"], _csrf_of(secret))


async def close_session(tx: Transaction, session: PortalSession, response: web.StreamResponse) -> None:
    await tx.delete(PORTAL_SESSION, session.id)
    response.del_cookie(SESSION_COOKIE, path=portal_path(tx.tenant_id))


def form_token(request: web.Request, response: web.StreamResponse, tenant_id: str) -> str:
    """The pre-sign-in CSRF token: the form cookie's value, set now if the browser has none."""
    token = request.cookies.get(FORM_COOKIE, "")
    if not _FORM_COOKIE_VALUE.fullmatch(token):
        token = _new_secret()
        response.set_cookie(
            FORM_COOKIE, token, path=portal_path(tenant_id), httponly=True, samesite="Strict", secure=request.secure
        )
    return token


def csrf_valid(request: web.Request, presented: str, session: PortalSession | None) -> bool:
    """Whether the form's token is the session's, or (before sign-in) the form cookie's."""
    expected = session.csrf if session is not None else request.cookies.get(FORM_COOKIE, "")
    if not expected or not presented or not presented.isascii() or not expected.isascii():
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


# --- single-use links ----------------------------------------------------------------------------------
async def issue_link(tx: Transaction, customer_id: str, purpose: str, now: int) -> str:
    """A new single-use link's token (``<id>.<secret>``) for the customer."""
    secret = _new_secret()
    token_id = new_id("ptk")
    await tx.insert(
        PORTAL_TOKEN,
        {
            "id": token_id,
            "customer_id": customer_id,
            "purpose": purpose,
            "secret_hash": _secret_hash(secret),
            "expires_at": now + LINK_LIFETIME_US,
            "used_at": None,
            "created_at": now,
            "updated_at": now,
        },
    )
    return f"{token_id}.{secret}"


async def link_valid(store: Store, tenant_id: str, token: str, purpose: str, now: int) -> Row | None:
    """The link's row when ``token`` is a valid, unspent link for ``purpose`` (read without a write lock)."""
    return _checked_link(await store.get(tenant_id, PORTAL_TOKEN, token.partition(".")[0]), token, purpose, now)


def _checked_link(row: Row | None, token: str, purpose: str, now: int) -> Row | None:
    secret = token.partition(".")[2]
    if (
        row is None
        or row["purpose"] != purpose
        or row["used_at"] is not None
        or row["expires_at"] <= now
        or not hmac.compare_digest(bytes(row["secret_hash"]), _secret_hash(secret))
    ):
        return None
    return row


async def revoke_customer(tx: Transaction, customer_id: str, now: int) -> None:
    """End every session of the customer and spend their unused links (a password was set: whoever held an old
    session or link holds nothing now)."""
    for session in await tx.select(PORTAL_SESSION, limit=1000, customer_id=customer_id):
        await tx.delete(PORTAL_SESSION, session["id"])
    for link in await tx.select(PORTAL_TOKEN, limit=1000, customer_id=customer_id):
        if link["used_at"] is None:
            await tx.update(PORTAL_TOKEN, link["id"], {"used_at": now})


async def link_holder(tx: Transaction, token: str, purpose: str, now: int, *, spend: bool) -> Row | None:
    """The link's row when ``token`` is a valid, unspent link for ``purpose`` (spent now if ``spend``)."""
    row = _checked_link(await tx.get(PORTAL_TOKEN, token.partition(".")[0], for_update=spend), token, purpose, now)
    if row is None:
        return None
    if spend:
        await tx.update(PORTAL_TOKEN, row["id"], {"used_at": now})
    return row
