"""Stopping a gateway process without losing the requests in flight (``licensor serve`` on SIGTERM).

aiohttp's own graceful shutdown (``shutdown_timeout``) waits for running handlers, but from its first step it
ignores data arriving on every connection, so a request whose body is still being sent when the shutdown begins
never gets it and is cut at the timeout (aiohttp issue 2298, closed as won't fix). :func:`drain` runs before it:
the listening socket is already closed (new connections are refused), ``/readyz`` answers 503, the update
streams end, answers carry ``Connection: close``, and the requests in flight (counted by the gateway's
middleware) finish, bodies and all, within the ``drain_timeout_s`` setting. Only then does aiohttp's shutdown
close the idle connections.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from licensor.gateway.update_hub import UpdateHub

POLL_S = 0.02


class InFlight:
    """The requests a process is handling (from the middleware's entry to its answer), and whether it drains."""

    __slots__ = ("count", "draining")

    def __init__(self) -> None:
        self.count = 0
        self.draining = False


async def drain(in_flight: InFlight, stopping: asyncio.Event, updates: UpdateHub | None, timeout_s: float) -> int:
    """Stop being ready (``stopping``), end the ``updates`` streams, and wait up to ``timeout_s`` for the requests
    ``in_flight`` to be answered; the number still in flight when it returns (0 unless the timeout passed)."""
    in_flight.draining = True  # answers from now on close their connection: clients go to another process
    stopping.set()  # /readyz: 503, so a load balancer stops sending here
    if updates is not None:
        await updates.close()  # long-lived streams end now, not at the timeout
    deadline = time.monotonic() + timeout_s
    while in_flight.count > 0 and time.monotonic() < deadline:
        await asyncio.sleep(POLL_S)
    return in_flight.count


__all__ = ["InFlight", "drain"]
