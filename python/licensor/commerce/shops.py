"""The built-in order sources: Stripe, Paddle Billing, Shopify, FastSpring and Standard Webhooks.

A plugin like any other (it imports only licensor's public API), registered by every gateway. Each reads its
shop's events as :class:`licensor.orders.OrderEvent` values whose ``key`` names the business event, so that the
same purchase, period or change arriving under several event types or ids happens once: Stripe's
``checkout.session.completed`` and the first ``invoice.paid`` of its subscription are one purchase, and every
delivery of one period's ``invoice.paid`` / ``invoice.payment_succeeded`` one renewal. ``docs/commerce.md`` lists
the event types each source reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from licensor import MalformedRequestError, ValidationError, hookimpl
from licensor.model import checked_time, parse_time
from licensor.orders import (
    OrderEvent,
    OrderEventType,
    OrderItem,
    OrderPayloadError,
    OrderSource,
    standard_webhooks_key,
    verify_fastspring,
    verify_paddle,
    verify_shopify,
    verify_standard_webhooks,
    verify_stripe,
)
from licensor.schema import read_json

MAX_EVENTS = 100
"""The most events one delivery (a FastSpring batch) may hold."""
T = OrderEventType


# --- reading a payload ---------------------------------------------------------------------------------
def _document(body: bytes) -> dict[str, Any]:
    try:
        value = read_json(body)
    except (MalformedRequestError, ValidationError) as error:
        raise OrderPayloadError(f"the delivery is not readable JSON: {error.message}") from None
    if not isinstance(value, dict):
        raise OrderPayloadError("the delivery is not a JSON object")
    return value


def _object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise OrderPayloadError(f"{name} is not an object")
    return value


def _text(value: Any, name: str) -> str:
    """A required id or type: a string, or an integer (Shopify's ids) as its decimal text."""
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise OrderPayloadError(f"{name} is missing")
    text = str(value)
    if len(text) > 200 or any(ord(c) < 0x21 or ord(c) > 0x7E for c in text):
        raise OrderPayloadError(f"{name} is not an id of printable ASCII, at most 200 characters")
    return text


def _optional(value: Any, name: str) -> str | None:
    return None if value is None or value == "" else _text(value, name)


def _seconds(value: Any, name: str, *, unit: int = 1) -> int:
    """µs of a time given as an integer count of ``1 / unit`` seconds (between 1970 and 9999)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < (1 << 50):
        raise OrderPayloadError(f"{name} is not a time")
    try:
        return checked_time(value * 1_000_000 // unit, name)
    except ValidationError:
        raise OrderPayloadError(f"{name} is not a time between 1970 and 9999") from None


def _rfc3339(value: Any, name: str) -> int:
    if not isinstance(value, str):
        raise OrderPayloadError(f"{name} is not a time")
    try:
        return parse_time(value, name)
    except ValidationError:
        raise OrderPayloadError(f"{name} is not a time") from None


def _mapping(value: Any) -> dict[str, Any]:
    """An optional object of the payload (absent or of another type: empty)."""
    return value if isinstance(value, dict) else {}


def _email(value: Any) -> str | None:
    if isinstance(value, str) and 3 <= len(value) <= 254 and "@" in value and not any(c.isspace() for c in value):
        return value
    return None


def _name(*parts: Any) -> str | None:
    name = " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip())[:200]
    return name or None


def _refs(*values: Any) -> tuple[str, ...]:
    """The ids given (strings or integers), without the missing ones, each once."""
    found = [str(v) for v in values if isinstance(v, str | int) and not isinstance(v, bool) and v != ""]
    return tuple(dict.fromkeys(found))


def _quantity(value: Any) -> int:
    """A line's quantity: at least 1 (licensor caps the licenses of one order itself)."""
    return min(value, 1000) if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else 1


def _item_id(value: Any) -> str | None:
    """An item's id as the vendor maps it: any text of up to 200 characters without control characters (a SKU
    such as "T-Shirt Größe M"); anything else is no item (an unmappable line never refuses the order)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not 0 < len(value) <= 200 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return None
    return value


def _items(lines: Iterable[tuple[Any, ...]]) -> tuple[OrderItem, ...]:
    """Items of (id, quantity) or (id, quantity, references) lines; lines without a usable id are left out."""
    found = []
    for line in lines:
        item = _item_id(line[0])
        if item is not None:
            found.append(OrderItem(item, _quantity(line[1]), tuple(line[2]) if len(line) > 2 else ()))
    return tuple(found)


def _item_key(items: Sequence[OrderItem]) -> str:
    return ",".join(sorted(item.item for item in items))


def _list(value: Any, name: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 500:
        raise OrderPayloadError(f"{name} is not a list")
    return value


def _unknown(event_id: str, provider_type: str, occurred_at: int) -> OrderEvent:
    return OrderEvent(T.UNKNOWN, f"unknown:{event_id}", event_id, provider_type, occurred_at)


# --- Stripe --------------------------------------------------------------------------------------------
def _stripe_price(line: dict[str, Any]) -> Any:
    """A line's price id, in the invoice line shapes of Stripe's API versions before and after 2025-03."""
    price = line.get("price")
    if isinstance(price, dict):
        return price.get("id")
    details = _mapping(_mapping(line.get("pricing")).get("price_details"))
    return details.get("price") or price


class Stripe(OrderSource):
    kind = "stripe"
    description = "Stripe: Stripe-Signature t=…,v1=… (HMAC-SHA256 over t.body), 300 s tolerance."

    def verify(self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float) -> None:
        verify_stripe(headers, body, secrets, now)

    def events(self, headers: Mapping[str, str], body: bytes) -> list[OrderEvent]:
        event = _document(body)
        event_id, kind = _text(event.get("id"), "id"), _text(event.get("type"), "type")
        occurred = _seconds(event.get("created"), "created")
        obj = _object(_object(event.get("data"), "data").get("object"), "data.object")
        subscription = obj.get("subscription")
        if subscription is None:  # invoices of API versions since 2025-03
            subscription = _mapping(_mapping(obj.get("parent")).get("subscription_details")).get("subscription")
        subscription = _optional(subscription, "subscription")
        if kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
            if obj.get("payment_status") not in ("paid", "no_payment_required"):
                return [_unknown(event_id, kind, occurred)]  # paid later: async_payment_succeeded follows
            lines = [_object(line, "a line item") for line in _list(_mapping(obj.get("line_items")).get("data"), "line_items")]
            items = _items((_stripe_price(line), line.get("quantity")) for line in lines)
            if not items:  # line items are not sent unless expanded: the vendor may name them in the metadata
                named = _mapping(obj.get("metadata")).get("licensor_items", "")
                items = _items((part.strip(), 1) for part in str(named).split(",") if part.strip())
            session = _text(obj.get("id"), "data.object.id")
            refs = _refs(subscription, session, obj.get("payment_intent"), obj.get("invoice"))
            if not items and subscription is not None:
                # The subscription's first invoice (invoice.paid) names its prices: that is the purchase. The session
                # only adds its ids to the subscription's licenses.
                return [OrderEvent(T.LINK, f"link:{session}", event_id, kind, occurred, refs)]
            customer = _mapping(obj.get("customer_details"))
            return [
                OrderEvent(
                    T.PURCHASE,
                    f"purchase:{subscription or session}",
                    event_id,
                    kind,
                    occurred,
                    refs,
                    items,
                    _email(customer.get("email")) or _email(obj.get("customer_email")),
                    _name(customer.get("name")),
                )
            ]
        if kind in ("invoice.paid", "invoice.payment_succeeded"):
            if subscription is None:
                return [_unknown(event_id, kind, occurred)]  # a one-off invoice: its checkout session is the purchase
            lines = [_object(line, "an invoice line") for line in _list(_mapping(obj.get("lines")).get("data"), "lines.data")]
            periods = [_object(line.get("period"), "a line's period") for line in lines if line.get("period") is not None]
            starts = [_seconds(p.get("start"), "period.start") for p in periods]
            ends = [_seconds(p.get("end"), "period.end") for p in periods]
            refs = _refs(subscription, obj.get("id"), obj.get("payment_intent"), obj.get("charge"))
            if obj.get("billing_reason") == "subscription_create":
                items = _items((_stripe_price(line), line.get("quantity")) for line in lines)
                email, name = _email(obj.get("customer_email")), _name(obj.get("customer_name"))
                end = max(ends) if ends else None
                return [
                    OrderEvent(T.PURCHASE, f"purchase:{subscription}", event_id, kind, occurred, refs, items, email, name, end)
                ]
            start = min(starts) if starts else occurred
            return [
                OrderEvent(
                    T.RENEWAL,
                    f"renewal:{subscription}:{start}",
                    event_id,
                    kind,
                    occurred,
                    refs,
                    period_end=max(ends) if ends else None,
                )
            ]
        if kind == "invoice.payment_failed":
            invoice = _text(obj.get("id"), "data.object.id")
            return [
                OrderEvent(T.PAYMENT_FAILED, f"payment_failed:{invoice}", event_id, kind, occurred, _refs(subscription, invoice))
            ]
        if kind == "customer.subscription.updated":
            sub = _text(obj.get("id"), "data.object.id")
            lines = [_object(line, "an item") for line in _list(_mapping(obj.get("items")).get("data"), "items.data")]
            items = _items((_stripe_price(line), line.get("quantity")) for line in lines)
            previous = _mapping(_mapping(event["data"]).get("previous_attributes")).get("items")
            if previous is None or not items:  # another change than the plan (a renewal, a status): nothing to do here
                return [_unknown(event_id, kind, occurred)]
            key = f"plan_change:{sub}:{_item_key(items)}:{occurred}"
            return [OrderEvent(T.PLAN_CHANGE, key, event_id, kind, occurred, (sub,), items)]
        if kind == "customer.subscription.deleted":
            sub = _text(obj.get("id"), "data.object.id")
            return [OrderEvent(T.CANCELLATION, f"cancellation:{sub}", event_id, kind, occurred, (sub,))]
        if kind == "charge.refunded":
            if not obj.get("refunded"):
                return [_unknown(event_id, kind, occurred)]  # a partial refund leaves the license as it is
            charge = _text(obj.get("id"), "data.object.id")
            refs = _refs(obj.get("payment_intent"), obj.get("invoice"), charge)
            return [OrderEvent(T.REFUND, f"refund:{charge}", event_id, kind, occurred, refs)]
        if kind == "charge.dispute.created":
            dispute = _text(obj.get("id"), "data.object.id")
            refs = _refs(obj.get("payment_intent"), obj.get("charge"))
            return [OrderEvent(T.DISPUTE, f"dispute:{dispute}", event_id, kind, occurred, refs)]
        return [_unknown(event_id, kind, occurred)]


# --- Paddle Billing ------------------------------------------------------------------------------------
def _paddle_items(data: dict[str, Any]) -> tuple[OrderItem, ...]:
    lines = [_object(line, "an item") for line in _list(data.get("items"), "data.items")]
    return _items((_mapping(line.get("price")).get("id"), line.get("quantity")) for line in lines)


class Paddle(OrderSource):
    kind = "paddle"
    description = "Paddle Billing: Paddle-Signature ts=…;h1=… (HMAC-SHA256 over ts:body), 300 s tolerance."

    def verify(self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float) -> None:
        verify_paddle(headers, body, secrets, now)

    def events(self, headers: Mapping[str, str], body: bytes) -> list[OrderEvent]:
        event = _document(body)
        event_id, kind = _text(event.get("event_id"), "event_id"), _text(event.get("event_type"), "event_type")
        occurred = _rfc3339(event.get("occurred_at"), "occurred_at")
        data = _object(event.get("data"), "data")
        if kind == "transaction.completed":
            txn = _text(data.get("id"), "data.id")
            subscription = _optional(data.get("subscription_id"), "data.subscription_id")
            period = data.get("billing_period")
            starts = _rfc3339(period.get("starts_at"), "billing_period.starts_at") if isinstance(period, dict) else None
            ends = _rfc3339(period.get("ends_at"), "billing_period.ends_at") if isinstance(period, dict) else None
            # A renewal without a period is named by its transaction (the same in every delivery of it).
            refs = _refs(subscription, txn)
            origin = data.get("origin")
            if origin == "subscription_recurring" and subscription is not None:
                return [
                    OrderEvent(
                        T.RENEWAL, f"renewal:{subscription}:{starts or txn}", event_id, kind, occurred, refs, period_end=ends
                    )
                ]
            if origin not in ("web", "api", None):  # a proration of a plan change: subscription.updated carries the change
                return [_unknown(event_id, kind, occurred)]
            customer = _mapping(data.get("customer"))
            custom = _mapping(data.get("custom_data"))
            email = _email(customer.get("email")) or _email(custom.get("email"))
            name = _name(customer.get("name")) or _name(custom.get("name"))
            key = f"purchase:{subscription or txn}"
            return [OrderEvent(T.PURCHASE, key, event_id, kind, occurred, refs, _paddle_items(data), email, name, ends)]
        if kind == "transaction.payment_failed":
            txn = _text(data.get("id"), "data.id")
            refs = _refs(data.get("subscription_id"), txn)
            return [OrderEvent(T.PAYMENT_FAILED, f"payment_failed:{txn}", event_id, kind, occurred, refs)]
        if kind == "subscription.updated":
            sub = _text(data.get("id"), "data.id")
            items = _paddle_items(data)
            if not items:
                return [_unknown(event_id, kind, occurred)]
            key = f"plan_change:{sub}:{_item_key(items)}:{occurred}"
            return [OrderEvent(T.PLAN_CHANGE, key, event_id, kind, occurred, (sub,), items)]
        if kind == "subscription.canceled":
            sub = _text(data.get("id"), "data.id")
            return [OrderEvent(T.CANCELLATION, f"cancellation:{sub}", event_id, kind, occurred, (sub,))]
        if kind in ("adjustment.created", "adjustment.updated") and data.get("status") == "approved":
            adjustment = _text(data.get("id"), "data.id")
            refs = _refs(data.get("transaction_id"), data.get("subscription_id"))
            if data.get("action") == "refund" and data.get("type", "full") == "full":
                return [OrderEvent(T.REFUND, f"refund:{adjustment}", event_id, kind, occurred, refs)]
            if data.get("action") == "chargeback":
                return [OrderEvent(T.DISPUTE, f"dispute:{adjustment}", event_id, kind, occurred, refs)]
        return [_unknown(event_id, kind, occurred)]


# --- Shopify -------------------------------------------------------------------------------------------
class Shopify(OrderSource):
    kind = "shopify"
    description = "Shopify: X-Shopify-Hmac-Sha256 (base64 HMAC-SHA256 of the body); the topic in X-Shopify-Topic."

    def verify(self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float) -> None:
        verify_shopify(headers, body, secrets)

    def events(self, headers: Mapping[str, str], body: bytes) -> list[OrderEvent]:
        document = _document(body)
        topic = _text(headers.get("X-Shopify-Topic"), "the X-Shopify-Topic header")
        event_id = _text(
            headers.get("X-Shopify-Webhook-Id") or headers.get("X-Shopify-Event-Id"), "the X-Shopify-Webhook-Id header"
        )
        stamp = headers.get("X-Shopify-Triggered-At") or document.get("updated_at") or document.get("created_at")
        occurred = _rfc3339(stamp, "the event's time")
        if topic == "orders/paid":
            order = _text(document.get("id"), "id")
            if str(document.get("source_name") or "").startswith("subscription_contract"):
                return [_unknown(event_id, topic, occurred)]  # a renewal's order: its billing attempt renews
            lines = [_object(line, "a line item") for line in _list(document.get("line_items"), "line_items")]
            items = _items(
                (
                    line.get("sku") or (f"variant:{line['variant_id']}" if line.get("variant_id") else None),
                    line.get("quantity"),
                    _refs(f"line:{line['id']}" if line.get("id") else None),
                )
                for line in lines
            )
            customer = _mapping(document.get("customer"))
            email = _email(document.get("email")) or _email(customer.get("email"))
            name = _name(customer.get("first_name"), customer.get("last_name"))
            return [OrderEvent(T.PURCHASE, f"purchase:{order}", event_id, topic, occurred, (order,), items, email, name)]
        if topic == "subscription_contracts/create":
            contract = _text(document.get("id"), "id")
            origin = _text(document.get("origin_order_id"), "origin_order_id")
            return [OrderEvent(T.LINK, f"link:{contract}", event_id, topic, occurred, (origin,), links=(contract,))]
        if topic == "subscription_billing_attempts/success":
            contract = _text(document.get("subscription_contract_id"), "subscription_contract_id")
            order = _text(document.get("order_id"), "order_id")
            return [OrderEvent(T.RENEWAL, f"renewal:{contract}:{order}", event_id, topic, occurred, (contract,), links=(order,))]
        if topic == "subscription_billing_attempts/failure":
            attempt = _text(document.get("id"), "id")
            contract = _text(document.get("subscription_contract_id"), "subscription_contract_id")
            return [OrderEvent(T.PAYMENT_FAILED, f"payment_failed:{attempt}", event_id, topic, occurred, (contract,))]
        if topic == "subscription_contracts/update" and str(document.get("status", "")).lower() == "cancelled":
            contract = _text(document.get("id"), "id")
            return [OrderEvent(T.CANCELLATION, f"cancellation:{contract}", event_id, topic, occurred, (contract,))]
        if topic == "orders/cancelled":
            order = _text(document.get("id"), "id")
            return [OrderEvent(T.CANCELLATION, f"cancellation:{order}", event_id, topic, occurred, (order,))]
        if topic == "refunds/create":
            refund = _text(document.get("id"), "id")
            # Only the lines refunded lose their licenses (a shipping-only refund refunds none).
            lines = [_mapping(line) for line in _list(document.get("refund_line_items"), "refund_line_items")]
            refs = _refs(*(f"line:{line['line_item_id']}" for line in lines if line.get("line_item_id")))
            if not refs:
                return [_unknown(event_id, topic, occurred)]
            return [OrderEvent(T.REFUND, f"refund:{refund}", event_id, topic, occurred, refs)]
        return [_unknown(event_id, topic, occurred)]


# --- FastSpring ----------------------------------------------------------------------------------------
def _fastspring_id(value: Any, name: str) -> str | None:
    """An id FastSpring gives either bare or as the ``id`` of an expanded object."""
    return _optional(value.get("id") if isinstance(value, dict) else value, name)


def _fastspring_product(value: Any) -> Any:
    """A product FastSpring gives by its path, or expanded as an object."""
    return _mapping(value).get("product") if isinstance(value, dict) else value


class FastSpring(OrderSource):
    kind = "fastspring"
    description = "FastSpring: X-FS-Signature (base64 HMAC-SHA256 of the body); every event of a batch is handled."

    def verify(self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float) -> None:
        verify_fastspring(headers, body, secrets)

    def events(self, headers: Mapping[str, str], body: bytes) -> list[OrderEvent]:
        batch = _list(_document(body).get("events"), "events")
        if not batch or len(batch) > MAX_EVENTS:
            raise OrderPayloadError(f"a delivery holds 1 to {MAX_EVENTS} events")
        return [self._event(_object(event, "an event")) for event in batch]

    def _event(self, event: dict[str, Any]) -> OrderEvent:
        event_id, kind = _text(event.get("id"), "id"), _text(event.get("type"), "type")
        occurred = _seconds(event.get("created"), "created", unit=1000)
        data = _object(event.get("data"), "data")
        if kind == "order.completed":
            order = _text(data.get("id"), "data.id")
            lines = [_object(line, "an item") for line in _list(data.get("items"), "data.items")]
            items = _items(
                (
                    line.get("sku") or _fastspring_product(line.get("product")),
                    line.get("quantity"),
                    # Each line's licenses: its own subscription, and the line (a return names it).
                    _refs(
                        _fastspring_id(line.get("subscription"), "an item's subscription"),
                        f"item:{order}:{_fastspring_product(line.get('product'))}",
                    ),
                )
                for line in lines
            )
            customer = _mapping(data.get("customer"))
            refs = _refs(order, data.get("reference"))
            name = _name(customer.get("first"), customer.get("last"))
            return OrderEvent(
                T.PURCHASE, f"purchase:{order}", event_id, kind, occurred, refs, items, _email(customer.get("email")), name
            )
        if kind == "return.created":
            original = _fastspring_id(data.get("original"), "data.original")
            refund = _text(data.get("return") or data.get("id"), "data.return")
            returned = [_mapping(line) for line in _list(data.get("items"), "data.items")]
            # The lines returned lose their licenses; a return that names no line is of the whole order.
            refs = _refs(
                *(f"item:{original}:{_fastspring_product(line.get('product'))}" for line in returned if line.get("product"))
            )
            return OrderEvent(T.REFUND, f"refund:{refund}", event_id, kind, occurred, refs or _refs(original))
        subscription = _fastspring_id(data.get("subscription") or data.get("id"), "data.subscription")
        if subscription is None:
            return _unknown(event_id, kind, occurred)
        if kind == "subscription.charge.completed":
            order = _fastspring_id(data.get("order"), "data.order") or event_id
            details = _mapping(data.get("subscription"))
            next_charge = details.get("nextChargeDate") or details.get("next")
            end = _seconds(next_charge, "nextChargeDate", unit=1000) if next_charge is not None else None
            return OrderEvent(
                T.RENEWAL,
                f"renewal:{subscription}:{order}",
                event_id,
                kind,
                occurred,
                (subscription,),
                period_end=end,
                links=(order,),
            )
        if kind == "subscription.charge.failed":
            order = _fastspring_id(data.get("order"), "data.order") or event_id
            return OrderEvent(
                T.PAYMENT_FAILED, f"payment_failed:{subscription}:{order}", event_id, kind, occurred, (subscription,)
            )
        if kind == "subscription.deactivated":  # the end; subscription.canceled only schedules it (and can be undone)
            return OrderEvent(T.CANCELLATION, f"cancellation:{subscription}", event_id, kind, occurred, (subscription,))
        if kind == "subscription.updated" and data.get("product"):
            items = _items([(data.get("sku") or _fastspring_product(data.get("product")), data.get("quantity"))])
            return OrderEvent(
                T.PLAN_CHANGE,
                f"plan_change:{subscription}:{_item_key(items)}:{occurred}",
                event_id,
                kind,
                occurred,
                (subscription,),
                items,
            )
        return _unknown(event_id, kind, occurred)


# --- Standard Webhooks (any shop, or the vendor's own system) -----------------------------------------
STANDARD_TYPES = {
    "order.purchased": T.PURCHASE,
    "subscription.renewed": T.RENEWAL,
    "subscription.changed": T.PLAN_CHANGE,
    "payment.failed": T.PAYMENT_FAILED,
    "subscription.canceled": T.CANCELLATION,
    "order.refunded": T.REFUND,
    "order.disputed": T.DISPUTE,
}
"""The event types of the generic source (``docs/commerce.md`` shows their ``data``)."""


class StandardWebhooks(OrderSource):
    kind = "standard-webhooks"
    description = "Standard Webhooks 1.0 (webhook-id, webhook-timestamp, webhook-signature v1), licensor's own event types."

    def verify(self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float) -> None:
        verify_standard_webhooks(headers, body, secrets, now)

    def check_secret(self, secret: str) -> None:
        standard_webhooks_key(secret)

    def events(self, headers: Mapping[str, str], body: bytes) -> list[OrderEvent]:
        document = _document(body)
        event_id = _text(headers.get("webhook-id"), "the webhook-id header")
        kind = _text(document.get("type"), "type")
        occurred = _rfc3339(document.get("timestamp"), "timestamp")
        data = _object(document.get("data"), "data")
        order = _optional(data.get("order"), "data.order")
        subscription = _optional(data.get("subscription"), "data.subscription")
        refs = _refs(subscription, order)
        if kind not in STANDARD_TYPES or not refs:
            return [_unknown(event_id, kind, occurred)]
        event_type = STANDARD_TYPES[kind]
        period = _mapping(data.get("period"))
        start = _rfc3339(period["start"], "data.period.start") if "start" in period else None
        end = _rfc3339(period["end"], "data.period.end") if "end" in period else None
        lines = _list(data.get("items"), "data.items")
        items = _items((line.get("item"), line.get("quantity")) if isinstance(line, dict) else (line, 1) for line in lines)
        customer = _mapping(data.get("customer"))
        email, name = _email(customer.get("email")), _name(customer.get("name"))
        keys = {
            T.PURCHASE: f"purchase:{subscription or order}",
            T.RENEWAL: f"renewal:{subscription or order}:{start if start is not None else occurred}",
            T.PLAN_CHANGE: f"plan_change:{subscription or order}:{_item_key(items)}:{occurred}",
            T.PAYMENT_FAILED: f"payment_failed:{subscription or order}:{start if start is not None else occurred}",
            T.CANCELLATION: f"cancellation:{subscription or order}",
            T.REFUND: f"refund:{order or subscription}",
            T.DISPUTE: f"dispute:{order or subscription}",
        }
        return [OrderEvent(event_type, keys[event_type], event_id, kind, occurred, refs, items, email, name, end)]


@hookimpl
def licensor_register_order_sources(register: Any) -> None:
    for source in (Stripe(), Paddle(), Shopify(), FastSpring(), StandardWebhooks()):
        register(source)
