"""Pure-Python twin of the native core ``licensor._core``: same names, signatures, results and errors.

The contract is written once, in ``_core.pyi``. Ed25519 arithmetic comes from ``cryptography`` (OpenSSL);
the strictness rules OpenSSL does not enforce by itself (canonical point encodings, small-order points) are
checked here on the bytes, exactly as the native core checks them, so both accept the same signatures.
"""

from __future__ import annotations

import binascii
import os
import re
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from licensor.errors import (
    BadSignatureError,
    InvalidInputError,
    MalformedTokenError,
    TokenError,
    UnknownKeyError,
    WrongTokenKindError,
)

__all__ = [
    "MAX_TOKEN_LENGTH",
    "FingerprintIndex",
    "decode_token",
    "decode_tokens",
    "encode_token",
    "fingerprint_score",
    "generate_seed",
    "public_key",
    "sign",
    "verify",
    "verify_batch",
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


def _batch_items(items: object) -> list[tuple[bytes, bytes, bytes]]:
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes)):
        raise TypeError(f"items must be a sequence, not {type(items).__name__}")
    checked = []
    for item in items:
        if not isinstance(item, tuple) or len(item) != 3:
            raise TypeError("each item must be a (public_key, message, signature) tuple")
        key, message, signature = item
        checked.append(
            (
                _require_bytes(key, "public_key"),
                _require_bytes(message, "message"),
                _require_bytes(signature, "signature"),
            )
        )
    return checked


def verify_batch(items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
    return [_verify_checked(*item) for item in _batch_items(items)]


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


def decode_tokens(tokens: Sequence[str], kind: str, public_keys: Mapping[str, bytes]) -> list[bytes | TokenError]:
    _require_kind(kind)
    _require_mapping(public_keys, "public_keys")
    if not isinstance(tokens, Sequence) or isinstance(tokens, (str, bytes)):
        raise TypeError(f"tokens must be a sequence, not {type(tokens).__name__}")
    results: list[bytes | TokenError] = []
    for token in tokens:
        try:
            results.append(decode_token(token, kind, public_keys))
        except TokenError as refused:
            results.append(refused)
    return results


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


class FingerprintIndex:
    def __init__(self, weights: Mapping[str, float]) -> None:
        self._weights = _weight_map(weights)
        self._stored: dict[str, _Weighted] = {}

    def add(self, /, id: str, fingerprint: Mapping[str, str]) -> None:
        _require_str(id, "id")
        self._stored[id] = _weigh(_string_map(fingerprint, "fingerprint"), self._weights)

    def remove(self, /, id: str) -> None:
        _require_str(id, "id")
        try:
            del self._stored[id]
        except KeyError:
            raise KeyError(id) from None

    def __len__(self, /) -> int:
        return len(self._stored)

    def __contains__(self, key: object, /) -> bool:
        return key in self._stored if isinstance(key, str) else False

    def best_match(self, /, presented: Mapping[str, str], threshold: float) -> tuple[str, float] | None:
        presented_items = dict(_string_map(presented, "presented"))
        floor = _require_threshold(threshold)
        best: tuple[str, float] | None = None
        for id_, stored in self._stored.items():
            score = _score(stored, presented_items)
            if score < floor:
                continue
            if best is None or score > best[1] or (score == best[1] and id_ < best[0]):
                best = (id_, score)
        return best

    def duplicates(self, /, threshold: float) -> list[tuple[str, str, float]]:
        floor = _require_threshold(threshold)
        # Only fingerprints that share an equal component can score above 0, so pair those alone.
        sharing: dict[tuple[str, str], list[str]] = {}
        for id_, (components, _) in self._stored.items():
            for name, value, _ in components:
                sharing.setdefault((name, value), []).append(id_)
        candidates: set[tuple[str, str]] = set()
        for ids in sharing.values():
            for i, first in enumerate(ids):
                for second in ids[i + 1 :]:
                    candidates.add((first, second) if first < second else (second, first))
        found = []
        for first, second in sorted(candidates):
            a, b = self._stored[first], self._stored[second]
            score = min(_score(a, dict((n, v) for n, v, _ in b[0])), _score(b, dict((n, v) for n, v, _ in a[0])))
            if score >= floor:
                found.append((first, second, score))
        return found
