"""licensor_client.Client and AsyncClient against the real gateway on 127.0.0.1, on both stores: the three backends
through one API, synchronous and asynchronous, offline checks, retries of lost answers, and the trusted clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from licensor.testing import Gateway, make_vendor
from licensor.testing.infrastructure import free_port
from licensor.testing.vendors import Vendor
from licensor_client import AsyncClient, Client, GatewayUnavailableError, RefusedError, RetryPolicy
from licensor_client.clock import ClockGrade
from licensor_client.license_keys import LicenseKeyError
from licensor_client.machine import Environment, MachineReading

FAST = RetryPolicy(attempts=3, base_s=0.01, cap_s=0.05)
DAY = 86400.0
Flavour = str  # "sync" or "async": the same scenario through Client and AsyncClient


def machine(**changed: str) -> Callable[[], MachineReading]:
    components = {
        "machine_id": "0" * 32,
        "board": "product_uuid=1234",
        "cpu": "Test CPU",
        "disk": "SN-1",
        "mac": "02:00:00:00:00:01",
    }
    return lambda: MachineReading({**components, **changed}, {}, Environment("physical"))


class Clock:
    """The device's clock, moved by the test."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def client(flavour: Flavour, *args: Any, **kwargs: Any) -> Client | AsyncClient:
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("timeout_s", 5.0)
    return (Client if flavour == "sync" else AsyncClient)(*args, **kwargs)


async def call(made: Client | AsyncClient, method: str, *args: Any) -> Any:
    """A method of either client: awaited, or run in a thread (the gateway serves on this test's event loop)."""
    bound = getattr(made, method)
    if isinstance(made, AsyncClient):
        result = bound(*args)
        return await result if isinstance(result, Awaitable) else result
    return await asyncio.to_thread(bound, *args)


async def closed(made: Client | AsyncClient) -> None:
    if isinstance(made, AsyncClient):
        await made.aclose()
    else:
        made.close()


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> Flavour:
    return str(request.param)


async def saas_vendor(gateway: Gateway) -> tuple[Vendor, str]:
    """A cloud-lite product (reports granted, exports not) with a license of subject acme, and its product token."""
    vendor = await make_vendor(
        gateway,
        "cloud-lite",
        product="saas",
        catalog=("reports", "exports"),
        features=[{"code": "reports"}],
        license={"subject": "acme"},
    )
    return vendor, await vendor.tenant.token("product", vendor.product["id"])


async def activation_vendor(gateway: Gateway, seats: int = 1, **license: Any) -> Vendor:
    return await make_vendor(gateway, "activation", product="cad", seats=seats, license=license)


def device(
    flavour: Flavour, gateway: Gateway | str, vendor: Vendor, state: Path, keys: dict[str, bytes], **kwargs: Any
) -> Client | AsyncClient:
    server = gateway if isinstance(gateway, str) else gateway.url
    return client(flavour, server, vendor.tenant.id, vendor.product["code"], state_dir=state, public_keys=keys, **kwargs)


# --- activation -------------------------------------------------------------------------------------------------


async def test_activate_check_offline_check_in_and_deactivate(
    licensor_gateway: Gateway, flavour: Flavour, tmp_path: Path
) -> None:
    vendor = await activation_vendor(licensor_gateway)
    keys = await vendor.public_keys()
    app = device(flavour, licensor_gateway, vendor, tmp_path / "state", keys, machine=machine())
    before = await call(app, "check", "draw")
    assert before.code == "NOT_ACTIVATED" and not before.valid and "Activate" in before.advice

    file = await call(app, "activate", vendor.license["key"])
    assert file.generation == 1 and file.license_id == vendor.license["id"]
    assert (await call(app, "check", "draw")).valid
    assert (await call(app, "check", "render")).code == "FEATURE_NOT_ENTITLED"
    await closed(app)

    # Offline: the same program, the gateway unreachable, still starts from its state directory.
    offline = device(flavour, f"http://127.0.0.1:{free_port()}", vendor, tmp_path / "state", keys, machine=machine())
    result = await call(offline, "check", "draw")
    assert result.valid and result.features == {"draw": None} and not result.check_in_due
    with pytest.raises(GatewayUnavailableError):
        await call(offline, "check_in")
    await closed(offline)

    # Back online: the check-in the offline attempt left behind is sent again, the file renewed once.
    app = device(flavour, licensor_gateway, vendor, tmp_path / "state", keys, machine=machine(hostname="renamed"))
    renewed = await call(app, "check_in")
    assert renewed.generation == 2
    assert (await call(app, "check", "draw")).valid  # a changed host name is within the tolerance
    ended = await call(app, "deactivate")
    assert ended["state"] == "deactivated"
    after = await call(app, "check", "draw")
    assert after.code == "DEACTIVATED" and not after.valid
    await closed(app)

    # The seat is free again: another device activates.
    other = device(flavour, licensor_gateway, vendor, tmp_path / "other", keys, machine=machine(machine_id="1" * 32, board="b"))
    assert (await call(other, "activate", vendor.license["key"])).generation == 1
    await closed(other)
    assert [e["type"] for e in await vendor.events() if e["type"].startswith("activation.")].count("activation.checked_in") == 1


async def test_refusals_carry_the_gateways_code(licensor_gateway: Gateway, flavour: Flavour, tmp_path: Path) -> None:
    vendor = await activation_vendor(licensor_gateway)
    keys = await vendor.public_keys()
    first = device(flavour, licensor_gateway, vendor, tmp_path / "a", keys, machine=machine())
    await call(first, "activate", vendor.license["key"])
    second = device(
        flavour, licensor_gateway, vendor, tmp_path / "b", keys, machine=machine(machine_id="f" * 32, board="x", disk="y")
    )
    with pytest.raises(RefusedError) as refused:
        await call(second, "activate", vendor.license["key"])
    assert (refused.value.code, refused.value.http_status) == ("SEAT_LIMIT_REACHED", 409)
    with pytest.raises(LicenseKeyError) as typo:  # told before asking the gateway
        await call(second, "activate", vendor.license["key"][:-1] + ("0" if vendor.license["key"][-1] != "0" else "1"))
    assert typo.value.code == "LICENSE_KEY_MALFORMED"
    # Recovery moves the seat; the first device is told WITHDRAWN at its next check-in, and stops.
    moved = await call(second, "recover", vendor.license["key"])
    assert moved.generation == 1
    with pytest.raises(RefusedError) as refused:
        await call(first, "check_in")
    assert refused.value.code == "WITHDRAWN"
    assert (await call(first, "check", "draw")).code == "WITHDRAWN"
    for made in (first, second):
        await closed(made)


class LosesAnswers(httpx.AsyncBaseTransport):
    """A real connection to the gateway that loses the answer of the first ``lose`` requests to ``path`` (the
    gateway performed them): what a dropped connection does to a device."""

    def __init__(self, path: str, lose: int = 1) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.path = path
        self.lose = lose

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path == self.path and self.lose > 0:
            self.lose -= 1
            await response.aclose()
            raise httpx.ReadError("connection lost")
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_lost_answer_is_retried_with_the_same_request(licensor_gateway: Gateway, tmp_path: Path) -> None:
    vendor = await activation_vendor(licensor_gateway)
    keys = await vendor.public_keys()
    app = device("async", licensor_gateway, vendor, tmp_path / "state", keys, machine=machine())
    await app.activate(vendor.license["key"])
    await app.aclose()
    device_clock = Clock()

    def lossy_device(lose: int) -> Client | AsyncClient:
        transport = LosesAnswers("/v1/activations/checkin", lose)
        return device(
            "async",
            licensor_gateway,
            vendor,
            tmp_path / "state",
            keys,
            machine=machine(),
            clock=device_clock,
            transport=transport,
        )

    # Every answer of a check-in is lost: the program gives up, and keeps the request ...
    lossy = lossy_device(5)
    with pytest.raises(GatewayUnavailableError):
        await lossy.check_in()
    await lossy.aclose()
    assert (tmp_path / "state" / "pending").exists()
    # ... which the next start, seconds later, sends again byte for byte: generation 2, not a rollback of generation 1.
    device_clock.offset = 10.0
    lossy = lossy_device(1)
    assert (await lossy.check_in()).generation == 2
    assert not (tmp_path / "state" / "pending").exists()
    assert (await lossy.check_in()).generation == 3
    await lossy.aclose()
    events = [e["type"] for e in await vendor.events()]
    assert "activation.flagged" not in events and events.count("activation.checked_in") == 2


async def test_concurrent_check_ins_of_one_device_do_not_look_like_a_rollback(licensor_gateway: Gateway, tmp_path: Path) -> None:
    vendor = await activation_vendor(licensor_gateway)
    keys = await vendor.public_keys()
    apps = [device("sync", licensor_gateway, vendor, tmp_path / "state", keys, machine=machine()) for _ in range(4)]
    await call(apps[0], "activate", vendor.license["key"])
    files = await asyncio.gather(*(call(app, "check_in") for app in apps))
    assert sorted(f.generation for f in files) == [2, 3, 4, 5]  # one after the other, through the device lock
    assert (await call(apps[0], "check", "draw")).valid
    for app in apps:
        await closed(app)


# --- the trusted clock --------------------------------------------------------------------------------------------


async def test_a_clock_turned_back_48_hours_is_tampered_and_buys_nothing(licensor_gateway: Gateway, tmp_path: Path) -> None:
    ends = time.time() + 3 * DAY
    vendor = await activation_vendor(licensor_gateway, expires_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ends)))
    keys = await vendor.public_keys()
    device_clock = Clock()
    app = device("async", licensor_gateway, vendor, tmp_path / "state", keys, machine=machine(), clock=device_clock)
    file = await app.activate(vendor.license["key"])
    assert file.expires_at is not None and abs(file.expires_at - ends) < 2

    device_clock.offset = -600.0  # ten minutes off: nothing
    assert app.check("draw").valid

    # The subscription ends; turning the clock back 48 h from there does not buy the two days back.
    device_clock.offset = file.expires_at - time.time() + 3600
    assert app.check("draw").code == "EXPIRED"
    device_clock.offset -= 2 * DAY
    tampered = app.check("draw")
    assert (tampered.code, tampered.clock and tampered.clock.grade) == ("CLOCK_TAMPERED", ClockGrade.CHECK_IN_REQUIRED)
    assert not tampered.valid and "check in" in tampered.advice
    await app.aclose()


async def test_a_checkpoint_passed_is_not_undone_by_the_clock(licensor_gateway: Gateway, tmp_path: Path) -> None:
    vendor = await activation_vendor(licensor_gateway)
    keys = await vendor.public_keys()
    device_clock = Clock()
    app = device("async", licensor_gateway, vendor, tmp_path / "state", keys, machine=machine(), clock=device_clock)
    file = await app.activate(vendor.license["key"])
    device_clock.offset = file.lapses_at - time.time() + 60
    assert app.check("draw").code == "CHECKPOINT_OVERDUE"
    for back in (2 * DAY, 5 * DAY):
        device_clock.offset = file.lapses_at - time.time() + 60 - back
        assert app.check("draw").code == "CLOCK_TAMPERED"
    await app.aclose()


async def test_a_wrong_date_is_corrected_by_a_check_in_and_a_far_one_must_be_set_right(
    licensor_gateway: Gateway, tmp_path: Path
) -> None:
    vendor = await activation_vendor(licensor_gateway)
    keys = await vendor.public_keys()
    device_clock = Clock()
    app = device("async", licensor_gateway, vendor, tmp_path / "state", keys, machine=machine(), clock=device_clock)
    await app.activate(vendor.license["key"])
    device_clock.offset = -2 * DAY
    assert app.check("draw").code == "CLOCK_TAMPERED"
    # The check-in is signed at the gateway's time (the device's is 48 h off), and its signed answer corrects it.
    await app.check_in()
    corrected = app.check("draw")
    assert corrected.valid and corrected.clock is not None and abs(corrected.clock.now - time.time()) < 60

    # 40 days back: refused, and a check-in does not lift it; setting the clock right does.
    device_clock.offset = -42 * DAY
    far = app.check("draw")
    assert (far.code, far.clock and far.clock.grade) == ("CLOCK_TAMPERED", ClockGrade.REFUSED)
    assert "Set the date and time right" in far.advice
    await app.check_in()
    assert app.check("draw").code == "CLOCK_TAMPERED"
    device_clock.offset = -2 * DAY  # the device's clock as it was (the learned offset corrects it)
    assert app.check("draw").valid
    await app.aclose()


async def test_turning_the_clock_back_again_and_again_is_refused(licensor_gateway: Gateway, tmp_path: Path) -> None:
    vendor = await activation_vendor(licensor_gateway)
    keys = await vendor.public_keys()
    device_clock = Clock()
    app = device("async", licensor_gateway, vendor, tmp_path / "state", keys, machine=machine(), clock=device_clock)
    await app.activate(vendor.license["key"])
    grades = []
    for _ in range(3):
        device_clock.offset -= 2 * DAY
        grades.append(app.check("draw").clock.grade)  # type: ignore[union-attr]
        await app.check_in()
    assert grades == [ClockGrade.CHECK_IN_REQUIRED, ClockGrade.CHECK_IN_REQUIRED, ClockGrade.REFUSED]
    await app.aclose()


# --- cloud and cloud-lite -----------------------------------------------------------------------------------------


async def test_a_cloud_seat_through_the_same_client(licensor_gateway: Gateway, flavour: Flavour, tmp_path: Path) -> None:
    vendor = await make_vendor(licensor_gateway, "cloud", product="cad", seats=1)
    made = await vendor.tenant.ok("POST", f"{vendor.license_path}/credentials", 201, json={"label": "office"})
    file = tmp_path / "office.licensor-credential"
    file.write_bytes(__import__("orjson").dumps(made["credential_file"]))
    cls = Client if flavour == "sync" else AsyncClient
    device_clock = Clock()
    app = cls.from_credential_file(file, state_dir=tmp_path / "a", retry=FAST, clock=device_clock)
    other = cls.from_credential_file(file, state_dir=tmp_path / "b", retry=FAST)
    assert (await call(app, "check", "draw")).code == "NO_LEASE"
    if isinstance(app, AsyncClient):
        async with app.lease("draw") as lease:
            assert lease.valid and app.check("draw").valid
            assert app.check("render").code == "FEATURE_NOT_ENTITLED"
            device_clock.offset = -2 * DAY  # the lease's signed time is the mark: a clock turned back is seen
            assert app.check("draw").code == "CLOCK_TAMPERED"
            device_clock.offset = 0.0
            with pytest.raises(Exception) as taken:
                async with other.lease("draw"):
                    pass
            assert getattr(taken.value, "code", None) == "SEAT_LIMIT_REACHED"
    else:

        def hold() -> tuple[bool, str, str]:
            with app.lease("draw") as lease:  # type: ignore[union-attr]
                try:
                    with other.lease("draw"):  # type: ignore[union-attr]
                        second = "VALID"
                except Exception as refused:
                    second = getattr(refused, "code", repr(refused))
                return lease.valid and app.check("draw").valid, app.check("render").code, second

        assert await asyncio.to_thread(hold) == (True, "FEATURE_NOT_ENTITLED", "SEAT_LIMIT_REACHED")
    assert (await call(app, "check", "draw")).code != "VALID"  # released on leaving the block
    assert not [lease for lease in await vendor.tenant.list_all(f"{vendor.license_path}/leases") if lease["state"] == "active"]
    for made_client in (app, other):
        await closed(made_client)


async def test_a_saas_backend_reads_entitlements_through_the_same_client(
    licensor_gateway: Gateway, flavour: Flavour, tmp_path: Path
) -> None:
    vendor, token = await saas_vendor(licensor_gateway)
    saas = client(flavour, licensor_gateway.url, vendor.tenant.id, "saas", state_dir=tmp_path / "saas", product_token=token)
    granted = await call(saas, "entitlements", "acme")
    assert granted.allows("reports") and not granted.allows("exports")
    again = await call(saas, "entitlements", "acme")
    assert again is granted  # cached until the token is due for renewal
    nobody = await call(saas, "entitlements", "nobody")
    assert nobody.features == {}
    wrong = client(flavour, licensor_gateway.url, vendor.tenant.id, "saas", state_dir=tmp_path / "x", product_token="nope")
    with pytest.raises(RefusedError) as refused:
        await call(wrong, "entitlements", "acme")
    assert refused.value.http_status == 401
    for made in (saas, wrong):
        await closed(made)


# --- proxies from the environment ---------------------------------------------------------------------------------


async def test_the_client_goes_through_the_proxy_the_environment_names(
    licensor_gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forward proxy on 127.0.0.1 (it relays each absolute-form request and counts it): HTTP_PROXY sends the
    client's requests through it, NO_PROXY keeps them off it."""
    from aiohttp import ClientSession, web

    relayed: list[str] = []

    async def relay(request: web.Request) -> web.Response:
        relayed.append(f"{request.method} {request.url.path}")
        forwarded = {
            k: v for k, v in request.headers.items() if k.lower() in ("content-type", "idempotency-key", "authorization")
        }
        async with (
            ClientSession() as session,
            session.request(request.method, str(request.url), data=await request.read(), headers=forwarded) as answer,
        ):
            headers = {k: v for k, v in answer.headers.items() if k.lower() in ("content-type", "date", "retry-after")}
            return web.Response(status=answer.status, body=await answer.read(), headers=headers)

    proxy = web.Application()
    proxy.router.add_route("*", "/{tail:.*}", relay)
    runner = web.AppRunner(proxy)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        vendor = await activation_vendor(licensor_gateway)
        keys = await vendor.public_keys()
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        through = device("async", licensor_gateway, vendor, tmp_path / "a", keys, machine=machine())
        await call(through, "activate", vendor.license["key"])
        await call(through, "check_in")
        await closed(through)
        assert relayed == ["POST /v1/activations", "POST /v1/activations/checkin"]
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        direct = device("async", licensor_gateway, vendor, tmp_path / "a", keys, machine=machine())
        await call(direct, "check_in")
        await closed(direct)
        assert len(relayed) == 2  # NO_PROXY: straight to the gateway
    finally:
        await runner.cleanup()
