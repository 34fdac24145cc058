"""The signature schemes of the shops licensor takes orders from, checked on the raw body in constant time.

Each checker takes the request's headers, its raw body, the endpoint's secrets (more than one while a secret is
rotated) and the current time, and returns what the signature covered that the caller needs (the signed time, or
the message id), or raises :class:`WebhookSignatureError` with a stable code:

- ``SIGNATURE_MISSING``: the header is not there;
- ``SIGNATURE_MALFORMED``: it is not of the scheme's form;
- ``SIGNATURE_EXPIRED``: the signed time is further from now than the tolerance (a replay, or a clock far off);
- ``SIGNATURE_MISMATCH``: no signature matches the body under any of the secrets.

The schemes: Stripe (``Stripe-Signature: t=…,v1=…``: HMAC-SHA256 in hex over ``t.body``; every ``v1`` is tried),
Paddle Billing (``Paddle-Signature: ts=…;h1=…``: HMAC-SHA256 in hex over ``ts:body``), Shopify
(``X-Shopify-Hmac-Sha256``: HMAC-SHA256 of the body in base64), FastSpring (``X-FS-Signature``: the same), and
Standard Webhooks 1.0 (``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64> …``: HMAC-SHA256 over
``id.timestamp.body`` with the key that follows ``whsec_`` in base64).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence

from licensor.errors import AuthenticationError

__all__ = [
    "TOLERANCE_S",
    "WebhookSignatureError",
    "verify_fastspring",
    "verify_paddle",
    "verify_shopify",
    "verify_standard_webhooks",
    "verify_stripe",
]

TOLERANCE_S = 300
"""How far a signed time may be from now, either way."""


class WebhookSignatureError(AuthenticationError):
    """A shop's request whose signature does not hold (the code says how); nothing of it is acted on."""

    code = "SIGNATURE_MISMATCH"
    http_status = 401


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value.strip()
    raise WebhookSignatureError(f"the {name} header is missing", code="SIGNATURE_MISSING")


def _hmac(secret: bytes, message: bytes) -> bytes:
    return hmac.new(secret, message, hashlib.sha256).digest()


def _any_matches(expected: Sequence[bytes], presented: Sequence[bytes]) -> bool:
    matched = False
    for mine in expected:
        for theirs in presented:
            matched |= hmac.compare_digest(mine, theirs)  # every pair compared: no early exit to time
    return matched


def _timestamp(text: str, now: float, tolerance_s: float) -> int:
    if not re.fullmatch(r"[0-9]{1,12}", text):  # ASCII digits only (str.isdigit takes "²" too)
        raise WebhookSignatureError("the signed timestamp is not a number of seconds", code="SIGNATURE_MALFORMED")
    signed = int(text)
    if abs(now - signed) > tolerance_s:
        raise WebhookSignatureError(f"the signature is not from the last {tolerance_s:g} seconds", code="SIGNATURE_EXPIRED")
    return signed


def _pairs(header: str, separator: str) -> list[tuple[str, str]]:
    pairs = []
    for item in header.split(separator):
        name, equals, value = item.strip().partition("=")
        if not equals:
            raise WebhookSignatureError("the signature header is not name=value pairs", code="SIGNATURE_MALFORMED")
        pairs.append((name, value))
    return pairs


def _hex_values(pairs: list[tuple[str, str]], name: str) -> list[bytes]:
    values = []
    for key, value in pairs:
        if key == name:
            try:
                values.append(bytes.fromhex(value))
            except ValueError:
                raise WebhookSignatureError(f"a {name} signature is not hex", code="SIGNATURE_MALFORMED") from None
    return values


def _signed_by_hex_scheme(
    header: str,
    separator: str,
    time_name: str,
    signature_name: str,
    joiner: bytes,
    body: bytes,
    secrets: Sequence[str],
    now: float,
    tolerance_s: float,
) -> int:
    pairs = _pairs(header, separator)
    times = [value for key, value in pairs if key == time_name]
    signatures = _hex_values(pairs, signature_name)
    if len(times) != 1 or not signatures:
        raise WebhookSignatureError(f"the header needs one {time_name} and a {signature_name}", code="SIGNATURE_MALFORMED")
    signed = _timestamp(times[0], now, tolerance_s)
    expected = [_hmac(secret.encode(), times[0].encode() + joiner + body) for secret in secrets]
    if not _any_matches(expected, signatures):
        raise WebhookSignatureError("no signature matches the body", code="SIGNATURE_MISMATCH")
    return signed


def verify_stripe(
    headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float, tolerance_s: float = TOLERANCE_S
) -> int:
    """Stripe: the signed time (every ``v1`` of the header is tried, against each secret)."""
    return _signed_by_hex_scheme(_header(headers, "Stripe-Signature"), ",", "t", "v1", b".", body, secrets, now, tolerance_s)


def verify_paddle(
    headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float, tolerance_s: float = TOLERANCE_S
) -> int:
    """Paddle Billing: the signed time (every ``h1``, against each secret)."""
    return _signed_by_hex_scheme(_header(headers, "Paddle-Signature"), ";", "ts", "h1", b":", body, secrets, now, tolerance_s)


def _verify_body_hmac(header: str, body: bytes, secrets: Sequence[str]) -> None:
    try:
        presented = base64.b64decode(header, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookSignatureError("the signature is not base64", code="SIGNATURE_MALFORMED") from None
    if not _any_matches([_hmac(secret.encode(), body) for secret in secrets], [presented]):
        raise WebhookSignatureError("the signature does not match the body", code="SIGNATURE_MISMATCH")


def verify_shopify(headers: Mapping[str, str], body: bytes, secrets: Sequence[str]) -> None:
    """Shopify: the body's HMAC (Shopify signs no time: duplicates are caught by the order's own ids)."""
    _verify_body_hmac(_header(headers, "X-Shopify-Hmac-Sha256"), body, secrets)


def verify_fastspring(headers: Mapping[str, str], body: bytes, secrets: Sequence[str]) -> None:
    """FastSpring: the body's HMAC (a batch of events is signed once)."""
    _verify_body_hmac(_header(headers, "X-FS-Signature"), body, secrets)


def standard_webhooks_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: the base64 after ``whsec_`` (a bare secret is taken as it is)."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a whsec_ secret is base64 after its prefix") from None
    return secret.encode()


def verify_standard_webhooks(
    headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float, tolerance_s: float = TOLERANCE_S
) -> str:
    """Standard Webhooks 1.0: the message id (``webhook-id``), once a ``v1`` signature matches."""
    message_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    _timestamp(stamp, now, tolerance_s)
    presented = []
    for item in _header(headers, "webhook-signature").split():
        version, comma, value = item.partition(",")
        if not comma:
            raise WebhookSignatureError("a webhook-signature entry is not version,signature", code="SIGNATURE_MALFORMED")
        if version != "v1":
            continue  # another scheme (v1a: asymmetric): not this endpoint's
        try:
            presented.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            raise WebhookSignatureError("a v1 signature is not base64", code="SIGNATURE_MALFORMED") from None
    try:
        signed = f"{message_id}.{stamp}.".encode() + body
    except UnicodeEncodeError:  # a header of raw bytes that are not UTF-8 (aiohttp keeps them as surrogates)
        raise WebhookSignatureError("webhook-id is not text", code="SIGNATURE_MALFORMED") from None
    if not presented or not _any_matches([_hmac(standard_webhooks_key(s), signed) for s in secrets], presented):
        raise WebhookSignatureError("no v1 signature matches the body", code="SIGNATURE_MISMATCH")
    return message_id
