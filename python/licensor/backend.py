"""The interface every license backend implements, first-party or third-party.

A backend is named by policies (``policy.backend``). The gateway finds it in the registry by that name, has it
validate the options of a policy that names it, and asks it to :meth:`Backend.check`. A backend keeps its state
through the store interface only.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from licensor.errors import ValidationError
from licensor.license import CheckRequest, LicenseTerms, license_terms_verdict
from licensor.model import now_us
from licensor.schema import compiled
from licensor.verdict import Verdict

if TYPE_CHECKING:
    from licensor.operations import Operation, Services
    from licensor.store import Transaction

__all__ = ["BACKEND_NAME", "VERDICT_CODE", "Backend", "CheckRequest", "LicenseTerms", "license_terms_verdict", "own_code_prefix"]

BACKEND_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
VERDICT_CODE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")


def own_code_prefix(backend_name: str) -> str:
    """What each of a backend's own verdict codes starts with: ``cloud-lite`` -> ``CLOUD_LITE_``."""
    return backend_name.upper().replace("-", "_") + "_"


class Backend(ABC):
    """A license backend: a name, the schema of its policy options, its check, its routes, and its reactions
    to changes made in License Central."""

    name: ClassVar[str]
    options_schema: ClassVar[dict[str, Any]] = {"type": "object", "additionalProperties": False}
    default_options: ClassVar[dict[str, Any]] = {}
    """The value of each option a policy leaves out (see :meth:`option`)."""
    verdict_codes: ClassVar[dict[str, str]] = {}
    """Verdict codes of the backend's own (code -> what it means, one sentence), for refusals none of
    :class:`licensor.Code` describes. Each starts with the backend's name in capitals, ``-`` as ``_`` (a
    ``metered`` backend's ``METERED_BUDGET_SPENT``), so it never collides with licensor's codes or another
    backend's; the gateway lists them in the OpenAPI enum of the verdict and answers their description as the
    message when the verdict has none."""
    verdicts_cacheable: ClassVar[bool] = False
    """True when :meth:`check` depends only on the request, the license, its policy and product, and on the time
    only through the license's start and expiry (as :func:`license_terms_verdict`): the gateway may then answer
    a repeated identical check from memory, until anything of the tenant changes (and for at most a few
    seconds). A backend that keeps state of its own (seats, activations, usage) leaves it False."""
    services: Services | None = None
    """The gateway that serves the backend: handed over when the gateway starts (None before, and in a process
    that only reads the declarations, such as ``licensor admin``)."""

    @property
    def clock(self) -> Callable[[], int]:
        """The gateway's clock (µs since the epoch), the one its verdicts and signed answers use; a test moves it
        through :meth:`licensor.testing.Gateway.freeze_clock`. The system's clock before the gateway starts."""
        return self.services.now_us if self.services is not None else now_us

    def count_churn(self, tenant_id: str, license_id: str) -> None:
        """Count one activation or deactivation of the license against the gateway's churn budget
        (``rate_limits.churn``: devices coming and going on one license faster than any real fleet does).

        :raises licensor.errors.RateLimitedError: the license's budget is used up (429)."""
        if self.services is not None:
            self.services.count_churn(tenant_id, license_id)

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The policy options as this backend will use them.

        :raises ValidationError: INVALID_POLICY_OPTIONS, naming the first offending option.
        """
        problem = compiled(self.options_schema).problem(options)
        if problem is not None:
            where = "options" if problem.location == "(body)" else problem.location
            raise ValidationError(f"{self.name} policy option {where}: {problem.message}", code="INVALID_POLICY_OPTIONS")
        return options

    def option(self, options: Mapping[str, Any], name: str) -> Any:
        """A policy's option ``name``, or this backend's default for it (:attr:`default_options`)."""
        return options[name] if name in options else self.default_options[name]

    @abstractmethod
    async def check(self, request: CheckRequest) -> Verdict:
        """Answer whether the license allows what was asked now. Refusals are verdicts, never exceptions."""

    def operations(self) -> Iterable[Operation]:
        """The backend's own routes (license-plane operations), added to the gateway and its OpenAPI document."""
        return ()

    # Not abstract: a backend overrides it only when it reacts to changes (the default does nothing).
    async def on_license_changed(self, tx: Transaction, license: dict[str, Any], change: str) -> None:  # noqa: B027
        """React to a change of one of this backend's licenses made in License Central (``suspended``,
        ``reinstated``, ``revoked``, ``renewed``), inside the changing transaction: what the backend writes
        through ``tx`` commits with the change, and an error aborts it. Checks see the change at once anyway
        (the license cache drops the license when the change commits)."""
