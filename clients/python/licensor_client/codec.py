"""licensor's signed-token codec and fingerprint scoring in pure Python: the one implementation the client runs and
the server's pure-Python core (``licensor._fallback``) is built on.

Ed25519 arithmetic comes from ``cryptography`` (OpenSSL); the strictness rules OpenSSL does not enforce by
itself (canonical point encodings, small-order points, a scalar below the group order) are checked here on the
bytes, exactly as the server's native core checks them, so every implementation accepts the same signatures
(the Wycheproof vectors and the twin tests hold them to it). Same names, signatures, results and errors as the
native core's single-item functions (``licensor/_core.pyi``).
"""

from __future__ import annotations

import binascii
import os
import re
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from licensor_client.errors import (
    BadSignatureError,
    InvalidInputError,
    MalformedTokenError,
    UnknownKeyError,
    WrongTokenKindError,
)

__all__ = [
    "MAX_TOKEN_LENGTH",
    "decode_token",
    "encode_token",
    "fingerprint_score",
    "generate_seed",
    "public_key",
    "sign",
    "verify",
]

MAX_TOKEN_LENGTH = 262_144

_P = 2**255 - 19  # the field prime
_L = 2**252 + 27742317777372353535851937790883648493  # the prime order of the base point
_MAX_WEIGHT = 1_000_000.0

# The canonical encodings of the eight points of small order (the 8-torsion subgroup). Non-canonical
# encodings of them are already refused by the canonical-encoding check.
_SMALL_ORDER_ENCODINGS = frozenset(
    bytes.fromhex(h)
    for h in (
        "0100000000000000000000000000000000000000000000000000000000000000",  # identity, order 1
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2
        "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
        "0000000000000000000000000000000000000000000000000000000000000080",  # order 4
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",  # order 8
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",  # order 8
    )
)

_KIND = re.compile(r"[a-z0-9]{1,8}")
_KID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


# --- argument checks shared by every function (the native core makes the same ones) ---------------------


def _require_bytes(value: object, name: str) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    return value


def _require_str(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be str, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(f"{name} is not valid UTF-8") from None
    return value


def _require_seed(seed: object) -> bytes:
    _require_bytes(seed, "seed")
    assert isinstance(seed, bytes)
    if len(seed) != 32:
        raise InvalidInputError("seed must be 32 bytes")
    return seed


def _require_mapping(value: object, name: str) -> Mapping[object, object]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping, not {type(value).__name__}")
    return value


def _mapping_pairs(value: object, name: str) -> list[tuple[object, object]]:
    """The ``(key, value)`` pairs of a mapping's ``items()``, in its order; anything but 2-tuples is a TypeError."""
    pairs = []
    for item in _require_mapping(value, name).items():
        if not isinstance(item, tuple) or len(item) != 2:
            raise TypeError(f"{name} items must be (key, value) tuples")
        pairs.append(item)
    return pairs


def _string_map(value: object, name: str) -> list[tuple[str, str]]:
    """The items of a ``Mapping[str, str]``, in its order, every key and value checked."""
    return [(_require_str(k, f"{name} component"), _require_str(v, f"{name} value")) for k, v in _mapping_pairs(value, name)]


def _as_float(value: int | float) -> float:
    # As the C API reads a number: a float (subclass) by its stored value, an int through __float__.
    return float.__float__(value) if isinstance(value, float) else float(value)


def _weight_map(weights: object) -> dict[str, float]:
    checked: dict[str, float] = {}
    for name, weight in _mapping_pairs(weights, "weights"):
        component = _require_str(name, "weights component")
        if not isinstance(weight, (int, float)):
            raise TypeError(f"weight must be a number, not {type(weight).__name__}")
        try:
            as_float = _as_float(weight)
        except OverflowError:
            raise InvalidInputError("weight must be a number from 0 to 1000000") from None
        if not (0.0 <= as_float <= _MAX_WEIGHT):  # also refuses NaN
            raise InvalidInputError("weight must be a number from 0 to 1000000")
        checked[component] = as_float
    return checked


def _require_threshold(threshold: object) -> float:
    if not isinstance(threshold, (int, float)):
        raise TypeError(f"threshold must be a number, not {type(threshold).__name__}")
    try:
        as_float = _as_float(threshold)
    except OverflowError:
        raise InvalidInputError("threshold must be a number in (0, 1]") from None
    if not (0.0 < as_float <= 1.0):
        raise InvalidInputError("threshold must be a number in (0, 1]")
    return as_float


# --- Ed25519 -----------------------------------------------------------------------------------------------


def _is_canonical_point(encoding: bytes) -> bool:
    """Whether a 32-byte encoding is the one canonical encoding of its y and sign: y < p, and no sign bit
    on the two points whose x is 0 (y = 1 and y = p - 1)."""
    y = int.from_bytes(encoding, "little") & ((1 << 255) - 1)
    if y >= _P:
        return False
    return not (encoding[31] & 0x80 and y in (1, _P - 1))


def _strict_preconditions(public_key: bytes, signature: bytes) -> bool:
    if len(public_key) != 32 or len(signature) != 64:
        return False
    r_encoding = signature[:32]
    for point in (public_key, r_encoding):
        if not _is_canonical_point(point) or point in _SMALL_ORDER_ENCODINGS:
            return False
    return int.from_bytes(signature[32:], "little") < _L


def generate_seed() -> bytes:
    return os.urandom(32)


def public_key(seed: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(_require_seed(seed)).public_key().public_bytes_raw()


def sign(seed: bytes, message: bytes) -> bytes:
    private_key = Ed25519PrivateKey.from_private_bytes(_require_seed(seed))
    return private_key.sign(_require_bytes(message, "message"))


def _verify_checked(public_key: bytes, message: bytes, signature: bytes) -> bool:
    if not _strict_preconditions(public_key, signature):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    return _verify_checked(
        _require_bytes(public_key, "public_key"),
        _require_bytes(message, "message"),
        _require_bytes(signature, "signature"),
    )


# --- signed tokens -----------------------------------------------------------------------------------------


def _b64url_encode(raw: bytes) -> str:
    return binascii.b2a_base64(raw, newline=False).decode("ascii").rstrip("=").replace("+", "-").replace("/", "_")


def _b64url_decode(text: str, part: str) -> bytes:
    """Strict unpadded base64url: only the alphabet, no padding, and no non-zero trailing bits (so every
    byte string has exactly one encoding and no bit of a token can change without notice)."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise MalformedTokenError(f"token is malformed: {part} is not canonical base64url")
    standard = text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4)
    raw = binascii.a2b_base64(standard)
    if _b64url_encode(raw) != text:
        raise MalformedTokenError(f"token is malformed: {part} is not canonical base64url")
    return raw


def _require_kind(kind: object) -> str:
    _require_str(kind, "kind")
    assert isinstance(kind, str)
    if not _KIND.fullmatch(kind):
        raise InvalidInputError("kind must be 1-8 characters of a-z0-9")
    return kind


def encode_token(kind: str, kid: str, payload: bytes, seed: bytes) -> str:
    _require_kind(kind)
    _require_str(kid, "kid")
    if not _KID.fullmatch(kid):
        raise InvalidInputError("kid must be 1-64 characters of A-Za-z0-9_-")
    _require_bytes(payload, "payload")
    _require_seed(seed)
    # 4 base64 characters per 3 bytes, plus the signature's 86 and three dots.
    if len(kind) + len(kid) + (len(payload) * 4 + 2) // 3 + 89 > MAX_TOKEN_LENGTH:
        raise InvalidInputError(f"token would be longer than {MAX_TOKEN_LENGTH} characters")
    signed = f"{kind}.{kid}.{_b64url_encode(payload)}"
    return f"{signed}.{_b64url_encode(sign(seed, signed.encode('ascii')))}"


def _parse_token(token: object, kind: str) -> tuple[str, bytes, bytes, bytes]:
    """Check a token's form and kind; return (kid, signed bytes, payload, signature)."""
    if not isinstance(token, str):
        raise TypeError(f"token must be str, not {type(token).__name__}")
    if len(token) > MAX_TOKEN_LENGTH:
        raise MalformedTokenError(f"token is malformed: longer than {MAX_TOKEN_LENGTH} characters")
    if not token.isascii():
        raise MalformedTokenError("token is malformed: not ASCII")
    parts = token.split(".")
    if len(parts) != 4:
        raise MalformedTokenError("token is malformed: expected 4 dot-separated parts")
    token_kind, kid, payload_text, signature_text = parts
    if not _KIND.fullmatch(token_kind):
        raise MalformedTokenError("token is malformed: invalid kind")
    if not _KID.fullmatch(kid):
        raise MalformedTokenError("token is malformed: invalid key id")
    payload = _b64url_decode(payload_text, "payload")
    signature = _b64url_decode(signature_text, "signature")
    if len(signature) != 64:
        raise MalformedTokenError("token is malformed: signature is not 64 bytes")
    if token_kind != kind:
        raise WrongTokenKindError(f"token is of kind {token_kind}, expected {kind}")
    signed = token[: len(token) - len(signature_text) - 1].encode("ascii")
    return kid, signed, payload, signature


def _lookup_key(public_keys: Mapping[object, object], kid: str) -> bytes:
    key = public_keys.get(kid)
    if key is None:
        raise UnknownKeyError(f"unknown key id {kid}")
    return _require_bytes(key, "public key")


def decode_token(token: str, kind: str, public_keys: Mapping[str, bytes]) -> bytes:
    _require_kind(kind)
    keys = _require_mapping(public_keys, "public_keys")
    kid, signed, payload, signature = _parse_token(token, kind)
    if not _verify_checked(_lookup_key(keys, kid), signed, signature):
        raise BadSignatureError("token signature does not verify")
    return payload


# --- fingerprints ------------------------------------------------------------------------------------------

# A stored fingerprint: its components as (name, value, weight) in the caller's order, and their total weight.
_Weighted = tuple[tuple[tuple[str, str, float], ...], float]


def _weigh(components: list[tuple[str, str]], weights: dict[str, float]) -> _Weighted:
    weighted = tuple((name, value, weights.get(name, 1.0)) for name, value in components)
    total = 0.0
    for _, _, weight in weighted:
        total += weight
    return weighted, total


def _score(stored: _Weighted, presented: dict[str, str]) -> float:
    components, total = stored
    if total == 0.0:
        return 0.0
    matched = 0.0
    for name, value, weight in components:
        if presented.get(name) == value:
            matched += weight
    return matched / total


def fingerprint_score(stored: Mapping[str, str], presented: Mapping[str, str], weights: Mapping[str, float]) -> float:
    stored_items = _string_map(stored, "stored")
    presented_items = dict(_string_map(presented, "presented"))
    return _score(_weigh(stored_items, _weight_map(weights)), presented_items)
