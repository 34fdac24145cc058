"""Retention: what the gateway no longer needs is deleted in the background, a little at a time (docs/retention.md).

Rows that grow with the traffic and are needed only for a while: the remembered answers of Idempotency-Key
requests (one per heartbeat), ended leases (one per check-out), finished webhook deliveries with their attempts
(one per event and endpoint), and expired portal sessions and links (one per sign-in). The event log is never
pruned: it is the audit chain.

Every gateway process runs a :class:`Pruner`. A pass deletes, for each kind, batches of at most :data:`BATCH` rows
older than its period, each batch one statement in its own short transaction found through an index on the age,
with a pause between batches (at least as long as the batch) so that waiting writers (heartbeats, on SQLite's
one write lock) go first and pruning takes at most half of the database's time. On
PostgreSQL the pruners of several processes skip the rows another one is deleting, so they share the work instead
of waiting for each other; running one in each process needs no election, and an idle pass costs five index
probes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field

from licensor.errors import StoreUnavailableError
from licensor.store import Store

log = logging.getLogger("licensor.retention")

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
BATCH = 250
"""Rows deleted by one statement: a few milliseconds of the write lock on either store."""
PAUSE_S = 0.005
"""Between two batches at least: writers queued meanwhile take the database first. The pause is as long as the
batch before it when that took longer, so a pass takes at most half of the database's (and a core's) time."""
EXPIRED_GRACE_US = DAY_US
"""Portal sessions and links are deleted this long after they expired: expired, they are refused exactly as unknown
ones, and a day leaves room for clocks of several hosts that disagree."""
MAX_BATCHES_PER_PASS = 1000
"""A pass deletes at most this many batches of each kind (a million rows); the next pass goes on."""


@dataclass(frozen=True)
class RetentionPeriods:
    """How long each kind is kept (µs); 0 keeps it forever."""

    idempotency_answers: int
    ended_leases: int
    webhook_deliveries: int

    @classmethod
    def of(cls, idempotency_hours: float, lease_days: float, webhook_days: float) -> RetentionPeriods:
        return cls(int(idempotency_hours * HOUR_US), int(lease_days * DAY_US), int(webhook_days * DAY_US))


@dataclass
class PassReport:
    """What one pass deleted, per kind, and its longest batch (the longest a writer could have waited for it)."""

    deleted: dict[str, int] = field(default_factory=dict)
    batches_s: list[float] = field(default_factory=list)
    """How long each batch took (seconds), in order."""

    @property
    def longest_batch_s(self) -> float:
        return max(self.batches_s, default=0.0)


class Pruner:
    """The background pruner of one gateway process over one store."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], int],
        periods: RetentionPeriods,
        interval_s: float,
        *,
        batch: int = BATCH,
        pause_s: float = PAUSE_S,
    ) -> None:
        self.store = store
        self.clock = clock
        self.periods = periods
        self.interval_s = interval_s
        self.batch = batch
        self.pause_s = pause_s
        self.longest_batch_s = 0.0
        """The longest batch since the process started (seconds)."""
        self._task: asyncio.Task[None] | None = None

    def _kinds(self) -> list[tuple[str, int, Callable[[int, int], Awaitable[int]]]]:
        return [
            ("idempotency_answers", self.periods.idempotency_answers, self.store.prune_idempotency_answers),
            ("ended_leases", self.periods.ended_leases, self.store.prune_ended_leases),
            ("webhook_deliveries", self.periods.webhook_deliveries, self.store.prune_finished_webhook_deliveries),
            ("portal_sessions", EXPIRED_GRACE_US, self.store.prune_expired_portal_sessions),
            ("portal_links", EXPIRED_GRACE_US, self.store.prune_expired_portal_links),
        ]

    async def run_once(self) -> PassReport:
        """One pass over every kind kept for a limited time."""
        report = PassReport()
        for name, period, prune in self._kinds():
            if period <= 0:
                continue
            before, total = self.clock() - period, 0
            for _ in range(MAX_BATCHES_PER_PASS):
                started = time.monotonic()
                deleted = await prune(before, self.batch)
                took = time.monotonic() - started
                report.batches_s.append(took)
                total += deleted
                if deleted < self.batch:
                    break
                await asyncio.sleep(max(self.pause_s, took))
            report.deleted[name] = total
        self.longest_batch_s = max(self.longest_batch_s, report.longest_batch_s)
        if any(report.deleted.values()):
            counts = ", ".join(f"{count} {name}" for name, count in report.deleted.items() if count)
            log.info("retention: deleted %s (longest batch %.1f ms)", counts, report.longest_batch_s * 1000)
        return report

    async def _run(self) -> None:
        # The first pass comes after most of an interval, at a random moment, so that workers started together
        # take turns; later ones every interval, give or take a tenth.
        await asyncio.sleep(self.interval_s * random.uniform(0.5, 1.0))
        while True:
            try:
                await self.run_once()
            except StoreUnavailableError as error:
                log.warning("retention: the store is unavailable (%s); trying again at the next pass", error)
            except Exception:  # the loop must outlive any one failure
                log.exception("retention: a pass failed")
            await asyncio.sleep(self.interval_s * random.uniform(0.9, 1.1))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="licensor-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()  # a batch cut short rolls back: it is deleted at the next pass
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
