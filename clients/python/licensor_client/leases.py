"""The licensed software's side of the cloud backend: its credential file, its lease kept by heartbeats, and the
signed lease token it verifies offline.

The vendor issues a **credential file** for a license (portal, CLI or ``POST /v1/admin/licenses/{id}/credentials``)
and the customer imports it on any number of devices (:func:`read_credential_file`). A device that runs the
software checks out a **lease** (a seat) with it, renews the lease by heartbeat before its TTL runs out and
releases it when done: :class:`LeaseKeeper` does all three around an ``async with`` block. Every answer carries
an ``ls1`` lease token signed by the vendor's tenant, which the keeper verifies (:func:`verify_lease_token`)
against the public keys of the credential file, so a gateway without the tenant's key cannot grant a lease.

A lease is *lost* when the gateway refuses a heartbeat (another device took the seat over, the credential was
revoked, the vendor ended the lease) or when no heartbeat succeeded before the lease's expiry: a short outage
within the lease's life is survived by retrying the same heartbeat, which the gateway answers once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import secrets
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple

import httpx
import orjson

from licensor_client._fields import expect_claims, integer, json_object, quantity, text
from licensor_client.codes import Code
from licensor_client.errors import LicensorError, TokenError, UnknownKeyError
from licensor_client.formats import B64URL_32_BYTES, KEY_ID, PRODUCT_CODE_PATTERN, id_pattern, public_key_of, published_keys
from licensor_client.http import GatewayUnavailableError, RetryPolicy, retry_after
from licensor_client.tokens import TokenKind, read_document

__all__ = [
    "CHECK_OUT_ATTEMPTS",
    "CLOCK_SKEW_S",
    "CREDENTIAL_FILE_FORMAT",
    "LEASE_TOKEN_KIND",
    "CredentialFile",
    "CredentialFileError",
    "GatewayUnavailableError",
    "LeaseKeeper",
    "LeaseRefusedError",
    "LeaseToken",
    "LeaseTokenRejectedError",
    "LeaseVerdict",
    "read_credential_file",
    "read_lease_token",
    "verify_lease_token",
]

LEASE_TOKEN_KIND = TokenKind.LEASE
CREDENTIAL_FILE_FORMAT = "licensor-credential-1"
CLOCK_SKEW_S = 300
"""How far the device's clock may run behind the gateway's before a token it was just given looks not yet valid."""
CHECK_OUT_ATTEMPTS = 3
"""How many times a check-out is sent (with one Idempotency-Key) before the keeper gives up on the gateway."""

CHECK_OUT_PATH = "/v1/leases"
HEARTBEAT_PATH = "/v1/leases/heartbeat"
RELEASE_PATH = "/v1/leases/release"
KEYS_PATH = "/v1/keys"
LEASE_ENDED_CODES = frozenset(
    {
        "LEASE_TAKEN_OVER",
        "LEASE_EXPIRED",
        "LEASE_RELEASED",
        "LEASE_ENDED",
        "LEASE_NOT_FOUND",
        "CREDENTIAL_REVOKED",
        "CREDENTIAL_INVALID",
    }
)
"""Heartbeat refusals after which the lease is not held by this device (nothing to release); after any other (the
license suspended, say) the lease is still held on the gateway, so leaving releases it."""

_CREDENTIAL = re.compile(r"crd_[0-9A-HJKMNP-TV-Z]{26}\.[A-Za-z0-9_-]{43}")
_DEVICE_ID = re.compile(r"[!-~]{1,200}")  # printable ASCII without the space
_TENANT_ID = re.compile(id_pattern("ten"))
_LICENSE_ID = re.compile(id_pattern("lic"))
_PRODUCT_CODE = re.compile(PRODUCT_CODE_PATTERN)

logger = logging.getLogger(__name__)


# --- errors --------------------------------------------------------------------------------------------------
class CredentialFileError(LicensorError, ValueError):
    """The text is not a credential file: not JSON, another format, or a field missing or garbled. The message
    names the field, never its value (the file holds a secret)."""

    code = "CREDENTIAL_FILE_MALFORMED"
    http_status = 400


class LeaseTokenRejectedError(TokenError):
    """A genuinely signed lease token that is not this device's: another tenant, product or device, or malformed
    (code TENANT_MISMATCH, PRODUCT_MISMATCH, DEVICE_MISMATCH, LEASE_MISMATCH or LEASE_TOKEN_MALFORMED)."""

    code = "LEASE_TOKEN_REJECTED"


class LeaseRefusedError(LicensorError):
    """The gateway refused a lease (``code`` from its answer, e.g. SEAT_LIMIT_REACHED, CREDENTIAL_REVOKED, and
    ``http_status`` of that answer), or gave one whose lease token does not verify (the token's error code)."""

    code = "LEASE_REFUSED"
    http_status = 409

    def __init__(self, message: str | None = None, *, code: str | None = None, http_status: int | None = None) -> None:
        super().__init__(message, code=code)
        if http_status is not None:
            self.http_status = http_status


# --- the credential file -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CredentialFile:
    """An imported credential file: where the gateway is, whose license it opens, the credential (id and secret)
    and the tenant's public keys (key id -> 32-byte Ed25519 key). Its repr never shows the credential."""

    server: str
    tenant: str
    product: str
    license: str
    credential: str = field(repr=False)
    label: str | None
    keys: dict[str, bytes]

    @property
    def credential_id(self) -> str:
        """The credential's id (``crd_...``), without its secret: safe to show and log."""
        return self.credential.split(".", 1)[0]


def read_credential_file(text_or_path: str | bytes | os.PathLike[str]) -> CredentialFile:
    """The credential file in ``text_or_path``: its JSON text (str or bytes), or the path of the file (a path
    object, or a string that does not start with ``{``).

    :raises CredentialFileError: not JSON, another format, or a field missing or malformed (the server is not an
        http(s) URL, an id of the wrong shape, a credential that is not ``crd_<id>.<secret>``, no keys or a key
        that is not the canonical base64url of 32 bytes). Unknown extra fields are ignored.
    :raises OSError: the path cannot be read.
    """
    if isinstance(text_or_path, os.PathLike) or (isinstance(text_or_path, str) and not text_or_path.lstrip().startswith("{")):
        with open(text_or_path, "rb") as file:
            content: str | bytes = file.read()
    else:
        content = text_or_path
    try:
        document = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise CredentialFileError("the credential file is not JSON") from None  # the error would quote the text
    if not isinstance(document, dict):
        raise CredentialFileError("the credential file is not a JSON object")
    if document.get("format") != CREDENTIAL_FILE_FORMAT:
        raise CredentialFileError(f"the credential file's format is not {CREDENTIAL_FILE_FORMAT}")
    server = document.get("server")
    if not isinstance(server, str) or not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", server):
        raise CredentialFileError("the credential file's server is not an http(s) URL")
    checks = (("tenant", _TENANT_ID), ("product", _PRODUCT_CODE), ("license", _LICENSE_ID), ("credential", _CREDENTIAL))
    for name, pattern in checks:
        value = document.get(name)
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise CredentialFileError(f"the credential file's {name} is missing or malformed")
    label = document.get("label")
    if label is not None and not isinstance(label, str):
        raise CredentialFileError("the credential file's label is not a string")
    keys = document.get("keys")
    if not isinstance(keys, dict) or not keys:
        raise CredentialFileError("the credential file has no public keys")
    public_keys: dict[str, bytes] = {}
    for kid, encoded in keys.items():
        public_key = public_key_of(encoded)
        if not KEY_ID.fullmatch(kid) or public_key is None:
            raise CredentialFileError("a public key of the credential file is not a key id with base64url of 32 bytes")
        public_keys[kid] = public_key
    return CredentialFile(
        server.rstrip("/"),
        document["tenant"],
        document["product"],
        document["license"],
        document["credential"],
        label,
        public_keys,
    )


# --- the lease token -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LeaseToken:
    """A verified ``ls1`` lease token's content (times in seconds since the epoch)."""

    tenant: str
    product: str
    license_id: str
    lease_id: str
    credential_id: str
    device_id: str
    features: tuple[str, ...]  # the features the lease was checked out for
    entitlements: dict[str, int | None]  # feature code -> quantity (None: unlimited or not counted)
    terms: dict[str, Any]
    issued_at: int
    expires_at: int
    heartbeat_interval: int
    renewal: int
    token: str


@dataclass(frozen=True)
class LeaseVerdict:
    """What a lease token allows now: ``code`` is VALID or the reason it does not (a :class:`Code`)."""

    code: Code
    lease: LeaseToken

    @property
    def valid(self) -> bool:
        return self.code is Code.VALID


def read_lease_token(token: str, public_keys: Mapping[str, bytes], *, tenant: str, product: str) -> LeaseToken:
    """The content of a lease token signed by ``tenant`` for ``product``.

    :raises licensor_client.errors.TokenError: malformed, another kind of token, an unknown key or a bad signature;
        :class:`LeaseTokenRejectedError` (TENANT_MISMATCH, PRODUCT_MISMATCH, LEASE_TOKEN_MALFORMED) for a genuine
        token of another tenant or product, or one that lacks or garbles a field.
    """
    token = token.strip()
    document = read_document(token, LEASE_TOKEN_KIND, public_keys)
    expect_claims(document, LeaseTokenRejectedError, "lease token", tenant=tenant, product=product)
    try:
        features = document["features"]
        if not isinstance(features, list):
            raise TypeError("not a list")
        entitlements = {text(item["feature"]): quantity(item["quantity"]) for item in document["entitlements"]}
        parsed = LeaseToken(
            tenant,
            product,
            text(document["license"]),
            text(document["lease"]),
            text(document["credential"]),
            text(document["device"]),
            tuple(text(code) for code in features),
            entitlements,
            json_object(document["terms"]),
            integer(document["iat"]),
            integer(document["exp"]),
            integer(document["heartbeat_interval"]),
            integer(document["renewal"]),
            token,
        )
    except (KeyError, TypeError, ValueError):
        raise LeaseTokenRejectedError("the lease token lacks or garbles a field", code="LEASE_TOKEN_MALFORMED") from None
    return parsed


def verify_lease_token(
    token: str,
    public_keys: Mapping[str, bytes],
    *,
    tenant: str,
    product: str,
    device_id: str | None = None,
    features: Collection[str] = (),
    now: float | None = None,
) -> LeaseVerdict:
    """Whether a lease token lets this device use ``features`` of ``product`` now, offline.

    The verdict's code, first failure first: NOT_YET_VALID (the clock is more than :data:`CLOCK_SKEW_S` behind
    the token's issue time: turned back), LEASE_EXPIRED (the lease was not renewed before its expiry),
    FEATURE_NOT_ENTITLED (a feature the lease was not checked out for); else VALID.

    :raises licensor_client.errors.TokenError: as :func:`read_lease_token`, and :class:`LeaseTokenRejectedError`
        (DEVICE_MISMATCH) for a genuine token of another device than ``device_id`` (when given).
    """
    lease = read_lease_token(token, public_keys, tenant=tenant, product=product)
    if device_id is not None and lease.device_id != device_id:
        raise LeaseTokenRejectedError("the lease token was issued to another device", code="DEVICE_MISMATCH")
    moment = time.time() if now is None else now
    if moment + CLOCK_SKEW_S < lease.issued_at:
        code = Code.NOT_YET_VALID
    elif moment >= lease.expires_at:
        code = Code.LEASE_EXPIRED
    elif any(feature not in lease.features for feature in features):
        code = Code.FEATURE_NOT_ENTITLED
    else:
        code = Code.VALID
    return LeaseVerdict(code, lease)


# --- the lease keeper ----------------------------------------------------------------------------------------
class _Answer(NamedTuple):
    status: int
    body: dict[str, Any]

    @property
    def error_code(self) -> str:
        return str(self.body["error"]["code"])

    def refusal(self, action: str) -> LeaseRefusedError:
        error = self.body["error"]
        return LeaseRefusedError(
            f"{action} refused: {error.get('message', error['code'])}", code=error["code"], http_status=self.status
        )


class _Unanswered(Exception):
    def __init__(self, why: str, retry_after_s: float | None = None) -> None:
        super().__init__(why)
        self.retry_after_s = retry_after_s

    """No usable answer: a transport error, a timeout, a 5xx or 429, or a body outside the error contract."""


class LeaseKeeper:
    """Holds a lease of the credential file's license for ``device_id`` while its ``async with`` block runs.

    Entering checks a lease out (with ``features`` and ``device_name``); a background task renews it every
    ``heartbeat_interval_seconds`` the gateway asks for (sooner when the lease's expiry by ``clock`` is nearer than
    two intervals), and leaving releases it. A keeper is entered once. Every lease token received is
    verified against the credential file's keys for this device and ``features``. Check :attr:`valid` before
    using a feature; ``on_lost(code)`` is called once (synchronously, from the heartbeat task) when the lease is
    lost, with :attr:`lost_code`: the gateway's refusal code (LEASE_TAKEN_OVER, CREDENTIAL_REVOKED, LEASE_ENDED,
    ...), LEASE_EXPIRED when no heartbeat succeeded before the lease's expiry (by ``clock``), or the error code of
    a lease token that does not verify. Heartbeating stops then; the keeper does not check out again.

    A heartbeat that gets no usable answer (transport error, timeout, 429 or 5xx) is sent again with the same
    Idempotency-Key until the lease expires, so the gateway performs it once and replays its answer; the waits
    start at ``retry_delay_s`` and double (with jitter; at least the answer's ``Retry-After``). ``on_lease(token)``
    is called with each verified lease token (the client takes its signed time, :mod:`licensor_client.clock`).
    ``session`` is an ``httpx.AsyncClient`` to use (not closed by the keeper); without one the keeper opens and
    closes its own, which honours the proxy settings of the environment (``HTTPS_PROXY``, ``NO_PROXY``). Each
    request is bounded by ``request_timeout_s``. Nothing the keeper logs contains a secret.
    """

    def __init__(
        self,
        credential: CredentialFile,
        device_id: str,
        features: Collection[str] = (),
        *,
        device_name: str | None = None,
        session: httpx.AsyncClient | None = None,
        on_lost: Callable[[str], object] | None = None,
        clock: Callable[[], float] = time.time,
        retry_delay_s: float = 1.0,
        request_timeout_s: float = 10.0,
        on_lease: Callable[[LeaseToken], object] | None = None,
    ) -> None:
        if not _DEVICE_ID.fullmatch(device_id):
            raise ValueError("device_id must be 1-200 printable ASCII characters without spaces")
        if device_name is not None and not 1 <= len(device_name) <= 200:
            raise ValueError("device_name must be 1-200 characters")
        if not (retry_delay_s > 0 and request_timeout_s > 0):
            raise ValueError("retry_delay_s and request_timeout_s must be positive")
        self.credential = credential
        self.device_id = device_id
        self.features = tuple(features)
        self.device_name = device_name
        self.on_lost = on_lost
        self.on_lease = on_lease
        self._retry = RetryPolicy(base_s=retry_delay_s, cap_s=32 * retry_delay_s, max_wait_s=max(60.0, 32 * retry_delay_s))
        self._rng = random.Random()
        self.clock = clock
        self.retry_delay_s = retry_delay_s
        self.request_timeout_s = request_timeout_s
        self._session = session
        self._owns_session = session is None
        self._lease_id: str | None = None
        self._lease_secret: str | None = None
        self._lease: LeaseToken | None = None
        self._expires_local = 0.0  # the lease's expiry on this device's clock: its life counted from the answer
        self._keys = dict(credential.keys)  # the credential file's, and the tenant's newer ones once fetched
        self._interval = 0.0
        self._heartbeats = 0
        self._lost_code: str | None = None
        self._ended_by_gateway = False  # the gateway said the lease ended: nothing to release
        self._pending: tuple[str, dict[str, Any]] | None = None  # a heartbeat sent whose answer was not taken
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def __repr__(self) -> str:
        state = (
            "lost " + self._lost_code
            if self._lost_code
            else "closed"
            if self._closed
            else "held"
            if self._lease
            else "not checked out"
        )
        return f"<LeaseKeeper {self._lease_id or 'no lease'} of {self.credential.credential_id} on {self.device_id!r}: {state}>"

    # --- state -----------------------------------------------------------------------------------------------
    @property
    def lease_id(self) -> str | None:
        """The lease's id (``lse_...``); None before check-out."""
        return self._lease_id

    @property
    def lease(self) -> LeaseToken | None:
        """The verified content of the latest lease token; None before check-out."""
        return self._lease

    @property
    def lease_token(self) -> str | None:
        """The latest ``ls1`` lease token (verified); None before check-out."""
        return self._lease.token if self._lease else None

    @property
    def expires_at(self) -> int | None:
        """When the lease expires unless renewed, by the gateway's clock (seconds since the epoch); None before
        check-out. The keeper itself counts the lease's life (``exp - iat``) on ``clock`` from each answer, so a
        device clock that is off does not shorten or stretch it."""
        return self._lease.expires_at if self._lease else None

    @property
    def valid(self) -> bool:
        """Whether the device holds the lease now: checked out, not lost, not released and not past its expiry."""
        return self._lease is not None and self._lost_code is None and not self._closed and self.clock() < self._expires_local

    @property
    def lost_code(self) -> str | None:
        """Why the lease was lost (None while it is not)."""
        return self._lost_code

    @property
    def heartbeats(self) -> int:
        """How many heartbeats renewed the lease."""
        return self._heartbeats

    # --- the block -------------------------------------------------------------------------------------------
    async def __aenter__(self) -> LeaseKeeper:
        """Check a lease out and start heartbeating.

        :raises LeaseRefusedError: the gateway refused (SEAT_LIMIT_REACHED, CREDENTIAL_INVALID, ...), or its
            lease token does not verify (the token's error code; the lease is released then).
        :raises GatewayUnavailableError: no usable answer after :data:`CHECK_OUT_ATTEMPTS` attempts.
        """
        if self._lease_id is not None or self._closed:
            raise RuntimeError("a LeaseKeeper holds one lease once: make a new keeper to check out again")
        if self._session is None:
            self._session = httpx.AsyncClient(trust_env=True)
        try:
            await self._check_out()
        except BaseException:
            await self._close_session()
            raise
        self._task = asyncio.create_task(self._keep(), name=f"lease heartbeat {self._lease_id}")
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        """Stop heartbeating and release the lease (best effort, within ``request_timeout_s``; never raises for a
        network error or a refusal)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        try:
            if self._lease_id is not None and not self._ended_by_gateway:
                await self._release()
        finally:
            self._closed = True
            await self._close_session()

    async def _close_session(self) -> None:
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.aclose()

    # --- check-out, heartbeat, release -----------------------------------------------------------------------
    def _body(self, **fields: Any) -> dict[str, Any]:
        return {"tenant": self.credential.tenant, "credential": self.credential.credential, **fields}

    async def _check_out(self) -> None:
        body = self._body(device_id=self.device_id, features=list(self.features))
        if self.device_name is not None:
            body["device_name"] = self.device_name
        key = _idempotency_key()
        why = ""
        for attempt in range(CHECK_OUT_ATTEMPTS):
            try:
                answer = await self._post(CHECK_OUT_PATH, body, key, self.request_timeout_s)
            except _Unanswered as unanswered:
                why = str(unanswered)
                logger.info("lease check-out at %s got no usable answer (%s)", self.credential.server, why)
                if attempt + 1 < CHECK_OUT_ATTEMPTS:
                    await asyncio.sleep(self._backoff(attempt, unanswered.retry_after_s))
                continue
            if answer.status >= 400:
                raise answer.refusal("the lease check-out was")
            try:
                await self._take(answer, expected_lease=None)
            except LeaseRefusedError:
                if self._lease_id is not None:  # the gateway did check a lease out: give its seat back
                    await self._release()
                raise
            return
        raise GatewayUnavailableError(
            f"no usable answer from the gateway at {self.credential.server} after {CHECK_OUT_ATTEMPTS} attempts ({why})"
        )

    async def _keep(self) -> None:
        """Heartbeat every interval until the lease is lost (or the task is cancelled).

        Sooner when the lease's expiry by the clock is less than two intervals away (the token's whole seconds, a
        clock ahead of the gateway's), so a retry still fits before it; never more often than once a second.
        """
        try:
            while self._lost_code is None and self._lease is not None:
                await asyncio.sleep(min(self._interval, max(1.0, (self._expires_local - self.clock()) / 2)))
                await self._heartbeat()
        except Exception:  # a bug must not leave the keeper silently believing it holds the lease
            logger.exception("the heartbeat of lease %s failed", self._lease_id)
            self._lose("HEARTBEAT_FAILED")

    async def _heartbeat(self) -> None:
        """One heartbeat, sent again on no usable answer until the lease's expiry; a refusal loses the lease."""
        assert self._lease is not None and self._lease_id is not None
        key = _idempotency_key()
        body = self._body(lease=self._lease_id, lease_secret=self._lease_secret)
        self._pending = (key, body)
        loop = asyncio.get_running_loop()
        # Bounded by the lease's expiry by the clock, and by the same span of the loop's own time.
        deadline = loop.time() + max(0.0, self._expires_local - self.clock())
        attempt = 0
        while True:
            remaining = min(self._expires_local - self.clock(), deadline - loop.time())
            if remaining <= 0:
                self._pending = None
                self._lose(Code.LEASE_EXPIRED.value)
                return
            try:
                answer = await self._post(HEARTBEAT_PATH, body, key, min(self.request_timeout_s, remaining))
            except _Unanswered as unanswered:
                logger.info("heartbeat of lease %s got no usable answer (%s); retrying", self._lease_id, unanswered)
                wait = self._backoff(attempt, unanswered.retry_after_s)
                attempt += 1
                await asyncio.sleep(max(0.0, min(wait, self._expires_local - self.clock())))
                continue
            self._pending = None
            if answer.status >= 400:
                self._ended_by_gateway = answer.error_code in LEASE_ENDED_CODES
                self._lose(answer.error_code)
                return
            try:
                await self._take(answer, expected_lease=self._lease_id)
            except LeaseRefusedError as refused:
                self._lose(refused.code)
                return
            self._heartbeats += 1
            return

    async def _release(self) -> None:
        """Give the seat back, within ``request_timeout_s``; logs what goes wrong instead of raising."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout_s
        if self._pending is not None:
            # A heartbeat was cut off: the gateway may have renewed the lease with a new secret. Its replay tells it.
            key, body = self._pending
            self._pending = None
            try:
                answer = await self._post(HEARTBEAT_PATH, body, key, deadline - loop.time())
            except _Unanswered:
                pass
            else:
                if answer.status >= 400:
                    return  # the lease has ended already
                self._take_secret(answer)
        key = _idempotency_key()
        body = self._body(lease=self._lease_id, lease_secret=self._lease_secret)
        attempt = 0
        while (remaining := deadline - loop.time()) > 0:
            try:
                answer = await self._post(RELEASE_PATH, body, key, remaining)
            except _Unanswered as unanswered:
                logger.info("release of lease %s got no usable answer (%s)", self._lease_id, unanswered)
                wait = self._backoff(attempt, unanswered.retry_after_s)
                attempt += 1
                await asyncio.sleep(min(wait, max(0.0, deadline - loop.time())))
                continue
            if answer.status >= 400:
                logger.info("release of lease %s refused: %s", self._lease_id, answer.error_code)
            return
        logger.warning("lease %s was not released: the gateway did not answer in time; it lapses at its expiry", self._lease_id)

    def _take_secret(self, answer: _Answer) -> None:
        secret = answer.body.get("lease_secret")
        if isinstance(secret, str) and B64URL_32_BYTES.fullmatch(secret):
            self._lease_secret = secret

    async def _take(self, answer: _Answer, *, expected_lease: str | None) -> None:
        """Keep a check-out or heartbeat answer once its lease token verifies for this device.

        :raises LeaseRefusedError: the answer is malformed (ANSWER_MALFORMED) or its token does not verify (the
            token's error code, LEASE_MISMATCH, or a verdict code other than VALID).
        """
        lease, secret, interval = (
            answer.body.get("lease"),
            answer.body.get("lease_secret"),
            answer.body.get("heartbeat_interval_seconds"),
        )
        lease_id = lease.get("id") if isinstance(lease, dict) else None
        if not (
            isinstance(lease_id, str)
            and isinstance(secret, str)
            and B64URL_32_BYTES.fullmatch(secret)
            and isinstance(interval, int)
            and not isinstance(interval, bool)
            and interval >= 1
            and isinstance(answer.body.get("lease_token"), str)
        ):
            raise LeaseRefusedError("the gateway's lease answer is malformed", code="ANSWER_MALFORMED", http_status=answer.status)
        if expected_lease is not None and lease_id != expected_lease:
            raise LeaseRefusedError("the gateway answered for another lease", code="LEASE_MISMATCH", http_status=answer.status)
        self._lease_id, self._lease_secret = lease_id, secret  # the gateway's current secret, whatever the token says
        try:
            verdict = await self._verified(answer.body["lease_token"])
            token = verdict.lease
            if (token.lease_id, token.license_id, token.credential_id) != (
                lease_id,
                self.credential.license,
                self.credential.credential_id,
            ):
                raise LeaseTokenRejectedError("the lease token names another lease, license or credential", code="LEASE_MISMATCH")
        except TokenError as error:
            raise LeaseRefusedError(
                f"the gateway's lease token does not verify: {error.message}", code=error.code, http_status=answer.status
            ) from None
        if not verdict.valid:
            raise LeaseRefusedError(
                f"the gateway's lease token is not valid here: {verdict.code.value}",
                code=verdict.code.value,
                http_status=answer.status,
            )
        self._lease, self._interval = token, float(interval)
        self._expires_local = self.clock() + (token.expires_at - token.issued_at)
        if self.on_lease is not None:
            try:
                self.on_lease(token)
            except Exception:  # the application's callback: its failure must not lose (or leak) the lease
                logger.exception("on_lease of lease %s raised", self._lease_id)

    def _backoff(self, attempt: int, retry_after_s: float | None) -> float:
        """The wait before resending: the client's backoff (:class:`licensor_client.http.RetryPolicy`) from
        ``retry_delay_s`` up to 32 times it, or the gateway's ``Retry-After`` when longer. The callers bound it by
        the lease's expiry or the release's deadline."""
        return self._retry.wait(attempt, retry_after_s, self._rng)

    async def _verified(self, token: str) -> LeaseVerdict:
        """The verdict on a lease token just answered, judged at its own issue time (this device's clock may be
        off; its life is counted locally). A key the credential file predates is fetched from the gateway once
        (``GET /v1/keys``, trusted as the gateway is: over TLS in production), so rotating the tenant's signing
        key does not strand credential files made before.

        :raises licensor_client.errors.TokenError: the token does not verify, with the newest keys either.
        """

        def verify() -> LeaseVerdict:
            issued = read_lease_token(token, self._keys, tenant=self.credential.tenant, product=self.credential.product)
            return verify_lease_token(
                token,
                self._keys,
                tenant=self.credential.tenant,
                product=self.credential.product,
                device_id=self.device_id,
                features=self.features,
                now=issued.issued_at,
            )

        try:
            return verify()
        except UnknownKeyError:
            self._keys.update(await self._published_keys())
            return verify()

    async def _published_keys(self) -> dict[str, bytes]:
        """The tenant's published keys; none when the gateway does not answer them."""
        assert self._session is not None
        url = f"{self.credential.server}{KEYS_PATH}"
        try:
            async with asyncio.timeout(self.request_timeout_s):
                response = await self._session.get(url, params={"tenant": self.credential.tenant})
            document = orjson.loads(response.content) if response.status_code == 200 else {}
        except (httpx.HTTPError, TimeoutError, OSError, orjson.JSONDecodeError):
            return {}
        return published_keys(document)

    def _lose(self, code: str) -> None:
        if self._lost_code is not None:
            return
        self._lost_code = code
        logger.warning("lease %s of %s is lost: %s", self._lease_id, self.credential.credential_id, code)
        if self.on_lost is not None:
            try:
                self.on_lost(code)
            except Exception:
                logger.exception("on_lost of lease %s raised", self._lease_id)

    async def _post(self, path: str, body: dict[str, Any], idempotency_key: str, timeout_s: float) -> _Answer:
        """One request; a 4xx answer with an error code is returned, anything short of a usable answer raises.

        :raises _Unanswered: a transport error, a timeout, a 5xx or 429 answer, or a body outside the contract.
        """
        assert self._session is not None
        headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key}
        try:
            # httpx bounds each phase (connect, read, ...); the whole exchange is bounded here.
            async with asyncio.timeout(max(timeout_s, 0.001)):
                response = await self._session.post(self.credential.server + path, content=orjson.dumps(body), headers=headers)
            status, raw = response.status_code, response.content
        except (httpx.HTTPError, TimeoutError, OSError) as error:
            raise _Unanswered(type(error).__name__) from None  # its text may quote the request
        if status >= 500 or status == 429:
            raise _Unanswered(f"HTTP {status}", retry_after(response.headers, time.time()))
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _Unanswered(f"HTTP {status} without JSON") from None
        if not isinstance(document, dict) or (
            status >= 400 and not (isinstance(document.get("error"), dict) and isinstance(document["error"].get("code"), str))
        ):
            raise _Unanswered(f"HTTP {status} outside the error contract")
        return _Answer(status, document)


def _idempotency_key() -> str:
    return f"lease-{secrets.token_urlsafe(18)}"
