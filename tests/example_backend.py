"""A small backend written as a third party would write one: only licensor's public API, registered through
the ``licensor_register_backends`` hook. It grants what the license's terms grant, and refuses versions whose
major number is above the one its policy option allows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from licensor.backend import Backend, CheckRequest, license_terms_verdict
from licensor.hookspecs import hookimpl
from licensor.verdict import Code, Verdict


class ExampleBackend(Backend):
    name = "example"
    verdicts_cacheable = True
    options_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"max_major_version": {"type": "integer", "minimum": 0}},
        "additionalProperties": False,
    }

    async def check(self, request: CheckRequest) -> Verdict:
        verdict = license_terms_verdict(request)
        if not verdict.valid or request.version is None:
            return verdict
        limit = request.options.get("max_major_version")
        major = request.version.split(".", 1)[0]
        if limit is not None and major.isdigit() and int(major) > limit:
            return Verdict(Code.VERSION_NOT_ENTITLED, license_id=verdict.license_id)
        return verdict


class ExamplePlugin:
    @hookimpl
    def licensor_register_backends(self, register: Callable[[Backend], None]) -> None:
        register(ExampleBackend())
