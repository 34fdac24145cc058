"""The shops, as their webhooks reach licensor: each builds a delivery (headers and raw body) the way the shop
documents it and signs it with its scheme, computed here independently of licensor's own checks.

Each shop offers the same business events for the tests to compare: a purchase of an item, one subscription
period's renewal, a payment failure, a cancellation, a refund and an event type licensor does not act on. A
renewal of one period can be delivered under as many event ids as a test wants (``event_id``): the business
event stays the same.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

DAY_S = 86_400


def _hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _b64(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_event_id(prefix: str = "evt") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


@dataclass(frozen=True)
class Delivery:
    headers: dict[str, str]
    body: bytes


@dataclass
class Shop:
    """A shop of one kind with its signing secret; subclasses build its events."""

    kind: str = ""
    secret: str = "shop-secret-0123456789"
    signs_time: bool = True
    renewal_has_period: bool = True
    now: float = field(default_factory=time.time)

    def sign(
        self, body: bytes, *, at: float | None = None, secret: str | None = None, event_id: str | None = None
    ) -> dict[str, str]:
        raise NotImplementedError

    def deliver(self, payload: Any, *, headers: dict[str, str] | None = None, **signing: Any) -> Delivery:
        body = orjson.dumps(payload)
        return Delivery({"Content-Type": "application/json", **(headers or {}), **self.sign(body, **signing)}, body)

    # What each shop implements, returning a Delivery.
    def purchase(
        self, order: str, item: str, email: str, *, event_id: str | None = None, at: float | None = None, quantity: int = 1
    ) -> Delivery:
        raise NotImplementedError

    def renewal(
        self, order: str, period_start: float, period_end: float, *, event_id: str | None = None, at: float | None = None
    ) -> Delivery:
        raise NotImplementedError

    def payment_failed(self, order: str, *, event_id: str | None = None, at: float | None = None) -> Delivery:
        raise NotImplementedError

    def cancellation(self, order: str, *, event_id: str | None = None, at: float | None = None) -> Delivery:
        raise NotImplementedError

    def refund(self, order: str, *, event_id: str | None = None, at: float | None = None) -> Delivery:
        raise NotImplementedError

    def unknown(self, *, event_id: str | None = None, at: float | None = None) -> Delivery:
        raise NotImplementedError


class StripeShop(Shop):
    def __init__(self) -> None:
        super().__init__("stripe", "whsec_stripe_test_0123456789")

    def sign(
        self, body: bytes, *, at: float | None = None, secret: str | None = None, event_id: str | None = None
    ) -> dict[str, str]:
        stamp = int(at if at is not None else time.time())
        return {"Stripe-Signature": f"t={stamp},v1={_hex(secret or self.secret, f'{stamp}.'.encode() + body)}"}

    def _event(self, kind: str, obj: dict[str, Any], event_id: str | None, at: float | None, **extra: Any) -> Delivery:
        created = int(at if at is not None else time.time())
        payload = {
            "id": event_id or new_event_id(),
            "object": "event",
            "type": kind,
            "created": created,
            "data": {"object": obj, **extra},
        }
        return self.deliver(payload, at=at)

    def purchase(
        self, order: str, item: str, email: str, *, event_id: str | None = None, at: float | None = None, quantity: int = 1
    ) -> Delivery:
        session = {
            "id": f"cs_{order}",
            "object": "checkout.session",
            "mode": "subscription",
            "payment_status": "paid",
            "subscription": f"sub_{order}",
            "invoice": f"in_first_{order}",
            "customer_details": {"email": email, "name": "Ada Lovelace"},
            "line_items": {"data": [{"price": {"id": item}, "quantity": quantity}]},
        }
        return self._event("checkout.session.completed", session, event_id, at)

    def first_invoice(
        self, order: str, item: str, email: str, *, event_id: str | None = None, at: float | None = None
    ) -> Delivery:
        """The invoice.paid of the subscription's first period: the same purchase as its checkout session."""
        start = int(at if at is not None else time.time())
        invoice = {
            "id": f"in_first_{order}",
            "object": "invoice",
            "subscription": f"sub_{order}",
            "billing_reason": "subscription_create",
            "customer_email": email,
            "lines": {"data": [{"price": {"id": item}, "quantity": 1, "period": {"start": start, "end": start + 30 * DAY_S}}]},
        }
        return self._event("invoice.paid", invoice, event_id, at)

    def renewal(
        self, order: str, period_start: float, period_end: float, *, event_id: str | None = None, at: float | None = None
    ) -> Delivery:
        invoice = {
            "id": f"in_{order}_{int(period_start)}",
            "object": "invoice",
            "subscription": f"sub_{order}",
            "billing_reason": "subscription_cycle",
            "payment_intent": f"pi_{order}_{int(period_start)}",
            "lines": {"data": [{"price": {"id": "price_x"}, "period": {"start": int(period_start), "end": int(period_end)}}]},
        }
        # Stripe sends invoice.paid and invoice.payment_succeeded for one payment: alternate them.
        kind = "invoice.paid" if (event_id or "").endswith(("0", "2", "4", "6", "8")) else "invoice.payment_succeeded"
        return self._event(kind, invoice, event_id, at)

    def payment_failed(self, order: str, *, event_id: str | None = None, at: float | None = None) -> Delivery:
        invoice = {"id": f"in_failed_{order}_{uuid.uuid4().hex[:6]}", "subscription": f"sub_{order}"}
        return self._event("invoice.payment_failed", invoice, event_id, at)

    def cancellation(self, order: str, *, event_id: str | None = None, at: float | None = None) -> Delivery:
        return self._event("customer.subscription.deleted", {"id": f"sub_{order}", "object": "subscription"}, event_id, at)

    def refund(self, order: str, *, event_id: str | None = None, at: float | None = None) -> Delivery:
        charge = {
            "id": f"ch_{order}",
            "object": "charge",
            "refunded": True,
            "invoice": f"in_first_{order}",
            "payment_intent": None,
        }
        return self._event("charge.refunded", charge, event_id, at)

    def unknown(self, *, event_id: str | None = None, at: float | None = None) -> Delivery:
        return self._event("customer.created", {"id": "cus_1", "object": "customer"}, event_id, at)


class PaddleShop(Shop):
    def __init__(self) -> None:
        super().__init__("paddle", "pdl_ntfset_secret_0123456789")

    def sign(
        self, body: bytes, *, at: float | None = None, secret: str | None = None, event_id: str | None = None
    ) -> dict[str, str]:
        stamp = int(at if at is not None else time.time())
        return {"Paddle-Signature": f"ts={stamp};h1={_hex(secret or self.secret, f'{stamp}:'.encode() + body)}"}

    def _event(self, kind: str, data: dict[str, Any], event_id: str | None, at: float | None) -> Delivery:
        occurred = at if at is not None else time.time()
        payload = {
            "event_id": event_id or new_event_id("evt"),
            "event_type": kind,
            "occurred_at": rfc3339(occurred),
            "data": data,
        }
        return self.deliver(payload, at=at)

    def purchase(
        self, order: str, item: str, email: str, *, event_id: str | None = None, at: float | None = None, quantity: int = 1
    ) -> Delivery:
        data = {
            "id": f"txn_{order}",
            "status": "completed",
            "origin": "web",
            "subscription_id": f"sub_{order}",
            "customer_id": "ctm_1",
            "custom_data": {"email": email},
            "items": [{"price": {"id": item}, "quantity": quantity}],
        }
        return self._event("transaction.completed", data, event_id, at)

    def renewal(
        self, order: str, period_start: float, period_end: float, *, event_id: str | None = None, at: float | None = None
    ) -> Delivery:
        data = {
            "id": f"txn_{order}_{int(period_start)}",
            "status": "completed",
            "origin": "subscription_recurring",
            "subscription_id": f"sub_{order}",
            "billing_period": {"starts_at": rfc3339(period_start), "ends_at": rfc3339(period_end)},
            "items": [{"price": {"id": "pri_x"}, "quantity": 1}],
        }
        return self._event("transaction.completed", data, event_id, at)

    def payment_failed(self, order: str, *, event_id: str | None = None, at: float | None = None) -> Delivery:
        data = {"id": f"txn_failed_{order}_{uuid.uuid4().hex[:6]}", "subscription_id": f"sub_{order}"}
        return self._event("transaction.payment_failed", data, event_id, at)

    def cancellation(self, order: str, *, event_id: str | None = None, at: float | None = None) -> Delivery:
        return self._event("subscription.canceled", {"id": f"sub_{order}", "status": "canceled"}, event_id, at)

    def refund(self, order: str, *, event_id: str | None = None, at: float | None = None) -> Delivery:
        data = {"id": f"adj_{order}", "action": "refund", "type": "full", "status": "approved", "transaction_id": f"txn_{order}"}
        return self._event("adjustment.created", data, event_id, at)

    def unknown(self, *, event_id: str | None = None, at: float | None = None) -> Delivery:
        return self._event("customer.updated", {"id": "ctm_1"}, event_id, at)


class ShopifyShop(Shop):
    def __init__(self) -> None:
        super().__init__("shopify", "shpss_secret_0123456789", signs_time=False, renewal_has_period=False)

    def sign(
        self, body: bytes, *, at: float | None = None, secret: str | None = None, event_id: str | None = None
    ) -> dict[str, str]:
        return {"X-Shopify-Hmac-Sha256": _b64((secret or self.secret).encode(), body)}

    def _topic(self, topic: str, document: dict[str, Any], event_id: str | None, at: float | None) -> Delivery:
        headers = {
            "X-Shopify-Topic": topic,
            "X-Shopify-Webhook-Id": event_id or str(uuid.uuid4()),
            "X-Shopify-Triggered-At": rfc3339(at if at is not None else time.time()),
        }
        return self.deliver(document, headers=headers)

    def purchase(
        self, order: str, item: str, email: str, *, event_id: str | None = None, at: float | None = None, quantity: int = 1
    ) -> Delivery:
        document = {
            "id": int(order),
            "email": email,
            "financial_status": "paid",
            "source_name": "web",
            "customer": {"email": email, "first_name": "Ada", "last_name": "Lovelace"},
            "line_items": [{"id": int(order) * 10, "sku": item, "variant_id": 1, "quantity": quantity}],
        }
        return self._topic("orders/paid", document, event_id, at)

    def contract(self, order: str, *, at: float | None = None) -> Delivery:
        """The subscription contract Shopify creates after its first order."""
        return self._topic("subscription_contracts/create", {"id": int(order) + 1, "origin_order_id": int(order)}, None, at)

    def renewal(
        self, order: str, period_start: float, period_end: float, *, event_id: str | None = None, at: float | None = None
    ) -> Delivery:
        attempt = {
            "id": 7,
            "ready": True,
            "subscription_contract_id": int(order) + 1,
            "order_id": int(order) + int(period_start // 86_400),
        }
        return self._topic("subscription_billing_attempts/success", attempt, event_id, at)

    def payment_failed(self, order: str, *, event_id: str | None = None, at: float | None = None) -> Delivery:
        attempt = {
            "id": uuid.uuid4().int % 10**9,
            "subscription_contract_id": int(order) + 1,
            "error_code": "payment_method_declined",
        }
        return self._topic("subscription_billing_attempts/failure", attempt, event_id, at)

    def cancellation(self, order: str, *, event_id: str | None = None, at: float | None = None) -> Delivery:
        return self._topic("orders/cancelled", {"id": int(order)}, event_id, at)

    def refund(self, order: str, *, event_id: str | None = None, at: float | None = None) -> Delivery:
        refund = {"id": 99, "order_id": int(order), "refund_line_items": [{"line_item_id": int(order) * 10, "quantity": 1}]}
        return self._topic("refunds/create", refund, event_id, at)

    def unknown(self, *, event_id: str | None = None, at: float | None = None) -> Delivery:
        return self._topic("products/update", {"id": 5}, event_id, at)


class FastSpringShop(Shop):
    def __init__(self) -> None:
        super().__init__("fastspring", "fs_hmac_secret_0123456789", signs_time=False)

    def sign(
        self, body: bytes, *, at: float | None = None, secret: str | None = None, event_id: str | None = None
    ) -> dict[str, str]:
        return {"X-FS-Signature": _b64((secret or self.secret).encode(), body)}

    def event(self, kind: str, data: dict[str, Any], event_id: str | None = None, at: float | None = None) -> dict[str, Any]:
        created = int((at if at is not None else time.time()) * 1000)
        return {
            "id": event_id or new_event_id("fs"),
            "type": kind,
            "live": False,
            "processed": False,
            "created": created,
            "data": data,
        }

    def batch(self, *events: dict[str, Any]) -> Delivery:
        return self.deliver({"events": list(events)})

    def purchase_event(
        self, order: str, item: str, email: str, *, event_id: str | None = None, at: float | None = None, quantity: int = 1
    ) -> dict[str, Any]:
        data = {
            "id": f"ord_{order}",
            "reference": f"REF-{order}",
            "customer": {"email": email, "first": "Ada", "last": "Lovelace"},
            "items": [{"product": item, "sku": item, "quantity": quantity, "subscription": f"sub_{order}"}],
        }
        return self.event("order.completed", data, event_id, at)

    def purchase(
        self, order: str, item: str, email: str, *, event_id: str | None = None, at: float | None = None, quantity: int = 1
    ) -> Delivery:
        return self.batch(self.purchase_event(order, item, email, event_id=event_id, at=at, quantity=quantity))

    def renewal(
        self, order: str, period_start: float, period_end: float, *, event_id: str | None = None, at: float | None = None
    ) -> Delivery:
        data = {
            "subscription": {"id": f"sub_{order}", "nextChargeDate": int(period_end * 1000)},
            "order": {"id": f"ord_{order}_{int(period_start)}"},
        }
        return self.batch(self.event("subscription.charge.completed", data, event_id, at))

    def payment_failed(self, order: str, *, event_id: str | None = None, at: float | None = None) -> Delivery:
        return self.batch(self.event("subscription.charge.failed", {"subscription": f"sub_{order}"}, event_id, at))

    def cancellation_event(self, order: str, *, event_id: str | None = None, at: float | None = None) -> dict[str, Any]:
        return self.event("subscription.deactivated", {"id": f"sub_{order}", "subscription": f"sub_{order}"}, event_id, at)

    def cancellation(self, order: str, *, event_id: str | None = None, at: float | None = None) -> Delivery:
        return self.batch(self.cancellation_event(order, event_id=event_id, at=at))

    def refund(self, order: str, *, event_id: str | None = None, at: float | None = None) -> Delivery:
        return self.batch(
            self.event("return.created", {"return": f"ret_{order}", "original": {"id": f"ord_{order}"}}, event_id, at)
        )

    def unknown(self, *, event_id: str | None = None, at: float | None = None) -> Delivery:
        return self.batch(self.event("account.created", {"id": "acc_1"}, event_id, at))


class StandardShop(Shop):
    """Any system that sends Standard Webhooks 1.0 with licensor's own event types."""

    def __init__(self) -> None:
        super().__init__("standard-webhooks", "whsec_" + base64.b64encode(b"standard-webhooks-secret-32bytes").decode())

    def sign(
        self, body: bytes, *, at: float | None = None, secret: str | None = None, event_id: str | None = None
    ) -> dict[str, str]:
        stamp = str(int(at if at is not None else time.time()))
        message_id = event_id or new_event_id("msg")
        key = base64.b64decode((secret or self.secret).removeprefix("whsec_"))
        signature = _b64(key, f"{message_id}.{stamp}.".encode() + body)
        return {"webhook-id": message_id, "webhook-timestamp": stamp, "webhook-signature": f"v1,{signature}"}

    def _event(self, kind: str, data: dict[str, Any], event_id: str | None, at: float | None) -> Delivery:
        payload = {"type": kind, "timestamp": rfc3339(at if at is not None else time.time()), "data": data}
        return self.deliver(payload, at=at, event_id=event_id)

    def purchase(
        self, order: str, item: str, email: str, *, event_id: str | None = None, at: float | None = None, quantity: int = 1
    ) -> Delivery:
        data = {"subscription": f"sub_{order}", "items": [{"item": item, "quantity": quantity}], "customer": {"email": email}}
        return self._event("order.purchased", data, event_id, at)

    def renewal(
        self, order: str, period_start: float, period_end: float, *, event_id: str | None = None, at: float | None = None
    ) -> Delivery:
        data = {"subscription": f"sub_{order}", "period": {"start": rfc3339(period_start), "end": rfc3339(period_end)}}
        return self._event("subscription.renewed", data, event_id, at)

    def payment_failed(self, order: str, *, event_id: str | None = None, at: float | None = None) -> Delivery:
        return self._event("payment.failed", {"subscription": f"sub_{order}"}, event_id, at)

    def cancellation(self, order: str, *, event_id: str | None = None, at: float | None = None) -> Delivery:
        return self._event("subscription.canceled", {"subscription": f"sub_{order}"}, event_id, at)

    def refund(self, order: str, *, event_id: str | None = None, at: float | None = None) -> Delivery:
        return self._event("order.refunded", {"subscription": f"sub_{order}"}, event_id, at)

    def unknown(self, *, event_id: str | None = None, at: float | None = None) -> Delivery:
        return self._event("invoice.created", {"order": "o-1"}, event_id, at)


SHOPS = {
    "stripe": StripeShop,
    "paddle": PaddleShop,
    "shopify": ShopifyShop,
    "fastspring": FastSpringShop,
    "standard-webhooks": StandardShop,
}
