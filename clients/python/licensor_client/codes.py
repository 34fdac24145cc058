"""The verdict codes: the stable, machine-readable answer to "may this device, user or tenant use these
features now?", shared by the gateway (which answers them) and the client (which acts on them).

This module is the one place the codes are defined and described; the OpenAPI document and the docs take
them from here. A code never changes meaning once released; new situations get new codes.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["DESCRIPTIONS", "Code"]


class Code(StrEnum):
    """The stable, machine-readable outcome of a check: VALID, or why not (:data:`DESCRIPTIONS`)."""

    VALID = "VALID"
    NOT_FOUND = "NOT_FOUND"
    SUSPENDED = "SUSPENDED"
    REVOKED = "REVOKED"
    EXPIRED = "EXPIRED"
    NOT_YET_VALID = "NOT_YET_VALID"
    FEATURE_NOT_ENTITLED = "FEATURE_NOT_ENTITLED"
    VERSION_NOT_ENTITLED = "VERSION_NOT_ENTITLED"
    SEAT_LIMIT_REACHED = "SEAT_LIMIT_REACHED"
    FINGERPRINT_MISMATCH = "FINGERPRINT_MISMATCH"
    CHECKPOINT_OVERDUE = "CHECKPOINT_OVERDUE"
    WITHDRAWN = "WITHDRAWN"
    ROLLBACK_DETECTED = "ROLLBACK_DETECTED"
    CLONE_SUSPECTED = "CLONE_SUSPECTED"
    LEASE_EXPIRED = "LEASE_EXPIRED"
    LEASE_TAKEN_OVER = "LEASE_TAKEN_OVER"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"


DESCRIPTIONS: dict[Code, str] = {
    Code.VALID: "The license allows what was asked.",
    Code.NOT_FOUND: "No license matches what the software presented (for this tenant and product).",
    Code.SUSPENDED: "The vendor suspended the license; it may be reinstated.",
    Code.REVOKED: "The vendor revoked the license for good.",
    Code.EXPIRED: "The license's term has ended.",
    Code.NOT_YET_VALID: "The license's term has not begun.",
    Code.FEATURE_NOT_ENTITLED: "The license does not include a requested feature.",
    Code.VERSION_NOT_ENTITLED: (
        "The license does not cover the requested version (e.g. one released after its maintenance period)."
    ),
    Code.SEAT_LIMIT_REACHED: "Every seat of the license is in use.",
    Code.FINGERPRINT_MISMATCH: "The device's fingerprint does not match the activation closely enough.",
    Code.CHECKPOINT_OVERDUE: "The device did not check in before its checkpoint (plus grace).",
    Code.WITHDRAWN: "The activation was removed or moved to another device.",
    Code.ROLLBACK_DETECTED: "The device presented an older generation: a snapshot was reverted.",
    Code.CLONE_SUSPECTED: "Two devices presented the same activation: a copy of the machine.",
    Code.LEASE_EXPIRED: "The lease was not renewed in time and its seat was returned.",
    Code.LEASE_TAKEN_OVER: "Another device took over the single-user seat.",
    Code.QUOTA_EXCEEDED: "Recording this usage would exceed the feature's quota for the period.",
}
assert set(DESCRIPTIONS) == set(Code), "every verdict code is described"
