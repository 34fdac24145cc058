"""Releases and the update entitlement: the rule (a table of cases), GET /v1/releases/latest against the real
gateway on both stores, the signed manifest and the artifact check, and the same answer offline from a license file."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from licensor.testing import Gateway, make_vendor
from licensor.testing.vendors import Vendor
from licensor_client import AsyncClient, RetryPolicy
from licensor_client.errors import TokenError
from licensor_client.machine import Environment, MachineReading
from licensor_client.releases import (
    Artifact,
    ArtifactRejectedError,
    is_prerelease,
    read_release_manifest,
    release_entitlement,
    verify_artifact,
    version_key,
)

DAY = 86400
NOW = 1_800_000_000
FAST = RetryPolicy(attempts=2, base_s=0.01, cap_s=0.02)


@pytest.mark.parametrize(
    ("case", "release", "expected"),
    [
        ("covered", {}, "VALID"),
        ("published on the maintenance's last second", {"released_at": NOW}, "VALID"),
        ("maintenance over", {"released_at": NOW + 1}, "VERSION_NOT_ENTITLED"),
        ("no maintenance limit", {"released_at": NOW + 10 * 365 * DAY, "maintenance_until": None}, "VALID"),
        ("feature missing", {"required_features": ["render"]}, "FEATURE_NOT_ENTITLED"),
        ("feature held", {"required_features": ["draw"]}, "VALID"),
        ("yanked", {"yanked": True}, "RELEASE_YANKED"),
        ("yanked beats every other reason", {"yanked": True, "released_at": NOW + 1}, "RELEASE_YANKED"),
        ("pre-release, not asked", {"version": "2.0.0-beta.1"}, "PRERELEASE_NOT_ASKED"),
        ("pre-release, asked", {"version": "2.0.0-beta.1", "include_prerelease": True}, "VALID"),
        ("build metadata is no pre-release", {"version": "2.0.0+build-7"}, "VALID"),
    ],
)
def test_the_update_entitlement_rule(case: str, release: dict[str, Any], expected: str) -> None:
    arguments: dict[str, Any] = {
        "version": "1.2.0",
        "released_at": NOW - DAY,
        "required_features": [],
        "yanked": False,
        "features": {"draw": None},
        "maintenance_until": NOW,
        **release,
    }
    assert release_entitlement(**arguments) == expected, case


def test_versions_order_numerically_with_pre_releases_first() -> None:
    ordered = ["0.9", "1.0.0-alpha", "1.0.0-alpha.2", "1.0.0-beta", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.2", "1.10.0", "2.0.0"]
    assert sorted(reversed(ordered), key=version_key) == ordered
    assert version_key("1.0.0+build.5") == version_key("1.0.0")
    assert is_prerelease("1.0.0-rc.1") and not is_prerelease("1.0.0+exp-sha.5114f85")


def test_an_artifact_is_checked_byte_for_byte(tmp_path: Path) -> None:
    content = b"installer " * 200_000  # 2 MB: read in chunks
    artifact = Artifact("setup.bin", "https://dl.example.com/setup.bin", len(content), hashlib.sha256(content).hexdigest())
    (tmp_path / "setup.bin").write_bytes(content)
    verify_artifact(artifact, content)
    verify_artifact(artifact, tmp_path / "setup.bin")
    for position in (0, len(content) // 2, len(content) - 1):
        altered = bytearray(content)
        altered[position] ^= 0x01
        with pytest.raises(ArtifactRejectedError) as rejected:
            verify_artifact(artifact, bytes(altered))
        assert rejected.value.code == "ARTIFACT_HASH_MISMATCH"
    with pytest.raises(ArtifactRejectedError) as rejected:
        verify_artifact(artifact, content + b"!")
    assert rejected.value.code == "ARTIFACT_SIZE_MISMATCH"


def iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def machine() -> MachineReading:
    return MachineReading({"machine_id": "c" * 32, "cpu": "CPU", "disk": "D"}, {}, Environment("physical"))


async def release(vendor: Vendor, version: str, released_at: float, **fields: Any) -> dict[str, Any]:
    content = f"{vendor.product['code']} {version}".encode()
    body = {
        "product_id": vendor.product["id"],
        "version": version,
        "released_at": iso(released_at),
        "artifacts": [
            {
                "name": "setup.bin",
                "url": f"https://dl.example.com/{version}/setup.bin",
                "size": len(content),
                "sha256": hashlib.sha256(content).hexdigest(),
            }
        ],
        **fields,
    }
    made: dict[str, Any] = await vendor.tenant.ok("POST", "/v1/admin/releases", 201, json=body)
    return made


async def test_the_newest_release_a_license_may_install(licensor_gateway: Gateway, tmp_path: Path) -> None:
    now = time.time()
    vendor = await make_vendor(licensor_gateway, "activation", product="cad", license={"maintenance_until": iso(now - 10 * DAY)})
    old = await release(vendor, "1.0.0", now - 100 * DAY)
    await release(vendor, "1.0.5", now - 50 * DAY, required_features=["render"])  # needs a feature the license lacks
    covered = await release(vendor, "1.0.4", now - 40 * DAY)
    yanked = await release(vendor, "1.0.9", now - 30 * DAY)
    await vendor.tenant.ok("PATCH", f"/v1/admin/releases/{yanked['id']}", json={"yanked": True})
    await release(vendor, "1.0.10-beta.1", now - 20 * DAY)
    await release(vendor, "1.1.0", now - 5 * DAY)  # after the maintenance ended
    await release(vendor, "2.0.0-rc.1", now - 15 * DAY, channel="beta")

    keys = await vendor.public_keys()
    app = AsyncClient(
        licensor_gateway.url, vendor.tenant.id, "cad", state_dir=tmp_path, public_keys=keys, machine=machine, retry=FAST
    )
    file = await app.activate(vendor.license["key"])
    offer = await app.latest_release()
    assert offer.manifest is not None and offer.manifest.version == "1.0.4" and offer.manifest.license_id == vendor.license["id"]
    assert offer.newest == {"version": "1.1.0", "released_at": offer.newest["released_at"], "code": "VERSION_NOT_ENTITLED"}  # type: ignore[index]
    (artifact,) = offer.manifest.artifacts
    verify_artifact(artifact, b"cad 1.0.4")
    with pytest.raises(ArtifactRejectedError):
        verify_artifact(artifact, b"cad 1.0.5")

    with_beta = await app.latest_release(prerelease=True)
    assert with_beta.manifest is not None and with_beta.manifest.version == "1.0.10-beta.1"
    assert with_beta.newest is not None and with_beta.newest["version"] == "1.1.0"
    beta = await app.latest_release("beta", prerelease=True)
    assert beta.manifest is not None and (beta.manifest.version, beta.manifest.channel) == ("2.0.0-rc.1", "beta")
    assert (await app.latest_release("beta")).manifest is None  # a channel of pre-releases only: none unless asked
    nothing = await app.latest_release("nightly")
    assert (nothing.manifest, nothing.newest) == (None, None)

    # Offline, the license file alone tells the same: covered, or why not.
    assert file.maintenance_until is not None and abs(file.maintenance_until - (now - 10 * DAY)) < 2
    released = {r["version"]: r for r in await vendor.tenant.list_all("/v1/admin/releases")}
    for version, expected in (
        ("1.0.0", "VALID"),
        ("1.0.4", "VALID"),
        ("1.0.5", "FEATURE_NOT_ENTITLED"),
        ("1.1.0", "VERSION_NOT_ENTITLED"),
    ):
        at = int(time.mktime(time.strptime(released[version]["released_at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone)
        assert file.covers(version, at, released[version]["required_features"]) == expected, version
    assert old["yanked"] is False and covered["channel"] == "stable"
    await app.aclose()


async def test_a_manifest_altered_in_any_byte_is_refused(licensor_gateway: Gateway, tmp_path: Path) -> None:
    vendor = await make_vendor(licensor_gateway, "activation", product="cad")
    await release(vendor, "3.1.0", time.time() - DAY)
    keys = await vendor.public_keys()
    app = AsyncClient(
        licensor_gateway.url, vendor.tenant.id, "cad", state_dir=tmp_path, public_keys=keys, machine=machine, retry=FAST
    )
    await app.activate(vendor.license["key"])
    offer = await app.latest_release()
    assert offer.manifest is not None
    token = offer.manifest.token
    expected = {"tenant": vendor.tenant.id, "product": "cad", "license_id": vendor.license["id"]}
    assert read_release_manifest(token, keys, **expected).version == "3.1.0"
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    refused = 0
    for position, char in enumerate(token):
        other = alphabet[(alphabet.index(char) + 1) % len(alphabet)]
        with pytest.raises(TokenError):
            read_release_manifest(token[:position] + other + token[position + 1 :], keys, **expected)
        refused += 1
    assert refused == len(token)
    with pytest.raises(TokenError):  # another license's client does not take it either
        read_release_manifest(token, keys, **{**expected, "license_id": "lic_00000000000000000000000000"})
    await app.aclose()


async def test_only_a_license_presented_gets_an_answer(licensor_gateway: Gateway, tmp_path: Path) -> None:
    vendor = await make_vendor(licensor_gateway, "activation", product="cad")
    other = await make_vendor(licensor_gateway, "activation", name="Other", product="cad")
    await release(vendor, "1.0.0", time.time() - DAY)
    params = {"tenant": vendor.tenant.id, "product": "cad"}
    answers = {
        "nothing": await licensor_gateway.call("GET", "/v1/releases/latest", params=params),
        "unknown key": await licensor_gateway.call(
            "GET", "/v1/releases/latest", params=params, headers={"Authorization": "License AAAA-BBBB"}
        ),
        "another tenant's key": await licensor_gateway.call(
            "GET", "/v1/releases/latest", params=params, headers={"Authorization": f"License {other.license['key']}"}
        ),
        "a forged token": await licensor_gateway.call(
            "GET", "/v1/releases/latest", params=params, headers={"Authorization": "Bearer lf1.key_x.e30.AAAA"}
        ),
    }
    assert {name: (a.status, a.code) for name, a in answers.items()} == {
        "nothing": (401, "LICENSE_REQUIRED"),
        "unknown key": (422, "LICENSE_KEY_MALFORMED"),
        "another tenant's key": (401, "LICENSE_INVALID"),
        "a forged token": (401, "LICENSE_INVALID"),
    }
    by_key = await licensor_gateway.call(
        "GET", "/v1/releases/latest", params=params, headers={"Authorization": f"License {vendor.license['key']}"}
    )
    assert by_key.status == 200 and by_key.body["release"]["version"] == "1.0.0"
    wrong_product = await licensor_gateway.call(
        "GET",
        "/v1/releases/latest",
        params={**params, "product": "other"},
        headers={"Authorization": f"License {vendor.license['key']}"},
    )
    assert (wrong_product.status, wrong_product.code) == (404, "PRODUCT_MISMATCH")
    await vendor.tenant.ok("POST", f"{vendor.license_path}/revoke", json={"reason": "refund"})
    revoked = await licensor_gateway.call(
        "GET", "/v1/releases/latest", params=params, headers={"Authorization": f"License {vendor.license['key']}"}
    )
    assert (revoked.status, revoked.code) == (403, "REVOKED")


async def test_a_cloud_device_asks_with_its_lease(licensor_gateway: Gateway, tmp_path: Path) -> None:
    import orjson

    vendor = await make_vendor(licensor_gateway, "cloud", product="cad")
    await release(vendor, "5.0.0", time.time() - DAY)
    made = await vendor.tenant.ok("POST", f"{vendor.license_path}/credentials", 201, json={})
    (tmp_path / "credential").write_bytes(orjson.dumps(made["credential_file"]))
    app = AsyncClient.from_credential_file(tmp_path / "credential", state_dir=tmp_path / "state", retry=FAST)
    with pytest.raises(Exception) as refused:
        await app.latest_release()
    assert getattr(refused.value, "code", None) == "NOT_ACTIVATED"
    async with app.lease("draw"):
        offer = await app.latest_release()
    assert offer.manifest is not None and offer.manifest.version == "5.0.0"
    await app.aclose()


async def test_a_lapsed_license_file_no_longer_presents_the_license(licensor_gateway: Gateway, tmp_path: Path) -> None:
    vendor = await make_vendor(licensor_gateway, "activation", product="cad")
    await release(vendor, "1.0.0", time.time() - DAY)
    keys = await vendor.public_keys()
    app = AsyncClient(
        licensor_gateway.url, vendor.tenant.id, "cad", state_dir=tmp_path, public_keys=keys, machine=machine, retry=FAST
    )
    file = await app.activate(vendor.license["key"])
    params = {"tenant": vendor.tenant.id, "product": "cad"}
    headers = {"Authorization": f"Bearer {file.token}"}
    assert (await licensor_gateway.call("GET", "/v1/releases/latest", params=params, headers=headers)).status == 200
    clock = licensor_gateway.freeze_clock()
    clock.advance(file.lapses_at - time.time() + 1)  # the file has lapsed: it presents nothing now
    lapsed = await licensor_gateway.call("GET", "/v1/releases/latest", params=params, headers=headers)
    assert (lapsed.status, lapsed.code) == (401, "LICENSE_INVALID")
    await app.aclose()
