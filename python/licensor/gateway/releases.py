"""The update entitlement: ``GET /v1/releases/latest``, the newest release the asking license may install.

The software asks with what it holds: ``Authorization: License <license key>``, or ``Authorization: Bearer
<token>`` with a document the tenant signed for the license (an activation's ``lf1`` license file, a cloud
lease's ``ls1`` token). The rule is the client's (:func:`licensor_client.releases.release_entitlement`), so a
device with only its license file decides the same offline. The answer carries an ``rm1`` release manifest
signed by the tenant, with each artifact's size and SHA-256, which the client checks before installing.
"""

from __future__ import annotations

from typing import Any

from licensor_client.releases import (
    VALID,
    is_prerelease,
    manifest_document,
    release_entitlement,
    version_key,
)

from licensor.errors import RequestRefusedError
from licensor.gateway import keys as app_keys
from licensor.gateway.auth import LICENSE_HOLDER, LICENSE_HOLDER_QUERY
from licensor.license import CheckRequest, license_terms_verdict
from licensor.model import RELEASE, TIME_SCHEMA, id_pattern, nullable
from licensor.operations import Call, Operation, Param, Reply
from licensor.tokens import TokenKind, sign_document

LATEST_PATH = "/v1/releases/latest"
_PAGE = 200


async def _releases(call: Call, tenant_id: str, product_id: str, channel: str) -> list[dict[str, Any]]:
    """Every release of the product on the channel, as the admin API shows them."""
    found: list[dict[str, Any]] = []
    after = None
    while True:
        page = await call.store.list(tenant_id, RELEASE, {"product_id": product_id, "channel": channel}, after, _PAGE)
        found.extend(RELEASE.to_api(row) | {"_released_at": row["released_at"] // 1_000_000} for row in page.rows)
        if not page.has_more:
            return found
        after = page.rows[-1]["id"]


async def latest_release(call: Call) -> Reply:
    query = call.query
    tenant_id, channel = query["tenant"], query.get("channel", "stable")
    include_prerelease = query.get("prerelease") == "true"
    licensed = call.request[app_keys.ASKING_LICENSE]
    now = call.services.now_us()
    verdict = license_terms_verdict(CheckRequest.of(tenant_id, licensed, now))
    if not verdict.valid:
        raise RequestRefusedError(str(verdict.code), verdict.as_json()["message"], 403)
    maintenance = licensed.license["maintenance_until"]
    maintenance_until = None if maintenance is None else maintenance // 1_000_000
    features = licensed.features
    newest: dict[str, Any] | None = None
    chosen: dict[str, Any] | None = None
    for release in sorted(
        await _releases(call, tenant_id, licensed.product["id"], channel), key=lambda r: version_key(r["version"]), reverse=True
    ):
        if (
            release["yanked"]
            or (is_prerelease(release["version"]) and not include_prerelease)
            or release["_released_at"] > now // 1_000_000
        ):
            continue  # never offered (or not yet: published later): not the newest either
        code = release_entitlement(
            version=release["version"],
            released_at=release["_released_at"],
            required_features=release["required_features"],
            yanked=False,
            features=features,
            maintenance_until=maintenance_until,
            include_prerelease=include_prerelease,
        )
        if newest is None:
            newest = {"version": release["version"], "released_at": release["released_at"], "code": code}
        if code == VALID:
            chosen = release
            break
    manifest = None
    if chosen is not None:
        kid, seed = await call.services.signing_key(tenant_id)
        shown = {k: v for k, v in chosen.items() if not k.startswith("_")}
        document = manifest_document(
            tenant_id, licensed.product["code"], licensed.id, shown, chosen["_released_at"], now // 1_000_000
        )
        manifest = sign_document(TokenKind.RELEASE_MANIFEST, kid, seed, document)
        chosen = shown
    return Reply(
        200,
        {
            "object": "release_answer",
            "license_id": licensed.id,
            "channel": channel,
            "maintenance_until": licensed.terms.terms["maintenance_until"],
            "release": chosen,
            "manifest": manifest,
            "newest": newest,
        },
    )


def latest_release_operation() -> Operation:
    return Operation(
        method="GET",
        path=LATEST_PATH,
        operation_id="latest_release",
        summary="The newest release the asking license may install, with a signed manifest",
        handler=latest_release,
        tag="releases",
        auth=LICENSE_HOLDER,
        response_schema={
            "type": "object",
            "properties": {
                "object": {"const": "release_answer"},
                "license_id": {"type": "string", "pattern": id_pattern("lic")},
                "channel": {"type": "string"},
                "maintenance_until": nullable(TIME_SCHEMA),
                "release": nullable(RELEASE.response_schema()),
                "manifest": nullable({"type": "string"}),
                "newest": nullable(
                    {
                        "type": "object",
                        "properties": {"version": {"type": "string"}, "released_at": TIME_SCHEMA, "code": {"type": "string"}},
                        "required": ["version", "released_at", "code"],
                        "additionalProperties": False,
                    }
                ),
            },
            "required": ["object", "license_id", "channel", "maintenance_until", "release", "manifest", "newest"],
            "additionalProperties": False,
        },
        query=(
            *LICENSE_HOLDER_QUERY,
            Param("channel", {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,31}$"}, "The release channel (default stable)."),
            Param("prerelease", {"enum": ["true", "false"]}, "Offer pre-release versions (1.2.0-beta.1) too (default false)."),
        ),
        errors=(401, 403, 404),
        description=(
            "Authorization: License <license key>, or Bearer <an lf1 license file or ls1 lease token of the license>. "
            "release is the newest release of the channel that the license may install: not yanked, not a pre-release "
            "unless asked, requiring only features the license has, published no later than its maintenance_until "
            "(null: every release). manifest is an rm1 token signed by the tenant over the release and its artifacts "
            "(name, url, size, sha256): verify it, and each downloaded file against it, before installing. newest is "
            "the newest release offered on the channel and its code for this license (VALID, FEATURE_NOT_ENTITLED, "
            "VERSION_NOT_ENTITLED: a newer version the license does not cover), or null when the channel has none. "
            "401 LICENSE_REQUIRED, LICENSE_INVALID; 403 SUSPENDED, REVOKED, EXPIRED, NOT_YET_VALID; 404 PRODUCT_MISMATCH."
        ),
    )
