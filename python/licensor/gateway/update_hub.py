"""The process's connected licenses for :mod:`licensor.gateway.updates`: woken when the store announces a change of
their tenant, with the update signed once per change for all the devices of a license."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from licensor.store import Store

log = logging.getLogger("licensor.gateway")

SignUpdate = Callable[[str, str], Awaitable[tuple[int, str] | None]]
"""(tenant, license) -> (generation, signed update) of the license as it stands, or None once it is gone."""


class Subscriber:
    """One connection waiting for updates of one license."""

    __slots__ = ("current", "generation", "license_id", "tenant_id", "woken")

    def __init__(self, tenant_id: str, license_id: str, generation: int) -> None:
        self.tenant_id, self.license_id, self.generation = tenant_id, license_id, generation
        self.current = 0  # the license's generation when last looked at
        self.woken = asyncio.Event()


class UpdateHub:
    """This process's connected licenses, woken when the store announces a change of their tenant."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._tenants: dict[str, dict[str, set[Subscriber]]] = {}
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._known: dict[tuple[str, str], int] = {}  # the generation the latest refresh read, by (tenant, license)
        self._signed: dict[tuple[str, str], tuple[int, str]] = {}  # the latest update signed: one per change, not per device
        self.closed = False
        self.connections = 0  # subscribers now (the metric licensor_update_connections)
        store.subscribe(self._changed)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="licensor update hub")

    async def close(self) -> None:
        """End every connection (graceful shutdown: they finish their response and close)."""
        self.closed = True
        for licenses in self._tenants.values():
            for subscribers in licenses.values():
                for subscriber in subscribers:
                    subscriber.woken.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def subscribe(self, tenant_id: str, license_id: str, generation: int) -> Subscriber:
        subscriber = Subscriber(tenant_id, license_id, generation)
        self._tenants.setdefault(tenant_id, {}).setdefault(license_id, set()).add(subscriber)
        self.connections += 1
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        licenses = self._tenants.get(subscriber.tenant_id, {})
        subscribers = licenses.get(subscriber.license_id)
        if subscribers is not None and subscriber in subscribers:
            subscribers.remove(subscriber)
            self.connections -= 1
            if not subscribers:
                del licenses[subscriber.license_id]
                self._known.pop((subscriber.tenant_id, subscriber.license_id), None)
                self._signed.pop((subscriber.tenant_id, subscriber.license_id), None)
            if not licenses:
                self._tenants.pop(subscriber.tenant_id, None)

    def _changed(self, tenant_id: str | None) -> None:
        # Called by the store on its event loop for every announced change (None: anything may have changed).
        if tenant_id is None:
            self._dirty.update(self._tenants)
        elif tenant_id in self._tenants:
            self._dirty.add(tenant_id)
        else:
            return
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            dirty, self._dirty = self._dirty, set()
            for tenant_id in dirty:
                try:
                    await self._refresh(tenant_id)
                except Exception:  # the database away: the connections learn at their next change or reconnection
                    log.warning(
                        "the generations of tenant %s could not be read; its devices are told later", tenant_id, exc_info=True
                    )

    async def _refresh(self, tenant_id: str) -> None:
        licenses = self._tenants.get(tenant_id)
        if not licenses:
            return
        generations = await self._store.license_generations(tenant_id, list(licenses))
        for license_id, generation in generations.items():
            if license_id not in licenses:  # its devices left while the store was read
                continue
            self._known[(tenant_id, license_id)] = generation
            for subscriber in licenses.get(license_id, ()):
                if generation > subscriber.generation:
                    subscriber.woken.set()

    async def newer(self, sign: SignUpdate, subscriber: Subscriber) -> tuple[int, str] | None:
        """(generation, signed update) of the subscriber's license when above the generation it holds, else None.
        The update signed for a change is kept for every other device of the license."""
        subscriber.woken.clear()
        key = (subscriber.tenant_id, subscriber.license_id)
        signed = self._signed.get(key)
        if signed is None or signed[0] < self._known.get(key, 0):
            signed = await sign(*key)
            if signed is None:
                return None
            self._signed[key] = signed
        subscriber.current = signed[0]
        if signed[0] <= subscriber.generation:
            return None
        subscriber.generation = signed[0]
        return signed
