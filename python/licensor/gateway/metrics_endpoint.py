"""``GET /metrics``: who may scrape, what a scrape reads, and the copying of other parts' counts into the metrics
(:mod:`licensor.gateway.metrics`).

Access: with the setting ``metrics_token``, a scrape must send ``Authorization: Bearer <metrics_token>``
(compared in constant time); without it, only a client on the loopback interface that came through no proxy
(no ``Forwarded`` / ``X-Forwarded-For`` header) may scrape. Behind a reverse proxy on the same host, set the token
or keep the proxy from forwarding ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from licensor.errors import AuthenticationError, PermissionDeniedError
from licensor.gateway import keys as app_keys
from licensor.gateway.metrics import GatewayMetrics

METRICS_PATH = "/metrics"
SYNC_SECONDS = 1.0
"""How often the counts other parts keep are copied into the metrics (a scrape copies them at once too)."""
SEATS_READ_SECONDS = 30.0
"""How often a scrape reads the seats held from the store (at most): it counts every live activation and lease."""


def sync(app: web.Application) -> None:
    """Write the requests and verdicts counted since the last time into the metrics, and copy the counts the
    license cache, the remembered answers, the update hub and the webhook sender keep."""
    metrics = app[app_keys.METRICS]
    metrics.flush()
    if app_keys.CACHE in app:
        cache = app[app_keys.CACHE]
        metrics.copy("cache_hits", cache.hits, metrics.cache_hits)
        metrics.copy("cache_misses", cache.misses, metrics.cache_misses)
    if app_keys.ANSWERS in app:
        metrics.copy("answers_reused", app[app_keys.ANSWERS].hits, metrics.answers_reused)
    if app_keys.UPDATES in app:
        metrics.update_connections.set(app[app_keys.UPDATES].connections)
    if app_keys.WEBHOOKS in app:
        sender = app[app_keys.WEBHOOKS]
        for outcome, count in sender.attempts.items():
            metrics.copy(f"attempts_{outcome}", count, metrics.webhook_attempts.labels(outcome))
        for state, count in sender.finished.items():
            metrics.copy(f"deliveries_{state}", count, metrics.webhook_deliveries.labels(state))


async def _read_seats(app: web.Application, metrics: GatewayMetrics) -> None:
    """Set the seats-held gauge from the store, at most every :data:`SEATS_READ_SECONDS` in this process (the
    count reads every live activation and lease)."""
    now = time.monotonic()
    if metrics.seats_read_at is not None and now - metrics.seats_read_at < SEATS_READ_SECONDS:
        return
    held = await app[app_keys.STORE].seats_held(app[app_keys.SERVICES].now_us())
    for backend in {*app[app_keys.BACKENDS], *held}:
        metrics.seats_held.labels(backend).set(held.get(backend, 0))
    metrics.seats_read_at = now


def authorize_scrape(request: web.Request, token: str | None) -> None:
    """Let the scrape through, or refuse it (see the module's description).

    :raises AuthenticationError: METRICS_TOKEN_REQUIRED, a missing or wrong token (401).
    :raises PermissionDeniedError: METRICS_LOOPBACK_ONLY, no token is configured and the client is not local (403).
    """
    if token:
        sent = request.headers.get("Authorization", "")
        scheme, _, value = sent.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            raise AuthenticationError("send Authorization: Bearer with the metrics token", code="METRICS_TOKEN_REQUIRED")
        return
    proxied = "Forwarded" in request.headers or "X-Forwarded-For" in request.headers
    if proxied or not _is_loopback(request.remote):
        raise PermissionDeniedError(
            "metrics are served to local clients only; set metrics_token to scrape from elsewhere",
            code="METRICS_LOOPBACK_ONLY",
        )


def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


async def metrics_page(request: web.Request) -> web.Response:
    """``GET /metrics``: the metrics in the Prometheus text format."""
    app = request.app
    authorize_scrape(request, app[app_keys.SETTINGS].metrics_token)
    sync(app)  # this process's counts, up to now
    metrics = app[app_keys.METRICS]
    metrics.webhook_backlog.set(await app[app_keys.STORE].webhook_backlog())  # read now: the store is the truth
    await _read_seats(app, metrics)
    return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
OPENAPI_PATH_ITEM: dict[str, Any] = {
    "get": {
        "operationId": "metrics",
        "summary": "The gateway's metrics in the Prometheus text format",
        "description": "See docs/metrics.md. Local clients only, unless the setting metrics_token is set: then send it "
        "as a bearer token. Never holds tenants, licenses or secrets.",
        "tags": ["ops"],
        "parameters": [],
        "security": [],
        "x-authenticated-by": "header",
        "responses": {
            "200": {"description": "The Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}},
            "401": {
                "description": "METRICS_TOKEN_REQUIRED: metrics_token is set, and the request does not carry it",
                "content": _ERROR,
            },
            "403": {
                "description": "METRICS_LOOPBACK_ONLY: no metrics_token is set, and the client is not local",
                "content": _ERROR,
            },
        },
    }
}


def install(app: web.Application) -> None:
    """Add ``GET /metrics`` and the metrics of this process to ``app`` (after its resources are set up)."""
    metrics = app[app_keys.METRICS] = GatewayMetrics()
    app.router.add_get(METRICS_PATH, metrics_page)

    async def keep_synced(app: web.Application) -> AsyncIterator[None]:
        store = app[app_keys.STORE]
        store.time_transactions(metrics.store_transaction.observe)
        store.observe_chaining(metrics.observe_chaining)

        async def run() -> None:
            while True:
                await asyncio.sleep(SYNC_SECONDS)
                sync(app)

        task = asyncio.create_task(run(), name="licensor metrics")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        store.time_transactions(None)
        store.observe_chaining(None)
        sync(app)

    app.cleanup_ctx.append(keep_synced)
