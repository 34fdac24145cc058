"""``GET /metrics``, ``/readyz`` and the JSON logs, on the real gateway (both stores).

- Requests are counted by route template, method and status, never by raw path; a latency histogram per route.
- Check verdicts are counted by backend and code, remembered answers included; cache hits and misses, store
  transactions, update connections, webhook attempts, the outbox backlog and the seats held by backend are there.
- Only loopback clients may scrape unless ``metrics_token`` is set; then only with it. Nothing of a tenant (its
  id, a license key, a token) is in a scrape.
- ``/readyz`` answers 503 with a code saying why (SHUTTING_DOWN, STORE_UNAVAILABLE, SCHEMA_TOO_NEW) and
  ``Retry-After``.
- The access log as JSON holds the method, the path without its query string, the status and the request id, and
  no header, body or query string.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from licensor import PUBLIC, Call, Operation, Reply, hookspecs
from licensor.central.license_keys import generate as generate_license_key
from licensor.cli.logs import JsonFormatter
from licensor.cli.serve import _access_logger_class
from licensor.fingerprint import hash_components, product_salt
from licensor.gateway import keys
from licensor.gateway.api import RETRY_AFTER_S
from licensor.gateway.app import create_app
from licensor.gateway.metrics import NO_BACKEND, UNMATCHED
from licensor.gateway.settings import Settings
from licensor.model import now_us
from licensor.store import open_store
from licensor.store.sql import SqlStore
from licensor.testing import Gateway, Vendor
from licensor_client.activation import DeviceKey, device_request
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(gateway: Gateway, **kwargs: Any) -> tuple[str, Samples]:
    answer = await gateway.call("GET", "/metrics", **kwargs)
    assert answer.status == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return answer.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_requests_are_counted_by_route_template_method_and_status(licensor_gateway: Gateway) -> None:
    tenant = await licensor_gateway.tenant()
    product = await tenant.product("cad")
    for _ in range(3):
        await tenant.ok("GET", f"/v1/admin/products/{product['id']}")
    missing = await tenant.call("GET", "/v1/admin/products/prd_0000000000000000000000nope")
    assert missing.status == 404
    for path in ("/no/such/route/abc123", "/v1/admin/secret-looking-path-xyz"):
        assert (await licensor_gateway.call("GET", path)).status == 404
    assert (await licensor_gateway.call("DELETE", "/healthz")).status == 405
    await tenant.ok("GET", "/v1/admin/events/verify")  # every event linked by now (tenant.created, product.created)

    text, samples = await scrape(licensor_gateway)
    product_route = {"route": "/v1/admin/products/{id}", "method": "GET"}
    assert value(samples, "licensor_http_requests_total", **product_route, status="200") == 3
    assert value(samples, "licensor_http_requests_total", **product_route, status="404") == 1
    assert value(samples, "licensor_http_requests_total", route="/v1/admin/products", method="POST", status="201") == 1
    assert value(samples, "licensor_http_requests_total", route=UNMATCHED, method="GET", status="404") == 2
    assert value(samples, "licensor_http_requests_total", route=UNMATCHED, method="DELETE", status="405") == 1
    # One latency observation per request, in buckets that add up.
    assert value(samples, "licensor_http_request_duration_seconds_count", **product_route) == 4
    assert value(samples, "licensor_http_request_duration_seconds_bucket", **product_route, le="+Inf") == 4
    assert 0 < value(samples, "licensor_http_request_duration_seconds_sum", **product_route) < 10
    # Bounded labels: no raw path, no object id, no tenant.
    for secret in ("abc123", "secret-looking", product["id"], tenant.id, tenant.admin_token, "nope"):
        assert secret not in text
    assert value(samples, "licensor_store_transaction_seconds_count") >= 1
    assert value(samples, "licensor_events_chained_total") >= 2
    assert 1 <= value(samples, "licensor_event_chain_wait_seconds_count") <= value(samples, "licensor_events_chained_total")


class MovedPlugin:
    """A plugin route that answers with a redirect (raised, as the portal's downloads do)."""

    @hookspecs.hookimpl
    def licensor_register_routes(self, register: Callable[[Operation], None]) -> None:
        async def moved(call: Call) -> Reply:
            raise web.HTTPFound("/healthz")

        register(
            Operation(
                method="GET",
                path="/v1/test/moved",
                operation_id="test_moved",
                summary="Redirect to /healthz",
                handler=moved,
                tag="test",
                auth=PUBLIC,
                response_schema={"type": "object"},
            )
        )


@pytest.fixture
def licensor_plugins() -> tuple[object, ...]:
    return (MovedPlugin(),)


async def test_redirects_raised_by_a_handler_are_counted(licensor_gateway: Gateway) -> None:
    async with licensor_gateway.client.get("/v1/test/moved", allow_redirects=False) as answer:
        assert answer.status == 302
    _, samples = await scrape(licensor_gateway)
    assert value(samples, "licensor_http_requests_total", route="/v1/test/moved", method="GET", status="302") == 1
    assert value(samples, "licensor_http_request_duration_seconds_count", route="/v1/test/moved", method="GET") == 1


async def test_check_verdicts_are_counted_by_backend_and_code(
    licensor_gateway: Gateway, licensor_vendor: Callable[..., Awaitable[Vendor]]
) -> None:
    vendor = await licensor_vendor("cloud-lite")
    check = {"tenant": vendor.tenant.id, "product": vendor.product["code"], "license_key": vendor.license["key"]}
    for _ in range(5):  # the first is computed, the repeats answered from the remembered answer
        answer = await licensor_gateway.call("POST", "/v1/check", json=check)
        assert answer.body["verdict"]["code"] == "VALID"
    unknown = {**check, "license_key": generate_license_key()}
    for _ in range(2):
        answer = await licensor_gateway.call("POST", "/v1/check", json=unknown)
        assert answer.body["verdict"]["code"] == "NOT_FOUND"

    text, samples = await scrape(licensor_gateway)
    assert value(samples, "licensor_check_verdicts_total", backend="cloud-lite", code="VALID") == 5
    assert value(samples, "licensor_check_verdicts_total", backend=NO_BACKEND, code="NOT_FOUND") == 2
    assert value(samples, "licensor_http_requests_total", route="/v1/check", method="POST", status="200") == 7
    assert value(samples, "licensor_check_answers_reused_total") >= 1
    assert value(samples, "licensor_license_cache_misses_total") >= 1
    assert value(samples, "licensor_license_cache_hits_total") >= 1
    assert vendor.license["key"] not in text and vendor.tenant.id not in text


async def test_metrics_are_for_loopback_clients_unless_a_token_is_set(licensor_gateway: Gateway) -> None:
    settings = licensor_gateway.app[keys.SETTINGS]
    # Through a proxy (even one on this host) the client is not local.
    for header in ("X-Forwarded-For", "Forwarded"):
        refused = await licensor_gateway.call("GET", "/metrics", headers={header: "203.0.113.9"})
        assert (refused.status, refused.code) == (403, "METRICS_LOOPBACK_ONLY")
    object.__setattr__(settings, "metrics_token", "s3cret-metrics-token")
    try:
        for sent in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-metrics-token"}):
            refused = await licensor_gateway.call("GET", "/metrics", headers=sent)
            assert (refused.status, refused.code) == (401, "METRICS_TOKEN_REQUIRED"), sent
            assert "s3cret" not in refused.text
        text, _ = await scrape(licensor_gateway, token="s3cret-metrics-token", headers={"X-Forwarded-For": "203.0.113.9"})
        assert "licensor_http_requests_total" in text and "s3cret" not in text
    finally:
        object.__setattr__(settings, "metrics_token", None)


async def test_seats_held_are_counted_by_backend(
    licensor_gateway: Gateway, licensor_vendor: Callable[..., Awaitable[Vendor]]
) -> None:
    # Seats held in the whole database: on PostgreSQL, the session's database holds earlier tests' seats too.
    earlier = await licensor_gateway.store.seats_held(now_us())
    vendor = await licensor_vendor("activation", seats=3)
    salt = product_salt(vendor.tenant.id, vendor.product["code"])
    for n in range(2):
        request = device_request(
            DeviceKey.generate(),
            "activate",
            tenant=vendor.tenant.id,
            product=vendor.product["code"],
            fingerprint=hash_components({"machine_id": f"m-{n}", "disk": f"d-{n}"}, salt),
            license_key=vendor.license["key"],
            device_name=f"device {n}",
        )
        answer = await licensor_gateway.call("POST", "/v1/activations", json={"request": request})
        assert answer.status in (200, 201), answer.text
    # Three leases of a cloud license, one of them released: two held.
    cloud = await licensor_vendor("cloud", seats=5)
    path = f"/v1/admin/licenses/{cloud.license['id']}/credentials"
    credential_file = (await cloud.tenant.ok("POST", path, 201, json={}))["credential_file"]
    leases = []
    for n in range(3):
        body = {"tenant": cloud.tenant.id, "credential": credential_file["credential"], "device_id": f"device-{n}"}
        answer = await licensor_gateway.call("POST", "/v1/leases", json=body)
        assert answer.status in (200, 201), answer.text
        leases.append(answer.body)
    released = {
        "tenant": cloud.tenant.id,
        "credential": credential_file["credential"],
        "lease": leases[0]["lease"]["id"],
        "lease_secret": leases[0]["lease_secret"],
    }
    assert (await licensor_gateway.call("POST", "/v1/leases/release", json=released)).status == 200

    _, samples = await scrape(licensor_gateway)
    assert value(samples, "licensor_seats_held", backend="activation") == earlier.get("activation", 0) + 2
    assert value(samples, "licensor_seats_held", backend="cloud") == earlier.get("cloud", 0) + 2
    # Every installed backend is listed, one holding none too.
    assert ("licensor_seats_held", frozenset({("backend", "cloud-lite")})) in samples
    assert value(samples, "licensor_seats_held", backend="cloud-lite") == 0


async def test_update_connections_are_a_gauge(
    licensor_gateway: Gateway, licensor_vendor: Callable[..., Awaitable[Vendor]]
) -> None:
    hub = licensor_gateway.app[keys.UPDATES]
    subscribers = [hub.subscribe("ten_x", f"lic_{n}", 0) for n in range(3)]
    _, samples = await scrape(licensor_gateway)
    assert value(samples, "licensor_update_connections") == 3
    hub.unsubscribe(subscribers[0])
    hub.unsubscribe(subscribers[0])  # twice: counted once
    _, samples = await scrape(licensor_gateway)
    assert value(samples, "licensor_update_connections") == 2
    for subscriber in subscribers[1:]:
        hub.unsubscribe(subscriber)


async def test_webhook_attempts_and_the_outbox_backlog(licensor_gateway: Gateway) -> None:
    tenant = await licensor_gateway.tenant()
    settings, sender = licensor_gateway.app[keys.SETTINGS], licensor_gateway.app[keys.WEBHOOKS]
    object.__setattr__(settings, "webhook_allow_private", True)  # the operator allows targets on this host
    sender.allow_private = True
    try:
        # Nobody listens on port 9 of this host: every attempt fails, and the deliveries stay in the outbox.
        await tenant.ok("POST", "/v1/admin/webhook-endpoints", 201, json={"url": "http://127.0.0.1:9/hook"})
        await tenant.product("cad")
        await tenant.product("cam")
        deadline = time.monotonic() + 10
        while sender.attempts["failed"] == 0:
            assert time.monotonic() < deadline, "no webhook attempt within 10 s"
            await sender.run_once()
            await asyncio.sleep(0.05)
    finally:
        object.__setattr__(settings, "webhook_allow_private", False)
        sender.allow_private = False
    _, samples = await scrape(licensor_gateway)
    assert value(samples, "licensor_webhook_attempts_total", outcome="failed") == sender.attempts["failed"] >= 1
    assert value(samples, "licensor_webhook_attempts_total", outcome="delivered") == 0
    assert value(samples, "licensor_webhook_backlog") == await licensor_gateway.store.webhook_backlog() >= 1


async def test_readyz_says_why_it_is_not_ready_with_retry_after(licensor_gateway: Gateway) -> None:
    assert (await licensor_gateway.call("GET", "/readyz")).status == 200
    store = licensor_gateway.app[keys.STORE]
    await store.close()
    try:
        away = await licensor_gateway.call("GET", "/readyz")
    finally:
        await store.open()
    assert (away.status, away.code) == (503, "STORE_UNAVAILABLE")
    assert away.headers["Retry-After"] == str(RETRY_AFTER_S)

    # A newer gateway on the same database migrated it further than this one knows.
    newest = max(version for version, _ in SqlStore.migrations())
    async with store._write(None) as conn:
        await conn.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)", newest + 1)
    try:
        newer = await licensor_gateway.call("GET", "/readyz")
    finally:
        async with store._write(None) as conn:
            await conn.execute("DELETE FROM schema_migrations WHERE version = ?", newest + 1)
    assert (newer.status, newer.code) == (503, "SCHEMA_TOO_NEW")
    assert newer.headers["Retry-After"] == str(RETRY_AFTER_S) and f"version {newest + 1}" in newer.body["error"]["message"]

    licensor_gateway.app[keys.STOPPING].set()
    try:
        stopping = await licensor_gateway.call("GET", "/readyz")
    finally:
        licensor_gateway.app[keys.STOPPING].clear()
    assert (stopping.status, stopping.code) == (503, "SHUTTING_DOWN")
    assert stopping.headers["Retry-After"] == str(RETRY_AFTER_S)
    assert (await licensor_gateway.call("GET", "/readyz")).status == 200


async def test_the_json_access_log_holds_no_header_body_or_query(licensor_store_url: str, tmp_path: Any) -> None:
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("licensor.test-access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
    app = create_app(Settings(data_dir=str(tmp_path), master_key=bytes(32)), store=open_store(licensor_store_url))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(access_log_class=_access_logger_class(), access_log=access)  # as licensor serve logs
    client = TestClient(server)
    try:
        body = orjson.dumps({"tenant": "ten_00000000000000000000000000", "product": "cad", "license_key": "KEEP-ME-SECRET"})
        headers = {"Authorization": "Bearer tok_never_logged", "Content-Type": "application/json", "X-Request-Id": "rid-1"}
        async with client.post("/v1/check?secret_query=1", data=body, headers=headers) as answer:
            await answer.read()
            status = answer.status
        link = "/portal/ten_00000000000000000000000000/link/ptk_01ARZ3NDEKTSV4RRFFQ69G5FAV.LINK-SECRET-NEVER-LOGGED"
        async with client.get(link) as answer:
            await answer.read()
    finally:
        await client.close()
        access.removeHandler(handler)
    records = [orjson.loads(line) for line in lines.getvalue().splitlines()]
    assert len(records) == 2, lines.getvalue()
    record, link_record = records
    assert link_record["path"] == "/portal/ten_00000000000000000000000000/link/ptk_01ARZ3NDEKTSV4RRFFQ69G5FAV.…"
    assert {key: record[key] for key in ("logger", "level", "method", "path", "status", "request_id")} == {
        "logger": "licensor.test-access",
        "level": "INFO",
        "method": "POST",
        "path": "/v1/check",
        "status": status,
        "request_id": "rid-1",
    }
    assert record["duration_ms"] >= 0 and record["time"].endswith("Z") and isinstance(record["pid"], int)
    for secret in ("KEEP-ME-SECRET", "tok_never_logged", "secret_query", "Authorization", "LINK-SECRET"):
        assert secret not in lines.getvalue()


def test_a_json_record_is_one_line_with_its_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("licensor.x").makeRecord(
            "licensor.x", logging.ERROR, __file__, 1, "two\nlines %s", ("!",), None
        )
        import sys

        record.exc_info = sys.exc_info()
    text = JsonFormatter().format(record)
    assert "\n" not in text
    parsed = orjson.loads(text)
    assert parsed["message"] == "two\nlines !" and parsed["level"] == "ERROR"
    assert "ValueError: boom" in parsed["exception"]
