"""Order sources: how a shop's webhook becomes business events that licensor applies exactly once.

An order source (``licensor_register_order_sources``) knows one shop's format: it checks the signature of a
delivery on its raw bytes (:meth:`OrderSource.verify`, with the helpers below) and reads the delivery as
:class:`OrderEvent` values (:meth:`OrderSource.events`). licensor does the rest: it finds the licenses an event
concerns, applies it once per business event (:attr:`OrderEvent.key`), ignores one older than what it would
change, and records every delivery. ``docs/commerce.md`` is the reference.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from licensor.commerce.signatures import (
    TOLERANCE_S,
    WebhookSignatureError,
    standard_webhooks_key,
    verify_fastspring,
    verify_paddle,
    verify_shopify,
    verify_standard_webhooks,
    verify_stripe,
)
from licensor.errors import MalformedRequestError

__all__ = [
    "TOLERANCE_S",
    "OrderEvent",
    "OrderEventType",
    "OrderItem",
    "OrderPayloadError",
    "OrderSource",
    "WebhookSignatureError",
    "standard_webhooks_key",
    "verify_fastspring",
    "verify_paddle",
    "verify_shopify",
    "verify_standard_webhooks",
    "verify_stripe",
]


class OrderEventType(enum.StrEnum):
    """What a business event does to the licenses it concerns."""

    PURCHASE = "purchase"
    """Creates a license per mapped item (and the customer, by email)."""
    RENEWAL = "renewal"
    """A paid period: the licenses run to its end (and one suspended for a failed payment is reinstated)."""
    PLAN_CHANGE = "plan_change"
    """The subscription's items changed: the licenses move to the policy of the new item."""
    PAYMENT_FAILED = "payment_failed"
    CANCELLATION = "cancellation"
    REFUND = "refund"
    DISPUTE = "dispute"
    """These four have the effect the order source names for them (revoke, suspend or none)."""
    LINK = "link"
    """Names the licenses of :attr:`OrderEvent.references` by more ids (:attr:`OrderEvent.links`), such as a
    subscription created after its first order."""
    UNKNOWN = "unknown"
    """Anything else: recorded and answered 2xx, so the shop does not retry it."""


@dataclass(frozen=True)
class OrderItem:
    """A line of an order: the shop's id of what was bought (a SKU, price id or product code), how many, and the
    shop's ids that name this line's licenses alone (its own subscription, its order line), so that a later
    event about one line (a renewal of its subscription, a refund of that line) reaches only its licenses."""

    item: str
    quantity: int = 1
    references: tuple[str, ...] = ()


@dataclass(frozen=True)
class OrderEvent:
    """One business event read from a delivery.

    :param key: the business event's identity, the same however often and with whatever provider ids it is
        delivered: ``purchase:<order or subscription>``, ``renewal:<subscription>:<period start>``... licensor
        applies one key once per order source.
    :param occurred_at: when the shop says it happened (µs since the epoch): an event older than the newest one
        applied to the same aspect of a license (its term, state or plan) is recorded and ignored.
    :param references: the shop's ids that name the licenses concerned (order, subscription, invoice, payment);
        a purchase links all of them to every license it creates (and each item's own references to its licenses).
    """

    type: OrderEventType
    key: str
    provider_event_id: str
    provider_type: str
    occurred_at: int
    references: tuple[str, ...] = ()
    items: tuple[OrderItem, ...] = ()
    customer_email: str | None = None
    customer_name: str | None = None
    period_end: int | None = None
    """A renewal's (or a subscription purchase's) paid period ends then; None: the policy's duration decides."""
    links: tuple[str, ...] = ()


class OrderPayloadError(MalformedRequestError):
    """A validly signed delivery that cannot be read as the source's format (400 ORDER_PAYLOAD_MALFORMED)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="ORDER_PAYLOAD_MALFORMED")


class OrderSource(ABC):
    """A shop's webhook format. One instance serves every order source of its :attr:`kind`, of every tenant."""

    kind: str
    """The name vendors give as an order source's ``kind`` (a-z, 0-9 and -)."""
    description: str = ""

    @abstractmethod
    def verify(self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float) -> None:
        """Check the delivery's signature over its raw bytes with one of ``secrets`` (several while one is
        rotated), in constant time.

        :param now: the gateway's clock in seconds, for the tolerance of a signed time.
        :raises WebhookSignatureError: SIGNATURE_MISSING, SIGNATURE_MALFORMED, SIGNATURE_EXPIRED or SIGNATURE_MISMATCH.
        """

    def check_secret(self, secret: str) -> None:  # noqa: B027 - most kinds take any secret
        """Refuse a signing secret this kind cannot use, when the vendor configures it.

        :raises ValueError: with what is wrong (never the secret itself)."""

    @abstractmethod
    def events(self, headers: Mapping[str, str], body: bytes) -> list[OrderEvent]:
        """The business events of a verified delivery, in the order given (a batch gives several).

        :raises OrderPayloadError: the delivery is not of this format.
        """
