"""The SDK's :class:`LeaseKeeper` against the real gateway and its cloud backend, on both stores (no mocks).

A keeper checks a lease out, renews it in the background and releases it on leaving; it survives an outage
shorter than the lease (the heartbeat is retried with its Idempotency-Key, so an answer lost on the way is
replayed rather than performed twice) and loses the lease, telling ``on_lost`` once, when the outage outlasts
the lease, another device takes the seat over, or the vendor revokes the credential. The outages are made by a
TCP proxy between the keeper and the gateway that the test cuts off and restores.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from licensor import _impl
from licensor.testing import Gateway, Tenant
from licensor_client.leases import (
    CHECK_OUT_ATTEMPTS,
    CredentialFile,
    GatewayUnavailableError,
    LeaseKeeper,
    LeaseRefusedError,
    read_credential_file,
)

RETRY_S = 0.2  # the keepers' retry delay: a few retries fit in any outage of these tests
WAIT_S = 5.0  # the longest any condition is waited for


async def eventually(condition: Callable[[], bool], within_s: float = WAIT_S, what: str = "the condition") -> float:
    """Wait until ``condition()`` holds (polling); how long it took.

    :raises AssertionError: not within ``within_s``.
    """
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < within_s, f"{what} did not hold within {within_s} s"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


@dataclass
class Vendor:
    """A tenant with product ``cad`` (features ``draw`` and ``render``), a cloud policy granting ``draw`` and a license."""

    gateway: Gateway
    tenant: Tenant
    license: dict[str, Any]

    @property
    def url(self) -> str:
        return str(self.gateway.client.make_url("")).rstrip("/")

    async def credential(self, server: str | None = None) -> tuple[CredentialFile, dict[str, Any]]:
        """A new credential file of the license, imported as a device would (pointed at ``server`` if given), and
        the credential's record."""
        made = await self.tenant.ok("POST", f"/v1/admin/licenses/{self.license['id']}/credentials", 201, json={"label": "office"})
        file = made["credential_file"]
        assert file["server"] == self.url  # the gateway names itself
        text = orjson.dumps({**file, "server": server or self.url}).decode()
        return read_credential_file(text), made["credential"]

    async def lease(self, lease_id: str) -> dict[str, Any]:
        return await self.tenant.ok("GET", f"/v1/admin/leases/{lease_id}")  # type: ignore[no-any-return]

    async def active_leases(self) -> list[dict[str, Any]]:
        return await self.tenant.list_all(f"/v1/admin/licenses/{self.license['id']}/leases", params={"state": "active"})


async def vendor(gateway: Gateway, seats: int = 1, ttl_s: int = 3, interval_s: int = 1, on_seat_limit: str = "refuse") -> Vendor:
    tenant = await gateway.tenant()
    product = await tenant.product("cad")
    for code in ("draw", "render"):
        await tenant.feature(product["id"], code)
    options = {"lease_ttl_seconds": ttl_s, "heartbeat_interval_seconds": interval_s, "on_seat_limit": on_seat_limit}
    policy = await tenant.policy(product["id"], backend="cloud", seats=seats, options=options, features=[{"code": "draw"}])
    return Vendor(gateway, tenant, await tenant.license(policy["id"]))


@dataclass
class Lost:
    """An ``on_lost`` callback that remembers every call."""

    codes: list[str] = field(default_factory=list)

    def __call__(self, code: str) -> None:
        self.codes.append(code)


def keeper(credential: CredentialFile, device_id: str = "office-pc", **options: Any) -> LeaseKeeper:
    options.setdefault("retry_delay_s", RETRY_S)
    options.setdefault("request_timeout_s", 2.0)
    return LeaseKeeper(credential, device_id, ("draw",), device_name="Office PC", **options)


class CutOffProxy:
    """A TCP proxy on 127.0.0.1 in front of the gateway. :meth:`cut` closes every connection, open or new, until
    :meth:`restore`; ``drop_answers = n`` cuts the next ``n`` connections when the gateway starts to answer (the
    request was performed, its answer never arrives)."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.cut_off = False
        self.drop_answers = 0
        self.refused = 0
        self.dropped = 0
        self.url = ""
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def cut(self) -> None:
        self.cut_off = True
        for writer in list(self._writers):
            writer.close()

    def restore(self) -> None:
        self.cut_off = False

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(client_writer)
        gateway_writer: asyncio.StreamWriter | None = None
        try:
            if self.cut_off:
                self.refused += 1
                return
            gateway_reader, gateway_writer = await asyncio.open_connection(*self.upstream)
            self._writers.add(gateway_writer)
            await asyncio.gather(
                self._pipe(client_reader, gateway_writer, answers=False), self._pipe(gateway_reader, client_writer, answers=True)
            )
        except OSError:
            pass
        finally:
            for writer in (client_writer, gateway_writer):
                if writer is not None:
                    self._writers.discard(writer)
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, answers: bool) -> None:
        try:
            for _ in range(100_000):  # bounded: far more chunks than any test sends
                data = await reader.read(65_536)
                if not data or self.cut_off:
                    break
                if answers and self.drop_answers > 0:
                    self.drop_answers -= 1
                    self.dropped += 1
                    break
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()  # the other direction ends with it


@pytest.fixture
async def proxy(licensor_gateway: Gateway) -> AsyncIterator[CutOffProxy]:
    cut_off = CutOffProxy(str(licensor_gateway.client.make_url("")).rstrip("/"))
    await cut_off.start()
    try:
        yield cut_off
    finally:
        await cut_off.close()


# --- holding a lease -------------------------------------------------------------------------------------------


async def test_a_keeper_checks_a_lease_out_and_its_heartbeats_renew_it(licensor_gateway: Gateway) -> None:
    seller = await vendor(licensor_gateway, ttl_s=3, interval_s=1)
    credential, _ = await seller.credential()
    lost = Lost()
    async with keeper(credential, on_lost=lost) as held:
        assert held.valid and held.lost_code is None and held.heartbeats == 0
        assert held.lease_id is not None and held.lease_id.startswith("lse_")
        assert held.lease is not None and held.lease_token == held.lease.token
        assert (held.lease.lease_id, held.lease.device_id, held.lease.features) == (held.lease_id, "office-pc", ("draw",))
        assert held.lease.license_id == seller.license["id"] and held.lease.credential_id == credential.credential_id
        first_expiry, lease_id = held.expires_at, held.lease_id
        assert first_expiry is not None and 1 <= first_expiry - time.time() <= 3  # whole seconds
        await eventually(lambda: held.heartbeats >= 2, what="two heartbeats")
        assert held.valid and held.lease_id == lease_id and held.expires_at is not None and held.expires_at > first_expiry
        assert held.lease.renewal == held.heartbeats
        shown = await seller.lease(lease_id)
        assert (shown["state"], shown["device_id"], shown["device_name"], shown["features"]) == (
            "active",
            "office-pc",
            "Office PC",
            ["draw"],
        )
        assert shown["renewals"] >= 2
    assert not held.valid and held.lost_code is None and lost.codes == []
    assert (await seller.lease(lease_id))["state"] == "released"
    with pytest.raises(RuntimeError):  # one keeper, one lease: a new check-out takes a new keeper
        async with held:
            pytest.fail("a keeper was entered twice")
    assert await seller.active_leases() == []


async def test_leaving_releases_the_seat_so_another_device_can_check_out_at_once(licensor_gateway: Gateway) -> None:
    seller = await vendor(licensor_gateway, seats=1, ttl_s=60, interval_s=30)
    credential, _ = await seller.credential()
    async with keeper(credential, "office-pc") as office:
        with pytest.raises(LeaseRefusedError) as refused:
            async with keeper(credential, "home-laptop"):
                pytest.fail("a second device got the single seat")
        assert (refused.value.code, refused.value.http_status) == ("SEAT_LIMIT_REACHED", 409)
        assert office.valid
    async with keeper(credential, "home-laptop") as home:  # long before the office lease's TTL ran out
        assert home.valid and home.lease_id != office.lease_id
        assert [lease["id"] for lease in await seller.active_leases()] == [home.lease_id]


async def test_refusals_at_check_out_carry_the_gateways_code_and_status(licensor_gateway: Gateway) -> None:
    seller = await vendor(licensor_gateway, seats=2)
    credential, record = await seller.credential()
    cases: list[tuple[LeaseKeeper, str, int]] = [
        (LeaseKeeper(credential, "pc", ("render",), retry_delay_s=RETRY_S), "FEATURE_NOT_ENTITLED", 403),
        (
            keeper(
                CredentialFile(
                    credential.server,
                    credential.tenant,
                    credential.product,
                    credential.license,
                    credential.credential[:-1] + ("A" if credential.credential[-1] != "A" else "B"),
                    credential.label,
                    credential.keys,
                )
            ),
            "CREDENTIAL_INVALID",
            401,
        ),
    ]
    for refused_keeper, code, status in cases:
        with pytest.raises(LeaseRefusedError) as refused:
            async with refused_keeper:
                pytest.fail("the check-out was not refused")
        assert (refused.value.code, refused.value.http_status) == (code, status)
        assert credential.credential.split(".")[1] not in str(refused.value)
    await seller.tenant.ok("POST", f"/v1/admin/credentials/{record['id']}/revoke", json={})
    with pytest.raises(LeaseRefusedError) as refused:
        async with keeper(credential):
            pytest.fail("a revoked credential checked out a lease")
    assert (refused.value.code, refused.value.http_status) == ("CREDENTIAL_REVOKED", 403)
    assert await seller.active_leases() == []


async def test_a_lease_token_that_does_not_verify_is_refused_and_its_seat_given_back(licensor_gateway: Gateway) -> None:
    seller = await vendor(licensor_gateway, seats=1, ttl_s=60, interval_s=30)
    genuine, _ = await seller.credential()
    impostor_key = _impl.public_key(_impl.generate_seed())  # the gateway's answers are not signed by this key
    forged_keys = CredentialFile(
        genuine.server,
        genuine.tenant,
        genuine.product,
        genuine.license,
        genuine.credential,
        genuine.label,
        {kid: impostor_key for kid in genuine.keys},
    )
    with pytest.raises(LeaseRefusedError) as refused:
        async with keeper(forged_keys):
            pytest.fail("a lease whose token does not verify was kept")
    assert refused.value.code == "TOKEN_BAD_SIGNATURE"
    assert await seller.active_leases() == []  # released at once, not left to run out
    other_product = CredentialFile(
        genuine.server, genuine.tenant, "cam", genuine.license, genuine.credential, genuine.label, genuine.keys
    )  # the gateway answers for "cad": not the product this software is
    with pytest.raises(LeaseRefusedError) as refused:
        async with keeper(other_product):
            pytest.fail("a lease of another product was kept")
    assert refused.value.code == "PRODUCT_MISMATCH"
    assert await seller.active_leases() == []
    async with keeper(genuine) as held:  # and the seat is there for the genuine software
        assert held.valid


# --- outages ---------------------------------------------------------------------------------------------------


async def test_an_outage_shorter_than_the_lease_is_survived_with_the_same_lease(
    licensor_gateway: Gateway, proxy: CutOffProxy
) -> None:
    seller = await vendor(licensor_gateway, ttl_s=4, interval_s=1)
    credential, _ = await seller.credential(server=proxy.url)
    lost = Lost()
    async with keeper(credential, on_lost=lost) as held:
        lease_id = held.lease_id
        await eventually(lambda: held.heartbeats >= 1, what="a first heartbeat")
        before = held.heartbeats
        proxy.cut()
        await asyncio.sleep(1.5)  # a heartbeat falls due in the outage: retried, in vain, every RETRY_S
        assert held.heartbeats == before and held.valid
        proxy.restore()
        await eventually(lambda: held.heartbeats >= before + 2, what="heartbeats after the outage")
        assert held.valid and held.lease_id == lease_id and held.lost_code is None and lost.codes == []
        assert proxy.refused >= 2  # the keeper did try during the outage
        assert [lease["id"] for lease in await seller.active_leases()] == [lease_id]


async def test_a_heartbeat_answer_lost_on_the_way_is_replayed_not_renewed_twice(
    licensor_gateway: Gateway, proxy: CutOffProxy
) -> None:
    seller = await vendor(licensor_gateway, ttl_s=4, interval_s=1)
    credential, _ = await seller.credential(server=proxy.url)
    async with keeper(credential) as held:
        assert held.lease_id is not None
        await eventually(lambda: held.heartbeats >= 1, what="a first heartbeat")
        proxy.drop_answers = 1  # the next heartbeat is performed, but its answer (the new secret) never arrives
        before = held.heartbeats
        await eventually(
            lambda: held.heartbeats >= before + 2 or held.lost_code is not None, what="heartbeats after the lost answer"
        )
        assert proxy.dropped == 1 and held.lost_code is None and held.valid  # a resend without the key: LEASE_TAKEN_OVER
        count = held.heartbeats
        renewals = (await seller.lease(held.lease_id))["renewals"]
        assert renewals == count, "the retried heartbeat was performed once, its answer replayed"


async def test_leaving_while_a_heartbeat_answer_is_lost_still_releases_the_seat(
    licensor_gateway: Gateway, proxy: CutOffProxy
) -> None:
    seller = await vendor(licensor_gateway, ttl_s=60, interval_s=1)
    credential, _ = await seller.credential(server=proxy.url)
    async with keeper(credential, retry_delay_s=5.0) as held:
        lease_id = held.lease_id
        assert lease_id is not None
        proxy.drop_answers = 1  # the gateway renews the lease with a new secret the keeper never learns ...
        await eventually(lambda: proxy.dropped == 1, what="a heartbeat answer being lost")
    # ... so the release first has the heartbeat replayed (its Idempotency-Key again) to learn that secret.
    assert (await seller.lease(lease_id))["state"] == "released"
    assert await seller.active_leases() == []


async def test_an_outage_longer_than_the_lease_loses_it_as_lease_expired(licensor_gateway: Gateway, proxy: CutOffProxy) -> None:
    seller = await vendor(licensor_gateway, ttl_s=2, interval_s=1)
    credential, _ = await seller.credential(server=proxy.url)
    lost = Lost()
    async with keeper(credential, on_lost=lost, request_timeout_s=1.0) as held:
        lease_id = held.lease_id
        assert lease_id is not None and held.expires_at is not None
        proxy.cut()
        await eventually(lambda: held.lost_code is not None, within_s=4.0, what="the lease being lost")
        assert held.lost_code == "LEASE_EXPIRED" and lost.codes == ["LEASE_EXPIRED"] and not held.valid
        assert time.time() >= held.expires_at
        assert held.heartbeats == 0 and held.lease_id == lease_id
        proxy.restore()
        await asyncio.sleep(1.2)  # nothing more: no heartbeat, no second call of on_lost
        assert lost.codes == ["LEASE_EXPIRED"] and held.heartbeats == 0
    assert (await seller.lease(lease_id))["state"] in ("expired", "released")
    assert await seller.active_leases() == []


async def test_a_gateway_that_never_answers_fails_the_check_out_after_a_bounded_time(
    licensor_gateway: Gateway, proxy: CutOffProxy
) -> None:
    seller = await vendor(licensor_gateway)
    credential, _ = await seller.credential(server=proxy.url)
    proxy.cut()
    started = time.monotonic()
    with pytest.raises(GatewayUnavailableError) as unavailable:
        async with keeper(credential):
            pytest.fail("a lease was checked out through a cut-off proxy")
    assert time.monotonic() - started < 3.0
    assert proxy.refused == CHECK_OUT_ATTEMPTS and unavailable.value.code == "GATEWAY_UNAVAILABLE"
    proxy.restore()
    async with keeper(credential) as held:
        assert held.valid


# --- the gateway ends the lease --------------------------------------------------------------------------------


async def test_a_device_taking_over_the_single_seat_makes_the_first_lose_it_at_its_next_heartbeat(
    licensor_gateway: Gateway,
) -> None:
    seller = await vendor(licensor_gateway, seats=1, ttl_s=3, interval_s=1, on_seat_limit="take_over")
    credential, _ = await seller.credential()
    lost_at_office, lost_at_home = Lost(), Lost()
    async with keeper(credential, "office-pc", on_lost=lost_at_office) as office:
        assert office.valid
        async with keeper(credential, "home-laptop", on_lost=lost_at_home) as home:
            took = await eventually(lambda: office.lost_code is not None, within_s=2.5, what="the office's lease being lost")
            assert took <= 1.5  # within about one heartbeat interval
            assert office.lost_code == "LEASE_TAKEN_OVER" and lost_at_office.codes == ["LEASE_TAKEN_OVER"] and not office.valid
            await eventually(lambda: home.heartbeats >= 2, what="the home laptop's heartbeats")
            assert home.valid and lost_at_home.codes == [] and lost_at_office.codes == ["LEASE_TAKEN_OVER"]
            assert office.lease_id is not None
            shown = await seller.lease(office.lease_id)
            assert (shown["state"], shown["taken_over_by"]) == ("taken_over", home.lease_id)
    assert lost_at_office.codes == ["LEASE_TAKEN_OVER"] and lost_at_home.codes == []
    assert await seller.active_leases() == []


async def test_revoking_the_credential_makes_the_keeper_lose_the_lease_at_its_next_heartbeat(licensor_gateway: Gateway) -> None:
    seller = await vendor(licensor_gateway, seats=2, ttl_s=3, interval_s=1)
    credential, record = await seller.credential()
    other, _ = await seller.credential()
    lost = Lost()
    async with keeper(credential, "office-pc", on_lost=lost) as held, keeper(other, "home-laptop") as unaffected:
        await eventually(lambda: held.heartbeats >= 1, what="a first heartbeat")
        await seller.tenant.ok("POST", f"/v1/admin/credentials/{record['id']}/revoke", json={"reason": "laptop stolen"})
        took = await eventually(lambda: held.lost_code is not None, within_s=2.5, what="the lease being lost")
        assert took <= 1.5
        assert held.lost_code == "CREDENTIAL_REVOKED" and lost.codes == ["CREDENTIAL_REVOKED"] and not held.valid
        assert unaffected.valid and unaffected.lost_code is None  # another credential of the license keeps its lease
        assert held.lease_id is not None
        assert (await seller.lease(held.lease_id))["state"] == "revoked"


async def test_the_vendor_ending_the_lease_makes_the_keeper_lose_it_as_lease_ended(licensor_gateway: Gateway) -> None:
    seller = await vendor(licensor_gateway, ttl_s=3, interval_s=1)
    credential, _ = await seller.credential()
    lost = Lost()
    async with keeper(credential, on_lost=lost) as held:
        await seller.tenant.ok("POST", f"/v1/admin/leases/{held.lease_id}/release", json={"reason": "support case"})
        await eventually(lambda: held.lost_code is not None, within_s=2.5, what="the lease being lost")
        assert held.lost_code == "LEASE_ENDED" and lost.codes == ["LEASE_ENDED"] and not held.valid
    async with keeper(credential, f"pc-{uuid.uuid4().hex[:6]}") as again:  # the seat is free again
        assert again.valid


async def test_a_credential_file_made_before_the_signing_key_was_rotated_keeps_working(licensor_gateway: Gateway) -> None:
    seller = await vendor(licensor_gateway, ttl_s=3, interval_s=1)
    credential, _ = await seller.credential()
    await seller.tenant.ok("POST", "/v1/admin/keys/rotate")
    async with keeper(credential) as held:  # its token is signed by a key the file does not hold: fetched once
        assert held.valid and held.lease is not None
        assert held.lease.token.split(".")[1] not in credential.keys
        await eventually(lambda: held.heartbeats >= 1, what="a heartbeat")
        assert held.lost_code is None


@pytest.mark.parametrize("clock_off_s", [-120.0, 120.0])
async def test_a_device_clock_off_by_more_than_the_lease_still_holds_and_renews_it(
    licensor_gateway: Gateway, clock_off_s: float
) -> None:
    seller = await vendor(licensor_gateway, ttl_s=3, interval_s=1)
    credential, _ = await seller.credential()
    async with keeper(credential, clock=lambda: time.time() + clock_off_s) as held:  # the lease's life is counted locally
        assert held.valid
        await eventually(lambda: held.heartbeats >= 2, what="two heartbeats")
        assert held.valid and held.lost_code is None


async def test_leaving_after_a_license_refusal_still_releases_the_seat(licensor_gateway: Gateway) -> None:
    seller = await vendor(licensor_gateway, ttl_s=30, interval_s=1)
    credential, _ = await seller.credential()
    async with keeper(credential) as held:
        await seller.tenant.ok("POST", f"/v1/admin/licenses/{seller.license['id']}/suspend", json={"reason": "unpaid"})
        await eventually(lambda: held.lost_code is not None, what="the lease being lost")
        assert held.lost_code == "SUSPENDED" and not held.valid
        assert held.lease_id is not None
        assert (await seller.lease(held.lease_id))["state"] == "active"  # the gateway still counts the seat ...
    assert (await seller.lease(held.lease_id))["state"] == "released"  # ... until leaving gave it back
