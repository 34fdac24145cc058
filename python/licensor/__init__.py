"""licensor: a self-hosted software-licensing gateway."""

__version__ = "0.1.0"
