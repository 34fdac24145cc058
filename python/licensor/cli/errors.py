"""The two ways a ``licensor`` command fails, and the exit status of each."""

from __future__ import annotations


class UsageError(Exception):
    """A problem of the command line or environment (exit status 2): bad arguments, no token, a gateway that
    cannot be reached, a file that cannot be read or must not be overwritten."""


class ApiError(Exception):
    """The gateway answered with an error, or a store command refused (exit status 1); the message is
    ``CODE: message``."""
