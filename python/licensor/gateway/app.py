"""The gateway application factory."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Iterable

import pluggy
from aiohttp import web

from licensor.central import admin
from licensor.central.events import event_json
from licensor.central.keyset import KEY_SCHEMA, public_key_json
from licensor.central.secrets import Secrets, load_master_key
from licensor.central.webhooks import WebhookSender
from licensor.commerce.intake import order_operation
from licensor.errors import LicensorError, NotFoundError
from licensor.gateway import keys as app_keys
from licensor.gateway import metrics_endpoint, protocol
from licensor.gateway.answers import RememberedAnswers
from licensor.gateway.api import Api
from licensor.gateway.cache import LicenseCache
from licensor.gateway.check import check_operation
from licensor.gateway.drain import InFlight
from licensor.gateway.limits import RateLimits
from licensor.gateway.middleware import gateway_middleware
from licensor.gateway.openapi import build_document, render_docs
from licensor.gateway.outcomes import CheckOutcomes
from licensor.gateway.releases import latest_release_operation
from licensor.gateway.retention import Pruner, RetentionPeriods
from licensor.gateway.services import GatewayServices
from licensor.gateway.settings import Settings
from licensor.gateway.update_hub import UpdateHub
from licensor.gateway.updates import updates_operation
from licensor.mail import FileMailSender, LogMailSender
from licensor.model import id_pattern
from licensor.operations import MAX_BODY_BYTES, PUBLIC, Call, Operation, Param, Reply
from licensor.plugins import BackendRegistry, collect_backends, collect_order_sources, plugin_manager
from licensor.portal import views as portal
from licensor.store import Row, Store, open_store

log = logging.getLogger("licensor.gateway")


async def healthz(call: Call) -> Reply:
    return Reply(200, {"status": "ok"})


class NotReadyError(LicensorError):
    """The gateway should not be sent requests now; the code says why (SHUTTING_DOWN, SCHEMA_TOO_NEW;
    STORE_UNAVAILABLE comes from the store itself)."""

    code = "NOT_READY"
    http_status = 503


async def readyz(call: Call) -> Reply:
    """200 when the gateway can serve; else 503 with ``Retry-After`` and a code saying why.

    :raises NotReadyError: SHUTTING_DOWN, the graceful stop has begun (a load balancer should send no more).
    :raises NotReadyError: SCHEMA_TOO_NEW, a newer gateway has migrated the database past what this one knows.
    :raises licensor.errors.StoreUnavailableError: STORE_UNAVAILABLE, the database does not answer."""
    if call.request.app[app_keys.STOPPING].is_set():
        raise NotReadyError("the gateway is stopping", code="SHUTTING_DOWN")
    await call.store.ping()
    newer = await call.store.newer_schema()
    if newer is not None:
        raise NotReadyError(
            f"the database's schema (version {newer}) is newer than this gateway's: upgrade licensor", code="SCHEMA_TOO_NEW"
        )
    return Reply(200, {"status": "ready"})


async def published_keys(call: Call) -> Reply:
    tenant_id = call.query["tenant"]
    if await call.store.get_tenant(tenant_id) is None:
        raise NotFoundError("no such tenant", code="TENANT_NOT_FOUND")
    rows = await call.store.list_signing_keys(tenant_id)
    return Reply(200, {"object": "keyset", "tenant": tenant_id, "keys": [public_key_json(row) for row in rows]})


async def openapi_document(call: Call) -> Reply:
    return Reply(200, call.request.app[app_keys.OPENAPI])


_STATUS = {"type": "object", "properties": {"status": {"type": "string"}}, "required": ["status"], "additionalProperties": False}


def build_api(backends: BackendRegistry | None = None, plugins: pluggy.PluginManager | None = None) -> Api:
    """Every operation of the gateway: its own, its backends' and its plugins'."""
    api = Api()
    api.add(
        Operation(
            method="GET",
            path="/healthz",
            operation_id="healthz",
            summary="Is the process up",
            handler=healthz,
            tag="ops",
            auth=PUBLIC,
            response_schema=_STATUS,
        )
    )
    api.add(
        Operation(
            method="GET",
            path="/readyz",
            operation_id="readyz",
            summary="Can the gateway serve: 503 with a code saying why not (SHUTTING_DOWN, STORE_UNAVAILABLE, SCHEMA_TOO_NEW)",
            handler=readyz,
            tag="ops",
            auth=PUBLIC,
            response_schema=_STATUS,
            errors=(503,),
        )
    )
    api.add(
        Operation(
            method="GET",
            path="/openapi.json",
            operation_id="openapi",
            summary="This OpenAPI document",
            handler=openapi_document,
            tag="ops",
            auth=PUBLIC,
            response_schema={"type": "object"},
        )
    )
    api.add(
        Operation(
            method="GET",
            path="/v1/keys",
            operation_id="published_keys",
            summary="A tenant's public signing keys",
            handler=published_keys,
            tag="keys",
            auth=PUBLIC,
            response_schema={
                "type": "object",
                "properties": {
                    "object": {"const": "keyset"},
                    "tenant": {"type": "string"},
                    "keys": {"type": "array", "items": KEY_SCHEMA},
                },
                "required": ["object", "tenant", "keys"],
                "additionalProperties": False,
            },
            query=(Param("tenant", {"type": "string", "pattern": id_pattern("ten")}, "The tenant's id.", required=True),),
            errors=(404,),
            description="Active and retired keys: everything the tenant signs verifies offline against these.",
        )
    )
    api.add(check_operation(backends.verdict_codes() if backends is not None else {}))
    api.add(latest_release_operation())
    api.add(updates_operation())
    api.add(order_operation())
    admin.register(api)
    if backends is not None:
        for name in backends:
            backend = backends.get(name)
            assert backend is not None  # a name the registry lists
            for operation in backend.operations():
                api.add(operation)
    if plugins is not None:
        plugins.hook.licensor_register_routes(register=api.add)
    return api


def _publish(manager: pluggy.PluginManager, rows: list[Row]) -> None:
    """Show committed events to the plugins observing ``licensor_event``; one's failure is only logged."""
    for row in rows:
        event = event_json(row)
        for impl in manager.hook.licensor_event.get_hookimpls():
            try:
                impl.function(event=event)
            except Exception:
                log.exception("the licensor_event observer of plugin %s failed", impl.plugin_name)


async def _docs(request: web.Request) -> web.Response:
    return web.Response(text=request.app[app_keys.DOCS_HTML], content_type="text/html")


def create_app(settings: Settings, store: Store | None = None, plugins: Iterable[object] = ()) -> web.Application:
    """The gateway. It opens ``store`` (default: the one ``settings`` names) at start-up and closes it at
    shutdown; the master key comes from ``settings`` or ``LICENSOR_MASTER_KEY`` or the data directory. Backends
    come from the installed plugins (entry points ``licensor.backends``) and ``plugins``.

    :raises pluggy.PluginValidationError: a plugin implements a hook licensor does not have.
    """
    protocol.install()
    app = web.Application(
        middlewares=[gateway_middleware],
        client_max_size=MAX_BODY_BYTES,
        handler_args={**protocol.HANDLER_ARGS, "keepalive_timeout": settings.idle_timeout_s},
    )
    app[app_keys.SETTINGS] = settings
    manager = plugin_manager(plugins)
    app[app_keys.PLUGINS] = manager
    app[app_keys.BACKENDS] = backends = collect_backends(manager)
    app[app_keys.ORDER_SOURCES] = collect_order_sources(manager)
    mail = manager.hook.licensor_mail_sender()
    if mail is None:
        mail = LogMailSender() if settings.mail == "log" else FileMailSender(os.path.join(settings.data_dir, "mail"))
    app[app_keys.MAIL] = mail
    api = build_api(backends, manager)
    document = build_document(api, settings.public_url)
    document["paths"]["/docs"] = {
        "get": {
            "operationId": "docs",
            "summary": "This API as a readable page",
            "tags": ["ops"],
            "parameters": [],
            "security": [],
            "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}},
        }
    }
    document["paths"][metrics_endpoint.METRICS_PATH] = metrics_endpoint.OPENAPI_PATH_ITEM
    app[app_keys.OPENAPI] = document
    app[app_keys.DOCS_HTML] = render_docs(document)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        master_key = settings.master_key or load_master_key(settings.master_key_path)
        app[app_keys.SECRETS] = Secrets(master_key)
        opened = store or open_store(settings.store_url)
        if opened.url.startswith("sqlite:///"):
            os.makedirs(os.path.dirname(opened.url[len("sqlite:///") :]) or ".", exist_ok=True)
        await opened.open()
        app[app_keys.STORE] = opened
        app[app_keys.CACHE] = LicenseCache(opened, app[app_keys.SECRETS])
        app[app_keys.ANSWERS] = RememberedAnswers(opened)
        opened.subscribe_events(lambda rows: _publish(manager, rows))
        app[app_keys.OUTCOMES] = outcomes = CheckOutcomes(opened)
        outcomes.start()
        app[app_keys.UPDATES] = hub = UpdateHub(opened)
        hub.start()
        app[app_keys.WEBHOOKS] = webhooks = WebhookSender(
            opened,
            app[app_keys.SERVICES],
            app[app_keys.SECRETS],
            allow_private=settings.webhook_allow_private,
            retry_base_s=settings.webhook_retry_base_s,
        )
        if settings.webhook_sender:
            webhooks.start()
        periods = RetentionPeriods.of(
            settings.idempotency_retention_hours, settings.lease_retention_days, settings.webhook_retention_days
        )
        app[app_keys.RETENTION] = pruner = Pruner(opened, app[app_keys.SERVICES].now_us, periods, settings.retention_interval_s)
        if settings.retention_interval_s > 0:
            pruner.start()
        try:
            yield
        finally:
            try:
                await pruner.stop()
                await webhooks.close()
                await hub.close()
                await outcomes.stop()
            finally:
                await opened.close()

    app.cleanup_ctx.append(resources)
    metrics_endpoint.install(app)
    app[app_keys.STOPPING] = asyncio.Event()
    app[app_keys.IN_FLIGHT] = InFlight()

    async def stop_being_ready(app: web.Application) -> None:
        app[app_keys.STOPPING].set()

    app.on_shutdown.append(stop_being_ready)

    async def end_update_connections(app: web.Application) -> None:
        # Before the server waits for open requests to finish: the update streams end now, not at their timeout.
        if app_keys.UPDATES in app:
            await app[app_keys.UPDATES].close()

    app.on_shutdown.append(end_update_connections)
    app[app_keys.SERVICES] = services = GatewayServices(app)
    app[app_keys.LIMITS] = RateLimits(settings, lambda: services.now_us() / 1_000_000)
    backends.hand_over(services)
    api.install(app, services)
    app[app_keys.OPERATIONS] = {operation.operation_id: operation for operation in api.operations}
    app.router.add_get("/docs", _docs)
    portal.install(app)
    return app


__all__ = ["build_api", "create_app"]
