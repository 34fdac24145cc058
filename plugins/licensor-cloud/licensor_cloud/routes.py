"""The cloud backend's routes: a device's leases, and the vendor's credentials, leases and usage report.

:func:`operations` is the table of routes; each handler is a top-level function of the call and, when it reads
the clock or the policies' options, of the backend (:class:`licensor_cloud.leases.Cloud`) bound at install time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

from licensor import (
    PAGE_PARAMS,
    READ_ROLES,
    SUPPORT_ROLES,
    ByBody,
    Call,
    MalformedRequestError,
    NotFoundError,
    Operation,
    Param,
    Reply,
    SecretOutput,
    Token,
    id_cursor,
    license_of,
    list_license_items,
    list_reply,
    list_schema,
)
from licensor.model import CODE_SCHEMA, CREDENTIAL, CREDENTIAL_STATES, LEASE, LEASE_STATES, id_pattern

from licensor_cloud import credentials, leases
from licensor_cloud.credentials import authenticate_device, device_call, published_keys, read_published_keys
from licensor_cloud.leases import Cloud
from licensor_cloud.presenters import (
    CREDENTIAL_FILE_SCHEMA,
    CREDENTIAL_SCHEMA,
    ENDED_SCHEMA,
    GRANTED_SCHEMA,
    LEASE_SCHEMA,
    USAGE_SCHEMA,
    lease_state,
    shown_credential,
    shown_lease,
)

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


# --- a device's requests (authenticated by the credential in the body) ------------------------------------
async def check_out(backend: Cloud, call: Call) -> Reply:
    assert call.tx is not None
    return Reply(201, await leases.check_out(backend, call.tx, device_call(call), call.body))


async def renew(backend: Cloud, call: Call) -> Reply:
    assert call.tx is not None
    return Reply(200, await leases.renew(backend, call.tx, device_call(call), call.body))


async def release(backend: Cloud, call: Call) -> Reply:
    assert call.tx is not None
    return Reply(200, await leases.release(backend, call.tx, device_call(call), call.body))


# --- the vendor's credentials ---------------------------------------------------------------------------
async def create_credential(backend: Cloud, call: Call) -> Reply:
    assert call.tx is not None
    made = await credentials.issue_credential(
        call.tx,
        backend.clock,
        call.path["id"],
        call.body.get("label"),
        call.actor,
        server=call.base_url,
        keys=published_keys(call),
    )
    return Reply(201, made)


async def list_credentials(call: Call) -> Reply:
    return await list_license_items(call, CREDENTIAL, shown_credential)


async def get_credential(call: Call) -> Reply:
    row = await call.store.get(call.tenant_id, CREDENTIAL, call.path["id"])
    if row is None:
        raise NotFoundError("no such credential", code="CREDENTIAL_NOT_FOUND")
    return Reply(200, shown_credential(row))


async def label_credential(call: Call) -> Reply:
    assert call.tx is not None
    return Reply(
        200, shown_credential(await credentials.relabel_credential(call.tx, call.path["id"], call.body["label"], call.actor))
    )


async def revoke_credential(backend: Cloud, call: Call) -> Reply:
    assert call.tx is not None
    revoked = await credentials.revoke_credential(call.tx, backend.clock, call.path["id"], call.body.get("reason"), call.actor)
    return Reply(200, shown_credential(revoked))


async def reissue_credential(backend: Cloud, call: Call) -> Reply:
    assert call.tx is not None
    made = await credentials.reissue_credential(
        call.tx,
        backend.clock,
        call.path["id"],
        call.body.get("label"),
        call.actor,
        server=call.base_url,
        keys=published_keys(call),
    )
    return Reply(201, made)


# --- the vendor's leases --------------------------------------------------------------------------------
async def list_leases(backend: Cloud, call: Call) -> Reply:
    license = await license_of(call)
    after = id_cursor(call, LEASE.plural)
    wanted, limit, now = call.query.get("state"), call.query.get("limit", 50), backend.clock()
    # The shown state of a lease that ran out is "expired" before it is marked so: filter on the shown state.
    items: list[dict[str, Any]] = []
    has_more, last = False, after
    for _ in range(MAX_LISTED_SCAN):
        page = await call.store.list(call.tenant_id, LEASE, {"license_id": license["id"]}, last, 200)
        for index, row in enumerate(page.rows):
            last = row["id"]
            if wanted is None or lease_state(row, now) == wanted:
                items.append(shown_lease(row, now))
                if len(items) == limit:
                    has_more = page.has_more or index < len(page.rows) - 1
                    return list_reply(LEASE.plural, items, has_more, last)
        if not page.has_more:
            return list_reply(LEASE.plural, items, False, last)
    return list_reply(LEASE.plural, items, True, last)  # read enough for one request: the cursor goes on from here


async def get_lease(backend: Cloud, call: Call) -> Reply:
    row = await call.store.get(call.tenant_id, LEASE, call.path["id"])
    if row is None:
        raise NotFoundError("no such lease", code="LEASE_NOT_FOUND")
    return Reply(200, shown_lease(row, backend.clock()))


async def end_lease(backend: Cloud, call: Call) -> Reply:
    assert call.tx is not None
    ended = await leases.end_lease(backend, call.tx, call.path["id"], call.body.get("reason"), call.actor)
    return Reply(200, shown_lease(ended, backend.clock()))


async def lease_usage(backend: Cloud, call: Call) -> Reply:
    license = await license_of(call)
    today = datetime.fromtimestamp(backend.clock() // 1_000_000, UTC).date()
    last = _day(call, "to", today)
    first = _day(call, "from", last - timedelta(days=29))
    if first > last or (last - first).days >= 366:
        raise MalformedRequestError("from must not be after to, and the range at most 366 days", code="INVALID_PARAMETER")
    return Reply(200, await leases.usage(backend, call.store, call.tenant_id, license, first, last))


def _day(call: Call, name: str, default: date) -> date:
    if name not in call.query:
        return default
    try:
        return date.fromisoformat(call.query[name])
    except ValueError:
        raise MalformedRequestError(f"query parameter {name} is not a date (YYYY-MM-DD)", code="INVALID_PARAMETER") from None


def operations(backend: Cloud) -> list[Operation]:
    """The backend's routes, their handlers bound to ``backend``."""
    license_path = {"id": id_pattern("lic")}
    credential_path = {"id": id_pattern("crd")}
    lease_path = {"id": id_pattern("lse")}
    return [
        Operation(
            method="POST",
            path="/v1/leases",
            operation_id="check_out_lease",
            summary="Check out a lease of a seat",
            handler=partial(check_out, backend),
            tag="lease",
            auth=ByBody(authenticate_device),
            response_schema=GRANTED_SCHEMA,
            status=201,
            request_schema=CHECK_OUT_BODY,
            changes_state=True,
            errors=_DEVICE_ERRORS,
            description=(
                "A device holding a credential file takes one of the license's seats for the policy's "
                "lease_ttl_seconds: 201 with the lease, its lease_secret (for the next heartbeat or the release), "
                "an ls1 lease_token signed by the tenant (verify it with licensor_client.leases) and the heartbeat "
                "interval. Leases that ran out are counted as free. The same device_id checking out again takes "
                "its own lease over (one device never holds two seats). With every seat held, the policy's "
                "on_seat_limit refuses (409 SEAT_LIMIT_REACHED) or takes over the seat renewed longest ago. " + _REFUSALS
            ),
        ),
        Operation(
            method="POST",
            path="/v1/leases/heartbeat",
            operation_id="renew_lease",
            summary="Renew a lease (heartbeat)",
            handler=partial(renew, backend),
            tag="lease",
            auth=ByBody(authenticate_device),
            response_schema=GRANTED_SCHEMA,
            request_schema=LEASE_BODY,
            changes_state=True,
            errors=_DEVICE_ERRORS,
            description=(
                "Renews the lease for another TTL and answers a new lease_secret and lease_token; the old secret "
                "stops working. Send an Idempotency-Key with each heartbeat and reuse it when retrying after a "
                "network error: the answer that was lost is replayed. " + _REFUSALS
            ),
        ),
        Operation(
            method="POST",
            path="/v1/leases/release",
            operation_id="release_lease",
            summary="Release a lease",
            handler=partial(release, backend),
            tag="lease",
            auth=ByBody(authenticate_device),
            response_schema=ENDED_SCHEMA,
            request_schema=LEASE_BODY,
            changes_state=True,
            errors=_DEVICE_ERRORS,
            description="The seat is free at once. A lease that ended already is answered as it stands. " + _REFUSALS,
        ),
        Operation(
            method="POST",
            path="/v1/admin/licenses/{id}/credentials",
            operation_id="create_credential",
            secret_output=SecretOutput("credential_file", "credential.json"),
            summary="Create a credential file",
            handler=partial(create_credential, backend),
            tag="credential",
            auth=ByBody(read_published_keys, roles=SUPPORT_ROLES),
            response_schema=CREDENTIAL_FILE_SCHEMA,
            status=201,
            request_schema=_LABEL_BODY,
            path_patterns=license_path,
            changes_state=True,
            errors=(404, 409),
            description=(
                "A new credential of a cloud license, and its credential file for the customer to import on any "
                "device: the gateway's address, the tenant, the credential (id and secret) and the tenant's public "
                "keys. The secret is shown only here (stored as a hash). 409 LICENSE_NOT_CLOUD for a license of "
                "another backend."
            ),
        ),
        Operation(
            method="GET",
            path="/v1/admin/licenses/{id}/credentials",
            operation_id="list_credentials",
            summary="List a license's credentials",
            handler=list_credentials,
            tag="credential",
            auth=Token(READ_ROLES),
            response_schema=list_schema(CREDENTIAL_SCHEMA),
            query=(*PAGE_PARAMS, Param("state", {"enum": list(CREDENTIAL_STATES)}, "Only credentials in this state.")),
            path_patterns=license_path,
            errors=(400, 404),
        ),
        Operation(
            method="GET",
            path="/v1/admin/credentials/{id}",
            operation_id="get_credential",
            summary="Get a credential",
            handler=get_credential,
            tag="credential",
            auth=Token(READ_ROLES),
            response_schema=CREDENTIAL_SCHEMA,
            path_patterns=credential_path,
            errors=(404,),
        ),
        Operation(
            method="PATCH",
            path="/v1/admin/credentials/{id}",
            operation_id="label_credential",
            summary="Label a credential",
            handler=label_credential,
            tag="credential",
            auth=Token(SUPPORT_ROLES),
            response_schema=CREDENTIAL_SCHEMA,
            request_schema=_LABEL_REQUIRED,
            path_patterns=credential_path,
            changes_state=True,
            errors=(404,),
            description="Sets the credential's label (null clears it).",
        ),
        Operation(
            method="POST",
            path="/v1/admin/credentials/{id}/revoke",
            operation_id="revoke_credential",
            summary="Revoke a credential",
            handler=partial(revoke_credential, backend),
            tag="credential",
            auth=Token(SUPPORT_ROLES),
            response_schema=CREDENTIAL_SCHEMA,
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
            method="POST",
            path="/v1/admin/credentials/{id}/reissue",
            operation_id="reissue_credential",
            secret_output=SecretOutput("credential_file", "credential.json"),
            summary="Reissue a credential file",
            handler=partial(reissue_credential, backend),
            tag="credential",
            auth=ByBody(read_published_keys, roles=SUPPORT_ROLES),
            response_schema=CREDENTIAL_FILE_SCHEMA,
            status=201,
            request_schema=_LABEL_BODY,
            path_patterns=credential_path,
            changes_state=True,
            errors=(404, 409),
            description=(
                "A new credential file in place of this credential's (reissue_of names it), keeping its label unless "
                "given one; the old credential is revoked, if it was not, and its leases end."
            ),
        ),
        Operation(
            method="GET",
            path="/v1/admin/licenses/{id}/leases",
            operation_id="list_leases",
            summary="List a license's leases",
            handler=partial(list_leases, backend),
            tag="lease",
            auth=Token(READ_ROLES),
            response_schema=list_schema(LEASE_SCHEMA),
            query=(*PAGE_PARAMS, Param("state", {"enum": list(LEASE_STATES)}, "Only leases in this state (active: held now).")),
            path_patterns=license_path,
            errors=(400, 404),
            description="Who holds which seat, since when (created_at), from which device, until when (expires_at).",
        ),
        Operation(
            method="GET",
            path="/v1/admin/leases/{id}",
            operation_id="get_lease",
            summary="Get a lease",
            handler=partial(get_lease, backend),
            tag="lease",
            auth=Token(READ_ROLES),
            response_schema=LEASE_SCHEMA,
            path_patterns=lease_path,
            errors=(404,),
        ),
        Operation(
            method="POST",
            path="/v1/admin/leases/{id}/release",
            operation_id="end_lease",
            summary="End a lease",
            handler=partial(end_lease, backend),
            tag="lease",
            auth=Token(SUPPORT_ROLES),
            response_schema=LEASE_SCHEMA,
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
            method="GET",
            path="/v1/admin/licenses/{id}/lease-usage",
            operation_id="lease_usage",
            summary="Peak concurrent use per day",
            handler=partial(lease_usage, backend),
            tag="lease",
            auth=Token(READ_ROLES),
            response_schema=USAGE_SCHEMA,
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
