"""Pure-Python twin of the native core ``licensor._core``: same names, signatures, results and errors.

The contract is written once, in ``_core.pyi``. The single-item functions (Ed25519, the signed-token codec,
fingerprint scoring) are the client's (:mod:`licensor_client.codec`): one implementation of the strict rules,
run by the licensed software and by the server alike. Here are the batch functions the server adds on top.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# The codec's argument checks and scoring steps, so the batch functions check and score exactly as it does.
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from licensor_client.codec import (
    _KID,
    MAX_TOKEN_LENGTH,
    _b64url_encode,
    _require_bytes,
    _require_kind,
    _require_mapping,
    _require_seed,
    _require_str,
    _require_threshold,
    _score,
    _string_map,
    _verify_checked,
    _weigh,
    _weight_map,
    _Weighted,
    decode_token,
    encode_token,
    fingerprint_score,
    generate_seed,
    public_key,
    sign,
    verify,
)

from licensor.errors import InvalidInputError, TokenError

__all__ = [
    "MAX_TOKEN_LENGTH",
    "FingerprintIndex",
    "Signer",
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


class Signer:
    __slots__ = ("_key",)

    def __init__(self, seed: bytes) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(_require_seed(seed))

    def public_key(self, /) -> bytes:
        return self._key.public_key().public_bytes_raw()

    def sign(self, /, message: bytes) -> bytes:
        return self._key.sign(_require_bytes(message, "message"))

    def encode_token(self, /, kind: str, kid: str, payload: bytes) -> str:
        # The checks of encode_token, in its order (the seed was checked when the key was made).
        _require_kind(kind)
        _require_str(kid, "kid")
        if not _KID.fullmatch(kid):
            raise InvalidInputError("kid must be 1-64 characters of A-Za-z0-9_-")
        _require_bytes(payload, "payload")
        if len(kind) + len(kid) + (len(payload) * 4 + 2) // 3 + 89 > MAX_TOKEN_LENGTH:
            raise InvalidInputError(f"token would be longer than {MAX_TOKEN_LENGTH} characters")
        signed = f"{kind}.{kid}.{_b64url_encode(payload)}"
        return f"{signed}.{_b64url_encode(self._key.sign(signed.encode('ascii')))}"


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
