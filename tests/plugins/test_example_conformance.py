"""The conformance suite of licensor.testing, run by the third-party-style example backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from licensor import PUBLIC, Backend, Call, CheckRequest, Operation, Reply, Verdict, hookimpl
from licensor.plugins import BackendRegistry
from licensor.testing import BackendConformance, Gateway

from tests.example_backend import PRERELEASE_REFUSED, ExampleBackend, ExamplePlugin


@pytest.fixture
def licensor_plugins() -> tuple[object, ...]:
    return (ExamplePlugin(),)


class TestExampleBackendConformance(BackendConformance):
    backend = "example"
    options: ClassVar[dict[str, Any]] = {"max_major_version": 3}
    invalid_options = ({"max_major_version": -1}, {"max_major_version": "3"}, {"seats_per_user": 2})

    async def test_a_verdict_code_of_the_backends_own_is_answered_and_documented(self, licensor_gateway: Gateway) -> None:
        made = await self.licensed(licensor_gateway)
        verdict = await made.check(version="2.0.0-beta.1")
        assert (verdict["code"], verdict["valid"]) == (PRERELEASE_REFUSED, False)
        assert verdict["message"] == ExampleBackend.verdict_codes[PRERELEASE_REFUSED]
        assert (await made.check(version="4.0"))["code"] == "VERSION_NOT_ENTITLED"  # licensor's codes still apply
        document = (await licensor_gateway.call("GET", "/openapi.json")).body
        schema = document["paths"]["/v1/check"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
        code = schema["properties"]["verdict"]["properties"]["code"]
        assert PRERELEASE_REFUSED in code["enum"] and "VALID" in code["enum"]
        assert code["x-descriptions"][PRERELEASE_REFUSED] == ExampleBackend.verdict_codes[PRERELEASE_REFUSED]


class UndeclaredCodeBackend(ExampleBackend):
    name = "undeclared"
    verdict_codes: ClassVar[dict[str, str]] = {}

    async def check(self, request: CheckRequest) -> Verdict:
        return Verdict("UNDECLARED_WHATEVER", license_id=request.license["id"])

    def operations(self) -> list[Operation]:
        return []


class RaisingRouteBackend(ExampleBackend):
    """A backend whose own route fails on the server: the conformance suite must catch it."""

    name = "raising"
    verdict_codes: ClassVar[dict[str, str]] = {}

    def operations(self) -> list[Operation]:
        async def broken(call: Call) -> Reply:
            raise RuntimeError("a bug in the backend's route")

        return [
            Operation(
                method="POST",
                path="/v1/raising/poke",
                operation_id="raising_poke",
                summary="Poke",
                handler=broken,
                tag="raising",
                auth=PUBLIC,
                response_schema=None,
                request_schema={"type": "object", "properties": {"n": {"type": "integer"}}, "additionalProperties": False},
            )
        ]


class OddBackends:
    @hookimpl
    def licensor_register_backends(self, register: Callable[[Backend], None]) -> None:
        register(UndeclaredCodeBackend())
        register(RaisingRouteBackend())


class TestOddBackends:
    @pytest.fixture
    def licensor_plugins(self) -> tuple[object, ...]:
        return (OddBackends(),)

    async def test_an_undeclared_verdict_code_is_a_502_not_a_crash(self, licensor_gateway: Gateway) -> None:
        made = await TestUndeclared().licensed(licensor_gateway)
        sent = {"tenant": made.tenant.id, "product": made.product["code"], "license_key": made.license["key"]}
        answer = await licensor_gateway.call("POST", "/v1/check", json=sent)
        assert (answer.status, answer.code) == (502, "BACKEND_VERDICT_UNDECLARED")

    async def test_a_backend_whose_own_route_raises_fails_the_conformance_suite(self, licensor_gateway: Gateway) -> None:
        with pytest.raises(AssertionError, match="500"):
            await TestRaising().test_the_backends_own_operations_never_fail_on_the_server(licensor_gateway)


class TestUndeclared(BackendConformance):
    __test__ = False
    backend = "undeclared"


class TestRaising(BackendConformance):
    __test__ = False
    backend = "raising"


def test_a_backend_code_must_carry_its_name() -> None:
    class Squatter(ExampleBackend):
        verdict_codes: ClassVar[dict[str, str]] = {"SEAT_LIMIT_REACHED": "Mine now."}

    class Unprefixed(ExampleBackend):
        verdict_codes: ClassVar[dict[str, str]] = {"OVER_BUDGET": "Spent."}

    class Undescribed(ExampleBackend):
        verdict_codes: ClassVar[dict[str, str]] = {"EXAMPLE_OVER_BUDGET": " "}

    for backend in (Squatter(), Unprefixed(), Undescribed()):
        with pytest.raises(ValueError, match="verdict code"):
            BackendRegistry().register(backend)
    registry = BackendRegistry()
    registry.register(ExampleBackend())
    assert registry.verdict_codes() == ExampleBackend.verdict_codes
