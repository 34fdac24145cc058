"""Typed keys of everything the gateway application holds, defined in one place."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    import pluggy

    from licensor.central.secrets import Secrets
    from licensor.central.webhooks import WebhookSender
    from licensor.gateway.answers import RememberedAnswers
    from licensor.gateway.cache import LicenseCache
    from licensor.gateway.drain import InFlight
    from licensor.gateway.limits import RateLimits
    from licensor.gateway.metrics import GatewayMetrics
    from licensor.gateway.outcomes import CheckOutcomes
    from licensor.gateway.retention import Pruner
    from licensor.gateway.settings import Settings
    from licensor.gateway.update_hub import UpdateHub
    from licensor.license import Licensed
    from licensor.mail import MailSender
    from licensor.operations import Operation, Services
    from licensor.orders import OrderSource
    from licensor.plugins import BackendRegistry
    from licensor.store import Store

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
STORE: web.AppKey[Store] = web.AppKey("store")
SECRETS: web.AppKey[Secrets] = web.AppKey("secrets")
BACKENDS: web.AppKey[BackendRegistry] = web.AppKey("backends")
PLUGINS: web.AppKey[pluggy.PluginManager] = web.AppKey("plugins")
CACHE: web.AppKey[LicenseCache] = web.AppKey("cache")
ANSWERS: web.AppKey[RememberedAnswers] = web.AppKey("answers")
OUTCOMES: web.AppKey[CheckOutcomes] = web.AppKey("outcomes")
SERVICES: web.AppKey[Services] = web.AppKey("services")
OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi")
DOCS_HTML: web.AppKey[str] = web.AppKey("docs_html")
UPDATES: web.AppKey[UpdateHub] = web.AppKey("updates")
ORDER_SOURCES: web.AppKey[dict[str, OrderSource]] = web.AppKey("order_sources")
MAIL: web.AppKey[MailSender] = web.AppKey("mail")
WEBHOOKS: web.AppKey[WebhookSender] = web.AppKey("webhooks")
LIMITS: web.AppKey[RateLimits] = web.AppKey("limits")
METRICS: web.AppKey[GatewayMetrics] = web.AppKey("metrics")
STOPPING: web.AppKey[asyncio.Event] = web.AppKey("stopping")  # set when the graceful shutdown begins (/readyz: 503)
IN_FLIGHT: web.AppKey[InFlight] = web.AppKey("in_flight")  # the requests being handled (licensor.gateway.drain)
RETENTION: web.AppKey[Pruner] = web.AppKey("retention")
OPERATIONS: web.AppKey[dict[str, Operation]] = web.AppKey("operations")  # by operation id
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)  # per request, set by the middleware
CLIENT: web.RequestKey[str] = web.RequestKey("client", str)  # the client's address (trusted proxies resolved)
BODY: web.RequestKey[bytes] = web.RequestKey("body", bytes)  # the request's body, once read (gateway.api)
ASKING_LICENSE: web.RequestKey[Licensed] = web.RequestKey("asking_license")  # the license the request presented
