"""Typed keys of everything the gateway application holds, defined in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from licensor.central.secrets import Secrets
    from licensor.gateway.api import Api
    from licensor.gateway.settings import Settings
    from licensor.plugins import BackendRegistry
    from licensor.store import Store

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
STORE: web.AppKey[Store] = web.AppKey("store")
SECRETS: web.AppKey[Secrets] = web.AppKey("secrets")
API: web.AppKey[Api] = web.AppKey("api")
BACKENDS: web.AppKey[BackendRegistry] = web.AppKey("backends")
OPENAPI: web.AppKey[dict] = web.AppKey("openapi")  # type: ignore[type-arg]
DOCS_HTML: web.AppKey[str] = web.AppKey("docs_html")
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)  # per request, set by the middleware
