"""How the cloud backend's rows look in the API: credentials and leases as ``model.py`` declares them (never a
secret's hash), a lease's state as it stands when it is shown, and the schemas of the answers that carry them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from licensor.model import CODE_SCHEMA, CREDENTIAL, LEASE, format_time
from licensor_client.leases import CREDENTIAL_FILE_FORMAT

if TYPE_CHECKING:
    from licensor.store import Row


def lease_state(lease: Row, now: int) -> str:
    """A lease's state as shown: an active lease that ran out is expired, whether or not it was marked yet."""
    return "expired" if lease["state"] == "active" and lease["expires_at"] <= now else str(lease["state"])


def shown_lease(row: Row, now: int) -> dict[str, Any]:
    """A lease as the API shows it at ``now``: one that ran out unmarked shows as expired, ended when it ran out."""
    state = lease_state(row, now)
    ended = row["ended_at"] if row["ended_at"] is not None or state != "expired" else row["expires_at"]
    return {**LEASE.to_api(row), "state": state, "ended_at": format_time(ended)}


def shown_credential(row: Row) -> dict[str, Any]:
    """A credential as the API shows it."""
    return CREDENTIAL.to_api(row)


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    """The schema of an object with exactly these properties."""
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def _lease_schema() -> dict[str, Any]:
    schema = LEASE.response_schema()
    # The model declares only an array: a lease's features are the feature codes it was checked out for.
    schema["properties"]["features"] = {"type": "array", "items": CODE_SCHEMA}
    return schema


_NULLABLE_TEXT = {"anyOf": [{"type": "string"}, {"type": "null"}]}
LEASE_SCHEMA = _lease_schema()
CREDENTIAL_SCHEMA = CREDENTIAL.response_schema()
CREDENTIAL_FILE_SCHEMA = _object(
    {
        "object": {"const": "credential_file"},
        "credential": CREDENTIAL_SCHEMA,
        "credential_file": _object(
            {
                "format": {"const": CREDENTIAL_FILE_FORMAT},
                "server": {"type": "string"},
                "tenant": {"type": "string"},
                "product": {"type": "string"},
                "license": {"type": "string"},
                "credential": {"type": "string"},
                "label": _NULLABLE_TEXT,
                "keys": {"type": "object", "additionalProperties": {"type": "string"}},
            }
        ),
    }
)
GRANTED_SCHEMA = _object(
    {
        "object": {"const": "lease"},
        "lease": LEASE_SCHEMA,
        "lease_secret": {"type": "string"},
        "lease_token": {"type": "string"},
        "heartbeat_interval_seconds": {"type": "integer"},
    }
)
ENDED_SCHEMA = _object({"object": {"const": "lease"}, "lease": LEASE_SCHEMA})
USAGE_SCHEMA = _object(
    {
        "object": {"const": "lease_usage"},
        "license_id": {"type": "string"},
        "seats": {"type": "integer"},
        "days": {
            "type": "array",
            "items": _object(
                {"date": {"type": "string", "format": "date"}, "peak": {"type": "integer"}, "checkouts": {"type": "integer"}}
            ),
        },
    }
)
