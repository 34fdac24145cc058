"""Load benchmark: licensor's ``POST /v1/check`` against a bare aiohttp JSON handler, side by side.

Two servers, each one process with one event loop on 127.0.0.1 (``benches/load.py``): the gateway
(``create_app`` on SQLite, a cloud-lite policy, the license cached after the warm-up, no nonce) and a bare
aiohttp app that parses the same JSON body with orjson and answers the same bytes the gateway answers. The same
client (``CONCURRENCY`` keep-alive connections in this process) loads one, then the other, in alternating order
over ``ROUNDS`` rounds, each run bounded by ``MAX_REQUESTS`` and ``SECONDS``. Every answer must be 200 with the
verdict VALID.

``make bench`` (``--benchmark-only``): ``extra_info`` holds the medians over the rounds (requests/s and p99 of
both, and their ratio check/bare) that ``benches/ratios.py`` prints in its load table against the goal
(``/v1/check`` at >= 60% of the bare handler's requests/s). pytest-benchmark's own time is that of one round
(both runs), not a result. Every run on the gateway also scrapes its ``GET /metrics`` halfway through and
after the run: the requests counted there must equal what the load generator sent (within what was in flight
during the scrape). In ``make test`` (``--benchmark-disable``) it runs one short round as a plain test.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import orjson
import pytest

from benches import load

pytestmark = pytest.mark.alone  # its figures need the machine to itself (make test runs it after the parallel part)

GROUP = "load_check"
CONCURRENCY = 16
MAX_REQUESTS = 100_000  # per run; the time bound is what normally ends a run
ROUNDS, SECONDS, WARMUP_SECONDS = 6, 1.5, 1.0  # --benchmark-only (an even count: each order as often)
QUICK_ROUNDS, QUICK_SECONDS, QUICK_WARMUP_SECONDS = 1, 1.0, 0.3  # --benchmark-disable (make test)
GOAL = 0.60  # check rps / bare rps; benches/ratios.py judges it
DISTINCT = 30_000  # bodies per run of the "every request distinct" measurement (more than one run sends)


def _distinct_bodies(body: dict[str, Any], run: int, count: int) -> list[bytes]:
    """``count`` check requests that differ only in ``version`` (which cloud-lite does not limit), so no two are
    identical and none is answered from the gateway's memory of identical repeats: the full check pipeline."""
    return [orjson.dumps({**body, "version": f"{run}.{n}"}) for n in range(count)]


def _measure(loop: asyncio.AbstractEventLoop, server: load.Server, body: bytes | list[bytes], seconds: float) -> dict[str, Any]:
    gateway = server.info["kind"] == "check"
    counted_before = loop.run_until_complete(load.scrape_answered(server.port)) if gateway else 0.0
    probe = (lambda: load.scrape_answered(server.port)) if gateway else None
    cpu_before, started = load.process_cpu_seconds(server.process.pid), time.perf_counter()
    result = loop.run_until_complete(
        load.run_load(server.port, body, concurrency=CONCURRENCY, max_requests=MAX_REQUESTS, max_seconds=seconds, probe=probe)
    )
    wall, cpu_after = time.perf_counter() - started, load.process_cpu_seconds(server.process.pid)
    assert result.errors == 0, f"{server.info['kind']}: {result.errors} bad answers, first: {result.first_error}"
    assert result.requests > 0, f"{server.info['kind']}: no answers"
    if gateway:
        # The gateway's /metrics, scraped halfway through the run, counts between the answers the client had
        # then and the requests it had sent; scraped after the run, exactly what the client sent.
        assert result.probe is not None
        answered, scraped, sent = result.probe
        assert answered <= scraped - counted_before <= sent, (answered, scraped - counted_before, sent)
        counted = loop.run_until_complete(load.scrape_answered(server.port)) - counted_before
        assert counted == result.requests, f"/metrics counted {counted} checks, the load generator sent {result.requests}"
    return {
        "requests": result.requests,
        "rps": result.rps,
        "p50_ms": result.p50 * 1e3,
        "p99_ms": result.p99 * 1e3,
        # the server process's CPU time (all its threads) per answer: less sensitive than rps to a busy machine
        "server_cpu_us": (cpu_after - cpu_before) / result.requests * 1e6
        if cpu_before is not None and cpu_after is not None
        else None,
        "server_cpu_share": (cpu_after - cpu_before) / wall if cpu_before is not None and cpu_after is not None else None,
    }


def _median(runs: list[dict[str, Any]], name: str) -> float | None:
    values = [run[name] for run in runs if run[name] is not None]
    return statistics.median(values) if values else None


@pytest.mark.benchmark(group=GROUP)
def test_load_check_vs_bare(benchmark: Any, tmp_path: Any) -> None:
    quick = bool(benchmark.disabled)
    rounds, seconds, warmup = (QUICK_ROUNDS, QUICK_SECONDS, QUICK_WARMUP_SECONDS) if quick else (ROUNDS, SECONDS, WARMUP_SECONDS)
    runs: dict[str, list[dict[str, Any]]] = {"bare": [], "check": [], "distinct": []}
    loop = asyncio.new_event_loop()
    try:
        with load.server("check", str(tmp_path)) as check:
            body = orjson.dumps(check.info["body"])
            # The warm-up fills the gateway's license cache; its first answer is the bare handler's template.
            warm = loop.run_until_complete(
                load.run_load(check.port, body, concurrency=CONCURRENCY, max_requests=MAX_REQUESTS, max_seconds=warmup)
            )
            assert warm.errors == 0 and warm.sample is not None, warm.first_error
            with load.server("bare", warm.sample.decode()) as bare:
                warm = loop.run_until_complete(
                    load.run_load(bare.port, body, concurrency=CONCURRENCY, max_requests=MAX_REQUESTS, max_seconds=warmup)
                )
                assert warm.errors == 0, warm.first_error
                servers = {"bare": bare, "check": check}

                def one_round() -> None:
                    order = ("bare", "check", "distinct") if len(runs["check"]) % 2 == 0 else ("distinct", "check", "bare")
                    for kind in order:
                        sent = _distinct_bodies(check.info["body"], len(runs[kind]), DISTINCT) if kind == "distinct" else body
                        runs[kind].append(_measure(loop, servers["check" if kind == "distinct" else kind], sent, seconds))

                benchmark.pedantic(one_round, rounds=rounds, iterations=1)
    finally:
        loop.close()

    assert len(runs["bare"]) == len(runs["check"]) >= 1
    bare_rps, check_rps = _median(runs["bare"], "rps"), _median(runs["check"], "rps")
    assert bare_rps and check_rps is not None
    benchmark.extra_info.update(
        {
            "kind": "load",
            "concurrency": CONCURRENCY,
            "seconds_per_run": seconds,
            "rounds": len(runs["check"]),
            "core": check.info["core"],
            "goal": GOAL,
            "bare_rps": bare_rps,
            "bare_p50_ms": _median(runs["bare"], "p50_ms"),
            "bare_p99_ms": _median(runs["bare"], "p99_ms"),
            "bare_server_cpu_us": _median(runs["bare"], "server_cpu_us"),
            "check_rps": check_rps,
            "check_p50_ms": _median(runs["check"], "p50_ms"),
            "check_p99_ms": _median(runs["check"], "p99_ms"),
            "check_server_cpu_us": _median(runs["check"], "server_cpu_us"),
            "ratio": check_rps / bare_rps,
            "ratios_per_round": [c["rps"] / b["rps"] for b, c in zip(runs["bare"], runs["check"])],
            # The same gateway with every request distinct: no answer kept for identical repeats helps.
            "distinct_rps": _median(runs["distinct"], "rps"),
            "distinct_p99_ms": _median(runs["distinct"], "p99_ms"),
            "distinct_server_cpu_us": _median(runs["distinct"], "server_cpu_us"),
            "distinct_ratio": (_median(runs["distinct"], "rps") or 0.0) / bare_rps,
            "runs": runs,
        }
    )
