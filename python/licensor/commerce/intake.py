"""The order intake: ``POST /v1/orders/{source}`` turns a shop's signed webhook into licenses, exactly once.

The path names an order source the vendor configured (``/v1/admin/order-sources``): its kind (a registered
:class:`licensor.orders.OrderSource`) checks the signature on the raw bytes, and reads the delivery as business
events. Each event is applied in a transaction of its own that first claims its business key (a unique row of
``order_events``): a repeat, whatever its provider id and however concurrent, finds the claim and changes
nothing. An event older than the newest one applied to the same aspect of a license (its term, state or plan)
is recorded and ignored. Every delivery leaves events in the log, a refused signature included.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from licensor.central.admin import DAY_US, change_license, issue_license, policy_terms, state_change
from licensor.errors import ConflictError, LicensorError, NotFoundError, StoreUnavailableError
from licensor.gateway import keys as app_keys
from licensor.mail import FileMailSender, Mail
from licensor.model import (
    CUSTOMER,
    LICENSE,
    ORDER_EVENT,
    ORDER_LINK,
    ORDER_MAPPING,
    ORDER_SOURCE,
    POLICY,
    PRODUCT,
    canonical_json,
    format_time,
    id_pattern,
    new_id,
    now_us,
)
from licensor.operations import ByBody, Call, Operation, Principal, Reply
from licensor.orders import OrderEvent, OrderEventType, OrderPayloadError, WebhookSignatureError
from licensor.store import Row, Transaction

log = logging.getLogger("licensor.commerce")
T = OrderEventType
DEFER_FOR_US = 3 * DAY_US
"""A renewal or link naming no order seen yet is answered 409 (to be delivered again) while it is younger than
this; afterwards, and for every other type at once, it is recorded and ignored (a shop must not retry for days
an event of an order that never became a license)."""
DEFAULT_EFFECTS = {"payment_failed": "suspend", "cancellation": "revoke", "refund": "revoke", "dispute": "suspend"}
"""What payment failures, cancellations, refunds and disputes do unless the order source says otherwise."""
MAX_LICENSES_PER_PURCHASE = 100
"""A purchase creates one license per unit of each mapped item, at most this many in all."""
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}$")

RECEIPT_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": id_pattern("oev")},
        "type": {"enum": [t.value for t in OrderEventType]},
        "provider_event_id": {"type": "string"},
        "outcome": {"type": "string"},
        "detail": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "license_ids": {"type": "array", "items": {"type": "string"}},
        "duplicate": {"type": "boolean"},
    },
    "required": ["id", "type", "provider_event_id", "outcome", "detail", "license_ids", "duplicate"],
    "additionalProperties": False,
}


class OrderNotYetKnownError(ConflictError):
    """An event of an order this source has not delivered yet (a renewal before its purchase): answered 409 so
    the shop delivers it again later, when the purchase has arrived."""

    def __init__(self) -> None:
        super().__init__(
            "no order or subscription this event names has been received from this source yet; deliver it again later",
            code="ORDER_NOT_YET_KNOWN",
        )


# --- authentication: the path names the source, the shop's signature proves the request -----------------
async def authenticate_source(call: Call) -> Principal:
    source_id = call.path["source"]
    row = await call.store.get_order_source(source_id)
    if row is None:
        raise NotFoundError("no such order source", code="ORDER_SOURCE_NOT_FOUND")
    app = call.request.app
    kind = app[app_keys.ORDER_SOURCES].get(row["kind"])
    if kind is None:  # the plugin is not installed (any more): the shop retries while the operator fixes it
        raise StoreUnavailableError(f"this gateway has no order source of kind {row['kind']!r} installed")
    actor = f"order_source:{source_id}"
    secrets = app[app_keys.SECRETS].open_integration_secrets(row["tenant_id"], "order_source", row["secrets"])
    try:
        try:
            kind.verify(call.request.headers, call.raw_body, secrets, call.services.now_us() / 1_000_000)
        except WebhookSignatureError:
            raise
        except Exception:  # a source's check that trips over a header: a malformed signature, not a 500
            log.warning("order source %s: its signature check failed on a delivery", row["kind"], exc_info=True)
            raise WebhookSignatureError("the signature headers cannot be read", code="SIGNATURE_MALFORMED") from None
    except WebhookSignatureError as error:
        await _record_refusal(call, row, actor, error)
        raise
    call.context["order_source"] = row
    return Principal(row["tenant_id"], "", "order_source", None, actor=actor)


async def _record_refusal(call: Call, source: Row, actor: str, error: LicensorError, kind: str = "order.refused") -> None:
    data = {"code": error.code, "message": error.message, "body_bytes": len(call.raw_body)}
    async with call.store.transaction(source["tenant_id"]) as tx:
        await tx.append_event(kind, "order_source", source["id"], actor, data)


# --- the route -----------------------------------------------------------------------------------------
async def receive_order(call: Call) -> Reply:
    """Apply every business event of the delivery, each once; answer what became of each."""
    source = call.context["order_source"]
    kind = call.request.app[app_keys.ORDER_SOURCES][source["kind"]]
    try:
        try:
            events = kind.events(call.request.headers, call.raw_body)
        except OrderPayloadError:
            raise
        except Exception:  # a source's reader that trips over a payload: unreadable, not a 500
            log.warning("order source %s: its reader failed on a delivery", source["kind"], exc_info=True)
            raise OrderPayloadError("the delivery could not be read as this source's format") from None
    except OrderPayloadError as error:
        await _record_refusal(call, source, call.actor, error)
        raise
    receipts, deferred = [], None
    for event in events:  # each in its own transaction: one deferred event does not hold the others of a batch
        effects = None
        try:
            async with call.store.transaction(call.tenant_id) as tx:
                effects = OrderEffects(call, tx, source, event)
                receipts.append(await effects.apply())
        except OrderNotYetKnownError as error:
            await _record_refusal(call, source, call.actor, error, "order.deferred")
            deferred = error
            continue
        if effects.mail is not None:
            await _send_after_commit(call, effects.mail)
    if deferred is not None:
        raise deferred
    return Reply(200, {"object": "order_receipt", "source_id": source["id"], "events": receipts})


async def _send_after_commit(call: Call, mail: Mail) -> None:
    """Mail the keys of licenses that exist now (committed). A sender that fails does not lose them: the message
    is written to ``{data_dir}/mail-undelivered`` for the operator to send on (keys are stored nowhere else)."""
    app = call.request.app
    try:
        await app[app_keys.MAIL].send(mail)
    except Exception:
        log.exception("the mail sender failed; the message is kept in mail-undelivered")
        await FileMailSender(os.path.join(app[app_keys.SETTINGS].data_dir, "mail-undelivered")).send(mail)


def order_operation() -> Operation:
    return Operation(
        method="POST",
        path="/v1/orders/{source}",
        operation_id="receive_order",
        summary="Receive a shop's order webhook",
        handler=receive_order,
        tag="orders",
        auth=ByBody(authenticate_source, carried_in="header"),
        response_schema={
            "type": "object",
            "properties": {
                "object": {"const": "order_receipt"},
                "source_id": {"type": "string"},
                "events": {"type": "array", "items": RECEIPT_SCHEMA},
            },
            "required": ["object", "source_id", "events"],
            "additionalProperties": False,
        },
        request_schema={"type": "object", "description": "The shop's event, as the shop sends it."},
        raw_body=True,
        path_patterns={"source": id_pattern("osr")},
        max_body_bytes=1 << 20,
        errors=(400, 401, 404, 409, 503),
        description=(
            "The webhook URL of an order source (`/v1/admin/order-sources`): give it to the shop. The signature is "
            "checked on the raw body (401 SIGNATURE_MISSING, _MALFORMED, _EXPIRED, _MISMATCH; recorded as "
            "`order.refused`). Each business event is applied once, however often and under whatever ids it is "
            "delivered; an unknown event type is recorded and answered 200. 409 ORDER_NOT_YET_KNOWN: an event of an "
            "order not received yet, to be delivered again. Reference: docs/commerce.md."
        ),
    )


# --- effects -------------------------------------------------------------------------------------------
@dataclass
class OrderEffects:
    """One business event applied in one transaction."""

    call: Call
    tx: Transaction
    source: Row
    event: OrderEvent
    mail: Mail | None = field(default=None)
    """The license keys to mail once the transaction committed."""

    @property
    def app(self) -> web.Application:
        return self.call.request.app

    @property
    def actor(self) -> str:
        return self.call.actor

    async def apply(self) -> dict[str, Any]:
        event, now = self.event, now_us()
        record = {
            "id": new_id("oev"),
            "source_id": self.source["id"],
            "business_key": event.key,
            "type": event.type.value,
            "provider_event_id": event.provider_event_id,
            "provider_type": event.provider_type,
            "outcome": "received",
            "detail": None,
            "license_ids": "[]",
            "occurred_at": event.occurred_at,
            "created_at": now,
            "updated_at": now,
        }
        if await self.tx.insert_new(ORDER_EVENT, record) is None:  # this business event was received before
            first = await self.tx.find(ORDER_EVENT, source_id=self.source["id"], business_key=event.key)
            assert first is not None
            # A repeat may name ids the first delivery did not (the first invoice's payment after its session).
            first_licenses = ORDER_EVENT.field("license_ids").column_to_api(first["license_ids"])
            await self._link(first_licenses, self._all_references())
            repeat = {"provider_event_id": event.provider_event_id, "provider_type": event.provider_type}
            await self.tx.append_event("order.repeated", "order_event", first["id"], self.actor, repeat)
            return _receipt(first, duplicate=True)
        outcome, detail, license_ids = await self._effect()
        row = await self.tx.update(
            ORDER_EVENT, record["id"], {"outcome": outcome, "detail": detail, "license_ids": canonical_json(license_ids)}
        )
        assert row is not None
        shown = ORDER_EVENT.to_api(row)
        await self.tx.append_event(
            "order.applied" if outcome == "applied" else "order.ignored", "order_event", row["id"], self.actor, shown
        )
        return _receipt(row, duplicate=False)

    async def _effect(self) -> tuple[str, str | None, list[str]]:
        kind = self.event.type
        if kind is T.UNKNOWN:
            return "ignored", f"{self.event.provider_type} is not an event this source acts on", []
        if kind is T.PURCHASE:
            return await self._purchase()
        licenses, seen = await self._licenses()
        if not seen:
            if kind in (T.RENEWAL, T.LINK) and self.call.services.now_us() - self.event.occurred_at < DEFER_FOR_US:
                raise OrderNotYetKnownError()  # its purchase may still be on its way
            return "ignored", "no order or subscription this event names was received from this source", []
        if not licenses:
            return "ignored", "the order licensed nothing (no item was mapped to a policy)", []
        await self._link([row["id"] for row in licenses], (*self.event.references, *self.event.links))
        if kind is T.LINK:
            return "applied", None, [row["id"] for row in licenses]
        if kind is T.RENEWAL:
            handle = self._renew
        elif kind is T.PLAN_CHANGE:
            handle = await self._plan_change_handler()
        else:
            handle = self._state_handler()
        applied, notes = [], []
        for row in licenses:
            note = await handle(row)
            if note is None:
                applied.append(row["id"])
            else:
                notes.append(f"{row['id']}: {note}")
        detail = "; ".join(notes) or None
        return ("applied" if applied else "ignored"), detail, [row["id"] for row in licenses]

    # --- finding and linking licenses ----------------------------------------------------------------
    def _all_references(self) -> tuple[str, ...]:
        event = self.event
        return tuple(dict.fromkeys((*event.references, *event.links, *(r for item in event.items for r in item.references))))

    async def _licenses(self) -> tuple[list[Row], bool]:
        """The licenses the event's references name, locked, in id order (so concurrent events lock them in one
        order), and whether any reference was seen before (an order that licensed nothing is seen)."""
        seen, ids = False, set()
        for reference in self.event.references:
            for link in await self.tx.select(ORDER_LINK, limit=500, source_id=self.source["id"], reference=reference):
                seen = True
                if link["license_id"]:
                    ids.add(link["license_id"])
        rows = [await self.tx.get(LICENSE, license_id, for_update=True) for license_id in sorted(ids)]
        return [row for row in rows if row is not None], seen

    async def _link(self, license_ids: list[str], references: tuple[str, ...]) -> None:
        now = now_us()
        for license_id in license_ids or [""]:
            for reference in references:
                row = {"id": new_id("olk"), "source_id": self.source["id"], "reference": reference, "license_id": license_id}
                await self.tx.insert_new(ORDER_LINK, {**row, "created_at": now, "updated_at": now})

    # --- purchase ------------------------------------------------------------------------------------
    async def _purchase(self) -> tuple[str, str | None, list[str]]:
        event, tx = self.event, self.tx
        mapped: list[tuple[Row, int, tuple[str, ...]]] = []
        for item in event.items:
            mapping = await tx.find(ORDER_MAPPING, source_id=self.source["id"], item=item.item)
            if mapping is not None:
                mapped.append((mapping, item.quantity, item.references))
        if not mapped:
            await self._link([], self._all_references())
            items = ", ".join(item.item for item in event.items) or "none"
            return "ignored", f"no item of the order is mapped to a policy (items: {items})", []
        customer_id = await self._customer()
        marks = {aspect: event.occurred_at for aspect in ("state", "plan", "paid")}
        created: list[tuple[Row, str]] = []
        for mapping, quantity, item_references in mapped:
            policy = await tx.get(POLICY, mapping["policy_id"])
            assert policy is not None  # a mapping's policy cannot be deleted while it is mapped
            for _ in range(min(quantity, MAX_LICENSES_PER_PURCHASE - len(created))):
                starts_at = now_us()
                expires_at, maintenance_until = policy_terms(policy, starts_at)
                if event.period_end is not None and event.period_end > starts_at:  # the paid period decides
                    expires_at = event.period_end if expires_at is not None else None
                    if maintenance_until is not None:
                        maintenance_until = max(maintenance_until, event.period_end)
                row, key = await issue_license(
                    tx,
                    self.app[app_keys.SECRETS],
                    policy,
                    starts_at=starts_at,
                    expires_at=expires_at,
                    maintenance_until=maintenance_until,
                    customer_id=customer_id,
                    order_ref=event.references[0] if event.references else None,
                    order_marks=marks,
                )
                await tx.append_event("license.created", "license", row["id"], self.actor, LICENSE.to_api(row))
                await self._link([row["id"]], item_references)
                created.append((row, key))
        license_ids = [row["id"] for row, _ in created]
        await self._link(license_ids, event.references)
        detail = None
        if event.customer_email and _EMAIL.fullmatch(event.customer_email):
            await self._mail_keys(event.customer_email, created)
        else:
            detail = "the order names no customer e-mail: the license keys were not sent to anyone"
        return "applied", detail, license_ids

    async def _customer(self) -> str | None:
        email = self.event.customer_email
        if not email or not _EMAIL.fullmatch(email):
            return None
        now = now_us()
        # insert_new: two orders of one new customer at once (PostgreSQL) make one customer, not a conflict.
        row = await self.tx.insert_new(
            CUSTOMER,
            {
                "id": new_id("cus"),
                "email": email,
                "name": self.event.customer_name or email,
                "external_ref": None,
                "password_hash": None,
                "created_at": now,
                "updated_at": now,
            },
        )
        if row is None:
            existing = await self.tx.find(CUSTOMER, email=email)
            assert existing is not None
            return str(existing["id"])
        await self.tx.append_event("customer.created", "customer", row["id"], self.actor, CUSTOMER.to_api(row))
        return str(row["id"])

    async def _mail_keys(self, email: str, created: list[tuple[Row, str]]) -> None:
        lines = []
        for row, key in created:
            product = await self.tx.get(PRODUCT, row["product_id"])
            name = product["name"] if product else row["product_id"]
            expires = format_time(row["expires_at"]) or "never"
            lines.append(f"{name}: {key} (expires: {expires})")
        text = (
            "Thank you for your order. Your license keys:\n\n" + "\n".join(lines) + "\n\nKeep them safe: each one is "
            "shown only in this message. Activate with: licensor-activate activate <key>\n"
        )
        self.mail = Mail(email, "Your license keys", text)

    # --- renewal -------------------------------------------------------------------------------------
    async def _renew(self, current: Row) -> str | None:
        event, now = self.event, now_us()
        if current["state"] == "revoked":
            return "revoked: not renewed"
        # No stale check for the term: a renewal to its period's end only ever extends (max), and one without a
        # period adds a duration once per business key: the order they arrive in changes nothing.
        marks = _marks(current)
        policy = await self.tx.get(POLICY, current["policy_id"])
        assert policy is not None
        days = POLICY.field("duration").column_to_api(policy["duration"]).get("days")
        changes: Row = {}
        if current["expires_at"] is not None:
            if event.period_end is not None:
                changes["expires_at"] = max(current["expires_at"], event.period_end)
            elif days:
                changes["expires_at"] = max(now, current["expires_at"]) + days * DAY_US
        if policy["maintenance_days"] is not None:
            end = event.period_end or max(now, current["maintenance_until"] or now) + policy["maintenance_days"] * DAY_US
            changes["maintenance_until"] = max(current["maintenance_until"] or 0, end)
        marks["paid"] = max(marks.get("paid", -1), event.occurred_at)
        change = "renewed"
        if current["state"] == "suspended" and marks.get("suspended_for") == T.PAYMENT_FAILED.value:
            if marks.get("state", -1) <= event.occurred_at:  # paid after the failure: the suspension ends
                changes.update(state_change(current, "reinstate"))
                marks["state"], change = event.occurred_at, "reinstated"
                marks.pop("suspended_for")
        changes["order_marks"] = canonical_json(marks)
        row = await change_license(self.tx, self.app[app_keys.BACKENDS], current, change, changes)
        await self.tx.append_event(f"license.{change}", "license", row["id"], self.actor, LICENSE.to_api(row))
        return None

    # --- plan change ---------------------------------------------------------------------------------
    async def _plan_change_handler(self) -> Any:
        policy = None
        for item in self.event.items:
            mapping = await self.tx.find(ORDER_MAPPING, source_id=self.source["id"], item=item.item)
            if mapping is not None:
                policy = await self.tx.get(POLICY, mapping["policy_id"])
                break

        async def change_plan(current: Row) -> str | None:
            marks = _marks(current)
            if policy is None:
                return "no item of the new plan is mapped to a policy"
            if marks.get("plan", -1) > self.event.occurred_at:
                return "stale: a later event set the plan"
            if policy["id"] == current["policy_id"]:
                return "already on this plan"
            old = await self.tx.get(POLICY, current["policy_id"])
            assert old is not None
            if (old["product_id"], old["backend"]) != (policy["product_id"], policy["backend"]):
                return "the new plan's policy is of another product or backend: change it by hand"
            marks["plan"] = self.event.occurred_at
            changes = {"policy_id": policy["id"], "order_marks": canonical_json(marks)}
            row = await self.tx.update(LICENSE, current["id"], changes)
            assert row is not None
            await self.tx.append_event("license.plan_changed", "license", row["id"], self.actor, LICENSE.to_api(row))
            return None

        return change_plan

    # --- payment failure, cancellation, refund, dispute ---------------------------------------------
    def _state_handler(self) -> Any:
        effects = {**DEFAULT_EFFECTS, **ORDER_SOURCE.field("effects").column_to_api(self.source["effects"])}
        action = effects[self.event.type.value]

        async def change_state(current: Row) -> str | None:
            marks = _marks(current)
            if action == "none":
                return f"the order source's effect of a {self.event.type.value} is none"
            if marks.get("state", -1) > self.event.occurred_at:
                return "stale: a later event set the state"
            if self.event.type is T.PAYMENT_FAILED and marks.get("paid", -1) > self.event.occurred_at:
                return "stale: a later payment arrived"
            target = "suspended" if action == "suspend" else "revoked"
            if current["state"] == target or current["state"] == "revoked":
                # Nothing to change but the reason: a dispute after a failed payment is not undone by a payment.
                marks["state"] = self.event.occurred_at
                if current["state"] == "suspended" and action == "suspend":
                    marks["suspended_for"] = self.event.type.value
                await self.tx.update(LICENSE, current["id"], {"order_marks": canonical_json(marks)})
                return f"already {current['state']}"
            changes = state_change(current, action)
            marks["state"] = self.event.occurred_at
            if action == "suspend":
                marks["suspended_for"] = self.event.type.value
            changes["order_marks"] = canonical_json(marks)
            row = await change_license(self.tx, self.app[app_keys.BACKENDS], current, target, changes)
            data = {**LICENSE.to_api(row), "reason": f"order: {self.event.provider_type}"}
            await self.tx.append_event(f"license.{target}", "license", row["id"], self.actor, data)
            return None

        return change_state


def _marks(license: Row) -> dict[str, Any]:
    return dict(LICENSE.field("order_marks").column_to_api(license["order_marks"]) or {})


def _receipt(row: Row, *, duplicate: bool) -> dict[str, Any]:
    shown = ORDER_EVENT.to_api(row)
    return {
        "id": shown["id"],
        "type": shown["type"],
        "provider_event_id": shown["provider_event_id"],
        "outcome": shown["outcome"],
        "detail": shown["detail"],
        "license_ids": shown["license_ids"],
        "duplicate": duplicate,
    }
