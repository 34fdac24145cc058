"""License keys: 135 random bits in 27 Crockford base32 characters plus a check character, read aloud in
groups of four (``XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XXXC``).

The check character (Luhn mod 32) catches every single mistyped character and most swaps of neighbours, so a
typo is told apart from a key that does not exist. Input is forgiving: case, spaces and dashes are ignored,
and O, I and L read as 0, 1 and 1.
"""

from __future__ import annotations

import secrets

from licensor.errors import ValidationError

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_VALUE = {char: value for value, char in enumerate(ALPHABET)}
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})
RANDOM_CHARACTERS = 27
GROUP = 4


def _check_character(body: str) -> str:
    total, factor = 0, 2
    for char in reversed(body):
        addend = factor * _VALUE[char]
        total += addend // 32 + addend % 32
        factor = 1 if factor == 2 else 2
    return ALPHABET[(32 - total % 32) % 32]


def generate() -> str:
    """A new license key, grouped for reading aloud."""
    body = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_CHARACTERS))
    key = body + _check_character(body)
    return "-".join(key[i : i + GROUP] for i in range(0, len(key), GROUP))


def normalize(text: str) -> str:
    """The canonical form of a typed key (no grouping, upper case).

    :raises ValidationError: LICENSE_KEY_MALFORMED when it cannot be a license key (a typo, most likely).
    """
    compact = "".join(text.split()).replace("-", "").upper().translate(_READ_AS)
    if len(compact) != RANDOM_CHARACTERS + 1 or any(char not in _VALUE for char in compact):
        raise ValidationError("this is not a license key: check for a typo", code="LICENSE_KEY_MALFORMED")
    if _check_character(compact[:-1]) != compact[-1]:
        raise ValidationError("this license key has a typo (its check character does not match)", code="LICENSE_KEY_MALFORMED")
    return compact


def hint(normalized: str) -> str:
    """The last four characters, shown to tell keys apart without revealing them."""
    return normalized[-4:]
