"""The auto-update trigger: ``GET /v1/updates``, a license's changes pushed to its connected devices.

A device holds one long-lived connection (server-sent events; or a long poll), authenticated by what it already
holds (its license file or lease token, or the license key), and names the generation it knows. The process's
hub (:mod:`licensor.gateway.update_hub`) keeps the connected licenses by tenant; when the store announces a
change of a tenant (a commit in this process, or another's through PostgreSQL NOTIFY), it reads the generations
of that tenant's connected licenses in one query and wakes the connections whose license moved on, which send a
signed ``up1`` update (:mod:`licensor_client.updates`). An idle connection costs a parked coroutine and a comment
line every ``updates_keepalive_s`` (a setting: 25 s by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial
from typing import Any

from aiohttp import web
from licensor_client.updates import UPDATE_KIND, update_document

from licensor.gateway import keys as app_keys
from licensor.gateway.auth import LICENSE_HOLDER, LICENSE_HOLDER_QUERY
from licensor.gateway.update_hub import Subscriber, UpdateHub
from licensor.license import Licensed
from licensor.operations import Call, Operation, Param, Reply
from licensor.tokens import sign_document

log = logging.getLogger("licensor.gateway")
UPDATES_PATH = "/v1/updates"
MAX_WAIT_S = 60


async def _update_token(call: Call, tenant_id: str, license_id: str) -> tuple[int, str] | None:
    """(generation, signed update) of the license as it stands now, or None once it is gone."""
    licensed = await call.services.license_by_id(tenant_id, license_id)
    if licensed is None:
        return None
    row = licensed.license
    kid, seed = await call.services.signing_key(tenant_id)
    document = update_document(
        tenant_id,
        licensed.product["code"],
        licensed.id,
        int(row["generation"]),
        str(row["state"]),
        None if row["expires_at"] is None else row["expires_at"] // 1_000_000,
        None if row["maintenance_until"] is None else row["maintenance_until"] // 1_000_000,
        [e.as_json() for e in licensed.terms.entitlements],
        call.services.now_us() // 1_000_000,
    )
    return int(row["generation"]), sign_document(UPDATE_KIND, kid, seed, document)


async def updates(call: Call) -> Reply | web.StreamResponse:
    licensed: Licensed = call.request[app_keys.ASKING_LICENSE]
    tenant_id = call.query["tenant"]
    after = int(call.query.get("after", "0"))
    hub = call.request.app[app_keys.UPDATES]
    subscriber = hub.subscribe(tenant_id, licensed.id, after)
    try:
        if "text/event-stream" in call.request.headers.get("Accept", ""):
            return await _stream(call, hub, subscriber)
        return await _long_poll(call, hub, subscriber, min(int(call.query.get("wait", "30")), MAX_WAIT_S))
    finally:
        hub.unsubscribe(subscriber)


async def _stream(call: Call, hub: UpdateHub, subscriber: Subscriber) -> web.StreamResponse:
    # A comment line this often keeps proxies from closing an idle connection, and finds clients that left (under
    # the 60 s after which the client takes a silent line for dead).
    keepalive_s = call.request.app[app_keys.SETTINGS].updates_keepalive_s
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx: pass each event on at once
            "X-Request-Id": call.request[app_keys.REQUEST_ID],
        }
    )
    await response.prepare(call.request)
    try:
        await response.write(b"retry: 2000\n\n")
        woken = True  # first: what a device that was away missed
        while not hub.closed:
            if woken:
                newer = await hub.newer(partial(_update_token, call), subscriber)
                if newer is not None:
                    generation, token = newer
                    await response.write(f"id: {generation}\nevent: update\ndata: {token}\n\n".encode())
            try:
                async with asyncio.timeout(keepalive_s):
                    await subscriber.woken.wait()
                woken = True
            except TimeoutError:
                woken = False
                await response.write(b": keep-alive\n\n")
    except (ConnectionResetError, ConnectionError):
        pass  # the device went away
    except Exception:  # the answer has begun: no error answer can follow; end the stream, the device reconnects
        log.warning("the update stream of license %s ended on a failure", subscriber.license_id, exc_info=True)
    return response


async def _long_poll(call: Call, hub: UpdateHub, subscriber: Subscriber, wait_s: int) -> Reply:
    deadline = asyncio.get_running_loop().time() + max(0, wait_s)
    while True:
        newer = await hub.newer(partial(_update_token, call), subscriber)
        remaining = deadline - asyncio.get_running_loop().time()
        if newer is not None or remaining <= 0 or hub.closed:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(subscriber.woken.wait(), remaining)
    body: dict[str, Any] = {"object": "update", "generation": subscriber.current, "update": None}
    if newer is not None:
        body["update"] = newer[1]
    return Reply(200, body)


def updates_operation() -> Operation:
    return Operation(
        method="GET",
        path=UPDATES_PATH,
        operation_id="license_updates",
        summary="A license's updates, pushed while the connection stays open",
        handler=updates,  # type: ignore[arg-type]  # a stream is answered by the handler itself
        tag="updates",
        auth=LICENSE_HOLDER,
        response_schema={
            "type": "object",
            "properties": {
                "object": {"const": "update"},
                "generation": {"type": "integer"},
                "update": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
            "required": ["object", "generation", "update"],
            "additionalProperties": False,
        },
        query=(
            *LICENSE_HOLDER_QUERY,
            Param(
                "after", {"type": "string", "pattern": "^[0-9]{1,15}$"}, "The license generation the device holds (default 0)."
            ),
            Param(
                "wait",
                {"type": "string", "pattern": "^[0-9]{1,2}$"},
                f"Long poll: seconds to wait for a newer one (at most {MAX_WAIT_S}; default 30).",
            ),
        ),
        errors=(401, 403, 404),
        description=(
            "Authorization: License <license key>, or Bearer <the device's lf1 license file or ls1 lease token>. With "
            "Accept: text/event-stream the connection stays open: an `update` event (id: the generation; data: an up1 "
            "token signed by the tenant: tenant, product, license, generation, state, exp, maintenance_until, features, "
            "iat) is sent at once when the license's generation is above `after`, and again at every later change; a "
            "comment line every 25 s (the setting updates.keepalive_s) keeps it open. Without it, a long poll: the "
            "answer comes as soon as "
            "there is a newer generation, or after `wait` seconds with update null. The generation counts every change "
            "made in License Central: the license or its policy updated, suspended, reinstated, renewed, revoked, a "
            "device withdrawn, a push (POST /v1/admin/licenses/{id}/push-update)."
        ),
        response_content_type="application/json",
    )
