"""A load of checks and writes against ``licensor serve`` while its PostgreSQL goes away and comes back, and
what it saw: the helpers of tests/gateway/test_failover.py.

:class:`Load` drives a tenant with an activation license (devices activating), a cloud license (devices checking
out leases and sending heartbeats), a cloud-lite license (metered usage reports) and checks by license key. Every
write carries an Idempotency-Key and is retried with it after a 503 or a lost connection, as the SDK does, until
acknowledged (within :data:`GIVE_UP_S`); every answer is recorded with when it was sent and answered, so the
test can say what the gateway answered while no primary was reachable, and check afterwards that every
acknowledged write is in the database.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from licensor.fingerprint import hash_components, product_salt
from licensor_client.activation import DeviceKey, device_request

CLIENTS = 8
REQUEST_TIMEOUT_S = 30.0
"""A hang bound: no answer, even a 503, may take this long (the store's own bounds are far shorter)."""
GIVE_UP_S = 40.0
"""A write still not acknowledged after this long is given up (and counted: the test then fails)."""
WRITES = ("activation", "check-out", "heartbeat", "usage")


@dataclass
class Seen:
    """One answer: what was sent, when, and what came back (status 0: the connection was lost)."""

    kind: str
    sent_at: float
    answered_at: float
    status: int
    code: str | None
    retry_after: str | None


@dataclass
class Acknowledged:
    activations: set[str] = field(default_factory=set)
    leases: set[str] = field(default_factory=set)
    heartbeats: dict[str, str] = field(default_factory=dict)  # lease id -> the newest acknowledged expiry
    usage_keys: set[str] = field(default_factory=set)
    at: list[tuple[float, str]] = field(default_factory=list)  # (answered at, kind) of each acknowledged write


@dataclass
class Load:
    url: str
    admin_token: str
    session: aiohttp.ClientSession
    check_session: aiohttp.ClientSession | None = None
    tenant: str = ""
    activation_key: str = ""
    activation_license: str = ""
    cloud_license: str = ""
    credential: dict[str, Any] = field(default_factory=dict)
    saas_token: str = ""
    cloud_key: str = ""
    seen: list[Seen] = field(default_factory=list)
    acked: Acknowledged = field(default_factory=Acknowledged)
    given_up: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    _serial: itertools.count[int] = field(default_factory=itertools.count)

    # --- the tenant's catalog ---------------------------------------------------------------------------
    async def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        async with self.session.request(method, self.url + path, json=body, headers=headers) as answer:
            assert 200 <= answer.status < 300, f"{method} {path}: {answer.status} {await answer.text()}"
            return await answer.json()

    async def prepare(self) -> None:
        """A product of each backend, a policy with seats enough for the whole load, and a license of each."""
        self.tenant = (await self.admin("GET", "/v1/admin/tenant"))["id"]
        licenses = {}
        for code, backend, features in (
            ("cad", "activation", [{"code": "draw"}]),
            ("sim", "cloud", [{"code": "draw"}]),
            ("saas", "cloud-lite", [{"code": "calls", "quantity": 1_000_000}]),
        ):
            product = await self.admin("POST", "/v1/admin/products", {"code": code, "name": code.upper()})
            for feature in features:
                extra = {"metered": True, "unit": "call"} if feature["code"] == "calls" else {}
                await self.admin(
                    "POST", "/v1/admin/features", {"product_id": product["id"], "code": feature["code"], "name": "F", **extra}
                )
            policy = await self.admin(
                "POST",
                "/v1/admin/policies",
                {"product_id": product["id"], "name": "P", "backend": backend, "seats": 100_000, "features": features},
            )
            extra = {"subject": "user-1"} if backend == "cloud-lite" else {}
            licenses[code] = (product, await self.admin("POST", "/v1/admin/licenses", {"policy_id": policy["id"], **extra}))
        self.activation_license, self.activation_key = licenses["cad"][1]["id"], licenses["cad"][1]["key"]
        self.cloud_license = licenses["sim"][1]["id"]
        made = await self.admin("POST", f"/v1/admin/licenses/{self.cloud_license}/credentials", {})
        self.credential = made["credential_file"]
        token = await self.admin(
            "POST", "/v1/admin/tokens", {"name": "saas", "role": "product", "product_id": licenses["saas"][0]["id"]}
        )
        self.saas_token = token["token"]
        self.cloud_key = licenses["sim"][1]["key"]

    # --- requests -----------------------------------------------------------------------------------------
    async def _post(self, kind: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
        sent_at = time.monotonic()
        # Checks on a new connection each: the kernel spreads connections over the workers, so both answer checks
        # (and cache the licenses); kept-alive ones might all have landed on one worker.
        session = self.check_session if kind == "check" and self.check_session is not None else self.session
        try:
            async with session.post(self.url + path, json=body, headers=headers) as answer:
                payload = await answer.json(content_type=None)
                status, retry_after = answer.status, answer.headers.get("Retry-After")
        except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ServerDisconnectedError):
            payload, status, retry_after = None, 0, None
        code = payload["error"]["code"] if isinstance(payload, dict) and isinstance(payload.get("error"), dict) else None
        self.seen.append(Seen(kind, sent_at, time.monotonic(), status, code, retry_after))
        return status, payload

    async def write(self, kind: str, path: str, body: dict[str, Any], key: str, headers: dict[str, str] | None = None) -> Any:
        """POST until acknowledged, again with the same Idempotency-Key after a 503 or a lost connection."""
        began = time.monotonic()
        while time.monotonic() - began < GIVE_UP_S:
            status, payload = await self._post(kind, path, body, {"Idempotency-Key": key, **(headers or {})})
            if status in (200, 201):
                self.acked.at.append((time.monotonic(), kind))
                return payload
            if status not in (0, 503):
                self.unexpected.append(f"{kind}: {status} {payload}")
                return None
            await asyncio.sleep(0.1)
        self.given_up[kind] += 1
        return None

    async def check(self, license_key: str, product: str) -> None:
        body = {"tenant": self.tenant, "product": product, "license_key": license_key}
        status, payload = await self._post("check", "/v1/check", body, {})
        if status != 200 or payload["verdict"]["code"] != "VALID":
            self.unexpected.append(f"check: {status} {payload}")

    async def activate(self) -> None:
        n = next(self._serial)
        key = DeviceKey.generate()
        fingerprint = hash_components({"machine_id": f"m-{n}", "disk": f"d-{n}"}, product_salt(self.tenant, "cad"))
        request = device_request(
            key, "activate", tenant=self.tenant, product="cad", fingerprint=fingerprint, license_key=self.activation_key
        )
        answer = await self.write("activation", "/v1/activations", {"request": request}, f"activate-{key.key_id}")
        if answer is not None:
            self.acked.activations.add(answer["activation"]["id"])

    async def check_out_and_heartbeat(self) -> None:
        device = f"device-{uuid.uuid4().hex[:12]}"
        base = {"tenant": self.credential["tenant"], "credential": self.credential["credential"]}
        answer = await self.write("check-out", "/v1/leases", {**base, "device_id": device}, f"check-out-{device}")
        if answer is None:
            return
        lease = answer["lease"]["id"]
        self.acked.leases.add(lease)
        beat = {**base, "lease": lease, "lease_secret": answer["lease_secret"]}
        answer = await self.write("heartbeat", "/v1/leases/heartbeat", beat, f"heartbeat-{device}-1")
        if answer is not None:
            self.acked.heartbeats[lease] = answer["lease"]["expires_at"]

    async def report_usage(self) -> None:
        key = f"usage-{uuid.uuid4().hex}"
        body = {"product": "saas", "subject": "user-1", "feature": "calls", "units": 1}
        if await self.write("usage", "/v1/entitlements/usage", body, key, {"Authorization": f"Bearer {self.saas_token}"}):
            self.acked.usage_keys.add(key)

    async def writer(self, stop: asyncio.Event, first: int) -> None:
        """One client writing: an activation, a check-out and its heartbeat, a usage report, in turn."""
        steps = (self.activate, self.check_out_and_heartbeat, self.report_usage)
        for n in itertools.count(first):
            if stop.is_set():
                return
            await steps[n % len(steps)]()
            await asyncio.sleep(0.02)

    async def checker(self, stop: asyncio.Event) -> None:
        """One client checking the activation and the cloud license by key, over and over."""
        while not stop.is_set():
            await self.check(self.activation_key, "cad")
            await self.check(self.cloud_key, "sim")
            await asyncio.sleep(0.01)

    async def readyz(self) -> tuple[int, str | None]:
        async with self.session.get(self.url + "/readyz") as answer:
            body = await answer.json(content_type=None)
            return answer.status, (body.get("error") or {}).get("code")

    # --- afterwards: is every acknowledged write in the database? ------------------------------------------
    async def _list(self, path: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        params = {"limit": "200"}
        while True:
            headers = {"Authorization": f"Bearer {self.admin_token}"}
            async with self.session.get(self.url + path, params=params, headers=headers) as answer:
                assert answer.status == 200, await answer.text()
                page = await answer.json()
            items += page["data"]
            if not page["has_more"]:
                return items
            params = {**params, "cursor": page["next_cursor"]}

    async def chain(self) -> dict[str, Any]:
        """The tenant's event chain verified (``GET /v1/admin/events/verify``)."""
        verified: dict[str, Any] = await self.admin("GET", "/v1/admin/events/verify")
        return verified

    async def lost(self) -> dict[str, int]:
        """How many acknowledged writes of each kind the database does not hold (read through the gateway)."""
        activations = {row["id"] for row in await self._list(f"/v1/admin/licenses/{self.activation_license}/activations")}
        leases = {row["id"]: row for row in await self._list(f"/v1/admin/licenses/{self.cloud_license}/leases")}
        headers = {"Authorization": f"Bearer {self.saas_token}"}
        params = {"product": "saas", "subject": "user-1"}
        async with self.session.get(self.url + "/v1/entitlements/usage", params=params, headers=headers) as answer:
            assert answer.status == 200, await answer.text()
            used = sum(row["used"] for row in (await answer.json())["totals"] if row["feature"] == "calls")
        # Each report is 1 unit under its own key: the total is the acknowledged reports, plus at most those given
        # up on (committed but never acknowledged); fewer would be a loss, more a report counted twice.
        assert used <= len(self.acked.usage_keys) + self.given_up["usage"], (used, len(self.acked.usage_keys))
        return {
            "activation": len(self.acked.activations - activations),
            "check-out": len(self.acked.leases - set(leases)),
            "heartbeat": sum(
                1
                for lease, expiry in self.acked.heartbeats.items()
                if lease not in leases or leases[lease]["expires_at"] < expiry
            ),
            "usage": max(0, len(self.acked.usage_keys) - used),
        }


@dataclass
class Outage:
    """The figures of one outage: when the database went away and came back, and what the clients saw."""

    stopped_at: float  # just before pg_ctl stop -m immediate
    down_at: float  # when it returned: from then on no primary was reachable
    back_at: float  # just before the promotion (or the restart)
    first_503_s: float
    first_write_after_s: float
    acked_before: int
    acked_after: int
    lost: int
    checks_valid_while_down: int
    writes_refused_while_down: int


def measure(load: Load, stopped_at: float, down_at: float, back_at: float, lost: dict[str, int]) -> Outage:
    """The figures of :class:`Outage` from what the clients saw."""
    unavailable = [seen.answered_at for seen in load.seen if seen.status == 503 and seen.answered_at >= stopped_at]
    written_after = [at for at, _ in load.acked.at if at >= back_at]
    while_down = [seen for seen in load.seen if seen.sent_at >= down_at and seen.answered_at <= back_at]
    return Outage(
        stopped_at,
        down_at,
        back_at,
        first_503_s=min(unavailable) - stopped_at if unavailable else float("inf"),
        first_write_after_s=min(written_after) - back_at if written_after else float("inf"),
        acked_before=sum(1 for at, _ in load.acked.at if at < stopped_at),
        acked_after=sum(1 for at, _ in load.acked.at if at >= stopped_at),
        lost=sum(lost.values()),
        checks_valid_while_down=sum(1 for seen in while_down if seen.kind == "check" and seen.status == 200),
        writes_refused_while_down=sum(1 for seen in while_down if seen.kind != "check" and seen.status == 503),
    )


def table(title: str, outages: list[Outage]) -> str:
    lines = [
        title,
        "| run | stop -> first 503 (s) | back -> first write (s) | writes acknowledged before | after | lost "
        "| while down: checks VALID | writes 503 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, outage in enumerate(outages, 1):
        lines.append(
            f"| {n} | {outage.first_503_s:.3f} | {outage.first_write_after_s:.3f} | {outage.acked_before} | "
            f"{outage.acked_after} | {outage.lost} | {outage.checks_valid_while_down} | {outage.writes_refused_while_down} |"
        )
    return "\n".join(lines)
