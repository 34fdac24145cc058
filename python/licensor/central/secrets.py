"""The server's master key and what is derived from it.

The master key (32 random bytes) never leaves the server: it seals the tenants' signing seeds (AES-256-GCM,
bound to tenant and key id) and keys the hash by which license keys are looked up. It lives in
``{data_dir}/master.key`` (mode 0600), or comes from ``LICENSOR_MASTER_KEY`` (base64url).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from licensor.errors import InvalidInputError


def _derive(master_key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"licensor " + purpose).derive(master_key)


def decode_master_key(text: str) -> bytes:
    """The master key from its base64url text (as ``LICENSOR_MASTER_KEY`` gives it).

    :raises InvalidInputError: not 32 bytes in base64url."""
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        key = b""
    if len(key) != 32:
        raise InvalidInputError("LICENSOR_MASTER_KEY must be 32 bytes in base64url")
    return key


def load_master_key(path: str) -> bytes:
    """The master key from ``path``, creating that file if missing (``LICENSOR_MASTER_KEY``, when set, is read by
    the configuration instead: :func:`decode_master_key`)."""
    try:
        with open(path, "rb") as existing:
            key = existing.read()
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        key = os.urandom(32)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as created:
            created.write(key)
    if len(key) != 32:
        raise InvalidInputError(f"{path} must hold exactly 32 bytes")
    return key


@dataclass(frozen=True)
class Secrets:
    """Keys derived from the master key, one per purpose."""

    master_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        # The derived keys, declared for the type checker (the declarations assign nothing); set through
        # object.__setattr__, the dataclass being frozen, and kept out of its fields (repr, comparison).
        self._seal_key: bytes
        self._license_key_hash_key: bytes
        self._answer_key: bytes
        self._integration_key: bytes
        object.__setattr__(self, "_seal_key", _derive(self.master_key, b"seal signing seeds v1"))
        object.__setattr__(self, "_license_key_hash_key", _derive(self.master_key, b"license key hash v1"))
        object.__setattr__(self, "_answer_key", _derive(self.master_key, b"seal idempotent answers v1"))
        object.__setattr__(self, "_integration_key", _derive(self.master_key, b"seal integration secrets v1"))

    def seal_seed(self, tenant_id: str, kid: str, seed: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + AESGCM(self._seal_key).encrypt(nonce, seed, f"{tenant_id}\x00{kid}".encode())

    def open_seed(self, tenant_id: str, kid: str, sealed: bytes) -> bytes:
        return AESGCM(self._seal_key).decrypt(sealed[:12], sealed[12:], f"{tenant_id}\x00{kid}".encode())

    def seal_answer(self, tenant_id: str, idempotency_key: str, answer: str) -> str:
        """An answer remembered for an Idempotency-Key, sealed (it may hold a license key or an API token,
        which the database must never hold in the clear), as text."""
        nonce = os.urandom(12)
        sealed = AESGCM(self._answer_key).encrypt(nonce, answer.encode(), f"{tenant_id}\x00{idempotency_key}".encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    def open_answer(self, tenant_id: str, idempotency_key: str, sealed: str) -> str:
        raw = base64.urlsafe_b64decode(sealed)
        return AESGCM(self._answer_key).decrypt(raw[:12], raw[12:], f"{tenant_id}\x00{idempotency_key}".encode()).decode()

    def seal_integration_secrets(self, tenant_id: str, purpose: str, secrets: list[str]) -> str:
        """Secrets shared with another system that licensor must use again (a shop's webhook signing secrets, a
        webhook endpoint's HMAC secret), sealed as text: they cannot be stored as a hash."""
        nonce = os.urandom(12)
        plain = "\n".join(secrets).encode()
        sealed = AESGCM(self._integration_key).encrypt(nonce, plain, f"{tenant_id}\x00{purpose}".encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    def open_integration_secrets(self, tenant_id: str, purpose: str, sealed: str) -> list[str]:
        raw = base64.urlsafe_b64decode(sealed)
        plain = AESGCM(self._integration_key).decrypt(raw[:12], raw[12:], f"{tenant_id}\x00{purpose}".encode())
        return plain.decode().split("\n")

    def license_key_hash(self, tenant_id: str, normalized_key: str) -> bytes:
        """The keyed hash a license key is stored and looked up by (never the key itself)."""
        message = f"{tenant_id}\x00{normalized_key}".encode()
        return hmac.new(self._license_key_hash_key, message, hashlib.sha256).digest()
