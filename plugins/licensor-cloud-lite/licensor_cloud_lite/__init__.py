"""licensor's cloud-lite backend (CodeMeter Cloud Lite's role), written only against licensor's public API.

A SaaS backend authenticates with a product token and asks what a subject (one of its users or customer
tenants) may do: ``POST /v1/entitlements/query`` answers the features, quantities and terms of the subject's
licenses and an ``en1`` entitlement token to verify and cache locally
(:mod:`licensor_client.entitlements`). Metered features record usage idempotently against their quota
(``POST /v1/entitlements/usage``); ``GET /v1/entitlements/usage`` reads the totals per subject and period.

Installed, it registers itself through the entry point group ``licensor.backends``.
"""

from __future__ import annotations

from collections.abc import Callable

from licensor import Backend, hookimpl

from licensor_cloud_lite.backend import CloudLiteBackend

__version__ = "0.1.0"
__all__ = ["CloudLiteBackend", "licensor_register_backends"]


@hookimpl
def licensor_register_backends(register: Callable[[Backend], None]) -> None:
    register(CloudLiteBackend())
