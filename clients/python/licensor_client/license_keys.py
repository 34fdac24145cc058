"""License keys as a person types them: 27 Crockford base32 characters and a check character, read aloud in
groups of four (``XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XXXC``).

The check character (Luhn mod 32) catches every single mistyped character and most swaps of neighbours, so the
program tells a typo apart from a key that does not exist before it asks the gateway (which checks the same).
Input is forgiving: case, spaces and dashes are ignored, and O, I and L read as 0, 1 and 1.
"""

from __future__ import annotations

from licensor_client.errors import LicensorError

__all__ = [
    "ALPHABET",
    "GROUP",
    "RANDOM_CHARACTERS",
    "READ_AS",
    "VALUES",
    "LicenseKeyError",
    "check_character",
    "grouped",
    "normalize",
]

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
VALUES = {char: value for value, char in enumerate(ALPHABET)}
READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})
"""How a person's O, I and L are read: 0, 1 and 1 (they are not in the alphabet)."""
RANDOM_CHARACTERS = 27
GROUP = 4


class LicenseKeyError(LicensorError, ValueError):
    """Not a license key: a typo, most likely (code LICENSE_KEY_MALFORMED)."""

    code = "LICENSE_KEY_MALFORMED"
    http_status = 422


def check_character(body: str) -> str:
    """The check character of a key's 27 random characters."""
    total, factor = 0, 2
    for char in reversed(body):
        addend = factor * VALUES[char]
        total += addend // 32 + addend % 32
        factor = 1 if factor == 2 else 2
    return ALPHABET[(32 - total % 32) % 32]


def normalize(text: str) -> str:
    """The canonical form of a typed key (no grouping, upper case).

    :raises LicenseKeyError: it cannot be a license key."""
    compact = "".join(text.split()).replace("-", "").upper().translate(READ_AS)
    if len(compact) != RANDOM_CHARACTERS + 1 or any(char not in VALUES for char in compact):
        raise LicenseKeyError("this is not a license key: check for a typo")
    if check_character(compact[:-1]) != compact[-1]:
        raise LicenseKeyError("this license key has a typo (its check character does not match)")
    return compact


def grouped(normalized: str) -> str:
    """A key in groups of four, for reading aloud."""
    return "-".join(normalized[i : i + GROUP] for i in range(0, len(normalized), GROUP))
