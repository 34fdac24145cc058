"""The portal's security: sessions, CSRF tokens, passwords, single-use links and sign-in rate limits.

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
- **Rate limits**: sign-ins and link requests per client address and per account, in each process (a worker
  keeps its own count: with N workers the budget is N times larger).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import time
from collections import deque
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
_DUMMY_HASH = _HASHER.hash("not a password anyone has")


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
            return _HASHER.verify(stored or _DUMMY_HASH, password) and stored is not None
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


async def current_session(request: web.Request, store: Store, tenant_id: str, now: int) -> PortalSession | None:
    session_id, _, secret = request.cookies.get(SESSION_COOKIE, "").partition(".")
    if not session_id.startswith("pss_") or not secret or len(session_id) > 40:
        return None
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
    if len(token) != 43:
        token = _new_secret()
        response.set_cookie(
            FORM_COOKIE, token, path=portal_path(tenant_id), httponly=True, samesite="Strict", secure=request.secure
        )
    return token


def csrf_valid(request: web.Request, presented: str, session: PortalSession | None) -> bool:
    """Whether the form's token is the session's, or (before sign-in) the form cookie's."""
    expected = session.csrf if session is not None else request.cookies.get(FORM_COOKIE, "")
    return bool(expected) and bool(presented) and hmac.compare_digest(expected.encode(), presented.encode())


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


async def link_holder(tx: Transaction, token: str, purpose: str, now: int, *, spend: bool) -> Row | None:
    """The link's row when ``token`` is a valid, unspent link for ``purpose`` (spent now if ``spend``)."""
    token_id, _, secret = token.partition(".")
    if not token_id.startswith("ptk_") or len(token_id) > 40 or not secret:
        return None
    row = await tx.get(PORTAL_TOKEN, token_id, for_update=spend)
    if (
        row is None
        or row["purpose"] != purpose
        or row["used_at"] is not None
        or row["expires_at"] <= now
        or not hmac.compare_digest(bytes(row["secret_hash"]), _secret_hash(secret))
    ):
        return None
    if spend:
        await tx.update(PORTAL_TOKEN, token_id, {"used_at": now})
    return row


# --- rate limits ---------------------------------------------------------------------------------------
class RateLimiter:
    """At most ``limit`` events per ``window_s`` per key, counted in this process."""

    def __init__(self, limit: int, window_s: float, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._seen: dict[str, deque[float]] = {}

    def retry_after(self, *keys: str) -> int:
        """0 when every key may go on (each is counted), else the seconds until one may."""
        now = time.monotonic()
        waits = []
        for key in keys:
            times = self._seen.get(key)
            if times is None:
                if len(self._seen) >= self.max_keys:  # a flood of keys: forget the oldest instead of growing
                    self._seen.pop(next(iter(self._seen)))
                times = self._seen[key] = deque()
            while times and times[0] <= now - self.window_s:
                times.popleft()
            if len(times) >= self.limit:
                waits.append(int(times[0] + self.window_s - now) + 1)
        if waits:
            return max(waits)
        for key in keys:
            self._seen[key].append(now)
        return 0
