"""The one place that chooses the core: the native ``licensor._core`` or its twin ``licensor._fallback``.

Everything else imports core functions from here. ``LICENSOR_PURE_PYTHON=1`` forces the pure-Python twin by
raising ImportError inside the same ``try`` that a missing native module takes, so there is one code path.
"""

from __future__ import annotations

import os
from types import ModuleType

__all__ = [
    "IMPLEMENTATION",
    "MAX_TOKEN_LENGTH",
    "FingerprintIndex",
    "Signer",
    "decode_token",
    "decode_tokens",
    "encode_token",
    "fingerprint_score",
    "generate_seed",
    "implementations",
    "public_key",
    "sign",
    "verify",
    "verify_batch",
]

_selected: ModuleType  # the loaded core module, for implementations()
try:
    if os.environ.get("LICENSOR_PURE_PYTHON") == "1":
        raise ImportError("LICENSOR_PURE_PYTHON=1 forces the pure-Python core")
    from licensor import _core as _selected
    from licensor._core import (
        MAX_TOKEN_LENGTH,
        FingerprintIndex,
        Signer,
        decode_token,
        decode_tokens,
        encode_token,
        fingerprint_score,
        generate_seed,
        public_key,
        sign,
        verify,
        verify_batch,
    )

    IMPLEMENTATION = "rust"
except ImportError:
    from licensor import _fallback as _selected
    from licensor._fallback import (
        MAX_TOKEN_LENGTH,
        decode_token,
        decode_tokens,
        encode_token,
        fingerprint_score,
        generate_seed,
        public_key,
        sign,
        verify,
        verify_batch,
    )

    # mypy types the name by licensor._core's class, and the twin's is another class with the same interface
    # (tests/core/test_twins.py): an import of its own, so that the ignore covers this one name only.
    from licensor._fallback import FingerprintIndex as FingerprintIndex  # type: ignore[assignment]
    from licensor._fallback import Signer as Signer  # type: ignore[assignment]

    IMPLEMENTATION = "python"


def implementations() -> dict[str, ModuleType]:
    """The core implementations this process may use, by name: ``{"rust": ..., "python": ...}`` when the
    native module is loaded, only ``{"python": ...}`` otherwise. Tests and benchmarks run on each."""
    from licensor import _fallback

    found: dict[str, ModuleType] = {"python": _fallback}
    if IMPLEMENTATION == "rust":
        found["rust"] = _selected
    return found
