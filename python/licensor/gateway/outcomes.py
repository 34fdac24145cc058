"""Check outcomes, queued for the event log off the hot path.

A check only counts its outcome in memory; a background task writes, about once a second, one
``license.checked`` event per tenant, license and verdict code with the count and the first and last time seen
in that interval (a check that found no license is counted on the tenant; one that named no existing tenant is
not recorded). Writing every check as its own
event would put a database write, serialised per tenant by the hash chain, behind every check. The remainder is
written when the gateway stops; a failed write is retried at the next flush.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from dataclasses import dataclass

from licensor.errors import StoreUnavailableError
from licensor.model import format_time, now_us
from licensor.store import Store

log = logging.getLogger("licensor.gateway")

FLUSH_SECONDS = 1.0
MAX_PENDING = 100_000
"""Distinct (tenant, license, code) counters held between flushes; beyond it, outcomes count on the tenant."""


@dataclass
class _Tally:
    count: int
    first_at: int
    last_at: int


class CheckOutcomes:
    def __init__(self, store: Store, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.store = store
        self.flush_seconds = flush_seconds
        self._pending: dict[tuple[str, str | None, str], _Tally] = {}
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def record(self, tenant_id: str, license_id: str | None, code: str) -> None:
        """Count one outcome (synchronous and cheap: the hot path calls it)."""
        now = now_us()
        key = (tenant_id, license_id, code)
        tally = self._pending.get(key)
        if tally is None:
            if len(self._pending) >= MAX_PENDING:
                self.dropped += 1  # e.g. a flood of made-up tenant ids; said in the log at the next flush
                return
            self._pending[key] = _Tally(1, now, now)
            return
        tally.count += 1
        tally.last_at = now

    async def flush(self) -> None:
        """Write what was counted so far, one transaction per tenant."""
        pending, self._pending = self._pending, {}
        if self.dropped:
            log.warning(
                "%d check outcomes were not recorded: more than %d distinct ones within one flush", self.dropped, MAX_PENDING
            )
            self.dropped = 0
        by_tenant: dict[str, list[tuple[str | None, str, _Tally]]] = {}
        for (tenant_id, license_id, code), tally in pending.items():
            by_tenant.setdefault(tenant_id, []).append((license_id, code, tally))
        for tenant_id, tallies in by_tenant.items():
            try:
                async with self.store.transaction(tenant_id) as tx:
                    for license_id, code, tally in tallies:
                        subject_type, subject_id = ("license", license_id) if license_id else ("tenant", tenant_id)
                        await tx.append_event(
                            "license.checked",
                            subject_type,
                            subject_id,
                            "license-plane",
                            {
                                "code": code,
                                "count": tally.count,
                                "first_at": format_time(tally.first_at),
                                "last_at": format_time(tally.last_at),
                            },
                        )
            except LookupError:
                continue  # checks named a tenant that does not exist: there is no log to write to
            except Exception as error:  # the database is away: keep the counts for the next flush
                expected = isinstance(error, StoreUnavailableError)  # said in one line; anything else with its traceback
                log.warning(
                    "could not record %d check outcomes of tenant %s; retrying%s",
                    len(tallies),
                    tenant_id,
                    f": {error}" if expected else "",
                    exc_info=not expected,
                )
                for license_id, code, tally in tallies:
                    self._merge((tenant_id, license_id, code), tally)

    def _merge(self, key: tuple[str, str | None, str], tally: _Tally) -> None:
        current = self._pending.get(key)
        if current is None:
            if len(self._pending) >= MAX_PENDING:
                self.dropped += tally.count
                return
            self._pending[key] = tally
        else:
            current.count += tally.count
            current.first_at = min(current.first_at, tally.first_at)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            await self.flush()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="licensor-check-outcomes")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
