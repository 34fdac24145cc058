"""The admin API under ``/v1/admin/``: License Central's resources, license actions, tokens, keys, events.

Every operation is declared here once (route, roles, schemas) and served by :mod:`licensor.gateway.api`.
Every change writes its event in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from licensor.backend import Backend
from licensor.central import license_keys, webhooks
from licensor.central.events import EVENT_SCHEMA, VERIFICATION_SCHEMA, event_json, verify_chain
from licensor.central.keyset import KEY_SCHEMA, add_signing_key, public_key_json
from licensor.central.secrets import Secrets
from licensor.errors import ConflictError, InvalidStateError, MalformedRequestError, NotFoundError, ValidationError
from licensor.gateway import keys as app_keys
from licensor.gateway.api import Api
from licensor.gateway.auth import new_secret
from licensor.model import (
    BY_NAME,
    CUSTOMER,
    FEATURE,
    LICENSE,
    ORDER_EVENT,
    ORDER_MAPPING,
    ORDER_SOURCE,
    POLICY,
    PORTAL_BRANDING,
    PRODUCT,
    RELEASE,
    RESOURCES,
    ROLES,
    SUBJECT_SCHEMA,
    TIME_SCHEMA,
    WEBHOOK_ATTEMPT,
    WEBHOOK_DELIVERY,
    WEBHOOK_ENDPOINT,
    Resource,
    checked_time,
    format_time,
    id_pattern,
    new_id,
    now_us,
    parse_time,
)
from licensor.operations import (
    ADMIN_ROLES,
    CATALOG_ROLES,
    PAGE_PARAMS,
    READ_ROLES,
    SUPPORT_ROLES,
    Call,
    Handler,
    Operation,
    Param,
    Reply,
    SecretInput,
    Token,
    decode_cursor,
    list_reply,
    list_schema,
)
from licensor.plugins import BackendRegistry
from licensor.store import Row, Transaction

DAY_US = 86_400 * 1_000_000

WRITE_ROLES = {
    PRODUCT.plural: CATALOG_ROLES,
    FEATURE.plural: CATALOG_ROLES,
    RELEASE.plural: CATALOG_ROLES,
    POLICY.plural: CATALOG_ROLES,
    CUSTOMER.plural: SUPPORT_ROLES,
    LICENSE.plural: SUPPORT_ROLES,
    ORDER_SOURCE.plural: ADMIN_ROLES,  # it holds the shop's signing secrets
    ORDER_MAPPING.plural: CATALOG_ROLES,
    ORDER_EVENT.plural: frozenset(),  # written by the order intake only
    WEBHOOK_ENDPOINT.plural: ADMIN_ROLES,  # where the tenant's events go
    WEBHOOK_DELIVERY.plural: frozenset(),  # written by the webhook sender only
    WEBHOOK_ATTEMPT.plural: frozenset(),
}


def _column_values(resource: Resource, body: dict[str, Any], *, creating: bool) -> Row:
    values: Row = {}
    for f in resource.fields:
        if not f.writable:
            continue
        if f.name in body:
            values[f.name] = f.api_to_column(_integral(f.schema, body[f.name]))
        elif creating:
            default = f.default() if callable(f.default) else f.default
            values[f.name] = f.api_to_column(default)
    return values


def _integral(schema: dict[str, Any], value: Any) -> Any:
    """``value`` with every number the schema declares an integer as an int, nested ones included: JSON
    Schema counts 1.0 as an integer, and a float must not reach an integer column or a date computation."""
    if isinstance(value, float):
        kinds = [schema, *list(schema.get("anyOf", ()))]
        return int(value) if value.is_integer() and any(kind.get("type") == "integer" for kind in kinds) else value
    if isinstance(value, dict):
        for kind in [schema, *schema.get("anyOf", ())]:
            if kind.get("type") == "object" and "properties" in kind:
                return {name: _integral(kind["properties"].get(name, {}), item) for name, item in value.items()}
    if isinstance(value, list):
        for kind in [schema, *schema.get("anyOf", ())]:
            if kind.get("type") == "array" and isinstance(kind.get("items"), dict):
                return [_integral(kind["items"], item) for item in value]
    return value


async def _check_references(tx: Transaction, resource: Resource, values: Row) -> None:
    for f in resource.fields:
        if f.references and values.get(f.name) is not None:
            if await tx.get(BY_NAME[f.references], values[f.name]) is None:
                raise ValidationError(f"{f.name}: no such {f.references}", code="REFERENCE_NOT_FOUND")


async def _check_unique(tx: Transaction, resource: Resource, values: Row, current: Row | None) -> None:
    for columns in resource.unique:
        merged = {c: values.get(c, current.get(c) if current else None) for c in columns}
        if current is not None and all(merged[c] == current[c] for c in columns):
            continue
        found = await tx.find(resource, **merged)
        if found is not None:
            raise ConflictError(
                f"a {resource.name} with this {', '.join(columns)} exists already",
                code=f"{resource.name.upper()}_ALREADY_EXISTS",
            )


async def _check_feature_codes(tx: Transaction, product_id: str, codes: list[str]) -> None:
    for code in codes:
        if await tx.find(FEATURE, product_id=product_id, code=code) is None:
            raise ValidationError(f"the product has no feature {code}", code="UNKNOWN_FEATURE")


def _backend(call: Call, name: str) -> Backend:
    backends = call.request.app[app_keys.BACKENDS]
    backend = backends.get(name)
    if backend is None:
        installed = ", ".join(backends) or "none"
        raise ValidationError(f"backend: this gateway has no {name!r} backend (installed: {installed})", code="UNKNOWN_BACKEND")
    return backend


async def _check_domain_rules(call: Call, resource: Resource, values: Row, current: Row | None) -> None:
    """Rules a JSON schema cannot express. ``values`` may be completed (a policy's options, as its backend
    will use them)."""
    assert call.tx is not None
    tx = call.tx
    merged = {**(current or {}), **values}
    if resource is POLICY:
        if current is None or "options" in values:  # the backend must be installed to judge its options
            options = _backend(call, merged["backend"]).validate_options(POLICY.field("options").column_to_api(merged["options"]))
            values["options"] = POLICY.field("options").api_to_column(options)
        duration = BY_NAME["policy"].field("duration").column_to_api(merged["duration"])
        if (duration["kind"] == "perpetual") == ("days" in duration):
            raise ValidationError(
                "duration: days is required for subscription and trial, and not allowed for perpetual", code="INVALID_FIELD"
            )
        features = POLICY.field("features").column_to_api(merged["features"])
        codes = [item["code"] for item in features]
        if len(set(codes)) != len(codes):
            raise ValidationError("features: each code may appear once", code="INVALID_FIELD")
        if "features" in values:
            await _check_feature_codes(tx, merged["product_id"], codes)
    if resource is ORDER_SOURCE:
        sources = call.request.app[app_keys.ORDER_SOURCES]
        if merged["kind"] not in sources:
            installed = ", ".join(sorted(sources))
            raise ValidationError(
                f"kind: this gateway takes no orders from {merged['kind']!r} (installed: {installed})",
                code="UNKNOWN_ORDER_SOURCE_KIND",
            )
        for secret in values.get("secrets") or ():
            try:
                sources[merged["kind"]].check_secret(secret)
            except ValueError as error:
                raise ValidationError(f"secrets: {error}", code="INVALID_FIELD") from None
        if "secrets" in values:  # sealed: the shop's secrets are used again to verify, so they cannot be hashed
            values["secrets"] = call.request.app[app_keys.SECRETS].seal_integration_secrets(
                call.tenant_id, "order_source", values["secrets"]
            )
    if resource is WEBHOOK_ENDPOINT:
        if "url" in values:
            await webhooks.check_target(values["url"], call.request.app[app_keys.SETTINGS].webhook_allow_private)
        if values.get("secret") is not None:
            values["secret"] = call.request.app[app_keys.SECRETS].seal_integration_secrets(
                call.tenant_id, "webhook_endpoint", [values["secret"]]
            )
        if current is None:  # a new endpoint receives what happens from now on, not the log's past
            head = await call.store.event_chain_head(call.tenant_id)
            values["cursor_seq"] = int(head["last_seq"]) if head else 0
        elif values.get("state") == "enabled":  # enabled again by the vendor: the failures start over
            values.update(disabled_reason=None, failing_since=None)
    if resource is LICENSE and merged.get("expires_at") is not None and merged["expires_at"] <= merged["starts_at"]:
        raise ValidationError("expires_at must be after starts_at", code="INVALID_FIELD")
    if resource is RELEASE and "required_features" in values:
        await _check_feature_codes(
            tx, merged["product_id"], RELEASE.field("required_features").column_to_api(merged["required_features"])
        )


async def _get_or_404(tx_or_call: Any, resource: Resource, object_id: str, *, tenant_id: str | None = None) -> Row:
    if isinstance(tx_or_call, Call):
        row = await tx_or_call.store.get(tx_or_call.tenant_id, resource, object_id)
    else:
        row = await tx_or_call.get(resource, object_id, for_update=True)
    if row is None:
        raise NotFoundError(f"no such {resource.name}", code=f"{resource.name.upper()}_NOT_FOUND")
    return row


async def _record(call: Call, event_type: str, resource: Resource, shown: dict[str, Any]) -> None:
    assert call.tx is not None
    await call.tx.append_event(event_type, resource.name, shown["id"], call.actor, shown)


# --- generic handlers ---------------------------------------------------------------------------------
@contextmanager
def _constraint_errors(resource: Resource) -> Iterator[None]:
    """The checks above ran before the write; a concurrent transaction may still win the race (PostgreSQL). The
    database's constraint then refuses the write: answer with the same codes as the checks."""
    try:
        yield
    except ConflictError as error:
        if error.code == "ALREADY_EXISTS":
            raise ConflictError(
                f"a {resource.name} with these values exists already", code=f"{resource.name.upper()}_ALREADY_EXISTS"
            ) from None
        if error.code == "RESOURCE_IN_USE":  # a foreign key: the object referred to was deleted meanwhile
            raise ValidationError("an object this refers to no longer exists", code="REFERENCE_NOT_FOUND") from None
        raise


def _create(resource: Resource) -> Handler:
    async def create(call: Call) -> Reply:
        assert call.tx is not None
        values = _column_values(resource, call.body, creating=True)
        await _check_references(call.tx, resource, values)
        await _check_unique(call.tx, resource, values, None)
        await _check_domain_rules(call, resource, values, None)
        for f in resource.fields:  # what the server sets later starts empty (the domain rules set what it must)
            if not f.writable:
                values.setdefault(f.name, None)
        now = now_us()
        with _constraint_errors(resource):
            row = await call.tx.insert(
                resource, {"id": new_id(resource.id_prefix), **values, "created_at": now, "updated_at": now}
            )
        shown = resource.to_api(row)
        await _record(call, f"{resource.name}.created", resource, shown)
        return Reply(201, shown)

    return create


def _read(resource: Resource) -> Handler:
    async def read(call: Call) -> Reply:
        return Reply(200, resource.to_api(await _get_or_404(call, resource, call.path["id"])))

    return read


def _list(resource: Resource) -> Handler:
    async def list_objects(call: Call) -> Reply:
        after = decode_cursor(call.query["cursor"], resource.plural) if "cursor" in call.query else None
        if after is not None and not isinstance(after, str):
            raise MalformedRequestError("the cursor is not one this API gave out", code="INVALID_CURSOR")
        filters = {f.name: f.api_to_column(call.query[f.name]) for f in resource.filters if f.name in call.query}
        page = await call.store.list(call.tenant_id, resource, filters, after, call.query.get("limit", 50))
        items = [resource.to_api(row) for row in page.rows]
        return list_reply(resource.plural, items, page.has_more, items[-1]["id"] if items else None)

    return list_objects


def _update(resource: Resource) -> Handler:
    async def update(call: Call) -> Reply:
        assert call.tx is not None
        current = await _get_or_404(call.tx, resource, call.path["id"])
        values = _column_values(resource, call.body, creating=False)
        await _check_references(call.tx, resource, values)
        await _check_unique(call.tx, resource, values, current)
        await _check_domain_rules(call, resource, values, current)
        with _constraint_errors(resource):
            row = await call.tx.update(resource, call.path["id"], values)
        assert row is not None
        shown = resource.to_api(row)
        await _record(call, f"{resource.name}.updated", resource, shown)
        return Reply(200, shown)

    return update


def _delete(resource: Resource) -> Handler:
    async def delete(call: Call) -> Reply:
        assert call.tx is not None
        current = await _get_or_404(call.tx, resource, call.path["id"])
        for table, column in resource.referenced_by:
            if await call.tx.count_referencing(table, column, current["id"]):
                raise ConflictError(f"the {resource.name} is still used by {table}", code="RESOURCE_IN_USE")
        await call.tx.delete(resource, current["id"])
        shown = resource.to_api(current)
        await _record(call, f"{resource.name}.deleted", resource, shown)
        return Reply(200, {"id": current["id"], "object": resource.name, "deleted": True})

    return delete


def _deleted_schema(resource: Resource) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"id": {"type": "string"}, "object": {"const": resource.name}, "deleted": {"const": True}},
        "required": ["id", "object", "deleted"],
        "additionalProperties": False,
    }


def _filter_params(resource: Resource) -> tuple[Param, ...]:
    params = []
    for f in resource.filters:
        schema = f.schema
        if "anyOf" in schema:  # a nullable field filters by its value
            schema = schema["anyOf"][0]
        params.append(Param(f.name, schema, f"Only objects whose {f.name} equals this."))
    return tuple(params)


def _add_resource_operations(api: Api, resource: Resource) -> None:
    base = f"/v1/admin/{resource.segment}"
    item = f"{base}/{{id}}"
    pattern = {"id": id_pattern(resource.id_prefix)}
    title = resource.name.replace("_", " ").capitalize()
    noun = resource.name.replace("_", " ")
    a_noun = f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"
    shown = resource.response_schema()
    write_roles = WRITE_ROLES[resource.plural]
    if resource is not LICENSE and resource.api_writable:
        api.add(
            Operation(
                method="POST",
                path=base,
                operation_id=f"create_{resource.name}",
                summary=f"Create {a_noun}",
                handler=_create(resource),
                tag=resource.plural,
                auth=Token(write_roles),
                response_schema=shown,
                status=201,
                request_schema=resource.create_schema(),
                changes_state=True,
                description=resource.description,
                errors=(409, 422),
            )
        )
    api.add(
        Operation(
            method="GET",
            path=base,
            operation_id=f"list_{resource.plural}",
            summary=f"List {resource.plural.replace('_', ' ')}",
            handler=_list(resource),
            tag=resource.plural,
            auth=Token(READ_ROLES),
            response_schema=list_schema(shown),
            query=PAGE_PARAMS + _filter_params(resource),
        )
    )
    api.add(
        Operation(
            method="GET",
            path=item,
            operation_id=f"get_{resource.name}",
            summary=f"Get {a_noun}",
            handler=_read(resource),
            tag=resource.plural,
            auth=Token(READ_ROLES),
            response_schema=shown,
            path_patterns=pattern,
            errors=(404,),
        )
    )
    if not resource.api_writable:
        return
    api.add(
        Operation(
            method="PATCH",
            path=item,
            operation_id=f"update_{resource.name}",
            summary=f"Update {a_noun}",
            handler=_update(resource),
            tag=resource.plural,
            auth=Token(write_roles),
            response_schema=shown,
            request_schema=resource.update_schema(),
            path_patterns=pattern,
            changes_state=True,
            errors=(404, 409, 422),
        )
    )
    if resource.deletable:
        api.add(
            Operation(
                method="DELETE",
                path=item,
                operation_id=f"delete_{resource.name}",
                summary=f"Delete {a_noun}",
                handler=_delete(resource),
                tag=resource.plural,
                auth=Token(write_roles),
                response_schema=_deleted_schema(resource),
                path_patterns=pattern,
                changes_state=True,
                errors=(404, 409),
                description=f"{title}s still in use by other objects cannot be deleted (409 RESOURCE_IN_USE).",
            )
        )


# --- licenses -----------------------------------------------------------------------------------------
LICENSE_CREATE_SCHEMA = {
    "type": "object",
    "properties": {
        "policy_id": {"type": "string", "pattern": id_pattern("pol")},
        "customer_id": {"anyOf": [{"type": "string", "pattern": id_pattern("cus")}, {"type": "null"}]},
        "starts_at": TIME_SCHEMA,
        "expires_at": {"anyOf": [TIME_SCHEMA, {"type": "null"}]},
        "maintenance_until": {"anyOf": [TIME_SCHEMA, {"type": "null"}]},
        "overrides": {"type": "object", "maxProperties": 64},
        "order_ref": {"anyOf": [{"type": "string", "minLength": 1, "maxLength": 200}, {"type": "null"}]},
        "subject": {"anyOf": [SUBJECT_SCHEMA, {"type": "null"}]},
    },
    "required": ["policy_id"],
    "additionalProperties": False,
}

LICENSE_WITH_KEY_SCHEMA = {
    **LICENSE.response_schema(),
    "properties": {**LICENSE.response_schema()["properties"], "key": {"type": "string"}},
    "required": [*LICENSE.response_schema()["required"], "key"],
}


def _policy_days(policy: Row) -> int | None:
    duration = POLICY.field("duration").column_to_api(policy["duration"])
    return duration.get("days")


def policy_terms(policy: Row, starts_at: int) -> tuple[int | None, int | None]:
    """(expires_at, maintenance_until) of a license of ``policy`` starting at ``starts_at``."""
    days = _policy_days(policy)
    expires_at = checked_time(starts_at + days * DAY_US, "expires_at") if days else None
    maintenance_until = None
    if policy["maintenance_days"] is not None:
        maintenance_until = checked_time(starts_at + policy["maintenance_days"] * DAY_US, "maintenance_until")
    return expires_at, maintenance_until


async def issue_license(
    tx: Transaction,
    secrets: Secrets,
    policy: Row,
    *,
    starts_at: int,
    expires_at: int | None,
    maintenance_until: int | None,
    customer_id: str | None = None,
    overrides: dict[str, Any] | None = None,
    order_ref: str | None = None,
    subject: str | None = None,
    order_marks: dict[str, Any] | None = None,
) -> tuple[Row, str]:
    """Insert a new license of ``policy`` and return its row and its key (which is stored only as a hash)."""
    key = license_keys.generate()
    normalized = license_keys.normalize(key)
    now = now_us()
    row = await tx.insert(
        LICENSE,
        {
            "id": new_id("lic"),
            "product_id": policy["product_id"],
            "policy_id": policy["id"],
            "customer_id": customer_id,
            "key_hash": secrets.license_key_hash(tx.tenant_id, normalized),
            "key_hint": license_keys.hint(normalized),
            "state": "active",
            "starts_at": starts_at,
            "expires_at": expires_at,
            "maintenance_until": maintenance_until,
            "overrides": LICENSE.field("overrides").api_to_column(overrides or {}),
            "order_ref": order_ref,
            "subject": subject,
            "generation": 1,
            "order_marks": LICENSE.field("order_marks").api_to_column(order_marks or {}),
            "created_at": now,
            "updated_at": now,
        },
    )
    return row, key


async def create_license(call: Call) -> Reply:
    """Create a license from a policy; its key is in this answer only."""
    assert call.tx is not None
    body = call.body
    policy = await call.tx.get(POLICY, body["policy_id"])
    if policy is None:
        raise ValidationError("policy_id: no such policy", code="REFERENCE_NOT_FOUND")
    if body.get("customer_id") is not None and await call.tx.get(CUSTOMER, body["customer_id"]) is None:
        raise ValidationError("customer_id: no such customer", code="REFERENCE_NOT_FOUND")
    starts_at = parse_time(body["starts_at"], "starts_at") if "starts_at" in body else now_us()
    expires_at, maintenance_until = policy_terms(policy, starts_at)
    if "expires_at" in body:
        expires_at = parse_time(body["expires_at"], "expires_at") if body["expires_at"] is not None else None
    if "maintenance_until" in body:
        maintenance_until = parse_time(body["maintenance_until"], "maintenance_until") if body["maintenance_until"] else None
    if expires_at is not None and expires_at <= starts_at:
        raise ValidationError("expires_at must be after starts_at", code="INVALID_FIELD")
    row, key = await issue_license(
        call.tx,
        call.request.app[app_keys.SECRETS],
        policy,
        starts_at=starts_at,
        expires_at=expires_at,
        maintenance_until=maintenance_until,
        customer_id=body.get("customer_id"),
        overrides=body.get("overrides", {}),
        order_ref=body.get("order_ref"),
        subject=body.get("subject"),
    )
    shown = LICENSE.to_api(row)
    await _record(call, "license.created", LICENSE, shown)
    return Reply(201, {**shown, "key": key})


_TRANSITIONS = {
    "suspend": ({"active"}, "suspended"),
    "reinstate": ({"suspended"}, "active"),
    "revoke": ({"active", "suspended"}, "revoked"),
}


async def change_license(tx: Transaction, backends: BackendRegistry, current: Row, change: str, changes: Row) -> Row:
    """Write ``changes`` to the license and let its backend react (``change``: suspended, reinstated, revoked,
    renewed); the updated row."""
    row = await tx.update(LICENSE, current["id"], changes)
    assert row is not None
    policy = await tx.get(POLICY, current["policy_id"])
    assert policy is not None
    backend = backends.get(policy["backend"])
    if backend is not None:  # an uninstalled backend has nothing to react with
        await backend.on_license_changed(tx, row, change)
    return row


def state_change(current: Row, action: str) -> Row:
    """The change of state ``action`` (suspend, reinstate, revoke) makes to the license.

    :raises InvalidStateError: the license is in a state the action does not apply to."""
    allowed, target = _TRANSITIONS[action]
    if current["state"] not in allowed:
        raise InvalidStateError(f"a {current['state']} license cannot be {target}")
    return {"state": target}


def _license_action(action: str) -> Handler:
    async def act(call: Call) -> Reply:
        assert call.tx is not None
        current = await _get_or_404(call.tx, LICENSE, call.path["id"])
        changes: Row = {}
        if action in _TRANSITIONS:
            changes = state_change(current, action)
        else:  # renew
            if current["state"] == "revoked":
                raise InvalidStateError("a revoked license cannot be renewed")
            policy = await call.tx.get(POLICY, current["policy_id"])
            assert policy is not None
            if "expires_at" in call.body:
                changes["expires_at"] = parse_time(call.body["expires_at"], "expires_at")
            elif days := _policy_days(policy):
                extended = max(now_us(), current["expires_at"] or 0) + days * DAY_US
                changes["expires_at"] = checked_time(extended, "expires_at")
            else:
                raise InvalidStateError("a perpetual license does not expire: give expires_at to set an expiry")
            if current["expires_at"] is not None and changes["expires_at"] <= current["expires_at"]:
                raise ValidationError("expires_at must be later than the current expiry", code="INVALID_FIELD")
            if policy["maintenance_days"] is not None:
                base = max(now_us(), current["maintenance_until"] or 0)
                changes["maintenance_until"] = checked_time(base + policy["maintenance_days"] * DAY_US, "maintenance_until")
        row = await change_license(call.tx, call.request.app[app_keys.BACKENDS], current, _PAST[action], changes)
        shown = LICENSE.to_api(row)
        reason = call.body.get("reason")
        await call.tx.append_event(
            f"license.{_PAST[action]}", "license", current["id"], call.actor, {**shown, "reason": reason} if reason else shown
        )
        return Reply(200, shown)

    return act


async def push_license_update(call: Call) -> Reply:
    """Count the license's generation up, so its connected devices are pushed an update now."""
    assert call.tx is not None
    current = await _get_or_404(call.tx, LICENSE, call.path["id"])
    row = await call.tx.update(LICENSE, current["id"], {})
    assert row is not None
    shown = LICENSE.to_api(row)
    await call.tx.append_event(
        "license.update_pushed", "license", current["id"], call.actor, {"id": row["id"], "generation": row["generation"]}
    )
    return Reply(200, shown)


async def push_product_update(call: Call) -> Reply:
    """Count the generation of every license of the product up, so all their connected devices are pushed an update."""
    assert call.tx is not None
    product = await _get_or_404(call.tx, PRODUCT, call.path["id"])
    await call.tx.advance_license_generations(product_id=product["id"])
    data = {"id": product["id"], "reason": call.body.get("reason")}
    await call.tx.append_event("product.update_pushed", "product", product["id"], call.actor, data)
    return Reply(200, {"object": "update_push", "product_id": product["id"]})


_PAST = {"suspend": "suspended", "reinstate": "reinstated", "revoke": "revoked", "renew": "renewed"}
_REASON = {"reason": {"type": "string", "minLength": 1, "maxLength": 500}}


async def lookup_license(call: Call) -> Reply:
    """Find a license by its key (sent in the body, so it stays out of URLs and access logs)."""
    normalized = license_keys.normalize(call.body["key"])
    key_hash = call.request.app[app_keys.SECRETS].license_key_hash(call.tenant_id, normalized)
    row = await call.store.find_license_by_key_hash(call.tenant_id, key_hash)
    if row is None:
        raise NotFoundError("no license has this key", code="LICENSE_NOT_FOUND")
    return Reply(200, LICENSE.to_api(row))


def _add_license_operations(api: Api) -> None:
    shown = LICENSE.response_schema()
    pattern = {"id": id_pattern("lic")}
    api.add(
        Operation(
            method="POST",
            path="/v1/admin/licenses",
            operation_id="create_license",
            summary="Create a license",
            handler=create_license,
            tag="licenses",
            auth=Token(SUPPORT_ROLES),
            response_schema=LICENSE_WITH_KEY_SCHEMA,
            status=201,
            request_schema=LICENSE_CREATE_SCHEMA,
            changes_state=True,
            errors=(422,),
            description=(
                "Dates default from the policy (duration, maintenance). The answer holds the license key; it is shown only here."
            ),
        )
    )
    api.add(
        Operation(
            method="POST",
            path="/v1/admin/licenses/lookup",
            operation_id="lookup_license",
            summary="Find a license by its key",
            handler=lookup_license,
            tag="licenses",
            auth=Token(READ_ROLES),
            response_schema=shown,
            errors=(404, 422),
            request_schema={
                "type": "object",
                "properties": {"key": {"type": "string", "minLength": 1, "maxLength": 100}},
                "required": ["key"],
                "additionalProperties": False,
            },
            description="422 LICENSE_KEY_MALFORMED tells a typo (bad check character) from 404 LICENSE_NOT_FOUND.",
            secret_input=SecretInput(field="key", prompt="License key: "),
        )
    )
    for resource, handler in ((LICENSE, push_license_update), (PRODUCT, push_product_update)):
        api.add(
            Operation(
                method="POST",
                path=f"/v1/admin/{resource.plural}/{{id}}/push-update",
                operation_id=f"push_{resource.name}_update",
                summary="Push an update to the connected devices of "
                + ("a license" if resource is LICENSE else "every license of a product"),
                handler=handler,
                tag=resource.plural,
                auth=Token(SUPPORT_ROLES),
                response_schema=shown
                if resource is LICENSE
                else {
                    "type": "object",
                    "properties": {"object": {"const": "update_push"}, "product_id": {"type": "string"}},
                    "required": ["object", "product_id"],
                    "additionalProperties": False,
                },
                path_patterns={"id": id_pattern(resource.id_prefix)},
                request_schema={"type": "object", "properties": _REASON, "additionalProperties": False},
                changes_state=True,
                errors=(404, 422),
                description=(
                    "Counts the generation up (every other change in License Central does too: an update of the license or "
                    "its policy, suspension, renewal, revocation, a device withdrawn), so devices connected to "
                    "GET /v1/updates receive a signed update at once, and disconnected ones at their next connection."
                ),
            )
        )
    for action in ("suspend", "reinstate", "revoke", "renew"):
        properties = dict(_REASON)
        if action == "renew":
            properties["expires_at"] = TIME_SCHEMA
        api.add(
            Operation(
                method="POST",
                path=f"/v1/admin/licenses/{{id}}/{action}",
                operation_id=f"{action}_license",
                summary=f"{action.capitalize()} a license",
                handler=_license_action(action),
                tag="licenses",
                auth=Token(SUPPORT_ROLES),
                response_schema=shown,
                path_patterns=pattern,
                request_schema={"type": "object", "properties": properties, "additionalProperties": False},
                changes_state=True,
                errors=(404, 409, 422),
            )
        )


# --- tokens -------------------------------------------------------------------------------------------
TOKEN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": id_pattern("tok")},
        "object": {"const": "token"},
        "name": {"type": "string"},
        "role": {"enum": list(ROLES)},
        "product_id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "created_at": TIME_SCHEMA,
        "revoked_at": {"anyOf": [TIME_SCHEMA, {"type": "null"}]},
    },
    "required": ["id", "object", "name", "role", "product_id", "created_at", "revoked_at"],
    "additionalProperties": False,
}


def token_json(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "token",
        "name": row["name"],
        "role": row["role"],
        "product_id": row["product_id"],
        "created_at": format_time(row["created_at"]),
        "revoked_at": format_time(row["revoked_at"]),
    }


async def issue_token(tx: Transaction, name: str, role: str, product_id: str | None) -> tuple[Row, str]:
    """Store a new API token; the row and the token text, which exists only in this answer."""
    token_id = new_id("tok")
    secret, secret_hash = new_secret()
    row = {
        "id": token_id,
        "name": name,
        "role": role,
        "product_id": product_id,
        "secret_hash": secret_hash,
        "created_at": now_us(),
        "revoked_at": None,
    }
    await tx.insert_token(row)
    return row, f"{token_id}.{secret}"


async def create_token(call: Call) -> Reply:
    assert call.tx is not None
    role, product_id = call.body["role"], call.body.get("product_id")
    if (role == "product") != (product_id is not None):
        raise ValidationError("product_id is required for a product token and not allowed otherwise", code="INVALID_FIELD")
    if product_id is not None and await call.tx.get(PRODUCT, product_id) is None:
        raise ValidationError("product_id: no such product", code="REFERENCE_NOT_FOUND")
    row, token = await issue_token(call.tx, call.body["name"], role, product_id)
    shown = token_json(row)
    await call.tx.append_event("token.created", "token", row["id"], call.actor, shown)
    return Reply(201, {**shown, "token": token})


async def list_tokens(call: Call) -> Reply:
    after = decode_cursor(call.query["cursor"], "tokens") if "cursor" in call.query else None
    if after is not None and not isinstance(after, str):
        raise MalformedRequestError("the cursor is not one this API gave out", code="INVALID_CURSOR")
    page = await call.store.list_tokens(call.tenant_id, after, call.query.get("limit", 50))
    items = [token_json(row) for row in page.rows]
    return list_reply("tokens", items, page.has_more, items[-1]["id"] if items else None)


async def get_token(call: Call) -> Reply:
    row = await call.store.get_token(call.path["id"])
    if row is None or row["tenant_id"] != call.tenant_id:
        raise NotFoundError("no such token", code="TOKEN_NOT_FOUND")
    return Reply(200, token_json(row))


async def revoke_token(call: Call) -> Reply:
    assert call.tx is not None
    row = await call.tx.revoke_token(call.path["id"], now_us())
    if row is None:
        raise NotFoundError("no such token", code="TOKEN_NOT_FOUND")
    shown = token_json(row)
    await call.tx.append_event("token.revoked", "token", row["id"], call.actor, shown)
    return Reply(200, shown)


def _add_token_operations(api: Api) -> None:
    pattern = {"id": id_pattern("tok")}
    create_schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "role": {"enum": list(ROLES)},
            "product_id": {"type": "string", "pattern": id_pattern("prd")},
        },
        "required": ["name", "role"],
        "additionalProperties": False,
    }
    with_token = {
        **TOKEN_SCHEMA,
        "properties": {**TOKEN_SCHEMA["properties"], "token": {"type": "string"}},
        "required": [*TOKEN_SCHEMA["required"], "token"],
    }
    api.add(
        Operation(
            method="POST",
            path="/v1/admin/tokens",
            operation_id="create_token",
            summary="Create an API token",
            handler=create_token,
            tag="tokens",
            auth=Token(ADMIN_ROLES),
            response_schema=with_token,
            status=201,
            request_schema=create_schema,
            changes_state=True,
            errors=(422,),
            description="The token is in this answer only; licensor keeps just its hash. A product token (role "
            "product) serves a SaaS backend on the license plane.",
        )
    )
    api.add(
        Operation(
            method="GET",
            path="/v1/admin/tokens",
            operation_id="list_tokens",
            summary="List API tokens",
            handler=list_tokens,
            tag="tokens",
            auth=Token(ADMIN_ROLES),
            response_schema=list_schema(TOKEN_SCHEMA),
            query=PAGE_PARAMS,
        )
    )
    api.add(
        Operation(
            method="GET",
            path="/v1/admin/tokens/{id}",
            operation_id="get_token",
            summary="Get an API token",
            handler=get_token,
            tag="tokens",
            auth=Token(ADMIN_ROLES),
            response_schema=TOKEN_SCHEMA,
            path_patterns=pattern,
            errors=(404,),
        )
    )
    api.add(
        Operation(
            method="DELETE",
            path="/v1/admin/tokens/{id}",
            operation_id="revoke_token",
            summary="Revoke an API token",
            handler=revoke_token,
            tag="tokens",
            auth=Token(ADMIN_ROLES),
            response_schema=TOKEN_SCHEMA,
            path_patterns=pattern,
            changes_state=True,
            errors=(404,),
        )
    )


# --- keys, events, tenant -----------------------------------------------------------------------------
async def list_keys(call: Call) -> Reply:
    rows = await call.store.list_signing_keys(call.tenant_id)
    return Reply(200, {"object": "list", "data": [public_key_json(row) for row in rows], "has_more": False, "next_cursor": None})


async def rotate_keys(call: Call) -> Reply:
    assert call.tx is not None
    kid = await add_signing_key(call.tx, call.request.app[app_keys.SECRETS])
    await call.tx.append_event("key.rotated", "key", kid, call.actor, {"kid": kid})
    return Reply(200, {"object": "key_rotation", "active_kid": kid})


async def list_events(call: Call) -> Reply:
    after = decode_cursor(call.query["cursor"], "events") if "cursor" in call.query else None
    if after is not None and not isinstance(after, int):
        raise MalformedRequestError("the cursor is not one this API gave out", code="INVALID_CURSOR")
    filters: dict[str, Any] = {name: call.query[name] for name in ("type", "subject_id", "subject_type") if name in call.query}
    page = await call.store.list_events(call.tenant_id, filters, after, call.query.get("limit", 50))
    items = [event_json(row) for row in page.rows]
    return list_reply("events", items, page.has_more, page.rows[-1]["seq"] if page.rows else None)


async def verify_events(call: Call) -> Reply:
    return Reply(200, await verify_chain(call.store, call.tenant_id))


async def get_tenant(call: Call) -> Reply:
    row = await call.store.get_tenant(call.tenant_id)
    assert row is not None
    return Reply(200, {"id": row["id"], "object": "tenant", "name": row["name"], "created_at": format_time(row["created_at"])})


async def retry_webhook_delivery(call: Call) -> Reply:
    """Attempt a delivery again now (a failed one included), with its attempts kept."""
    assert call.tx is not None
    current = await _get_or_404(call.tx, WEBHOOK_DELIVERY, call.path["id"])
    if current["state"] == "delivered":
        raise InvalidStateError("the delivery arrived already")
    if current["claimed_until"] is not None and current["claimed_until"] > call.services.now_us():
        raise InvalidStateError("the delivery is being attempted right now; look again in a minute")
    changes = {"state": "pending", "next_attempt_at": call.services.now_us(), "claimed_until": None}
    row = await call.tx.update(WEBHOOK_DELIVERY, current["id"], changes)
    assert row is not None
    shown = WEBHOOK_DELIVERY.to_api(row)
    await call.tx.append_event("webhook_delivery.retried", "webhook_delivery", row["id"], call.actor, {"id": row["id"]})
    return Reply(200, shown)


_DEFAULT_BRANDING = {"logo_url": None, "primary_color": "#1f4e8c", "accent_color": "#0b7a5c"}


async def get_portal_branding(call: Call) -> Reply:
    """The License Portal's name, logo and colours (the tenant's name and licensor's colours until set)."""
    found = await call.store.list(call.tenant_id, PORTAL_BRANDING, {}, None, 1)
    if found.rows:
        return Reply(200, PORTAL_BRANDING.to_api(found.rows[0]))
    tenant = await call.store.get_tenant(call.tenant_id)
    assert tenant is not None
    return Reply(200, {"object": "portal_branding", "name": tenant["name"], **_DEFAULT_BRANDING})


async def set_portal_branding(call: Call) -> Reply:
    assert call.tx is not None
    values = {**_DEFAULT_BRANDING, **call.body}
    existing = await call.tx.select(PORTAL_BRANDING, limit=1)
    now = now_us()
    if existing:
        row = await call.tx.update(PORTAL_BRANDING, existing[0]["id"], values)
    else:
        row = await call.tx.insert(PORTAL_BRANDING, {"id": new_id("pbr"), **values, "created_at": now, "updated_at": now})
    assert row is not None
    shown = PORTAL_BRANDING.to_api(row)
    await call.tx.append_event("portal_branding.updated", "portal_branding", row["id"], call.actor, shown)
    return Reply(200, shown)


def _add_portal_operations(api: Api) -> None:
    shown = PORTAL_BRANDING.response_schema()
    answer = {**shown, "required": ["object", "name", "logo_url", "primary_color", "accent_color"]}
    api.add(
        Operation(
            method="GET",
            path="/v1/admin/portal-branding",
            operation_id="get_portal_branding",
            summary="Get the portal's branding",
            handler=get_portal_branding,
            tag="portal",
            auth=Token(READ_ROLES),
            response_schema=answer,
        )
    )
    api.add(
        Operation(
            method="PUT",
            path="/v1/admin/portal-branding",
            operation_id="set_portal_branding",
            summary="Set the portal's branding",
            handler=set_portal_branding,
            tag="portal",
            auth=Token(ADMIN_ROLES),
            response_schema=answer,
            request_schema={**PORTAL_BRANDING.create_schema()},
            changes_state=True,
            errors=(422,),
            description="The License Portal (/portal/{tenant}/) shows this name, logo (an https URL) and colours; text on "
            "the primary colour is black or white, whichever contrasts more.",
        )
    )


def _add_webhook_operations(api: Api) -> None:
    api.add(
        Operation(
            method="POST",
            path="/v1/admin/webhook-deliveries/{id}/retry",
            operation_id="retry_webhook_delivery",
            summary="Retry a webhook delivery",
            handler=retry_webhook_delivery,
            tag=WEBHOOK_DELIVERY.plural,
            auth=Token(ADMIN_ROLES),
            response_schema=WEBHOOK_DELIVERY.response_schema(),
            request_schema={"type": "object", "properties": {}, "additionalProperties": False},
            path_patterns={"id": id_pattern("msg")},
            changes_state=True,
            errors=(404, 409),
            description="A pending or failed delivery is attempted again now; one that arrived answers 409 INVALID_STATE.",
        )
    )


def register(api: Api) -> None:
    """Declare every admin operation on ``api``."""
    for resource in RESOURCES.values():
        _add_resource_operations(api, resource)
    _add_webhook_operations(api)
    _add_portal_operations(api)
    _add_license_operations(api)
    _add_token_operations(api)
    api.add(
        Operation(
            method="GET",
            path="/v1/admin/keys",
            operation_id="list_keys",
            summary="List the tenant's signing keys",
            handler=list_keys,
            tag="keys",
            auth=Token(READ_ROLES),
            response_schema=list_schema(KEY_SCHEMA),
        )
    )
    api.add(
        Operation(
            method="POST",
            path="/v1/admin/keys/rotate",
            operation_id="rotate_keys",
            summary="Rotate the signing key",
            handler=rotate_keys,
            tag="keys",
            auth=Token(ADMIN_ROLES),
            response_schema={
                "type": "object",
                "properties": {"object": {"const": "key_rotation"}, "active_kid": {"type": "string"}},
                "required": ["object", "active_kid"],
                "additionalProperties": False,
            },
            changes_state=True,
            description="A new key becomes the active signing key; the previous ones stay published at /v1/keys, so "
            "tokens they signed still verify.",
        )
    )
    api.add(
        Operation(
            method="GET",
            path="/v1/admin/events",
            operation_id="list_events",
            summary="List events",
            handler=list_events,
            tag="events",
            auth=Token(READ_ROLES),
            response_schema=list_schema(EVENT_SCHEMA),
            query=(
                *PAGE_PARAMS,
                Param("type", {"type": "string", "pattern": "^[a-z_]+\\.[a-z_]+$"}),
                Param("subject_type", {"type": "string", "pattern": "^[a-z_]{1,32}$"}),
                Param("subject_id", {"type": "string", "pattern": "^[a-z]{3}_[0-9A-HJKMNP-TV-Z]{26}$"}),
            ),
        )
    )
    api.add(
        Operation(
            method="GET",
            path="/v1/admin/events/verify",
            operation_id="verify_events",
            summary="Verify the event log's hash chain",
            handler=verify_events,
            tag="events",
            auth=Token(READ_ROLES),
            response_schema=VERIFICATION_SCHEMA,
            description="Recomputes every event's hash and link; names the first event that does not match.",
        )
    )
    api.add(
        Operation(
            method="GET",
            path="/v1/admin/tenant",
            operation_id="get_tenant",
            summary="Get the caller's tenant",
            handler=get_tenant,
            tag="tenant",
            auth=Token(READ_ROLES),
            response_schema={
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "object": {"const": "tenant"},
                    "name": {"type": "string"},
                    "created_at": TIME_SCHEMA,
                },
                "required": ["id", "object", "name", "created_at"],
                "additionalProperties": False,
            },
        )
    )
