"""Device fingerprints (DESIGN §5) on the server: the client's rules (:mod:`licensor_client.fingerprint`:
components, salted hashes, weights, presets and :class:`MatchRule`), the request schema of a fingerprint, and the
core's index that matches one presented fingerprint among a license's many at once.
"""

from __future__ import annotations

from typing import Any

from licensor_client.fingerprint import (
    COMPONENT_PATTERN,
    DEFAULT_WEIGHTS,
    HASH_PATTERN,
    MAX_COMPONENTS,
    MAX_WEIGHT,
    PRESETS,
    MatchRule,
    hash_components,
    match_rule,
    product_salt,
)

from licensor import _impl as core

__all__ = [
    "COMPONENT_PATTERN",
    "DEFAULT_WEIGHTS",
    "FINGERPRINT_SCHEMA",
    "HASH_PATTERN",
    "MAX_COMPONENTS",
    "MAX_WEIGHT",
    "PRESETS",
    "FingerprintIndex",
    "MatchRule",
    "hash_components",
    "match_rule",
    "product_salt",
]

FingerprintIndex = core.FingerprintIndex
"""The stored fingerprints of one license, matched together against a presented one (the native core's
index, or its pure-Python twin): ``add(id, fingerprint)``, then ``best_match(presented, threshold)``."""

FINGERPRINT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "minProperties": 1,
    "maxProperties": MAX_COMPONENTS,
    "propertyNames": {"pattern": COMPONENT_PATTERN},
    "additionalProperties": {"type": "string", "pattern": HASH_PATTERN},
}
