"""Readers of a signed document's fields, shared by the SDK's document readers: each returns the field's value
or raises TypeError, which the reader turns into its document's MALFORMED code."""

from __future__ import annotations

from typing import Any

from licensor_client.errors import TokenError


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def integer(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("not an integer")
    return value


def quantity(value: Any) -> int | None:
    return None if value is None else integer(value)


def json_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("not an object")
    return value


def text_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise TypeError("not a map of strings")
    return dict(value)


def expect_claims(document: dict[str, Any], rejected: type[TokenError], what: str, **expected: str | None) -> None:
    """Each named claim of a verified document must equal its expected value (None: not checked).

    :raises TokenError: of type ``rejected``, code ``<NAME>_MISMATCH`` (TENANT_MISMATCH, PRODUCT_MISMATCH, ...)."""
    for name, value in expected.items():
        if value is not None and document.get(name) != value:
            raise rejected(f"the {what} was issued for another {name}", code=f"{name.upper()}_MISMATCH")
