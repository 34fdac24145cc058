"""A vendor with one product per backend, a customer holding a license of each, devices and seats in use, and
releases with downloadable files: what the portal tests (HTTP and browser) look at."""

from __future__ import annotations

import email
import glob
import hashlib
import os
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from licensor.fingerprint import hash_components, product_salt
from licensor.testing import Gateway, Tenant
from licensor_client.activation import DeviceKey, device_request

ARTIFACT = b"studio 2.0 for linux\n" * 64


@dataclass
class World:
    gateway: Gateway
    tenant: Tenant
    customer: dict[str, Any]
    licenses: dict[str, dict[str, Any]] = field(default_factory=dict)  # backend -> license (with its key)
    products: dict[str, dict[str, Any]] = field(default_factory=dict)
    activations: list[dict[str, Any]] = field(default_factory=list)
    credentials: list[dict[str, Any]] = field(default_factory=list)
    leases: list[dict[str, Any]] = field(default_factory=list)
    releases: list[dict[str, Any]] = field(default_factory=list)
    data_dir: str = ""

    @property
    def base(self) -> str:
        return f"/portal/{self.tenant.id}/"

    def device_request(self, *, name: str = "Workshop PC", license_key: str | None = None) -> str:
        """A new device's activation request file for the customer's activation license (or another's key)."""
        components = {n: uuid.uuid4().hex for n in ("machine_id", "board", "cpu", "disk", "mac", "hostname")}
        product = self.products["activation"]["code"]
        return device_request(
            DeviceKey.generate(),
            "activate",
            tenant=self.tenant.id,
            product=product,
            fingerprint=hash_components(components, product_salt(self.tenant.id, product)),
            license_key=license_key or self.licenses["activation"]["key"],
            device_name=name,
        )

    def mails(self, to: str) -> list[str]:
        """The texts of the messages written to ``to``, oldest first."""
        found = []
        for path in sorted(glob.glob(os.path.join(self.data_dir, "mail", "*.eml")), key=os.path.getmtime):
            with open(path, "rb") as file:
                message = email.message_from_bytes(file.read())
            if message["To"] == to:
                found.append(str(message.get_payload(decode=True).decode()))
        return found

    def link_in_last_mail(self, to: str) -> str:
        """The path of the portal link in the newest message to ``to``."""
        found = re.search(r"https?://[^/\s]+(/portal/\S+)", self.mails(to)[-1])
        assert found is not None
        return found.group(1)


async def build_world(gateway: Gateway, data_dir: str, email_address: str = "ada@example.com", artifact_url: str = "") -> World:
    tenant = await gateway.tenant("Acme Software")
    customer = await tenant.customer(email_address, name="Ada Lovelace")
    world = World(gateway, tenant, customer, data_dir=data_dir)
    for backend, code in (("activation", "studio"), ("cloud", "render"), ("cloud-lite", "cloud-suite")):
        product = await tenant.product(code, name=code.replace("-", " ").title())
        await tenant.feature(product["id"], "export")
        policy = await tenant.policy(
            product["id"],
            name=f"{backend.title()} plan",
            backend=backend,
            seats=3,
            duration={"kind": "subscription", "days": 365},
            maintenance_days=365,
            features=[{"code": "export"}],
        )
        extra = {"subject": f"acme-{uuid.uuid4().hex[:6]}"} if backend == "cloud-lite" else {}
        world.licenses[backend] = await tenant.license(policy["id"], customer_id=customer["id"], **extra)
        world.products[backend] = product
    studio = world.products["activation"]
    url = artifact_url or "https://downloads.example.com/studio-2.0.tar.gz"
    digest = hashlib.sha256(ARTIFACT).hexdigest()
    for version, released in (("1.0", "2025-01-01T00:00:00Z"), ("2.0", "2026-06-01T00:00:00Z")):
        body = {
            "product_id": studio["id"],
            "version": version,
            "released_at": released,
            "artifacts": [{"name": f"studio-{version}.tar.gz", "url": url, "size": len(ARTIFACT), "sha256": digest}],
        }
        world.releases.append(await tenant.ok("POST", "/v1/admin/releases", 201, json=body))
    # Two devices activated through the device API; a credential file with a seat held by a device.
    for name in ("Workshop PC", "Laptop"):
        issued = await tenant.ok("POST", "/v1/activations", 201, json={"request": world.device_request(name=name)}, token=None)
        world.activations.append(issued["activation"])
    cloud = world.licenses["cloud"]["id"]
    made = await tenant.ok("POST", f"/v1/admin/licenses/{cloud}/credentials", 201, json={"label": "Render farm"})
    world.credentials.append(made["credential"])
    lease_body = {"tenant": tenant.id, "credential": made["credential_file"]["credential"], "device_id": "render-node-1"}
    world.leases.append((await tenant.ok("POST", "/v1/leases", 201, json=lease_body, token=None))["lease"])
    return world
