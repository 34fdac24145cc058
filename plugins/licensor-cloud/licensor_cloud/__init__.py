"""licensor's cloud backend (CodeMeter CmCloudContainer's role), written only against licensor's public API.

A license stays on the server. The vendor gives the customer credential files; a device holding one checks out
a lease (a seat) for the features it needs, renews it by heartbeat and releases it. Seats are counted on the
server, so a virtual machine may be moved, copied or reverted without ever using more seats than were bought.
The device side is :mod:`licensor_client.leases`.

Installed, it registers itself through the entry point group ``licensor.backends``.
"""

from __future__ import annotations

from collections.abc import Callable

from licensor import Backend, hookimpl

from licensor_cloud.backend import CloudBackend

__version__ = "0.1.0"
__all__ = ["CloudBackend", "licensor_register_backends"]


@hookimpl
def licensor_register_backends(register: Callable[[Backend], None]) -> None:
    register(CloudBackend())
