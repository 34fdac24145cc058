"""Device fingerprints (a map from component name to a salted hash), matched tolerantly with weights.

The licensed software reads its device's components (:mod:`licensor_client.machine`: machine id, board, cpu,
disk, mac, ...) and sends only their salted hashes (:func:`hash_components`): the gateway never learns a serial
number, and the hashes of one vendor's product say nothing about another's. A match is the weighted share of the
stored components that the presented fingerprint has unchanged, against a threshold (:class:`MatchRule`); a
policy picks a preset (:data:`PRESETS`) or sets its own threshold and weights (:func:`match_rule`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from licensor_client import codec

__all__ = [
    "COMPONENT_PATTERN",
    "DEFAULT_WEIGHTS",
    "HASH_PATTERN",
    "MAX_COMPONENTS",
    "MAX_WEIGHT",
    "PRESETS",
    "MatchRule",
    "hash_components",
    "match_rule",
    "product_salt",
]

DEFAULT_WEIGHTS: dict[str, float] = {"machine_id": 4.0, "board": 3.0, "cpu": 2.0, "disk": 2.0, "mac": 1.0, "hostname": 1.0}
"""Weights of the usual components; a component not named weighs 1.0."""

PRESETS: dict[str, float] = {"loose": 0.5, "medium": 0.7, "strict": 0.9}
"""Match thresholds by tolerance: how much of the device (by weight) must be unchanged to be the same device."""

COMPONENT_PATTERN = "^[a-z][a-z0-9_-]{0,31}$"
HASH_PATTERN = "^[A-Za-z0-9_-]{1,128}$"
MAX_COMPONENTS = 32
MAX_WEIGHT = 1_000_000
"""The largest weight the core scores with."""


@dataclass(frozen=True)
class MatchRule:
    """When a presented fingerprint is the same device as a stored one."""

    threshold: float
    weights: dict[str, float]

    def score(self, stored: Mapping[str, str], presented: Mapping[str, str]) -> float:
        return codec.fingerprint_score(stored, presented, self.weights)

    def matches(self, stored: Mapping[str, str], presented: Mapping[str, str]) -> bool:
        return self.score(stored, presented) >= self.threshold

    def as_json(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "weights": dict(sorted(self.weights.items()))}

    @classmethod
    def from_json(cls, document: Any) -> MatchRule:
        """The rule a license file carries. :raises ValueError: not a rule."""
        if not isinstance(document, dict) or not isinstance(document.get("weights"), dict):
            raise ValueError("not a match rule")
        threshold: Any = document.get("threshold")
        weights: dict[Any, Any] = document["weights"]
        if not (
            _is_number(threshold) and 0 < threshold <= 1 and all(_is_number(w) and 0 <= w <= MAX_WEIGHT for w in weights.values())
        ):
            raise ValueError("not a match rule")
        return cls(float(threshold), {str(name): float(weight) for name, weight in weights.items()})


def match_rule(preset: str = "medium", threshold: float | None = None, weights: Mapping[str, float] | None = None) -> MatchRule:
    """The preset's threshold unless ``threshold`` is given; :data:`DEFAULT_WEIGHTS` updated by ``weights``."""
    return MatchRule(PRESETS[preset] if threshold is None else float(threshold), {**DEFAULT_WEIGHTS, **(weights or {})})


def hash_components(components: Mapping[str, str], salt: str) -> dict[str, str]:
    """The fingerprint of raw component values: each a domain-separated SHA-256 of salt, name and value
    (base64url, 43 characters). The SDK salts with the tenant and product (:func:`product_salt`)."""
    hashed = {}
    for name, value in components.items():
        digest = hashlib.sha256(b"licensor.fingerprint.v1\x00" + f"{salt}\x00{name}\x00{value}".encode()).digest()
        hashed[name] = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    return hashed


def product_salt(tenant: str, product: str) -> str:
    return f"{tenant}/{product}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
