"""The speed goals' servers and measurements (``benches/test_bench_goals.py``); loopback only.

Every series is one kind of request sent by the same bounded client (:func:`benches.load.run_load`) at each
concurrency of a sweep, all series measured in turn in the same rounds, so that the ratios between them are
taken in the same moments of a shared machine:

- ``bare``: a bare aiohttp handler (one process) answering the gateway's own check answer;
- ``check``: ``POST /v1/check``, every request distinct (a new ``version`` each: nothing is answered from the
  memory of identical repeats), the license cached, the full pipeline, unsigned; the native core, one worker;
- ``signed``: the same with a nonce (distinct too): an ``rs1`` answer signed with the tenant's key;
- ``signed-python``: ``signed`` on a gateway running the pure-Python core (``LICENSOR_PURE_PYTHON=1``);
- ``signed-2-workers``: ``signed`` on two gateway processes sharing one port (SO_REUSEPORT) and one SQLite
  store, the native core.

Each run gives requests/s, p50 and p99 latency, and the server CPU per request (user + system time of the
series' server processes, from ``/proc``). The client validates every answer (200, verdict VALID, and for the
signed series an ``rs1`` token); the first signed answer of each gateway is verified against the tenant's
published keys with the SDK (:func:`licensor_client.answers.verify_answer`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from benches import load

BARE, CHECK, SIGNED, SIGNED_PYTHON, SIGNED_2 = "bare", "check", "signed", "signed-python", "signed-2-workers"
SERIES = (BARE, CHECK, SIGNED, SIGNED_PYTHON, SIGNED_2)
MAX_REQUESTS = 200_000  # per run; the time bound is what normally ends a run
BODIES_PER_RUN = 40_000  # distinct bodies made for one run (more than a run sends at these speeds)
HTTP_TIMEOUT_SECONDS = 10.0


@dataclass
class Target:
    """The server processes of one series, and how its requests are made and its answers checked."""

    name: str
    servers: list[load.Server]
    signed: bool

    @property
    def port(self) -> int:
        return self.servers[0].port

    def pids(self) -> list[int]:
        return [server.process.pid for server in self.servers]


@dataclass
class Targets:
    """All the series' servers, and each series' check body (each gateway store has its own tenant)."""

    by_name: dict[str, Target] = field(default_factory=dict)
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)


def distinct_bodies(body: dict[str, Any], run: int | str, count: int, signed: bool) -> list[bytes]:
    """``count`` check requests that differ in ``version`` (which cloud-lite does not limit) and, signed, in
    their nonce: no two identical, so none is answered from the gateway's memory of identical repeats."""
    if signed:
        return [orjson.dumps({**body, "version": f"{run}.{n}", "nonce": f"bench-{run}-{n:08d}"}) for n in range(count)]
    return [orjson.dumps({**body, "version": f"{run}.{n}"}) for n in range(count)]


def signed_answer_is_valid(status: int, body: bytes) -> str | None:
    """200, the verdict VALID, and an ``rs1`` token (its signature is verified on a sample: see
    :func:`verify_signed_sample`; verifying every one would load the client more than the servers)."""
    problem = load.check_answer_is_valid(status, body)
    if problem is not None:
        return problem
    signed = orjson.loads(body).get("signed_answer")
    return None if isinstance(signed, str) and signed.startswith("rs1.") else f"no signed answer: {body[:200]!r}"


def unsigned_answer_is_valid(status: int, body: bytes) -> str | None:
    problem = load.check_answer_is_valid(status, body)
    if problem is not None:
        return problem
    return None if orjson.loads(body).get("signed_answer") is None else f"a signed answer without a nonce: {body[:200]!r}"


def verify_signed_sample(port: int, body: dict[str, Any]) -> dict[str, Any]:
    """Send one signed check of ``body`` and return its verdict, verified against the tenant's published keys
    (``GET /v1/keys``) with the SDK.

    :raises licensor_client.errors.TokenError, AnswerRejectedError: the answer is not genuine."""
    from licensor_client.answers import verify_answer

    nonce = "bench-sample-" + os.urandom(8).hex()
    connection = http.client.HTTPConnection(load.HOST, port, timeout=HTTP_TIMEOUT_SECONDS)
    try:
        connection.request("POST", load.CHECK_PATH, orjson.dumps({**body, "nonce": nonce}), {"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = orjson.loads(response.read())
        assert response.status == 200, answer
        connection.request("GET", f"/v1/keys?tenant={body['tenant']}")
        response = connection.getresponse()
        keyset = orjson.loads(response.read())
        assert response.status == 200, keyset
    finally:
        connection.close()
    keys = {key["kid"]: base64.urlsafe_b64decode(key["public_key"] + "==") for key in keyset["keys"]}
    return verify_answer(answer["signed_answer"], keys, nonce=nonce, path=load.CHECK_PATH)


def _warm(loop: asyncio.AbstractEventLoop, target: Target, body: dict[str, Any], seconds: float) -> load.LoadResult:
    """Fill the gateways' caches (every worker: enough connections to reach each) and check the first answer."""
    validate = signed_answer_is_valid if target.signed else unsigned_answer_is_valid
    bodies = distinct_bodies(body, "w", 2_000, target.signed)
    warm = loop.run_until_complete(
        load.run_load(target.port, bodies, concurrency=8, max_requests=len(bodies), max_seconds=seconds, validate=validate)
    )
    assert warm.errors == 0 and warm.sample is not None, f"{target.name}: {warm.first_error}"
    return warm


def _spawn(kind: str, argument: str, env: dict[str, str] | None = None) -> load.Server:
    process = subprocess.Popen(
        [sys.executable, load.__file__, "serve", kind, argument],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    return load.Server(process, {})


def _all_ready(stack: contextlib.ExitStack, servers: list[load.Server]) -> None:
    """Wait for servers started together (all stopped together when ``stack`` closes, ready or not)."""
    stack.callback(_stop_all, servers)
    for server in servers:
        server.info = json.loads(load._read_line(server.process, load.START_TIMEOUT_SECONDS))


def _stop_all(servers: list[load.Server]) -> None:
    """SIGTERM to every one first, then wait for each (bounded: :func:`benches.load.stop_server`)."""
    for server in servers:
        with contextlib.suppress(ProcessLookupError):
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
    for server in servers:
        load.stop_server(server)


@contextlib.contextmanager
def started(tmp_path: str, loop: asyncio.AbstractEventLoop, warmup_seconds: float) -> Iterator[Targets]:
    """Start every series' servers (stopped when the block ends; those that do not wait for each other start
    together), each gateway store provisioned (one tenant each, the two workers' shared), and warm each up."""
    with contextlib.ExitStack() as stack:
        native_dir, python_dir, workers_dir = (os.path.join(tmp_path, name) for name in ("native", "python", "workers"))
        for directory in (native_dir, python_dir, workers_dir):
            os.makedirs(directory)
        master_key = os.urandom(32).hex()
        native = _spawn("check", native_dir)
        pure = _spawn("check", python_dir, {"LICENSOR_PURE_PYTHON": "1"})
        first = _spawn("check", workers_dir, {"LICENSOR_BENCH_REUSE_PORT": "1", "LICENSOR_BENCH_MASTER_KEY": master_key})
        _all_ready(stack, [native, pure, first])  # started together: the imports and provisioning overlap
        assert native.info["core"] == _expected_core() and pure.info["core"] == "python", (native.info, pure.info)
        second = _spawn(
            "check",
            workers_dir,
            {
                "LICENSOR_BENCH_PORT": str(first.port),
                "LICENSOR_BENCH_MASTER_KEY": master_key,
                "LICENSOR_BENCH_BODY": orjson.dumps(first.info["body"]).decode(),
            },
        )
        _all_ready(stack, [second])
        body = native.info["body"]
        targets = Targets()
        targets.by_name[CHECK] = Target(CHECK, [native], signed=False)
        targets.by_name[SIGNED] = Target(SIGNED, [native], signed=True)
        targets.by_name[SIGNED_PYTHON] = Target(SIGNED_PYTHON, [pure], signed=True)
        targets.by_name[SIGNED_2] = Target(SIGNED_2, [first, second], signed=True)
        targets.bodies = {BARE: body, CHECK: body, SIGNED: body, SIGNED_PYTHON: pure.info["body"], SIGNED_2: first.info["body"]}
        sample = b""
        for name in (CHECK, SIGNED, SIGNED_PYTHON, SIGNED_2):
            target = targets.by_name[name]
            warm = _warm(loop, target, targets.bodies[name], warmup_seconds)
            assert warm.sample is not None
            if name == CHECK:
                sample = warm.sample  # the bare handler answers these very bytes
            else:
                verdict = verify_signed_sample(target.port, targets.bodies[name])
                assert verdict["code"] == "VALID", verdict
        bare = _spawn("bare", sample.decode())
        _all_ready(stack, [bare])
        targets.by_name[BARE] = Target(BARE, [bare], signed=False)
        _warm(loop, targets.by_name[BARE], body, warmup_seconds / 2)
        yield targets


def _expected_core() -> str:
    from licensor import _impl

    return _impl.IMPLEMENTATION


def cpu_seconds(pids: list[int]) -> float | None:
    values = [load.process_cpu_seconds(pid) for pid in pids]
    return None if any(value is None for value in values) else sum(values)  # type: ignore[misc]


def measure(
    loop: asyncio.AbstractEventLoop, target: Target, body: dict[str, Any], concurrency: int, run: int, seconds: float
) -> dict[str, Any]:
    """One bounded run of ``target`` at ``concurrency``: requests/s, p50, p99, server CPU per request."""
    validate: Callable[[int, bytes], str | None] = signed_answer_is_valid if target.signed else unsigned_answer_is_valid
    bodies = distinct_bodies(body, run, BODIES_PER_RUN, target.signed)
    before, started_at = cpu_seconds(target.pids()), time.perf_counter()
    result = loop.run_until_complete(
        load.run_load(
            target.port, bodies, concurrency=concurrency, max_requests=MAX_REQUESTS, max_seconds=seconds, validate=validate
        )
    )
    wall, after = time.perf_counter() - started_at, cpu_seconds(target.pids())
    assert result.errors == 0, f"{target.name} at {concurrency}: {result.errors} bad answers, first: {result.first_error}"
    assert result.requests > 0, f"{target.name} at {concurrency}: no answers"
    cpu = None if before is None or after is None else after - before
    return {
        "requests": result.requests,
        "rps": result.rps,
        "p50_ms": result.p50 * 1e3,
        "p99_ms": result.p99 * 1e3,
        "server_cpu_us": None if cpu is None else cpu / result.requests * 1e6,
        "server_cpu_share": None if cpu is None else cpu / wall,
    }


def median(runs: list[dict[str, Any]], name: str) -> float | None:
    values = [run[name] for run in runs if run.get(name) is not None]
    return statistics.median(values) if values else None


def summary(runs: dict[str, dict[int, list[dict[str, Any]]]]) -> dict[str, dict[str, dict[str, float | None]]]:
    """series -> concurrency (as a string, for JSON) -> the medians over the rounds."""
    return {
        name: {
            str(concurrency): {
                field_: median(rounds, field_) for field_ in ("rps", "p50_ms", "p99_ms", "server_cpu_us", "server_cpu_share")
            }
            for concurrency, rounds in by_concurrency.items()
        }
        for name, by_concurrency in runs.items()
    }


def goal_row(
    goal: str, measured: float | None, target: float, *, at_most: bool = False, unit: str = "x", report: bool = False
) -> dict[str, Any]:
    """One line of the report: what was measured against the issue's goal (``at_most``: a ceiling; ``report``:
    a figure shown beside the goals, not judged)."""
    met = None if measured is None else (measured <= target if at_most else measured >= target)
    return {"goal": goal, "measured": measured, "target": target, "at_most": at_most, "unit": unit, "met": met, "report": report}
