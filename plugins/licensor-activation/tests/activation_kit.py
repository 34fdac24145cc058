"""What the activation tests share: a vendor selling a device-bound product, and simulated devices."""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from typing import Any

from licensor import testing
from licensor.fingerprint import hash_components, product_salt
from licensor.testing import Answer, Gateway
from licensor_client.activation import DeviceKey, device_request, verify_license_file

MACHINE = {"machine_id": "m-1", "board": "b-1", "cpu": "c-1", "disk": "d-1", "mac": "aa:bb", "hostname": "host-1"}


def machine(n: int | str) -> dict[str, str]:
    """The raw components of a made-up machine number ``n`` (all different from another number's)."""
    return {name: f"{value}-{n}" for name, value in MACHINE.items()}


@dataclass
class Vendor(testing.Vendor):
    """A tenant with product ``cad`` (features ``draw`` and ``render``), an activation policy and a license."""

    def device(self, components: dict[str, str] | None = None, name: str | None = None) -> Device:
        return Device(self, components or machine(uuid.uuid4().hex[:8]), DeviceKey.generate(), name)

    async def activations(self, state: str | None = None) -> list[dict[str, Any]]:
        params = {"state": state} if state else {}
        return await self.tenant.list_all(f"/v1/admin/licenses/{self.license['id']}/activations", params=params)

    async def seats_held(self) -> int:
        """Activations holding a seat now, counted by the store as the backend counts them."""
        now = self.backend.clock()
        async with self.gateway.store.transaction(self.tenant.id) as tx:
            rows = await tx.license_activations(self.license["id"], now, now)
        return sum(1 for row in rows if row["state"] != "replaced")


@dataclass
class Device:
    """A simulated device: raw components, its own key, and the license file it holds."""

    vendor: Vendor
    components: dict[str, str]
    key: DeviceKey
    name: str | None = None
    file: str | None = None
    activation_id: str | None = None
    generation: int = 0
    answers: list[Answer] = field(default_factory=list)

    @property
    def fingerprint(self) -> dict[str, str]:
        return hash_components(self.components, product_salt(self.vendor.tenant.id, self.vendor.product["code"]))

    def request(self, op: str, now: float | None = None, **fields: Any) -> str:
        """A signed request of this device, made at ``now`` (seconds; default the backend's clock)."""
        now = self.vendor.backend.clock() / 1_000_000 if now is None else now
        if op in ("checkin", "deactivate"):
            fields = {"activation": self.activation_id, "generation": self.generation, **fields}
        else:
            fields = {"license_key": self.vendor.license["key"], "device_name": self.name, **fields}
        return device_request(
            self.key,
            op,
            tenant=self.vendor.tenant.id,
            product=self.vendor.product["code"],
            fingerprint=self.fingerprint,
            now=now,
            **fields,
        )

    async def send(self, path: str, op: str, headers: dict[str, str] | None = None, **fields: Any) -> Answer:
        answer = await self.vendor.gateway.call("POST", path, json={"request": self.request(op, **fields)}, headers=headers)
        self.answers.append(answer)
        if answer.status in (200, 201) and "license_file" in answer.body:
            self.keep(answer.body["license_file"], answer.body["activation"])
        return answer

    def keep(self, file: str, activation: dict[str, Any]) -> None:
        self.file, self.activation_id, self.generation = file, activation["id"], activation["generation"]

    async def activate(self, **fields: Any) -> Answer:
        return await self.send("/v1/activations", "activate", **fields)

    async def recover(self, **fields: Any) -> Answer:
        return await self.send("/v1/activations/recover", "recover", **fields)

    async def check_in(self, **fields: Any) -> Answer:
        return await self.send("/v1/activations/checkin", "checkin", **fields)

    async def deactivate(self) -> Answer:
        return await self.send("/v1/activations/deactivate", "deactivate")

    async def verify(self, features: tuple[str, ...] = (), now: float | None = None) -> str:
        """The SDK's offline verdict code for the file this device holds."""
        assert self.file is not None
        moment = self.vendor.backend.clock() / 1_000_000 if now is None else now
        verdict = verify_license_file(
            self.file,
            await self.vendor.public_keys(),
            tenant=self.vendor.tenant.id,
            product=self.vendor.product["code"],
            fingerprint=self.fingerprint,
            device_key=self.key.key_id,
            features=features,
            now=moment,
        )
        return verdict.code.value

    def copy(self) -> Device:
        """A copy of the whole machine (a cloned VM or a snapshot): same components, key and file."""
        return copy.copy(self)


async def vendor(gateway: Gateway, seats: int = 1, name: str = "Device vendor", **options: Any) -> Vendor:
    return await testing.make_vendor(gateway, "activation", kind=Vendor, name=name, product="cad", seats=seats, options=options)
