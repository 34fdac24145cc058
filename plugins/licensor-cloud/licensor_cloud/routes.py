"""The cloud backend's routes: a device's leases, and the vendor's credentials, leases and usage report."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web
from licensor.errors import MalformedRequestError, NotFoundError
from licensor.gateway.api import PAGE_PARAMS, READ_ROLES, Call, Operation, Param, Reply, decode_cursor, list_reply, list_schema
from licensor.gateway.auth import Principal
from licensor.model import CODE_SCHEMA, CREDENTIAL, CREDENTIAL_STATES, LEASE, LEASE_STATES, LICENSE, TIME_SCHEMA, id_pattern
from licensor.store import Row

from licensor_cloud.backend import (
    DEVICE_CALL,
    SUPPORT_ROLES,
    CloudBackend,
    lease_state,
    read_published_keys,
    shown_credential,
    shown_lease,
)

_NULLABLE_TIME = {"anyOf": [TIME_SCHEMA, {"type": "null"}]}
_NULLABLE_TEXT = {"anyOf": [{"type": "string"}, {"type": "null"}]}
LEASE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": id_pattern("lse")},
        "object": {"const": "lease"},
        "license_id": {"type": "string"},
        "credential_id": {"type": "string"},
        "device_id": {"type": "string"},
        "device_name": _NULLABLE_TEXT,
        "features": {"type": "array", "items": {"type": "string"}},
        "state": {"enum": list(LEASE_STATES)},
        "expires_at": TIME_SCHEMA,
        "renewed_at": _NULLABLE_TIME,
        "renewals": {"type": "integer"},
        "ended_at": _NULLABLE_TIME,
        "taken_over_by": _NULLABLE_TEXT,
        "created_at": TIME_SCHEMA,
        "updated_at": TIME_SCHEMA,
    },
    "additionalProperties": False,
}
LEASE_SCHEMA["required"] = list(LEASE_SCHEMA["properties"])
CREDENTIAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": id_pattern("crd")},
        "object": {"const": "credential"},
        "license_id": {"type": "string"},
        "label": _NULLABLE_TEXT,
        "state": {"enum": list(CREDENTIAL_STATES)},
        "reissue_of": _NULLABLE_TEXT,
        "revoked_at": _NULLABLE_TIME,
        "created_at": TIME_SCHEMA,
        "updated_at": TIME_SCHEMA,
    },
    "additionalProperties": False,
}
CREDENTIAL_SCHEMA["required"] = list(CREDENTIAL_SCHEMA["properties"])
CREDENTIAL_FILE_SCHEMA = {
    "type": "object",
    "properties": {
        "object": {"const": "credential_file"},
        "credential": CREDENTIAL_SCHEMA,
        "credential_file": {
            "type": "object",
            "properties": {
                "format": {"const": "licensor-credential-1"},
                "server": {"type": "string"},
                "tenant": {"type": "string"},
                "product": {"type": "string"},
                "license": {"type": "string"},
                "credential": {"type": "string"},
                "label": _NULLABLE_TEXT,
                "keys": {"type": "object", "additionalProperties": {"type": "string"}},
            },
            "required": ["format", "server", "tenant", "product", "license", "credential", "label", "keys"],
            "additionalProperties": False,
        },
    },
    "required": ["object", "credential", "credential_file"],
    "additionalProperties": False,
}
GRANTED_SCHEMA = {
    "type": "object",
    "properties": {
        "object": {"const": "lease"},
        "lease": LEASE_SCHEMA,
        "lease_secret": {"type": "string"},
        "lease_token": {"type": "string"},
        "heartbeat_interval_seconds": {"type": "integer"},
    },
    "required": ["object", "lease", "lease_secret", "lease_token", "heartbeat_interval_seconds"],
    "additionalProperties": False,
}
ENDED_SCHEMA = {
    "type": "object",
    "properties": {"object": {"const": "lease"}, "lease": LEASE_SCHEMA},
    "required": ["object", "lease"],
    "additionalProperties": False,
}
USAGE_SCHEMA = {
    "type": "object",
    "properties": {
        "object": {"const": "lease_usage"},
        "license_id": {"type": "string"},
        "seats": {"type": "integer"},
        "days": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "date": {"type": "string", "format": "date"},
                    "peak": {"type": "integer"},
                    "checkouts": {"type": "integer"},
                },
                "required": ["date", "peak", "checkouts"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["object", "license_id", "seats", "days"],
    "additionalProperties": False,
}
_CREDENTIAL_STRING = {
    "type": "string",
    "pattern": "^crd_[0-9A-HJKMNP-TV-Z]{26}\\.[A-Za-z0-9_-]{43}$",
    "description": "The credential file's credential: its id, a dot, its secret.",
}
_DEVICE_COMMON: dict[str, Any] = {"tenant": {"type": "string", "pattern": id_pattern("ten")}, "credential": _CREDENTIAL_STRING}
CHECK_OUT_BODY = {
    "type": "object",
    "properties": {
        **_DEVICE_COMMON,
        "device_id": {
            "type": "string",
            "pattern": "^[\\x21-\\x7e]{1,200}$",
            "description": "The device's own stable id (printable ASCII, no spaces): one device holds one seat.",
        },
        "device_name": {"type": "string", "minLength": 1, "maxLength": 200},
        "features": {
            "type": "array",
            "items": CODE_SCHEMA,
            "maxItems": 64,
            "uniqueItems": True,
            "description": "The features the device needs; each must be granted by the license.",
        },
    },
    "required": ["tenant", "credential", "device_id"],
    "additionalProperties": False,
}
LEASE_BODY = {
    "type": "object",
    "properties": {
        **_DEVICE_COMMON,
        "lease": {"type": "string", "pattern": id_pattern("lse")},
        "lease_secret": {
            "type": "string",
            "pattern": "^[A-Za-z0-9_-]{43}$",
            "description": "The newest lease_secret the device was given.",
        },
    },
    "required": ["tenant", "credential", "lease", "lease_secret"],
    "additionalProperties": False,
}
_LABEL = {"anyOf": [{"type": "string", "minLength": 1, "maxLength": 200}, {"type": "null"}]}
_LABEL_BODY = {"type": "object", "properties": {"label": _LABEL}, "additionalProperties": False}
_LABEL_REQUIRED = {**_LABEL_BODY, "required": ["label"]}
_REASON_BODY = {
    "type": "object",
    "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 500}},
    "additionalProperties": False,
}
_DAY = {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}
_DEVICE_ERRORS = (401, 403, 404, 409, 422)
_REFUSALS = (
    "Authenticated by the credential in the body (the credential file's). Refusals carry a stable code: 401 "
    "CREDENTIAL_INVALID (unknown credential or wrong secret); 403 CREDENTIAL_REVOKED, or the license's verdict code "
    "(SUSPENDED, REVOKED, EXPIRED, NOT_YET_VALID, FEATURE_NOT_ENTITLED); 404 TENANT_NOT_FOUND, LEASE_NOT_FOUND; 409 "
    "SEAT_LIMIT_REACHED, LEASE_TAKEN_OVER (another device took the seat over, or the secret presented is not the "
    "lease's newest: a copy of this device renewed it), LEASE_EXPIRED (not renewed within its TTL; the seat went "
    "back), LEASE_RELEASED, LEASE_ENDED (the vendor ended it). Refusals record nothing."
)
MAX_LISTED_SCAN = 20
"""Pages of 200 leases a filtered lease list reads at most for one page of answers."""


def build_operations(backend: CloudBackend) -> list[Operation]:
    async def device(request: web.Request, body: dict[str, Any], _: Principal | None) -> Principal:
        return await backend.authenticate_device(request, body)

    async def vendor_reads_keys(request: web.Request, _: dict[str, Any], principal: Principal | None) -> Principal:
        assert principal is not None
        await read_published_keys(request, principal.tenant_id)
        return principal

    async def check_out(call: Call) -> Reply:
        assert call.tx is not None
        return Reply(201, await backend.check_out(call.tx, call.request[DEVICE_CALL], call.body))

    async def renew(call: Call) -> Reply:
        assert call.tx is not None
        return Reply(200, await backend.renew(call.tx, call.request[DEVICE_CALL], call.body))

    async def release(call: Call) -> Reply:
        assert call.tx is not None
        return Reply(200, await backend.release(call.tx, call.request[DEVICE_CALL], call.body))

    async def create_credential(call: Call) -> Reply:
        assert call.tx is not None
        made = await backend.create_credential(call.tx, call.request, call.path["id"], call.body.get("label"), call.actor)
        return Reply(201, made)

    async def list_credentials(call: Call) -> Reply:
        await _license_of(call)
        after = _cursor(call, "credentials")
        filters = {"license_id": call.path["id"], **({"state": call.query["state"]} if "state" in call.query else {})}
        page = await call.store.list(call.tenant_id, CREDENTIAL, filters, after, call.query.get("limit", 50))
        items = [shown_credential(row) for row in page.rows]
        return list_reply("credentials", items, page.has_more, items[-1]["id"] if items else None)

    async def get_credential(call: Call) -> Reply:
        row = await call.store.get(call.tenant_id, CREDENTIAL, call.path["id"])
        if row is None:
            raise NotFoundError("no such credential", code="CREDENTIAL_NOT_FOUND")
        return Reply(200, shown_credential(row))

    async def label_credential(call: Call) -> Reply:
        assert call.tx is not None
        return Reply(
            200, shown_credential(await backend.relabel_credential(call.tx, call.path["id"], call.body["label"], call.actor))
        )

    async def revoke_credential(call: Call) -> Reply:
        assert call.tx is not None
        return Reply(
            200, shown_credential(await backend.revoke_credential(call.tx, call.path["id"], call.body.get("reason"), call.actor))
        )

    async def reissue_credential(call: Call) -> Reply:
        assert call.tx is not None
        made = await backend.reissue_credential(call.tx, call.request, call.path["id"], call.body.get("label"), call.actor)
        return Reply(201, made)

    async def list_leases(call: Call) -> Reply:
        await _license_of(call)
        after = _cursor(call, "leases")
        wanted, limit, now = call.query.get("state"), call.query.get("limit", 50), backend.clock()
        # The shown state of a lease that ran out is "expired" before it is marked so: filter on the shown state.
        items: list[dict[str, Any]] = []
        has_more, last = False, after
        for _ in range(MAX_LISTED_SCAN):
            page = await call.store.list(call.tenant_id, LEASE, {"license_id": call.path["id"]}, last, 200)
            for index, row in enumerate(page.rows):
                last = row["id"]
                if wanted is None or lease_state(row, now) == wanted:
                    items.append(shown_lease(row, now))
                    if len(items) == limit:
                        has_more = page.has_more or index < len(page.rows) - 1
                        return list_reply("leases", items, has_more, last)
            if not page.has_more:
                return list_reply("leases", items, False, last)
        return list_reply("leases", items, True, last)  # read enough for one request: the cursor goes on from here

    async def get_lease(call: Call) -> Reply:
        row = await call.store.get(call.tenant_id, LEASE, call.path["id"])
        if row is None:
            raise NotFoundError("no such lease", code="LEASE_NOT_FOUND")
        return Reply(200, shown_lease(row, backend.clock()))

    async def end_lease(call: Call) -> Reply:
        assert call.tx is not None
        ended = await backend.end_lease(call.tx, call.path["id"], call.body.get("reason"), call.actor)
        return Reply(200, shown_lease(ended, backend.clock()))

    async def lease_usage(call: Call) -> Reply:
        license = await _license_of(call)
        today = datetime.fromtimestamp(backend.clock() // 1_000_000, UTC).date()
        last = _day(call, "to", today)
        first = _day(call, "from", last - timedelta(days=29))
        if first > last or (last - first).days >= 366:
            raise MalformedRequestError("from must not be after to, and the range at most 366 days", code="INVALID_PARAMETER")
        return Reply(200, await backend.usage(call.store, call.tenant_id, license, first, last))

    license_path = {"id": id_pattern("lic")}
    credential_path = {"id": id_pattern("crd")}
    lease_path = {"id": id_pattern("lse")}
    return [
        Operation(
            "POST",
            "/v1/leases",
            "check_out_lease",
            "Check out a lease of a seat",
            check_out,
            "lease",
            None,
            GRANTED_SCHEMA,
            status=201,
            request_schema=CHECK_OUT_BODY,
            changes_state=True,
            errors=_DEVICE_ERRORS,
            authenticator=device,
            description=(
                "A device holding a credential file takes one of the license's seats for the policy's "
                "lease_ttl_seconds: 201 with the lease, its lease_secret (for the next heartbeat or the release), "
                "an ls1 lease_token signed by the tenant (verify it with licensor.client.leases) and the heartbeat "
                "interval. Leases that ran out are counted as free. The same device_id checking out again takes "
                "its own lease over (one device never holds two seats). With every seat held, the policy's "
                "on_seat_limit refuses (409 SEAT_LIMIT_REACHED) or takes over the seat renewed longest ago. " + _REFUSALS
            ),
        ),
        Operation(
            "POST",
            "/v1/leases/heartbeat",
            "renew_lease",
            "Renew a lease (heartbeat)",
            renew,
            "lease",
            None,
            GRANTED_SCHEMA,
            request_schema=LEASE_BODY,
            changes_state=True,
            errors=_DEVICE_ERRORS,
            authenticator=device,
            description=(
                "Renews the lease for another TTL and answers a new lease_secret and lease_token; the old secret "
                "stops working. Send an Idempotency-Key with each heartbeat and reuse it when retrying after a "
                "network error: the answer that was lost is replayed. " + _REFUSALS
            ),
        ),
        Operation(
            "POST",
            "/v1/leases/release",
            "release_lease",
            "Release a lease",
            release,
            "lease",
            None,
            ENDED_SCHEMA,
            request_schema=LEASE_BODY,
            changes_state=True,
            errors=_DEVICE_ERRORS,
            authenticator=device,
            description="The seat is free at once. A lease that ended already is answered as it stands. " + _REFUSALS,
        ),
        Operation(
            "POST",
            "/v1/admin/licenses/{id}/credentials",
            "create_credential",
            "Create a credential file",
            create_credential,
            "credential",
            SUPPORT_ROLES,
            CREDENTIAL_FILE_SCHEMA,
            status=201,
            request_schema=_LABEL_BODY,
            path_patterns=license_path,
            changes_state=True,
            errors=(404, 409),
            authenticator=vendor_reads_keys,
            description=(
                "A new credential of a cloud license, and its credential file for the customer to import on any "
                "device: the gateway's address, the tenant, the credential (id and secret) and the tenant's public "
                "keys. The secret is shown only here (stored as a hash). 409 LICENSE_NOT_CLOUD for a license of "
                "another backend."
            ),
        ),
        Operation(
            "GET",
            "/v1/admin/licenses/{id}/credentials",
            "list_credentials",
            "List a license's credentials",
            list_credentials,
            "credential",
            READ_ROLES,
            list_schema(CREDENTIAL_SCHEMA),
            query=(*PAGE_PARAMS, Param("state", {"enum": list(CREDENTIAL_STATES)}, "Only credentials in this state.")),
            path_patterns=license_path,
            errors=(400, 404),
        ),
        Operation(
            "GET",
            "/v1/admin/credentials/{id}",
            "get_credential",
            "Get a credential",
            get_credential,
            "credential",
            READ_ROLES,
            CREDENTIAL_SCHEMA,
            path_patterns=credential_path,
            errors=(404,),
        ),
        Operation(
            "PATCH",
            "/v1/admin/credentials/{id}",
            "label_credential",
            "Label a credential",
            label_credential,
            "credential",
            SUPPORT_ROLES,
            CREDENTIAL_SCHEMA,
            request_schema=_LABEL_REQUIRED,
            path_patterns=credential_path,
            changes_state=True,
            errors=(404,),
            description="Sets the credential's label (null clears it).",
        ),
        Operation(
            "POST",
            "/v1/admin/credentials/{id}/revoke",
            "revoke_credential",
            "Revoke a credential",
            revoke_credential,
            "credential",
            SUPPORT_ROLES,
            CREDENTIAL_SCHEMA,
            request_schema=_REASON_BODY,
            path_patterns=credential_path,
            changes_state=True,
            errors=(404, 409),
            description=(
                "The credential file stops working and its leases end at once (their seats are free now; their "
                "holders' next heartbeat is told CREDENTIAL_REVOKED). 409 CREDENTIAL_ALREADY_REVOKED."
            ),
        ),
        Operation(
            "POST",
            "/v1/admin/credentials/{id}/reissue",
            "reissue_credential",
            "Reissue a credential file",
            reissue_credential,
            "credential",
            SUPPORT_ROLES,
            CREDENTIAL_FILE_SCHEMA,
            status=201,
            request_schema=_LABEL_BODY,
            path_patterns=credential_path,
            changes_state=True,
            errors=(404, 409),
            authenticator=vendor_reads_keys,
            description=(
                "A new credential file in place of this credential's (reissue_of names it), keeping its label unless "
                "given one; the old credential is revoked, if it was not, and its leases end."
            ),
        ),
        Operation(
            "GET",
            "/v1/admin/licenses/{id}/leases",
            "list_leases",
            "List a license's leases",
            list_leases,
            "lease",
            READ_ROLES,
            list_schema(LEASE_SCHEMA),
            query=(*PAGE_PARAMS, Param("state", {"enum": list(LEASE_STATES)}, "Only leases in this state (active: held now).")),
            path_patterns=license_path,
            errors=(400, 404),
            description="Who holds which seat, since when (created_at), from which device, until when (expires_at).",
        ),
        Operation(
            "GET",
            "/v1/admin/leases/{id}",
            "get_lease",
            "Get a lease",
            get_lease,
            "lease",
            READ_ROLES,
            LEASE_SCHEMA,
            path_patterns=lease_path,
            errors=(404,),
        ),
        Operation(
            "POST",
            "/v1/admin/leases/{id}/release",
            "end_lease",
            "End a lease",
            end_lease,
            "lease",
            SUPPORT_ROLES,
            LEASE_SCHEMA,
            request_schema=_REASON_BODY,
            path_patterns=lease_path,
            changes_state=True,
            errors=(404, 409),
            description=(
                "The vendor frees a seat: the lease ends now (state revoked) and its holder's next heartbeat is told "
                "LEASE_ENDED. 409 LEASE_ENDED if it ended already."
            ),
        ),
        Operation(
            "GET",
            "/v1/admin/licenses/{id}/lease-usage",
            "lease_usage",
            "Peak concurrent use per day",
            lease_usage,
            "lease",
            READ_ROLES,
            USAGE_SCHEMA,
            query=(
                Param("from", _DAY, "The first UTC day (YYYY-MM-DD; default 29 days before to)."),
                Param("to", _DAY, "The last UTC day (default today); at most 366 days in all."),
            ),
            path_patterns=license_path,
            errors=(400, 404, 422),
            description=(
                "For each UTC day: peak, the most leases held at one moment, and checkouts, the leases started. "
                "422 RANGE_TOO_LARGE when more than 100,000 leases fall in the range."
            ),
        ),
    ]


async def _license_of(call: Call) -> Row:
    license = await call.store.get(call.tenant_id, LICENSE, call.path["id"])
    if license is None:
        raise NotFoundError("no such license", code="LICENSE_NOT_FOUND")
    return license


def _cursor(call: Call, scope: str) -> str | None:
    after = decode_cursor(call.query["cursor"], scope) if "cursor" in call.query else None
    if after is not None and not isinstance(after, str):
        raise MalformedRequestError("the cursor is not one this API gave out", code="INVALID_CURSOR")
    return after


def _day(call: Call, name: str, default: date) -> date:
    if name not in call.query:
        return default
    try:
        return date.fromisoformat(call.query[name])
    except ValueError:
        raise MalformedRequestError(f"query parameter {name} is not a date (YYYY-MM-DD)", code="INVALID_PARAMETER") from None
