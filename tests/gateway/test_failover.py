"""The database goes away under load, and comes back: ``licensor serve --workers 2`` on PostgreSQL.

- Failover: a primary with a synchronous hot standby (:class:`licensor.testing.ReplicatedPostgres`), the gateway on
  the multi-host URL ``postgresql://…@127.0.0.1:P1,127.0.0.1:P2/db?target_session_attrs=read-write``. During a load
  of activations, lease check-outs and heartbeats, usage reports and checks, the primary is stopped with
  ``pg_ctl stop -m immediate``; while no primary is reachable every write is answered 503 STORE_UNAVAILABLE with
  ``Retry-After`` (never a 500, never a hang), checks of cached licenses stay VALID, /readyz says
  STORE_UNAVAILABLE; then the standby is promoted (``pg_ctl promote``) and the gateway writes again within 10 s,
  by itself. Every write acknowledged before, during or after is in the promoted database.
- Restart: a single PostgreSQL stopped the same way during the same load and started again: the same answers
  while it is down, writes again by itself after the restart, nothing acknowledged lost.

Afterwards the tenant's event chain verifies (the events written before the stop and after it are linked).

PostgreSQL-only by nature (replication, a server process stopped), and the outcome does not depend on the core
(conftest.py's TWIN_PASS_LEAVES_OUT). ``make test`` runs each once; ``make soak`` runs each
``LICENSOR_FAILOVER_RUNS`` (5) times and prints the table of figures (run with ``-s`` to see it).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import aiohttp
from licensor.testing import ReplicatedPostgres, ThrowawayPostgres

from .outage import CLIENTS, REQUEST_TIMEOUT_S, WRITES, Load, Outage, measure, table
from .served import served

RUNS = int(os.environ.get("LICENSOR_FAILOVER_RUNS", "1"))
WARM_S = 0.6  # load before the stop, at least, and until both workers have answered checks (their caches hold them)
DOWN_S = 1.0  # how long no primary is reachable
AFTER_S = 0.5  # load after the first write that succeeds again
RECOVERY_WITHIN_S = 10.0
ANSWER_WITHIN_S = 20.0  # the bounded wait of any answer while the database is away (the store's bounds: 3 s, 15 s)


def _listening_pids(log: str) -> set[int]:
    return {int(pid) for pid in re.findall(r"\[(\d+)\]: gateway listening on", log)}


def _checks_answered_per_worker(log: str) -> Counter[str]:
    return Counter(re.findall(r"\[(\d+)\]: \S+ POST /v1/check 200 ", log))


async def _outage_under_load(
    store_url: str, data_dir: Path, go_away: Callable[[], None], come_back: Callable[[], None]
) -> Outage:
    """``licensor serve --workers 2`` on ``store_url`` under load; ``go_away`` and ``come_back`` in the middle. Checks
    what was answered meanwhile and that nothing acknowledged was lost; the figures."""
    with served(store_url, data_dir, "--workers", "2") as server:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(force_close=True)) as check_session,
        ):
            load = Load(server.url, server.admin_token, session, check_session)
            await load.prepare()
            deadline = time.monotonic() + 30
            while len(_listening_pids(server.log())) < 2:
                assert time.monotonic() < deadline, server.log()
                await asyncio.sleep(0.05)
            stop = asyncio.Event()
            clients = [asyncio.create_task(load.writer(stop, n)) for n in range(CLIENTS)]
            clients += [asyncio.create_task(load.checker(stop)) for _ in range(2)]
            try:
                await asyncio.sleep(WARM_S)
                deadline = time.monotonic() + 10
                while len(answered := _checks_answered_per_worker(server.log())) < 2 or min(answered.values()) < 10:
                    assert time.monotonic() < deadline, f"a worker answered few checks: {answered}"
                    await asyncio.sleep(0.05)
                stopped_at = time.monotonic()
                await asyncio.to_thread(go_away)
                down_at = time.monotonic()
                await asyncio.sleep(DOWN_S / 2)
                ready_while_down = await load.readyz()
                await asyncio.sleep(DOWN_S / 2)
                back_at = time.monotonic()
                await asyncio.to_thread(come_back)
                while not any(at >= back_at for at, _ in load.acked.at):
                    assert time.monotonic() - back_at < RECOVERY_WITHIN_S + 5, "no write succeeded after the database came back"
                    await asyncio.sleep(0.05)
                await asyncio.sleep(AFTER_S)
            finally:
                stop.set()
                await asyncio.wait_for(asyncio.gather(*clients), REQUEST_TIMEOUT_S + 10)
            ready_after = await load.readyz()
            lost = await load.lost()
            chain = await load.chain()
        log = server.log()
        assert server.stop() == 0, log[-3000:]

    outage = measure(load, stopped_at, down_at, back_at, lost)
    assert "Traceback" not in log, log[-5000:]
    assert not load.unexpected, load.unexpected[:5]  # no 500, no other error, every check VALID
    assert not load.given_up, load.given_up
    assert lost == dict.fromkeys(WRITES, 0), lost
    assert chain["valid"] and chain["events_checked"] > outage.acked_before, chain  # queued events linked across it
    assert max(seen.answered_at - seen.sent_at for seen in load.seen) < ANSWER_WITHIN_S
    refused = [seen for seen in load.seen if seen.status == 503]
    assert refused and all(seen.code == "STORE_UNAVAILABLE" and seen.retry_after for seen in refused), refused[:3]
    # While no primary was reachable: every write refused, every check answered VALID from the cache.
    while_down = [seen for seen in load.seen if seen.sent_at >= down_at and seen.answered_at <= back_at]
    assert {seen.status for seen in while_down if seen.kind != "check"} == {503}, while_down[:5]
    checks_while_down = [seen for seen in while_down if seen.kind == "check"]
    assert checks_while_down and {seen.status for seen in checks_while_down} == {200}
    assert ready_while_down == (503, "STORE_UNAVAILABLE") and ready_after == (200, None)
    assert outage.first_write_after_s <= RECOVERY_WITHIN_S, outage
    assert outage.acked_before > 0 and outage.acked_after > 0, outage
    return outage


async def test_primary_stopped_hard_under_load_then_the_standby_promoted_loses_nothing_acknowledged(tmp_path: Path) -> None:
    outages = []
    for run in range(RUNS):
        with ReplicatedPostgres() as pair:
            outages.append(await _outage_under_load(pair.url, tmp_path / f"run-{run}", pair.crash_primary, pair.promote))
    print("\n" + table("failover: primary stopped (immediate), standby promoted; 2 workers", outages))


async def test_postgresql_stopped_hard_under_load_then_restarted_loses_nothing_acknowledged(tmp_path: Path) -> None:
    outages = []
    for run in range(RUNS):
        with ThrowawayPostgres() as postgres:
            outages.append(await _outage_under_load(postgres.url, tmp_path / f"run-{run}", postgres.crash, postgres.restart))
    print("\n" + table("restart: PostgreSQL stopped (immediate), started again; 2 workers", outages))
