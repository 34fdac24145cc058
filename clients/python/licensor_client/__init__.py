"""licensor-client: the licensed software's side of licensor (docs/client.md).

:class:`Client` and :class:`AsyncClient` talk to the gateway for the three backends (activation, cloud,
cloud-lite) and answer checks offline from the state directory; :func:`read_machine` reads the device's
fingerprint. The modules below hold the document formats the gateway signs and the client verifies
(:mod:`~licensor_client.activation`, :mod:`~licensor_client.leases`, :mod:`~licensor_client.entitlements`,
:mod:`~licensor_client.answers`), the token codec (:mod:`~licensor_client.codec`, :mod:`~licensor_client.tokens`),
the state directory (:mod:`~licensor_client.state`) and the trusted clock (:mod:`~licensor_client.clock`).
"""

from licensor_client.client import AsyncClient, CheckResult, Client, RefusedError, ReleaseOffer, SyncLease
from licensor_client.clock import CLOCK_TAMPERED, ClockGrade, ClockReading
from licensor_client.errors import LicensorError, TokenError
from licensor_client.http import GatewayUnavailableError, RetryPolicy
from licensor_client.machine import MachineReading, Reader, read_machine, readers
from licensor_client.releases import ArtifactRejectedError, verify_artifact
from licensor_client.state import StateError, StateLockedError

__all__ = [
    "CLOCK_TAMPERED",
    "ArtifactRejectedError",
    "AsyncClient",
    "CheckResult",
    "Client",
    "ClockGrade",
    "ClockReading",
    "GatewayUnavailableError",
    "LicensorError",
    "MachineReading",
    "Reader",
    "RefusedError",
    "ReleaseOffer",
    "RetryPolicy",
    "StateError",
    "StateLockedError",
    "SyncLease",
    "TokenError",
    "read_machine",
    "readers",
    "verify_artifact",
]
