"""Writes of one tenant against the same writes spread over many tenants, on 2 workers on PostgreSQL.

A throwaway PostgreSQL server and ``licensor serve --workers 2`` on it (``benches/writes.py``). Three kinds of
write, each by ``CONNECTIONS`` writers at once (one connection each, closed loop, every writer its own lease,
device or license): lease heartbeats (cloud), device check-ins (activation) and usage reports (cloud-lite).
Each kind runs in two layouts, every writer in one tenant (``solo``) or spread evenly over ``TENANTS`` tenants
(``spread``), the layouts taking turns over ``ROUNDS`` rounds. Reported (``benchmark.extra_info``, printed by
``benches/ratios.py``): writes/s and p99 of each, the ratio solo/spread per kind (goal >= 0.9: one tenant's
writes are not held back by what they share), and the server CPU per write, gateway processes and PostgreSQL
processes apart (goal: both together <= 2 ms per write on one tenant).

Nothing here asserts a speed. ``make test`` (``--benchmark-disable``) runs one short round with few writers
and tenants, asserting that the harness works: every write answered as it should (each heartbeat's new lease
secret, each check-in at the next generation, each usage report recorded), CPU counted on both sides.
"""

from __future__ import annotations

import asyncio
import os
import statistics
from typing import Any

import pytest
from licensor.testing import ThrowawayPostgres, gateway_process, wait_ready

from benches import goals, writes

GROUP = "writes"
CONNECTIONS, TENANTS, ROUNDS, SECONDS, MAX_WRITES = 64, 64, 3, 2.0, 100_000  # --benchmark-only
QUICK_CONNECTIONS, QUICK_TENANTS, QUICK_ROUNDS, QUICK_SECONDS = 4, 2, 1, 0.3  # --benchmark-disable
WARMUP_SECONDS, QUICK_WARMUP_SECONDS = 0.5, 0.05  # per kind and layout, before the rounds
LAYOUT_GOAL = 0.9  # solo / spread writes per second, at least
CPU_GOAL_MS = 2.0  # gateway + PostgreSQL CPU per write, one tenant, at most


def _median(runs: list[dict[str, Any]], name: str) -> float:
    return statistics.median(run[name] for run in runs)


@pytest.mark.benchmark(group=GROUP)
def test_one_tenants_writes_against_many_tenants(benchmark: Any, tmp_path: Any) -> None:
    quick = bool(benchmark.disabled)
    connections, tenants, rounds, seconds, warmup = (
        (QUICK_CONNECTIONS, QUICK_TENANTS, QUICK_ROUNDS, QUICK_SECONDS, QUICK_WARMUP_SECONDS)
        if quick
        else (CONNECTIONS, TENANTS, ROUNDS, SECONDS, WARMUP_SECONDS)
    )
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {kind: {layout: [] for layout in writes.LAYOUTS} for kind in writes.KINDS}
    master_key = os.urandom(32)
    provisioning, serving = tmp_path / "provisioning", tmp_path / "serving"
    provisioning.mkdir()
    serving.mkdir()
    loop = asyncio.new_event_loop()
    try:
        with ThrowawayPostgres() as postgres:
            fleets = loop.run_until_complete(writes.provision(postgres.url, str(provisioning), master_key, connections, tenants))
            with gateway_process(postgres.url, str(serving), master_key, workers=2) as url:
                loop.run_until_complete(wait_ready(url))
                port = int(url.rsplit(":", 1)[1])
                for kind in writes.KINDS:  # every worker warmed up (the kernel spreads the connections)
                    for layout in writes.LAYOUTS:
                        warm = loop.run_until_complete(writes.drive(port, fleets[layout].writers[kind], 10_000, warmup))
                        assert warm.errors == 0 and warm.writes > 0, warm.first_error
                processes = {
                    "gateway": writes.gateway_pids(port),
                    "postgres": writes.postgres_pids(os.path.join(postgres.directory, "data")),
                }
                assert len(processes["gateway"]) >= 3, processes  # the supervisor and its two workers

                def one_round() -> None:
                    number = len(runs[writes.KINDS[0]]["solo"])
                    order = writes.LAYOUTS if number % 2 == 0 else tuple(reversed(writes.LAYOUTS))
                    for kind in writes.KINDS:
                        for layout in order:
                            runs[kind][layout].append(
                                writes.measure(loop, port, fleets[layout].writers[kind], processes, MAX_WRITES, seconds)
                            )

                benchmark.pedantic(one_round, rounds=rounds, iterations=1)
    finally:
        loop.close()

    figures = {
        kind: {layout: {name: _median(runs[kind][layout], name) for name in runs[kind][layout][0]} for layout in writes.LAYOUTS}
        for kind in writes.KINDS
    }
    rows, notes = [], []
    for kind in writes.KINDS:
        solo, spread = figures[kind]["solo"], figures[kind]["spread"]
        rows.append(
            goals.goal_row(
                f"{kind}: 1 tenant / {tenants} tenants, writes/s, 2 workers, PostgreSQL",
                solo["rate"] / spread["rate"],
                LAYOUT_GOAL,
            )
        )
        rows.append(
            goals.goal_row(
                f"{kind}: gateway + PostgreSQL CPU per write, 1 tenant",
                solo["gateway_cpu_ms"] + solo["postgres_cpu_ms"],
                CPU_GOAL_MS,
                at_most=True,
                unit="ms",
            )
        )
        for layout in writes.LAYOUTS:
            got = figures[kind][layout]
            notes.append(
                f"{kind} {layout}: {got['rate']:.0f} writes/s, p99 {got['p99_ms']:.1f} ms, CPU per write gateway "
                f"{got['gateway_cpu_ms']:.2f} ms + PostgreSQL {got['postgres_cpu_ms']:.2f} ms (busy: gateway "
                f"{got['gateway_cpu_share']:.0%}, PostgreSQL {got['postgres_cpu_share']:.0%} of a core)"
            )
    # The harness works: every kind written in both layouts, the spread layout over all its tenants, CPU seen on
    # both sides, every usage report recorded by the writer that sent it.
    assert len(fleets["spread"].tenants) == tenants and len(fleets["solo"].tenants) == 1
    assert all(figures[kind][layout]["writes"] > 0 for kind in writes.KINDS for layout in writes.LAYOUTS)
    for side in ("gateway", "postgres"):  # summed: one short run may fall between two clock ticks of /proc
        assert sum(figures[kind][layout][f"{side}_cpu_ms"] for kind in writes.KINDS for layout in writes.LAYOUTS) > 0, side
    assert all(row["measured"] is not None for row in rows)
    benchmark.extra_info.update(
        {
            "kind": "writes",
            "connections": connections,
            "tenants": tenants,
            "seconds_per_run": seconds,
            "rounds": len(runs[writes.KINDS[0]]["solo"]),
            "figures": figures,
            "goals": rows,
            "notes": notes,
        }
    )
