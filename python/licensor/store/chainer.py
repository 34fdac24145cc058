"""The background chainer: links each tenant's queued events into its hash chain soon after they commit.

A write transaction links its own events when the tenant's chain head is free, and queues them
(``event_queue``) when another transaction holds it, so concurrent transactions of one tenant never wait for
each other (docs/architecture.md#the-event-chain). Each store runs one :class:`Chainer`: a commit that queued
events marks its tenant due, and the chainer links what is due, in batches, right away. Every
:data:`SWEEP_SECONDS` it also looks for queued events of any tenant: those a process queued and could not
link (it was killed after the commit, or the database went away meanwhile), or linked by no one yet because
another process held the tenant's chain. So, while any gateway process runs, an acknowledged change waits at
most about a sweep to be linked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress

from licensor.errors import StoreUnavailableError

SWEEP_SECONDS = 1.0
"""How often the chainer looks for queued events it was not told of."""
BUSY_RETRY_SECONDS = 0.005
"""How soon a tenant whose chain another process is linking is tried again."""
FAILED_RETRY_SECONDS = 0.5
"""How soon the chainer tries again after the database failed."""
CLOSE_SECONDS = 5.0
"""How long closing the store waits for the chainer to link what is due."""

log = logging.getLogger("licensor.store")


class Chainer:
    """Links due tenants' queued events with ``chain(tenant_id)`` (the count linked, or None when another
    process holds the tenant's chain); ``queued_tenants()`` names every tenant with queued events."""

    def __init__(self, chain: Callable[[str], Awaitable[int | None]], queued_tenants: Callable[[], Awaitable[list[str]]]) -> None:
        self._chain = chain
        self._queued_tenants = queued_tenants
        self._due: dict[str, None] = {}  # insertion-ordered set: the tenant due first is chained first
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def soon(self, tenant_id: str) -> None:
        """``tenant_id`` committed queued events: chain them now."""
        self._due[tenant_id] = None
        self._wake.set()

    def start(self) -> None:
        self._closing = False
        self._task = asyncio.create_task(self._run(), name="licensor-event-chainer")

    async def close(self) -> None:
        """Chain what is due (bounded by :data:`CLOSE_SECONDS`), then stop."""
        if self._task is None:
            return
        self._closing = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), CLOSE_SECONDS)
        except TimeoutError:
            log.warning("events of %d tenants stay queued: the next gateway to start chains them", len(self._due))
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    async def _run(self) -> None:
        sweep_at = 0.0  # sweep at once: a previous run may have left events queued
        loop = asyncio.get_running_loop()
        while True:
            try:
                if loop.time() >= sweep_at:
                    sweep_at = loop.time() + SWEEP_SECONDS
                    self._due.update(dict.fromkeys(await self._queued_tenants()))
                await self._chain_due()
            except StoreUnavailableError as error:
                log.warning("cannot chain events now (retrying): %s", error)
                if self._closing:
                    return
                await asyncio.sleep(FAILED_RETRY_SECONDS)
                continue
            except Exception:  # never let the chainer die: the sweep would be the only one left
                log.exception("the event chainer failed (retrying)")
                if self._closing:
                    return
                await asyncio.sleep(FAILED_RETRY_SECONDS)
                continue
            if self._closing and not self._due:
                return
            if self._due:  # only tenants another process is chaining are left: try them again shortly
                await asyncio.sleep(BUSY_RETRY_SECONDS)
                continue
            self._wake.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, sweep_at - loop.time()))

    async def _chain_due(self) -> None:
        busy: list[str] = []
        while self._due:
            tenant_id = next(iter(self._due))
            del self._due[tenant_id]
            try:
                if await self._chain(tenant_id) is None:
                    busy.append(tenant_id)
            except BaseException:
                self._due[tenant_id] = None  # not chained: it stays due
                self._due.update(dict.fromkeys(busy))
                raise
        self._due.update(dict.fromkeys(busy))
