"""What the tests of workers and hosts share: a tenant's admin over HTTP against a real ``licensor serve``, and one
license of each backend with the request bodies that take its seats or its quota (device-signed activations,
cloud check-outs, metered usage reports)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
from licensor.fingerprint import hash_components, product_salt
from licensor.testing import Sent, send_at_once
from licensor.testing.burst import Job
from licensor_client.activation import DeviceKey, device_request

ACTIVATE = "/v1/activations"
CHECK_OUT = "/v1/leases"
USAGE = "/v1/entitlements/usage"


@dataclass
class Admin:
    """A tenant's admin token used over HTTP against the gateway at ``url``."""

    session: aiohttp.ClientSession
    url: str
    token: str

    async def call(self, method: str, path: str, *, json: Any = None, params: Any = None, token: str | None = None) -> Any:
        """The answer's status and JSON body."""
        headers = {"Authorization": f"Bearer {token or self.token}"}
        async with self.session.request(method, self.url + path, json=json, params=params, headers=headers) as answer:
            return answer.status, await answer.json()

    async def ok(self, method: str, path: str, *, json: Any = None, params: Any = None, token: str | None = None) -> Any:
        """The JSON body of a 2xx answer.

        :raises AssertionError: any other answer."""
        status, body = await self.call(method, path, json=json, params=params, token=token)
        assert 200 <= status < 300, f"{method} {path}: {status} {body}"
        return body

    async def list_all(self, path: str) -> list[dict[str, Any]]:
        """Every item of a list, following next_cursor (at most 1,000 pages)."""
        items: list[dict[str, Any]] = []
        params = {"limit": "200"}
        for _ in range(1_000):
            page = await self.ok("GET", path, params=params)
            items.extend(page["data"])
            if not page["has_more"]:
                return items
            params = {**params, "cursor": page["next_cursor"]}
        raise AssertionError(f"{path}: more than 1,000 pages")

    async def tenant_id(self) -> str:
        return str((await self.ok("GET", "/v1/admin/tenant"))["id"])


@dataclass
class Licenses:
    """A tenant selling three products, one per backend, each with a policy of ``seats`` seats (or quota)."""

    admin: Admin
    tenant: str
    seats: int
    activation_policy: str
    cloud_policy: str
    saas_policy: str
    saas_product: str
    product_token: str

    async def activation_license(self) -> dict[str, Any]:
        return dict(await self.admin.ok("POST", "/v1/admin/licenses", json={"policy_id": self.activation_policy}))

    async def cloud_credential(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """A new cloud license and a credential file of it: (the license, the file)."""
        license = await self.admin.ok("POST", "/v1/admin/licenses", json={"policy_id": self.cloud_policy})
        made = await self.admin.ok("POST", f"/v1/admin/licenses/{license['id']}/credentials", json={"label": "site"})
        return license, made["credential_file"]

    async def saas_subject(self) -> str:
        """A new subject with a license of the metered feature ``calls`` (quota ``seats``)."""
        subject = f"subject-{uuid.uuid4().hex[:12]}"
        await self.admin.ok("POST", "/v1/admin/licenses", json={"policy_id": self.saas_policy, "subject": subject})
        return subject

    def device(self, number: int) -> tuple[DeviceKey, dict[str, Any]]:
        """Device ``number`` of product ``cad``: a new key, and its fingerprint."""
        components = {"machine_id": f"m-{number}", "disk": f"d-{number}"}
        return DeviceKey.generate(), hash_components(components, product_salt(self.tenant, "cad"))

    def activation_body(self, device: int, license_key: str) -> dict[str, Any]:
        """A device-signed activation of device number ``device`` (its own key and fingerprint)."""
        key, fingerprint = self.device(device)
        request = device_request(
            key, "activate", tenant=self.tenant, product="cad", fingerprint=fingerprint, license_key=license_key
        )
        return {"request": request}

    @staticmethod
    def check_out_body(device: int, credential_file: dict[str, Any]) -> dict[str, Any]:
        return {"tenant": credential_file["tenant"], "credential": credential_file["credential"], "device_id": f"device-{device}"}

    def usage_body(self, subject: str, units: int = 1) -> dict[str, Any]:
        return {"product": "saas", "subject": subject, "feature": "calls", "units": units}


async def make_licenses(admin: Admin, seats: int, quota: int | None = None) -> Licenses:
    """Products ``cad`` (activation), ``desk`` (cloud) and ``saas`` (cloud-lite, metered ``calls``), each with a policy
    of ``seats`` seats (or a quota of ``quota`` calls, default ``seats``), and a product token for ``saas``."""
    tenant = await admin.tenant_id()
    policies = {}
    for code, backend in (("cad", "activation"), ("desk", "cloud")):
        product = await admin.ok("POST", "/v1/admin/products", json={"code": code, "name": code.title()})
        await admin.ok("POST", "/v1/admin/features", json={"product_id": product["id"], "code": "draw", "name": "Draw"})
        policy = await admin.ok(
            "POST",
            "/v1/admin/policies",
            json={"product_id": product["id"], "name": code, "backend": backend, "seats": seats, "features": [{"code": "draw"}]},
        )
        policies[code] = policy["id"]
    saas = await admin.ok("POST", "/v1/admin/products", json={"code": "saas", "name": "Saas"})
    await admin.ok(
        "POST",
        "/v1/admin/features",
        json={"product_id": saas["id"], "code": "calls", "name": "Calls", "metered": True, "unit": "call"},
    )
    saas_policy = await admin.ok(
        "POST",
        "/v1/admin/policies",
        json={
            "product_id": saas["id"],
            "name": "saas",
            "backend": "cloud-lite",
            "features": [{"code": "calls", "quantity": quota or seats}],
        },
    )
    token = await admin.ok("POST", "/v1/admin/tokens", json={"name": "saas backend", "role": "product", "product_id": saas["id"]})
    return Licenses(admin, tenant, seats, policies["cad"], policies["desk"], saas_policy["id"], saas["id"], token["token"])


async def send_together(jobs: list[Job]) -> tuple[list[Sent], float]:
    """Every job at once, each on a connection of its own opened beforehand, each with an Idempotency-Key of
    its own as the SDK sends them: the answers in order and the burst's wall time."""
    return await send_at_once(jobs, idempotent=True)
