"""The native core of licensor (Rust, PyO3): strict Ed25519, signed tokens, fingerprint matching.

Import it only through :mod:`licensor._impl`; :mod:`licensor._fallback` is its exact pure-Python twin
(same names, signatures, results and errors). Errors come from :mod:`licensor.errors`; an argument of
the wrong type raises :class:`TypeError`. ``bytes`` arguments must be ``bytes`` (not ``bytearray``).

Strict verification (both implementations): a signature verifies only if the public key is 32 bytes,
the signature 64 bytes, both ``A`` and ``R`` are canonical point encodings of points that are not of
small order, ``S`` is canonical (``S < L``), and ``[S]B = R + [k]A`` holds without the cofactor.
"""

from collections.abc import Mapping, Sequence
from typing import Final, Self, final

from licensor.errors import TokenError

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

MAX_TOKEN_LENGTH: Final[int]
"""The longest token, in characters, that :func:`encode_token` makes and :func:`decode_token` reads."""

def generate_seed() -> bytes:
    """Return 32 bytes from the operating system's random source: a new Ed25519 private seed."""

def public_key(seed: bytes) -> bytes:
    """Return the 32-byte Ed25519 public key of ``seed``.

    :raises licensor.errors.InvalidInputError: ``seed`` is not 32 bytes.
    """

def sign(seed: bytes, message: bytes) -> bytes:
    """Return the 64-byte Ed25519 signature (RFC 8032, deterministic) of ``message`` under ``seed``.

    :raises licensor.errors.InvalidInputError: ``seed`` is not 32 bytes.
    """

def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Return whether ``signature`` is a strictly valid signature of ``message`` under ``public_key``.

    Never raises for bad key or signature bytes (any length): they are simply not valid.
    """

def verify_batch(items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
    """Verify many ``(public_key, message, signature)`` tuples; return one result per item, in order.

    Each result equals what :func:`verify` returns for that item. The native core checks the whole batch
    with one multi-scalar multiplication (the GIL released), and when it fails, bisects to find exactly
    which items are bad.
    """

def encode_token(kind: str, kid: str, payload: bytes, seed: bytes) -> str:
    """Sign ``payload`` into a token ``KIND.KID.B64URL(payload).B64URL(signature)``.

    The signature covers the ASCII text ``KIND.KID.B64URL(payload)``, so a token of one kind never
    verifies as another. Base64url is unpadded. ``kind`` is 1-8 characters of ``a-z0-9``; ``kid`` is 1-64
    characters of ``A-Za-z0-9_-``.

    :raises licensor.errors.InvalidInputError: bad ``kind``, ``kid`` or ``seed``, or the token would be
        longer than :data:`MAX_TOKEN_LENGTH`.
    """

def decode_token(token: str, kind: str, public_keys: Mapping[str, bytes]) -> bytes:
    """Verify ``token`` as a token of ``kind`` under the key its key id names; return its payload.

    Checks run in this order, and the first failure is raised:

    :raises licensor.errors.InvalidInputError: ``kind`` itself is not 1-8 of ``a-z0-9``.
    :raises licensor.errors.MalformedTokenError: longer than :data:`MAX_TOKEN_LENGTH`, not ASCII, not
        four dot-separated parts, a bad kind or key id part, base64url that is not canonical (padding,
        other characters, non-zero trailing bits), or a signature that is not 64 bytes.
    :raises licensor.errors.WrongTokenKindError: a well-formed token of another kind.
    :raises licensor.errors.UnknownKeyError: the key id is not in ``public_keys``.
    :raises licensor.errors.BadSignatureError: the signature does not strictly verify.
    """

def decode_tokens(tokens: Sequence[str], kind: str, public_keys: Mapping[str, bytes]) -> list[bytes | TokenError]:
    """Decode many tokens at once: for each, its payload or the :class:`TokenError` that
    :func:`decode_token` would raise (returned, not raised). Signatures are checked with
    :func:`verify_batch`.

    :raises licensor.errors.InvalidInputError: ``kind`` itself is invalid.
    """

def fingerprint_score(stored: Mapping[str, str], presented: Mapping[str, str], weights: Mapping[str, float]) -> float:
    """Return how well ``presented`` matches ``stored``, from 0.0 to 1.0.

    The sum of the weights of the components of ``stored`` that ``presented`` has with an equal value,
    over the sum of the weights of all components of ``stored``, both summed in ``stored``'s order. A
    component without a weight weighs 1.0; an empty ``stored`` (or one whose weights sum to 0) scores 0.0.

    :raises licensor.errors.InvalidInputError: a weight that is not a number from 0 to 1,000,000, or a
        string that is not valid UTF-8.
    """

@final
class FingerprintIndex:
    """Stored fingerprints (id -> component -> value) matched against a presented one.

    Scores are those of :func:`fingerprint_score` with the index's weights. Thresholds are numbers in
    ``(0, 1]``; anything else raises :class:`licensor.errors.InvalidInputError`.
    """

    def __new__(cls, weights: Mapping[str, float]) -> Self:
        """Create an empty index that scores with ``weights`` (validated as for ``fingerprint_score``)."""

    def add(self, /, id: str, fingerprint: Mapping[str, str]) -> None:
        """Store ``fingerprint`` under ``id``, replacing what ``id`` had."""

    def remove(self, /, id: str) -> None:
        """Forget ``id``.

        :raises KeyError: ``id`` is not stored.
        """

    def __len__(self, /) -> int:
        """The number of stored fingerprints."""

    def __contains__(self, key: object, /) -> bool:
        """Whether ``key`` is a stored id."""

    def best_match(self, /, presented: Mapping[str, str], threshold: float) -> tuple[str, float] | None:
        """Return ``(id, score)`` of the stored fingerprint that ``presented`` matches best, if its score
        is at least ``threshold``; ties go to the id that sorts first; ``None`` when nothing reaches it."""

    def duplicates(self, /, threshold: float) -> list[tuple[str, str, float]]:
        """Return every pair ``(a, b, score)`` of stored fingerprints with ``a < b`` that match each other:
        ``score``, the lower of the two directions' scores, is at least ``threshold``. Sorted by ``(a, b)``."""

@final
class Signer:
    """An Ed25519 signing key expanded once and kept, for a key that signs again and again (a tenant's active
    key signing check answers): each call costs the signature alone, not the public key's derivation too.

    Its signatures equal :func:`sign`'s with the same seed, and its tokens :func:`encode_token`'s. The seed is
    never shown (not in its ``repr`` either).
    """

    def __new__(cls, seed: bytes) -> Self:
        """Expand ``seed``.

        :raises licensor.errors.InvalidInputError: ``seed`` is not 32 bytes.
        """

    def public_key(self, /) -> bytes:
        """The 32-byte Ed25519 public key, as :func:`public_key` of the seed."""

    def sign(self, /, message: bytes) -> bytes:
        """The 64-byte signature of ``message``, as :func:`sign` with the seed."""

    def encode_token(self, /, kind: str, kid: str, payload: bytes) -> str:
        """The token :func:`encode_token` makes of ``kind``, ``kid`` and ``payload`` with the seed.

        :raises licensor.errors.InvalidInputError: as :func:`encode_token` (bad ``kind`` or ``kid``, or too long).
        """
