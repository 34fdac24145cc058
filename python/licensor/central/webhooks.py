"""Webhooks out: the tenant's events delivered to the vendor's endpoints, signed, retried, once per endpoint.

The event log is the outbox: every change commits its event in its own transaction, so nothing that happened can
be missed. Each gateway process runs a :class:`WebhookSender`; its loop

1. **fills** deliveries: for each enabled endpoint, in a transaction that locks the endpoint's row, it reads the
   events after the endpoint's cursor, adds a delivery (one row per endpoint and event, unique) for each event
   of a subscribed type, and moves the cursor: two workers never fill the same events twice;
2. **delivers** what is due: it claims deliveries for a minute (a conditional update, so one worker takes each;
   a worker that dies loses its claim), posts them in the Standard Webhooks 1.0 format (``webhook-id``: the
   delivery's id, the same at every attempt; ``webhook-timestamp``; ``webhook-signature``: ``v1a,<Ed25519>`` by
   the tenant's active key, named by ``webhook-key-id`` and published at ``/v1/keys``, and ``v1,<HMAC>`` when the
   endpoint has a secret), and records each attempt. A failure (no connection, a timeout, a status other than
   2xx) is retried with exponential backoff and jitter until the delivery is :data:`RETRY_WINDOW_US` old; an
   endpoint failing without a success for :data:`DISABLE_AFTER_US` is disabled and the vendor told (the event
   ``webhook_endpoint.disabled``).

Targets in private, loopback and link-local ranges are refused unless the operator allows them
(``LICENSOR_WEBHOOK_ALLOW_PRIVATE=1``): at creation, and at every attempt (a name is resolved to public
addresses only, so a name that later points inside the network reaches nothing there).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import logging
import random
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from licensor import _impl
from licensor.central.secrets import Secrets
from licensor.commerce.signatures import standard_webhooks_key
from licensor.errors import LicensorError, StoreUnavailableError, ValidationError
from licensor.model import WEBHOOK_ATTEMPT, WEBHOOK_DELIVERY, WEBHOOK_ENDPOINT, canonical_json, format_time, new_id
from licensor.operations import Services
from licensor.store import Row, Store

log = logging.getLogger("licensor.webhooks")

HOUR_US = 3_600_000_000
RETRY_WINDOW_US = 72 * HOUR_US
"""A delivery is retried until it is this old (about three days), then marked failed (a vendor may retry it)."""
DISABLE_AFTER_US = 5 * 24 * HOUR_US
"""An endpoint failing this long without a single success is disabled."""
MAX_DELAY_US = 6 * HOUR_US
CLAIM_US = 60_000_000
"""How long a worker holds the deliveries it claimed (longer than an attempt's timeout)."""
ATTEMPT_TIMEOUT_S = 15.0
BATCH = 20
"""Deliveries attempted at once by one worker."""
FILL_BATCH = 500
POLL_S = 1.0
MIN_PASS_S = 0.2
"""A busy gateway (events committed all the time) still runs at most one pass per this interval."""
ANSWER_READ_BYTES = 4096
CLOSE_TIMEOUT_S = 5.0


# --- where a webhook may go ----------------------------------------------------------------------------
_IPV6_CARRYING_IPV4 = (
    ipaddress.ip_network("64:ff9b::/96"),  # NAT64
    ipaddress.ip_network("64:ff9b:1::/48"),  # local NAT64
    ipaddress.ip_network("::/96"),  # IPv4-compatible
    ipaddress.ip_network("::ffff:0:0:0/96"),  # IPv4-translated
)
_IPV6_NEVER_PUBLIC = (ipaddress.ip_network("fec0::/10"),)  # site-local (deprecated, not "global" to older Pythons)


def is_public_address(address: str) -> bool:
    """Whether a webhook may be sent to ``address``: a global unicast address, and for IPv6 forms that carry an
    IPv4 address (mapped, 6to4, Teredo, NAT64, compatible), that IPv4 address too."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is None and any(ip in network for network in _IPV6_CARRYING_IPV4):
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None:
            return is_public_address(str(inner)) and not (ip.teredo or ip.sixtofour)  # tunnels: never
        if any(ip in network for network in _IPV6_NEVER_PUBLIC):
            return False
    return ip.is_global and not ip.is_multicast


class PublicOnlyResolver(AbstractResolver):
    """Resolves names to their public addresses only: a webhook cannot be aimed at the gateway's own network."""

    def __init__(self) -> None:
        self._resolver = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = [r for r in await self._resolver.resolve(host, port, family) if is_public_address(r["host"])]
        if not found:
            raise OSError(f"{host} resolves to no public address (private targets are not allowed)")
        return found

    async def close(self) -> None:
        await self._resolver.close()


def _host(url: str) -> str:
    """The URL's host. :raises ValidationError: the URL has none that can be read (``http://[::1``)."""
    try:
        host = urlsplit(url).hostname
        _ = urlsplit(url).port  # a port out of range is refused here too
    except ValueError:
        host = None
    if not host:
        raise ValidationError("url: the host is not valid", code="INVALID_FIELD")
    return host


def literal_address(url: str) -> str | None:
    """The IP address the URL names literally, or None for a host name."""
    try:
        return str(ipaddress.ip_address(_host(url)))
    except ValueError:
        return None


async def check_target(url: str, allow_private: bool) -> None:
    """:raises ValidationError: WEBHOOK_URL_NOT_ALLOWED, the URL names or resolves to a private address."""
    host = _host(url)
    if allow_private:
        return
    address = literal_address(url)
    if address is not None:
        public = is_public_address(address)
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except UnicodeError:  # a label too long or empty: no host name at all
            raise ValidationError("url: the host name is not valid", code="INVALID_FIELD") from None
        except OSError:
            infos = []  # not resolvable now: the attempts will tell (and refuse a private answer then)
        public = all(is_public_address(str(info[4][0])) for info in infos)
    if not public:
        raise ValidationError(
            "url: the endpoint is in a private, loopback or link-local range (the operator may allow such targets)",
            code="WEBHOOK_URL_NOT_ALLOWED",
        )


# --- what a delivery carries ---------------------------------------------------------------------------
def payload_of(event: Row) -> str:
    """The body of an event's deliveries: Standard Webhooks' ``type``, ``timestamp`` and ``data``, and the event's
    ``sequence`` in the tenant's log (a later change of the same resource has a larger one: a receiver drops an
    update older than what it holds) and ``subject``."""

    return canonical_json(
        {
            "type": event["type"],
            "timestamp": format_time(event["created_at"]),
            "sequence": int(event["seq"]),
            "event_id": event["id"],
            "subject": {"type": event["subject_type"], "id": event["subject_id"]},
            "data": orjson.loads(event["data"]),
        }
    )


def subscribed(event_types: list[str], event_type: str) -> bool:
    return any(
        wanted == "*" or wanted == event_type or (wanted.endswith(".*") and event_type.startswith(wanted[:-1]))
        for wanted in event_types
    )


def signature_headers(
    message_id: str, timestamp: int, body: bytes, kid: str, seed: bytes, hmac_secrets: list[str]
) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt. The signed content is ``id.timestamp.body``: it starts with
    the message id (``msg_…``), which no signed token's type can, so the tenant's key signs nothing here that could
    pass for one of its tokens."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    signatures = [f"v1a,{base64.b64encode(_impl.sign(seed, signed)).decode()}"]
    for secret in hmac_secrets:
        mac = hmac.new(standard_webhooks_key(secret), signed, hashlib.sha256).digest()
        signatures.append(f"v1,{base64.b64encode(mac).decode()}")
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signatures),
        "webhook-key-id": kid,
        "Content-Type": "application/json",
        "User-Agent": "licensor-webhooks/1",
    }


def next_delay_us(attempts: int, base_s: float) -> int:
    """Exponential backoff from ``base_s``, doubled per attempt up to 6 h, with jitter (half fixed, half random),
    so a receiver that comes back is not hit by every delivery at once."""
    delay = min(MAX_DELAY_US, int(base_s * 1_000_000 * 2 ** min(attempts - 1, 30)))
    return delay // 2 + random.randrange(delay // 2 + 1)


# --- the sender ----------------------------------------------------------------------------------------
class WebhookSender:
    """The background loop of one gateway process (see the module's description)."""

    def __init__(self, store: Store, services: Services, secrets: Secrets, *, allow_private: bool, retry_base_s: float) -> None:
        self.store = store
        self.services = services
        self.secrets = secrets
        self.allow_private = allow_private
        self.retry_base_s = retry_base_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        # What this process's attempts came to, for the metrics: attempts by outcome, deliveries by final state.
        self.attempts = {"delivered": 0, "failed": 0}
        self.finished = {"delivered": 0, "failed": 0}

    def start(self) -> None:
        self.store.subscribe_events(lambda rows: self._wake.set())
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await asyncio.wait_for(self._task, CLOSE_TIMEOUT_S)
            except asyncio.CancelledError:
                pass
            except TimeoutError:  # shutting down must not wait on a stuck attempt
                log.warning("webhooks: the sender did not stop within %g s", CLOSE_TIMEOUT_S)
        if self._session is not None:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            resolver = DefaultResolver() if self.allow_private else PublicOnlyResolver()
            connector = aiohttp.TCPConnector(resolver=resolver, limit=BATCH, force_close=True)
            self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT_S))
        return self._session

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.run_once()
            except StoreUnavailableError as error:
                log.warning("webhooks: the store is unavailable (%s); retrying", error)
            except Exception:  # the loop must outlive any one failure; the next pass tries again
                log.exception("webhooks: a pass failed")
            await asyncio.sleep(max(0.0, MIN_PASS_S - (time.monotonic() - started)))
            try:
                await asyncio.wait_for(self._wake.wait(), POLL_S)
            except TimeoutError:
                pass
            self._wake.clear()

    async def run_once(self) -> None:
        """One pass: fill deliveries from the log, then attempt what is due."""
        for endpoint in await self.store.enabled_webhook_endpoints():
            await self._fill(endpoint)
        while True:
            now = self.services.now_us()
            claimed = await self.store.claim_webhook_deliveries(now, now + CLAIM_US, BATCH)
            if not claimed:
                return
            await asyncio.gather(*(self._attempt(delivery) for delivery in claimed), return_exceptions=True)
            if len(claimed) < BATCH:
                return

    async def _fill(self, endpoint: Row) -> None:
        async with self.store.transaction(endpoint["tenant_id"]) as tx:
            current = await tx.get(WEBHOOK_ENDPOINT, endpoint["id"], for_update=True)
            if current is None or current["state"] != "enabled":
                return
            events = await tx.events_after(int(current["cursor_seq"]), FILL_BATCH)
            if not events:
                return
            wanted = WEBHOOK_ENDPOINT.field("event_types").column_to_api(current["event_types"])
            now = self.services.now_us()
            for event in events:
                if subscribed(wanted, event["type"]):
                    row = {
                        "id": new_id("msg"),
                        "endpoint_id": current["id"],
                        "event_id": event["id"],
                        "event_seq": event["seq"],
                        "event_type": event["type"],
                        "payload": payload_of(event),
                        "state": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "claimed_until": None,
                        "last_status": None,
                        "last_error": None,
                        "delivered_at": None,
                        "created_at": now,
                        "updated_at": now,
                    }
                    await tx.insert_new(WEBHOOK_DELIVERY, row)
            await tx.update(WEBHOOK_ENDPOINT, current["id"], {"cursor_seq": events[-1]["seq"]})

    async def _attempt(self, delivery: Row) -> None:
        tenant_id = delivery["tenant_id"]
        endpoint = await self.store.get(tenant_id, WEBHOOK_ENDPOINT, delivery["endpoint_id"])
        if endpoint is None:
            return
        status, error, started = None, None, time.monotonic()
        try:
            status = await self._post(endpoint, delivery)
            if not 200 <= status < 300:
                error = f"the endpoint answered HTTP {status}"
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError, LicensorError) as failure:
            error = f"{type(failure).__name__}: {str(failure)[:300]}" if str(failure) else type(failure).__name__
        except Exception as failure:  # whatever else went wrong is a failed attempt too: recorded, retried, counted
            log.exception("webhooks: an attempt failed unexpectedly")
            error = f"licensor could not send it ({type(failure).__name__})"
        await self._record(delivery, endpoint, status, error, int((time.monotonic() - started) * 1000))

    async def _post(self, endpoint: Row, delivery: Row) -> int:
        url = endpoint["url"]
        address = literal_address(url)
        if address is not None and not self.allow_private and not is_public_address(address):
            raise ValueError("the endpoint's address is private (private targets are not allowed)")
        kid, seed = await self.services.signing_key(delivery["tenant_id"])
        secrets = []
        if endpoint["secret"]:
            secrets = self.secrets.open_integration_secrets(delivery["tenant_id"], "webhook_endpoint", endpoint["secret"])
        body = delivery["payload"].encode()
        headers = signature_headers(delivery["id"], self.services.now_us() // 1_000_000, body, kid, seed, secrets)
        async with self._client().post(url, data=body, headers=headers, allow_redirects=False) as response:
            await response.content.read(ANSWER_READ_BYTES)  # what a receiver says is not kept; reading lets it finish
            return response.status

    async def _record(self, delivery: Row, endpoint: Row, status: int | None, error: str | None, duration_ms: int) -> None:
        now = self.services.now_us()
        async with self.store.transaction(delivery["tenant_id"]) as tx:
            current = await tx.get(WEBHOOK_DELIVERY, delivery["id"], for_update=True)
            if current is None or current["state"] != "pending" or current["claimed_until"] != delivery["claimed_until"]:
                return  # another worker took the delivery over after this one's claim ran out
            attempt = int(current["attempts"]) + 1
            await tx.insert(
                WEBHOOK_ATTEMPT,
                {
                    "id": new_id("wha"),
                    "delivery_id": current["id"],
                    "attempt": attempt,
                    "status": status,
                    "error": error,
                    "duration_ms": duration_ms,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            changes: Row = {"attempts": attempt, "claimed_until": None, "last_status": status, "last_error": error}
            if error is None:
                changes.update(state="delivered", delivered_at=now)
                if endpoint["failing_since"] is not None:
                    await tx.update(WEBHOOK_ENDPOINT, endpoint["id"], {"failing_since": None})
            else:
                if now - int(current["created_at"]) >= RETRY_WINDOW_US:
                    changes["state"] = "failed"
                else:
                    changes["next_attempt_at"] = now + next_delay_us(attempt, self.retry_base_s)
                await self._endpoint_failed(tx, endpoint, now)
            await tx.update(WEBHOOK_DELIVERY, current["id"], changes)
        self.attempts["delivered" if error is None else "failed"] += 1
        if changes.get("state") in self.finished:
            self.finished[changes["state"]] += 1

    async def _endpoint_failed(self, tx: Any, endpoint: Row, now: int) -> None:
        current = await tx.get(WEBHOOK_ENDPOINT, endpoint["id"], for_update=True)
        if current is None or current["state"] != "enabled":
            return
        if current["failing_since"] is None:
            await tx.update(WEBHOOK_ENDPOINT, current["id"], {"failing_since": now})
        elif now - int(current["failing_since"]) >= DISABLE_AFTER_US:
            reason = f"every attempt failed since {format_time(current['failing_since'])}"
            row = await tx.update(WEBHOOK_ENDPOINT, current["id"], {"state": "disabled", "disabled_reason": reason})
            await tx.append_event(
                "webhook_endpoint.disabled", "webhook_endpoint", current["id"], "system:webhooks", WEBHOOK_ENDPOINT.to_api(row)
            )
