"""The shops' signature schemes: each signs a body the documented way (computed here independently), and a
tampered body, a wrong secret, a stale time and a malformed header are refused with their codes; secrets rotate.
The Standard Webhooks check is held to the specification's own test vector."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import pytest
from licensor.commerce.signatures import (
    WebhookSignatureError,
    verify_fastspring,
    verify_paddle,
    verify_shopify,
    verify_standard_webhooks,
    verify_stripe,
)

NOW = 1_800_000_000
BODY = b'{"id":"evt_1","type":"checkout.session.completed","data":{"object":{"id":"cs_1"}}}'
SECRET, OLD_SECRET = "whsec_current", "whsec_previous"


def mac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def mac_b64(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def stripe(body: bytes = BODY, at: int = NOW, secrets: tuple[str, ...] = (SECRET,)) -> dict[str, str]:
    signatures = ",".join(f"v1={mac_hex(s, f'{at}.'.encode() + body)}" for s in secrets)
    return {"Stripe-Signature": f"t={at},{signatures},v0=deadbeef"}


def paddle(body: bytes = BODY, at: int = NOW, secrets: tuple[str, ...] = (SECRET,)) -> dict[str, str]:
    signatures = ";".join(f"h1={mac_hex(s, f'{at}:'.encode() + body)}" for s in secrets)
    return {"Paddle-Signature": f"ts={at};{signatures}"}


def shopify(body: bytes = BODY, secret: str = SECRET) -> dict[str, str]:
    return {"X-Shopify-Hmac-Sha256": mac_b64(secret.encode(), body)}


def fastspring(body: bytes = BODY, secret: str = SECRET) -> dict[str, str]:
    return {"X-FS-Signature": mac_b64(secret.encode(), body)}


TIMED: dict[str, tuple[Callable[..., dict[str, str]], Callable[..., Any]]] = {
    "stripe": (stripe, verify_stripe),
    "paddle": (paddle, verify_paddle),
}


@pytest.mark.parametrize("scheme", sorted(TIMED))
def test_a_timed_scheme_takes_its_signature_and_refuses_every_tampering(scheme: str) -> None:
    sign, verify = TIMED[scheme]
    assert verify(sign(), BODY, [SECRET], NOW) == NOW
    assert verify(sign(at=NOW - 299), BODY, [SECRET], NOW) == NOW - 299  # within the 300-s tolerance
    assert verify(sign(secrets=(OLD_SECRET, SECRET)), BODY, [SECRET], NOW) == NOW  # the shop signs with both while rotating
    assert verify(sign(secrets=(OLD_SECRET,)), BODY, [SECRET, OLD_SECRET], NOW) == NOW  # we accept both while rotating
    cases = {
        "tampered body": (sign(), BODY.replace(b"cs_1", b"cs_2"), [SECRET], "SIGNATURE_MISMATCH"),
        "wrong secret": (sign(), BODY, ["whsec_other"], "SIGNATURE_MISMATCH"),
        "too old": (sign(at=NOW - 301), BODY, [SECRET], "SIGNATURE_EXPIRED"),
        "from the future": (sign(at=NOW + 301), BODY, [SECRET], "SIGNATURE_EXPIRED"),
        "no header": ({}, BODY, [SECRET], "SIGNATURE_MISSING"),
        "not the form": ({next(iter(sign())): "garbage"}, BODY, [SECRET], "SIGNATURE_MALFORMED"),
    }
    for case, (headers, body, secrets, code) in cases.items():
        with pytest.raises(WebhookSignatureError) as refused:
            verify(headers, body, secrets, NOW)
        assert (refused.value.code, refused.value.http_status) == (code, 401), case


@pytest.mark.parametrize(
    ("sign", "verify"), [(shopify, verify_shopify), (fastspring, verify_fastspring)], ids=["shopify", "fastspring"]
)
def test_a_body_hmac_scheme_takes_its_signature_and_refuses_every_tampering(
    sign: Callable[..., dict[str, str]], verify: Callable[..., None]
) -> None:
    verify(sign(), BODY, [SECRET])
    verify(sign(secret=OLD_SECRET), BODY, [SECRET, OLD_SECRET])
    header = next(iter(sign()))
    for case, headers, body, code in (
        ("tampered", sign(), BODY + b" ", "SIGNATURE_MISMATCH"),
        ("wrong secret", sign(secret="other"), BODY, "SIGNATURE_MISMATCH"),
        ("not base64", {header: "***"}, BODY, "SIGNATURE_MALFORMED"),
        ("no header", {}, BODY, "SIGNATURE_MISSING"),
    ):
        with pytest.raises(WebhookSignatureError) as refused:
            verify(headers, body, [SECRET])
        assert refused.value.code == code, case


def test_standard_webhooks_holds_to_the_specifications_test_vector() -> None:
    # From the Standard Webhooks specification's reference libraries.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1a,ignored-asymmetric v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    assert verify_standard_webhooks(headers, body, [secret], now=1614265330) == "msg_p5jXN8AQM9LWM0D4loKWxJek"
    for case, changed, code in (
        ("tampered", {"body": body + b" "}, "SIGNATURE_MISMATCH"),
        ("another id", {"webhook-id": "msg_other"}, "SIGNATURE_MISMATCH"),
        ("stale", {"now": 1614265330 + 301}, "SIGNATURE_EXPIRED"),
        ("no v1", {"webhook-signature": "v1a,xyz"}, "SIGNATURE_MISMATCH"),
        ("malformed", {"webhook-signature": "v1"}, "SIGNATURE_MALFORMED"),
    ):
        sent = {**headers, **{k: v for k, v in changed.items() if k.startswith("webhook-")}}
        with pytest.raises(WebhookSignatureError) as refused:
            verify_standard_webhooks(sent, changed.get("body", body), [secret], now=changed.get("now", 1614265330))  # type: ignore[arg-type]
        assert refused.value.code == code, case
