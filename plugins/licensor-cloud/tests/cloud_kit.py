"""What the cloud backend's tests share: a vendor selling a product leased by seat, its credential files, and
simulated devices that check out, renew and release leases with them.

- :func:`vendor` makes a tenant with product ``cad`` (features ``draw`` and ``render``), a ``cloud`` policy
  (granting ``draw`` by default) with the given seats and options, and a license of it: a :class:`Vendor`.
- :meth:`Vendor.credential` makes a credential file through the admin API (a :class:`Credential`).
- :meth:`Vendor.device` is a :class:`Device` holding a credential file: :meth:`Device.check_out`,
  :meth:`Device.heartbeat` and :meth:`Device.release` send the wire protocol's requests through the gateway and
  keep the newest lease and lease secret of each answer; :meth:`Device.copy` is a copy of the whole machine (a
  cloned or reverted virtual machine: same credential file, device id, lease and lease secret). The request
  bodies are also available alone (:meth:`Device.check_out_body`, :meth:`Device.lease_body`) for tests that
  send them another way (several gateways at once), with :meth:`Device.keep` to take in a granted answer.
- Time moves by hand: ``vendor.gateway.freeze_clock()`` stops the gateway's clock, ``vendor.clock`` moves it.

Device requests carry no bearer token: the credential in the body authenticates them.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from licensor import testing
from licensor.testing import Answer, Gateway, b64url_decode

CHECK_OUT = "/v1/leases"
HEARTBEAT = "/v1/leases/heartbeat"
RELEASE = "/v1/leases/release"


def at(day: date, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    """A UTC moment of ``day``."""
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)


@dataclass
class Credential:
    """A credential file as the admin API made it: the file (which alone holds the secret) and the record."""

    file: dict[str, Any]
    record: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.record["id"])

    @property
    def secret(self) -> str:
        return str(self.file["credential"]).partition(".")[2]

    def public_keys(self) -> dict[str, bytes]:
        """The tenant's public keys the file carries (key id -> raw Ed25519 public key)."""
        return {kid: b64url_decode(key) for kid, key in self.file["keys"].items()}


@dataclass
class Vendor(testing.Vendor):
    """A tenant with product ``cad`` (features ``draw`` and ``render``), a cloud policy and a license of it."""

    async def credential(self, label: str | None = None, license_id: str | None = None, token: str | None = None) -> Credential:
        """A new credential file of the license (or of ``license_id``), made with the admin token (or ``token``)."""
        body = {"label": label} if label is not None else {}
        path = f"/v1/admin/licenses/{license_id or self.license['id']}/credentials"
        made = await self.tenant.ok("POST", path, 201, json=body, **({"token": token} if token else {}))
        return Credential(made["credential_file"], made["credential"])

    def device(self, credential: Credential, device_id: str | None = None, name: str | None = None) -> Device:
        """A device that imported ``credential``'s file (a new random device id unless given one)."""
        return Device(self.gateway, credential.file, device_id or f"device-{uuid.uuid4().hex[:12]}", name)

    async def leases(self, state: str | None = None, license_id: str | None = None) -> list[dict[str, Any]]:
        """The license's leases as the admin API lists them (of one shown state, if given)."""
        params = {"state": state} if state else {}
        return await self.tenant.list_all(f"/v1/admin/licenses/{license_id or self.license['id']}/leases", params=params)

    async def seats_held(self) -> int:
        """The leases the admin API shows active: seats held now."""
        return len(await self.leases("active"))

    async def lease(self, lease_id: str) -> dict[str, Any]:
        return await self.tenant.ok("GET", f"/v1/admin/leases/{lease_id}")

    async def event_types(self, prefix: str = "lease.") -> list[str]:
        """The types of the tenant's events starting with ``prefix``, oldest first."""
        return [event["type"] for event in await self.events() if event["type"].startswith(prefix)]


@dataclass
class Device:
    """A simulated device holding a credential file: its device id, and its newest lease and lease secret."""

    gateway: Gateway
    credential_file: dict[str, Any]
    device_id: str
    name: str | None = None
    lease_id: str | None = None
    lease_secret: str | None = None
    lease: dict[str, Any] | None = None
    lease_token: str | None = None
    answers: list[Answer] = field(default_factory=list)

    # --- request bodies ---------------------------------------------------------------------------------
    def check_out_body(self, features: list[str] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "tenant": self.credential_file["tenant"],
            "credential": self.credential_file["credential"],
            "device_id": self.device_id,
        }
        if self.name is not None:
            body["device_name"] = self.name
        if features is not None:
            body["features"] = features
        return body

    def lease_body(self) -> dict[str, Any]:
        """The body of a heartbeat or a release of the lease this device holds."""
        assert self.lease_id is not None and self.lease_secret is not None, "the device holds no lease"
        return {
            "tenant": self.credential_file["tenant"],
            "credential": self.credential_file["credential"],
            "lease": self.lease_id,
            "lease_secret": self.lease_secret,
        }

    def keep(self, body: dict[str, Any]) -> None:
        """Take in a granted answer (check-out or heartbeat): its lease, secret and token."""
        self.lease, self.lease_id = body["lease"], body["lease"]["id"]
        self.lease_secret, self.lease_token = body["lease_secret"], body["lease_token"]

    # --- requests ---------------------------------------------------------------------------------------
    async def send(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Answer:
        answer = await self.gateway.call("POST", path, json=body, headers=headers)
        self.answers.append(answer)
        if answer.status in (200, 201) and "lease_secret" in answer.body:
            self.keep(answer.body)
        elif answer.status == 200:
            self.lease = answer.body["lease"]
        return answer

    async def check_out(self, features: list[str] | None = None, headers: dict[str, str] | None = None) -> Answer:
        return await self.send(CHECK_OUT, self.check_out_body(features), headers)

    async def heartbeat(self, headers: dict[str, str] | None = None) -> Answer:
        return await self.send(HEARTBEAT, self.lease_body(), headers)

    async def release(self, headers: dict[str, str] | None = None) -> Answer:
        return await self.send(RELEASE, self.lease_body(), headers)

    def copy(self, device_id: str | None = None) -> Device:
        """A copy of the whole machine (a cloned or reverted VM): same credential file, lease and lease secret;
        the same device id unless given another (a copy whose software made itself a new one)."""
        twin = copy.copy(self)
        twin.answers = []
        if device_id is not None:
            twin.device_id = device_id
        return twin


async def vendor(
    gateway: Gateway,
    seats: int = 1,
    name: str = "Cloud vendor",
    features: list[dict[str, Any]] | None = None,
    license_fields: dict[str, Any] | None = None,
    **options: Any,
) -> Vendor:
    """A tenant with product ``cad`` (features ``draw`` and ``render``), a cloud policy of ``seats`` granting
    ``features`` (default ``draw``) with backend ``options``, and a license of it (with ``license_fields``)."""
    return await testing.make_vendor(
        gateway,
        "cloud",
        kind=Vendor,
        name=name,
        product="cad",
        seats=seats,
        options=options,
        license=license_fields,
        features=features if features is not None else [{"code": "draw"}],
    )
