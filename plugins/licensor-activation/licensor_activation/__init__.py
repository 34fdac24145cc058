"""licensor's activation backend (CodeMeter CmActLicense with SmartBind's role), written only against
licensor's public API.

A license is bound to a device by a tolerant hardware fingerprint and a key the device made; the device gets a
signed ``lf1`` license file to verify offline (:func:`licensor_client.activation.verify_license_file`), checks
in before each checkpoint for a renewed one, and moves to another device only by early deactivation, removal by
the vendor or recovery. A copied VM or a reverted snapshot presents a stale generation and is caught.

Installed, it registers itself through the entry point group ``licensor.backends``.
"""

from __future__ import annotations

from collections.abc import Callable

from licensor import Backend, hookimpl

from licensor_activation.backend import ActivationBackend

__version__ = "0.1.0"
__all__ = ["ActivationBackend", "licensor_register_backends"]


@hookimpl
def licensor_register_backends(register: Callable[[Backend], None]) -> None:
    register(ActivationBackend())
