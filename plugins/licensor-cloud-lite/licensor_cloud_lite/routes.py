"""cloud-lite's routes: what a SaaS backend asks about its subjects, declared once, handled by ``backend``."""

from __future__ import annotations

from functools import partial

from licensor import PRODUCT_ROLES, READ_ROLES, Backend, Call, Operation, Param, Reply, Token
from licensor.model import CODE_SCHEMA, SUBJECT_SCHEMA

from licensor_cloud_lite import entitlements, usage
from licensor_cloud_lite.presenters import ENTITLEMENTS_SCHEMA, USAGE_SCHEMA, USAGE_TOTALS_SCHEMA

_PERIOD = {"type": "string", "pattern": "^(term|[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?)$"}


async def query(backend: Backend, call: Call) -> Reply:
    return Reply(200, await entitlements.query(call, backend))


async def record_usage(backend: Backend, call: Call) -> Reply:
    return Reply(201, await usage.record(call, backend))


async def read_usage(backend: Backend, call: Call) -> Reply:
    return Reply(200, await usage.totals(call, backend))


def operations(backend: Backend) -> list[Operation]:
    """The routes, each handled by ``backend`` (the one the gateway installed, which decides the verdicts)."""
    return [
        Operation(
            method="POST",
            path="/v1/entitlements/query",
            operation_id="query_entitlements",
            summary="Query what a subject may do",
            handler=partial(query, backend),
            tag="cloud-lite",
            auth=Token(PRODUCT_ROLES),
            response_schema=ENTITLEMENTS_SCHEMA,
            request_schema={
                "type": "object",
                "properties": {"product": CODE_SCHEMA, "subject": SUBJECT_SCHEMA},
                "required": ["product", "subject"],
                "additionalProperties": False,
            },
            errors=(401, 403, 404, 422),
            description="Authenticated by a product token. Answers the features (quantities of valid licenses add up), "
            "terms and verdict code of the subject's cloud-lite licenses of the product, and token: an en1 entitlement "
            "token valid for the policy's entitlement_ttl_seconds, to verify offline with "
            "licensor_client.entitlements.verify_entitlement_token against /v1/keys. A subject without a license "
            "gets code NOT_FOUND and no features (200).",
        ),
        Operation(
            method="POST",
            path="/v1/entitlements/usage",
            operation_id="record_usage",
            summary="Record a subject's usage of a metered feature",
            handler=partial(record_usage, backend),
            tag="cloud-lite",
            auth=Token(PRODUCT_ROLES),
            response_schema=USAGE_SCHEMA,
            status=201,
            request_schema={
                "type": "object",
                "properties": {
                    "product": CODE_SCHEMA,
                    "subject": SUBJECT_SCHEMA,
                    "feature": CODE_SCHEMA,
                    "units": {"type": "integer", "minimum": 1, "maximum": 1_000_000_000},
                },
                "required": ["product", "subject", "feature", "units"],
                "additionalProperties": False,
            },
            changes_state=True,
            errors=(401, 403, 404, 409, 422),
            description="Adds units to the subject's usage of a metered feature in the current period, against the "
            "feature's quantity (its quota) on the oldest valid license with room, atomically. Send an Idempotency-Key: "
            "a retry is answered the first answer and counts once. 409 QUOTA_EXCEEDED records nothing; 403 carries the "
            "verdict code of a license that does not allow it (SUSPENDED, FEATURE_NOT_ENTITLED, ...).",
        ),
        Operation(
            method="GET",
            path="/v1/entitlements/usage",
            operation_id="read_usage",
            summary="Read a subject's usage totals",
            handler=partial(read_usage, backend),
            tag="cloud-lite",
            auth=Token(PRODUCT_ROLES | READ_ROLES),
            response_schema=USAGE_TOTALS_SCHEMA,
            query=(
                Param("product", CODE_SCHEMA, "The product's code.", required=True),
                Param("subject", SUBJECT_SCHEMA, "The subject (the SaaS's user or customer id).", required=True),
                Param("period", _PERIOD, "One period (2026-11-28, 2026-11, 2026 or term); all when absent."),
            ),
            errors=(401, 403, 404),
            description="Totals per license, feature and period of the subject's cloud-lite licenses of the product.",
        ),
    ]
