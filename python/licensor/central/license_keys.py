"""License keys: 135 random bits in 27 Crockford base32 characters plus a check character, read aloud in
groups of four (``XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XXXC``). The format and its check are the client's
(:mod:`licensor_client.license_keys`: the program checks a typed key before it asks); here keys are made.
"""

from __future__ import annotations

import secrets

from licensor_client import license_keys as keys

from licensor.errors import ValidationError


def generate() -> str:
    """A new license key, grouped for reading aloud."""
    body = "".join(secrets.choice(keys.ALPHABET) for _ in range(keys.RANDOM_CHARACTERS))
    return keys.grouped(body + keys.check_character(body))


def normalize(text: str) -> str:
    """The canonical form of a typed key (no grouping, upper case).

    :raises ValidationError: LICENSE_KEY_MALFORMED when it cannot be a license key (a typo, most likely).
    """
    try:
        return keys.normalize(text)
    except keys.LicenseKeyError as error:
        raise ValidationError(error.message, code=error.code) from None


def hint(normalized: str) -> str:
    """The last four characters, shown to tell keys apart without revealing them."""
    return normalized[-4:]
