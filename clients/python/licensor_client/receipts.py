"""Offline deactivation receipts: a device without network gives its seat back by a short text signed with its key.

The device signs (tenant, activation, generation of its current license file) and deletes its file; the receipt,
136 characters of Crockford base32 in groups of five (``LDR1-XXXXX-…``; the last one a check character, as a
license key's, so a mistyped character is told as a typo), is small enough to read over the phone, type, or scan
as a QR code. The vendor posts it (``licensor admin activations deactivation-receipt``); the
gateway verifies it with the activation's device key, so only that device could have made it, and ends the
activation at once. A receipt names the generation: one made from an older file (a reverted snapshot) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from licensor_client import codec
from licensor_client.errors import LicensorError
from licensor_client.license_keys import ALPHABET, READ_AS, VALUES, check_character

__all__ = ["ReceiptContent", "ReceiptError", "make_receipt", "read_receipt", "receipt_message"]

PREFIX = "LDR1"
_ID_BYTES, _GENERATION_BYTES, _SIGNATURE_BYTES = 16, 4, 64
_PAYLOAD_BYTES = _ID_BYTES + _GENERATION_BYTES + _SIGNATURE_BYTES
_CHARACTERS = (_PAYLOAD_BYTES * 8 + 4) // 5
_GROUP = 5


class ReceiptError(LicensorError, ValueError):
    """Not a deactivation receipt: a typo, most likely (code RECEIPT_MALFORMED)."""

    code = "RECEIPT_MALFORMED"
    http_status = 422


@dataclass(frozen=True)
class ReceiptContent:
    activation_id: str
    generation: int
    signature: bytes


def receipt_message(tenant: str, activation_id: str, generation: int) -> bytes:
    """What the device signs: domain-separated, and bound to the tenant, the activation and its generation."""
    return b"licensor.deactivation-receipt.v1\x00" + f"{tenant}\x00{activation_id}\x00{generation}".encode()


def _ulid_bytes(activation_id: str) -> bytes:
    prefix, _, ulid = activation_id.partition("_")
    if prefix != "act" or len(ulid) != 26 or any(c not in VALUES for c in ulid):
        raise ReceiptError("not an activation id")
    return int("".join(f"{VALUES[c]:05b}" for c in ulid), 2).to_bytes(_ID_BYTES, "big")


def _activation_id(raw: bytes) -> str:
    value = int.from_bytes(raw, "big")
    return "act_" + "".join(ALPHABET[(value >> (5 * (25 - i))) & 31] for i in range(26))


def make_receipt(seed: bytes, tenant: str, activation_id: str, generation: int) -> str:
    """The receipt of the device key ``seed`` for its activation at ``generation``."""
    signature = codec.sign(seed, receipt_message(tenant, activation_id, generation))
    payload = _ulid_bytes(activation_id) + generation.to_bytes(_GENERATION_BYTES, "big") + signature
    value = int.from_bytes(payload, "big") << (_CHARACTERS * 5 - _PAYLOAD_BYTES * 8)
    body = "".join(ALPHABET[(value >> (5 * (_CHARACTERS - 1 - i))) & 31] for i in range(_CHARACTERS))
    body += check_character(body)
    return "-".join([PREFIX, *(body[i : i + _GROUP] for i in range(0, len(body), _GROUP))])


def read_receipt(text: str) -> ReceiptContent:
    """The content of a typed or scanned receipt (case, spaces and dashes do not matter; O, I, L read as 0, 1, 1).
    Its signature is checked by the gateway, with the activation's device key.

    :raises ReceiptError: not a receipt."""
    compact = "".join(text.split()).replace("-", "").upper()
    if not compact.startswith(PREFIX):
        raise ReceiptError("a deactivation receipt starts with LDR1")
    body = compact[len(PREFIX) :].translate(READ_AS)
    if len(body) != _CHARACTERS + 1 or any(c not in VALUES for c in body):
        raise ReceiptError(f"a deactivation receipt has {_CHARACTERS + 1} characters after LDR1: check for a typo")
    body, check = body[:-1], body[-1]
    if check_character(body) != check:
        raise ReceiptError("this deactivation receipt has a typo (its check character does not match)")
    value = 0
    for char in body:
        value = value << 5 | VALUES[char]
    padding = _CHARACTERS * 5 - _PAYLOAD_BYTES * 8
    if value & ((1 << padding) - 1):
        raise ReceiptError("this deactivation receipt has a typo")
    payload = (value >> padding).to_bytes(_PAYLOAD_BYTES, "big")
    generation = int.from_bytes(payload[_ID_BYTES : _ID_BYTES + _GENERATION_BYTES], "big")
    return ReceiptContent(_activation_id(payload[:_ID_BYTES]), generation, payload[_ID_BYTES + _GENERATION_BYTES :])
