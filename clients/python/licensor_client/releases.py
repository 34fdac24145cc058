"""Releases and the update entitlement: which versions a license may install, the signed release manifest
(``rm1``), and checking a downloaded artifact against it.

One rule decides, on the gateway (``GET /v1/releases/latest``) and offline on the device (a license file states
the license's features and its ``maintenance_until``), :func:`release_entitlement`: a release is covered when it
is not yanked, is not a pre-release (unless pre-releases were asked for), requires only features the license
has, and was published no later than the license's maintenance end (none: every release is covered).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from licensor_client._fields import expect_claims, integer, text
from licensor_client.errors import LicensorError, TokenError
from licensor_client.tokens import TokenKind, read_document

__all__ = [
    "MANIFEST_KIND",
    "Artifact",
    "ArtifactRejectedError",
    "ManifestRejectedError",
    "ReleaseManifest",
    "is_prerelease",
    "read_release_manifest",
    "release_entitlement",
    "verify_artifact",
    "version_key",
]

MANIFEST_KIND = TokenKind.RELEASE_MANIFEST
VALID = "VALID"
YANKED = "RELEASE_YANKED"
PRERELEASE = "PRERELEASE_NOT_ASKED"
VERSION_NOT_ENTITLED = "VERSION_NOT_ENTITLED"
FEATURE_NOT_ENTITLED = "FEATURE_NOT_ENTITLED"
_CHUNK = 1 << 20


class ManifestRejectedError(TokenError):
    """A genuinely signed release manifest that is not for this tenant, product or license, or lacks a field."""

    code = "MANIFEST_REJECTED"


class ArtifactRejectedError(LicensorError):
    """A downloaded file that is not the manifest's: another size (ARTIFACT_SIZE_MISMATCH) or another SHA-256
    (ARTIFACT_HASH_MISMATCH). Do not install it."""

    code = "ARTIFACT_REJECTED"
    http_status = 422


def is_prerelease(version: str) -> bool:
    """Whether a version has a pre-release part (``2.0.0-beta.1``; build metadata after ``+`` does not count)."""
    return "-" in version.split("+", 1)[0]


def version_key(version: str) -> tuple[Any, ...]:
    """An ordering of versions: numeric parts numerically (``1.10`` after ``1.9``), a pre-release before its release
    (``2.0.0-rc.1`` before ``2.0.0``), build metadata ignored. Non-numeric parts sort after numeric ones."""
    core, _, pre = version.split("+", 1)[0].partition("-")

    def parts(text_: str) -> tuple[tuple[int, int | str], ...]:
        return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[._]", text_) if p)

    return (parts(core), 0 if pre else 1, parts(pre))


def release_entitlement(
    *,
    version: str,
    released_at: int,
    required_features: Collection[str],
    yanked: bool,
    features: Collection[str],
    maintenance_until: int | None,
    include_prerelease: bool = False,
) -> str:
    """``VALID`` when the license may install the release, else why not, first reason first: RELEASE_YANKED,
    PRERELEASE_NOT_ASKED, FEATURE_NOT_ENTITLED (a required feature the license lacks), VERSION_NOT_ENTITLED
    (published after the license's maintenance ended). Times in seconds since the epoch."""
    if yanked:
        return YANKED
    if is_prerelease(version) and not include_prerelease:
        return PRERELEASE
    if any(feature not in features for feature in required_features):
        return FEATURE_NOT_ENTITLED
    if maintenance_until is not None and released_at > maintenance_until:
        return VERSION_NOT_ENTITLED
    return VALID


@dataclass(frozen=True)
class Artifact:
    name: str
    url: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ReleaseManifest:
    """A verified ``rm1`` manifest: the release a license may install, and its files."""

    tenant: str
    product: str
    license_id: str
    version: str
    channel: str
    released_at: int
    required_features: tuple[str, ...]
    artifacts: tuple[Artifact, ...]
    issued_at: int
    token: str

    def artifact(self, name: str) -> Artifact:
        """:raises KeyError: the release has no file of that name."""
        for artifact in self.artifacts:
            if artifact.name == name:
                return artifact
        raise KeyError(name)


def manifest_document(
    tenant_id: str, product: str, license_id: str, release: Mapping[str, Any], released_at: int, issued_at: int
) -> dict[str, Any]:
    """What the gateway signs as an ``rm1`` manifest (``release`` as the admin API shows it; times in seconds)."""
    return {
        "tenant": tenant_id,
        "product": product,
        "license": license_id,
        "version": release["version"],
        "channel": release["channel"],
        "released_at": released_at,
        "required_features": list(release["required_features"]),
        "artifacts": [dict(a) for a in release["artifacts"]],
        "iat": issued_at,
    }


def read_release_manifest(
    token: str, public_keys: Mapping[str, bytes], *, tenant: str, product: str, license_id: str | None = None
) -> ReleaseManifest:
    """The content of a manifest signed by ``tenant`` for ``product`` (and ``license_id``, when given).

    :raises licensor_client.errors.TokenError: malformed, another kind, an unknown key, a bad signature (any byte
        altered); :class:`ManifestRejectedError` (TENANT_MISMATCH, PRODUCT_MISMATCH, LICENSE_MISMATCH,
        MANIFEST_MALFORMED)."""
    token = token.strip()
    document = read_document(token, MANIFEST_KIND, public_keys)
    expect_claims(document, ManifestRejectedError, "manifest", tenant=tenant, product=product, license=license_id)
    try:
        artifacts = tuple(
            Artifact(text(a["name"]), text(a["url"]), integer(a["size"]), text(a["sha256"])) for a in document["artifacts"]
        )
        if not all(re.fullmatch(r"[0-9a-f]{64}", a.sha256) and a.size >= 0 for a in artifacts):
            raise ValueError("an artifact's size or hash is malformed")
        return ReleaseManifest(
            tenant,
            product,
            text(document["license"]),
            text(document["version"]),
            text(document["channel"]),
            integer(document["released_at"]),
            tuple(text(f) for f in document["required_features"]),
            artifacts,
            integer(document["iat"]),
            token,
        )
    except (KeyError, TypeError, ValueError):
        raise ManifestRejectedError("the manifest lacks or garbles a field", code="MANIFEST_MALFORMED") from None


def verify_artifact(artifact: Artifact, content: bytes | str | os.PathLike[str]) -> None:
    """Check a downloaded file (its bytes, or its path, read in 1 MiB chunks) against the manifest's size and
    SHA-256 before installing it.

    :raises ArtifactRejectedError: ARTIFACT_SIZE_MISMATCH or ARTIFACT_HASH_MISMATCH."""
    digest, size = hashlib.sha256(), 0
    if isinstance(content, bytes):
        digest.update(content)
        size = len(content)
    else:
        with open(content, "rb") as source:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    if size != artifact.size:
        raise ArtifactRejectedError(
            f"{artifact.name} has {size} bytes, the manifest says {artifact.size}", code="ARTIFACT_SIZE_MISMATCH"
        )
    if not hmac.compare_digest(digest.hexdigest(), artifact.sha256):
        raise ArtifactRejectedError(f"{artifact.name} is not the file the release manifest names", code="ARTIFACT_HASH_MISMATCH")
