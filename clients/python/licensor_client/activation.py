"""The device's side of the activation backend: its key, its signed requests, and its license file verified offline.

A device makes an Ed25519 key of its own once (:class:`DeviceKey`) and signs every request it sends as a ``dv1``
token (:func:`device_request`): activate, recover, check in, deactivate. The token's key id is the device's
public key itself (base64url), so the gateway can verify a request before it knows the device, and a request
signed by one device cannot be passed off as another's. The answer is an ``lf1`` license file signed by the
vendor's tenant, bound to the device's fingerprint and key; the software verifies it offline at every start
with :func:`verify_license_file` against the tenant's public keys (``GET /v1/keys``), its fingerprint and the
clock. An offline device writes the same ``dv1`` request to a file (the activation request file) and imports
the ``lf1`` file the vendor answers with.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from licensor_client import codec
from licensor_client._fields import expect_claims, integer, json_object, quantity, text, text_map
from licensor_client.codes import Code
from licensor_client.errors import TokenError
from licensor_client.fingerprint import MatchRule
from licensor_client.formats import b64url, public_key_of
from licensor_client.releases import release_entitlement
from licensor_client.tokens import TokenKind, read_document, sign_document

DEVICE_REQUEST_KIND = TokenKind.DEVICE_REQUEST
LICENSE_FILE_KIND = TokenKind.LICENSE_FILE
OPERATIONS = ("activate", "recover", "checkin", "deactivate")
CLOCK_SKEW_S = 300
"""How far the device's clock may run behind the gateway's before a file it was just given looks not yet valid."""


class LicenseFileRejectedError(TokenError):
    """A genuinely signed license file that is not this software's: another tenant or product, or malformed."""

    code = "LICENSE_FILE_REJECTED"


def device_public_key(key_id: str) -> bytes | None:
    """The 32-byte public key a device key id names (its canonical base64url), or None if it names none."""
    return public_key_of(key_id)


@dataclass(frozen=True)
class DeviceKey:
    """A device's own signing key. Keep :attr:`seed` secret on the device (it never leaves it)."""

    seed: bytes

    @classmethod
    def generate(cls) -> DeviceKey:
        return cls(codec.generate_seed())

    @property
    def public_key(self) -> bytes:
        return codec.public_key(self.seed)

    @property
    def key_id(self) -> str:
        """The public key, base64url: the key id of the device's ``dv1`` tokens and the ``device_key`` of its files."""
        return b64url(self.public_key)


def device_request(
    key: DeviceKey, op: str, *, tenant: str, product: str, fingerprint: Mapping[str, str], now: float | None = None, **fields: Any
) -> str:
    """A ``dv1`` request signed by the device: ``op`` is ``activate`` and ``recover`` (with ``license_key``,
    optionally ``device_name``, and for recover ``withdraw``, an activation id), or ``checkin`` and
    ``deactivate`` (with ``activation`` and ``generation``, those of the device's current license file)."""
    if op not in OPERATIONS:
        raise ValueError(f"op must be one of {', '.join(OPERATIONS)}")
    document = {
        "op": op,
        "tenant": tenant,
        "product": product,
        "device_key": key.key_id,
        "fingerprint": dict(fingerprint),
        "time": int(time.time() if now is None else now),
        **{k: v for k, v in fields.items() if v is not None},
    }
    return sign_document(DEVICE_REQUEST_KIND, key.key_id, key.seed, document)


def read_device_request(token: str) -> dict[str, Any]:
    """The document of a ``dv1`` request, once it verifies under the device key its key id names.

    :raises licensor_client.errors.TokenError: malformed, another kind, or a signature that does not verify.
    """
    kid = token.split(".", 2)[1] if token.count(".") == 3 else ""
    public_key = device_public_key(kid)
    return read_document(token, DEVICE_REQUEST_KIND, {kid: public_key} if public_key else {})


@dataclass(frozen=True)
class LicenseFile:
    """A verified ``lf1`` license file's content (times in seconds since the epoch)."""

    tenant: str
    product: str
    license_id: str
    activation_id: str
    device_key: str
    fingerprint: dict[str, str]
    rule: MatchRule
    features: dict[str, int | None]
    terms: dict[str, Any]
    generation: int
    issued_at: int
    checkpoint_at: int
    lapses_at: int
    expires_at: int | None
    mode: str
    token: str
    maintenance_until: int | None = None
    """The end of the license's update entitlement (None: every release is covered)."""
    license_generation: int | None = None
    """The license's generation the file reflects (its changes in License Central: :mod:`licensor_client.updates`)."""

    def covers(
        self, version: str, released_at: int, required_features: Collection[str] = (), *, include_prerelease: bool = False
    ) -> str:
        """Whether the license may install a release, offline: VALID or why not (see
        :func:`licensor_client.releases.release_entitlement`; a yanked release is the gateway's to know)."""
        return release_entitlement(
            version=version,
            released_at=released_at,
            required_features=required_features,
            yanked=False,
            features=self.features,
            maintenance_until=self.maintenance_until,
            include_prerelease=include_prerelease,
        )


@dataclass(frozen=True)
class FileVerdict:
    """What a license file allows now: ``code`` is VALID or the reason it does not (a :class:`Code`)."""

    code: Code
    file: LicenseFile

    @property
    def valid(self) -> bool:
        return self.code is Code.VALID


def read_license_file(token: str, public_keys: Mapping[str, bytes], *, tenant: str, product: str) -> LicenseFile:
    """The content of a license file signed by ``tenant`` for ``product``.

    :raises licensor_client.errors.TokenError: malformed, another kind of token, an unknown key or a bad signature;
        :class:`LicenseFileRejectedError` (TENANT_MISMATCH, PRODUCT_MISMATCH, LICENSE_FILE_MALFORMED).
    """
    token = token.strip()  # the file's text, with or without its final newline
    document = read_document(token, LICENSE_FILE_KIND, public_keys)
    expect_claims(document, LicenseFileRejectedError, "license file", tenant=tenant, product=product)
    try:
        features = {text(item["feature"]): quantity(item["quantity"]) for item in document["features"]}
        parsed = LicenseFile(
            tenant,
            product,
            text(document["license"]),
            text(document["activation"]),
            text(document["device_key"]),
            text_map(document["fingerprint"]),
            MatchRule.from_json(document["match"]),
            features,
            json_object(document["terms"]),
            integer(document["generation"]),
            integer(document["iat"]),
            integer(document["checkpoint_at"]),
            integer(document["lapses_at"]),
            None if document["exp"] is None else integer(document["exp"]),
            text(document["mode"]),
            token,
            None if document.get("maintenance_until") is None else integer(document["maintenance_until"]),
            None if document.get("license_generation") is None else integer(document["license_generation"]),
        )
    except (KeyError, TypeError, ValueError):
        raise LicenseFileRejectedError("the license file lacks or garbles a field", code="LICENSE_FILE_MALFORMED") from None
    return parsed


def verify_license_file(
    token: str,
    public_keys: Mapping[str, bytes],
    *,
    tenant: str,
    product: str,
    fingerprint: Mapping[str, str],
    device_key: str | None = None,
    features: Collection[str] = (),
    now: float | None = None,
) -> FileVerdict:
    """Whether a license file lets this device use ``features`` of ``product`` now, offline.

    The verdict's code, first failure first: FINGERPRINT_MISMATCH (the device's fingerprint no longer matches
    the file's within its rule, or the file names another ``device_key``), NOT_YET_VALID (the clock is behind the
    file's issue time: turned back), EXPIRED (the license's term ended), CHECKPOINT_OVERDUE (the device did not
    check in before the file's checkpoint plus grace), FEATURE_NOT_ENTITLED; else VALID.

    :raises licensor_client.errors.TokenError: as :func:`read_license_file`: a file that is not a genuine one for
        this tenant and product (a changed bit, another kind, another tenant's key).
    """
    file = read_license_file(token, public_keys, tenant=tenant, product=product)
    moment = time.time() if now is None else now
    if (device_key is not None and device_key != file.device_key) or not file.rule.matches(file.fingerprint, fingerprint):
        code = Code.FINGERPRINT_MISMATCH
    elif moment + CLOCK_SKEW_S < file.issued_at:
        code = Code.NOT_YET_VALID
    elif file.expires_at is not None and moment >= file.expires_at:
        code = Code.EXPIRED
    elif moment >= file.lapses_at:
        code = Code.CHECKPOINT_OVERDUE
    elif any(feature not in file.features for feature in features):
        code = Code.FEATURE_NOT_ENTITLED
    else:
        code = Code.VALID
    return FileVerdict(code, file)
