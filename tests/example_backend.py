"""A small backend written as a third party would write one: only licensor's public API, registered through
the ``licensor_register_backends`` hook. It grants what the license's terms grant, refuses versions whose major
number is above the one its policy option allows, refuses pre-releases with a verdict code of its own, and has
one admin operation of its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from licensor import (
    READ_ROLES,
    Backend,
    Call,
    CheckRequest,
    Code,
    Operation,
    Reply,
    Token,
    Verdict,
    hookimpl,
    license_of,
    license_terms_verdict,
)
from licensor.model import POLICY, id_pattern

PRERELEASE_REFUSED = "EXAMPLE_PRERELEASE_REFUSED"


class ExampleBackend(Backend):
    name = "example"
    verdicts_cacheable = True
    options_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"max_major_version": {"type": "integer", "minimum": 0}},
        "additionalProperties": False,
    }
    verdict_codes: ClassVar[dict[str, str]] = {PRERELEASE_REFUSED: "The license does not cover pre-release versions."}

    async def check(self, request: CheckRequest) -> Verdict:
        verdict = license_terms_verdict(request)
        if not verdict.valid or request.version is None:
            return verdict
        if "-" in request.version:  # 2.0.0-beta.1
            return Verdict(PRERELEASE_REFUSED, license_id=verdict.license_id)
        limit = request.options.get("max_major_version")
        major = request.version.split(".", 1)[0]
        if limit is not None and major.isdigit() and int(major) > limit:
            return Verdict(Code.VERSION_NOT_ENTITLED, license_id=verdict.license_id)
        return verdict

    def operations(self) -> list[Operation]:
        return [
            Operation(
                method="GET",
                path="/v1/admin/licenses/{id}/example-terms",
                operation_id="get_example_terms",
                summary="Read what the example backend allows a license",
                handler=example_terms,
                tag="example",
                auth=Token(READ_ROLES),
                response_schema={
                    "type": "object",
                    "properties": {"license_id": {"type": "string"}, "max_major_version": {"type": ["integer", "null"]}},
                    "required": ["license_id", "max_major_version"],
                    "additionalProperties": False,
                },
                path_patterns={"id": id_pattern("lic")},
                errors=(404,),
                description="The newest major version the license's policy allows (null: any).",
            )
        ]


async def example_terms(call: Call) -> Reply:
    license = await license_of(call)
    policy = await call.store.get(call.tenant_id, POLICY, license["policy_id"])
    assert policy is not None, "a license's policy cannot be deleted"
    options = POLICY.field("options").column_to_api(policy["options"])
    return Reply(200, {"license_id": license["id"], "max_major_version": options.get("max_major_version")})


class ExamplePlugin:
    @hookimpl
    def licensor_register_backends(self, register: Callable[[Backend], None]) -> None:
        register(ExampleBackend())
