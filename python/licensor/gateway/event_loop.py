"""Which event loop ``licensor serve`` runs on: uvloop when it is installed (the extra ``licensor[uvloop]``; ``make
serve`` and the tests install it from requirements.txt), asyncio's own loop otherwise or when the ``loop`` setting
(``LICENSOR_LOOP``) says ``asyncio``. Both serve the same answers; uvloop spends less CPU per request."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

CHOICES = ("auto", "uvloop", "asyncio")
"""The values of the ``loop`` setting: ``auto`` (uvloop when installed), ``uvloop`` (refuse to start without it),
``asyncio``."""


class LoopUnavailableError(Exception):
    """``loop = "uvloop"`` and uvloop is not installed."""

    code = "LOOP_UNAVAILABLE"


@dataclass(frozen=True)
class EventLoopChoice:
    """The loop chosen: its name (``uvloop`` or ``asyncio``), its version, and how to make one."""

    name: str
    version: str
    new_event_loop: Callable[[], asyncio.AbstractEventLoop]

    def describe(self) -> str:
        """``uvloop 0.23.0`` or ``asyncio``."""
        return f"{self.name} {self.version}" if self.version else self.name


def choose_event_loop(setting: str = "auto") -> EventLoopChoice:
    """The loop the ``loop`` setting asks for.

    :raises LoopUnavailableError: ``setting`` is ``uvloop`` and uvloop cannot be imported.
    """
    if setting != "asyncio":
        try:
            from licensor.gateway import _uvloop
        except ImportError:
            if setting == "uvloop":
                raise LoopUnavailableError(
                    'the setting loop = "uvloop" needs uvloop installed (pip install "licensor[uvloop]")'
                ) from None
        else:
            return EventLoopChoice("uvloop", _uvloop.VERSION, _uvloop.new_event_loop)
    return EventLoopChoice("asyncio", "", asyncio.new_event_loop)


__all__ = ["CHOICES", "EventLoopChoice", "LoopUnavailableError", "choose_event_loop"]
