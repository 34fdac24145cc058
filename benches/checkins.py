"""The check-in benchmark's servers and devices (``benches/test_bench_checkins.py``); loopback only.

Server: ``python benches/checkins.py serve on|off DATA_DIR`` runs licensor's gateway (``create_app``, SQLite in
DATA_DIR) with plugin autoloading off (``LICENSOR_DISABLE_PLUGIN_AUTOLOAD=1``, which :func:`server` sets) and
one plugin object of its own (:class:`BenchPlugin`) registering ``ActivationBackend(batching=True)`` (``on``) or
``ActivationBackend(batching=False)`` (``off``) and the route ``GET /bench/stats``: the backend's
:class:`licensor.batching.BatchStats` (tokens, core calls, thread CPU ns spent in them), the core
calls by batch size, and the core implementation. It provisions a tenant, product ``cad``, an activation policy
of ``SEATS`` seats (room for the benchmark's largest burst and its lone device) and a license, then prints one
JSON line (port, pid, core, batching, tenant, product, license key) and serves like the load benchmark's
servers (``benches/load.py``: one process, one event loop, 127.0.0.1, no access log; it stops on
SIGTERM/SIGINT, when its stdin closes, or after ``MAX_LIFETIME_SECONDS``).

Devices (in the benchmark's process): :class:`Device` holds a device key, a made-up machine's fingerprint,
its activation and the generation of its current license file. :func:`activate` and :func:`check_in_burst`
send pre-signed ``dv1`` requests through :func:`benches.load.run_load`; :func:`check_in_alternately` has one
device per server check in again and again, the servers taking turns. Every answer is checked (201 or 200, a
license file of the device's activation at the generation after the one it sent) and each device moves to
the generation it was answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

if __package__ in (None, ""):  # run as a script (the servers): make the repository's `benches` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from licensor.hookspecs import hookimpl

from benches import load

STATS_PATH = "/bench/stats"
ACTIVATE_PATH = "/v1/activations"
CHECKIN_PATH = "/v1/activations/checkin"
PRODUCT = "cad"
SEATS = 600  # at least the benchmark's devices per server: its largest burst (512) and a lone device
MACHINE = {"machine_id": "m", "board": "b", "cpu": "c", "disk": "d", "mac": "aa:bb", "hostname": "host"}
HTTP_TIMEOUT_SECONDS = 10.0
# A server stops by itself after this, whatever happens to its parent: longer than the load benchmark's
# (``load.MAX_LIFETIME_SECONDS``), as ``make bench``'s six rounds of bursts of 256 and 512 take 1.5-2.5 minutes.
MAX_LIFETIME_SECONDS = 600.0


# --- the server (its own process) -----------------------------------------------------------------------
class BenchPlugin:
    """Registers the activation backend, batching or not, and ``GET /bench/stats`` (no authentication)."""

    def __init__(self, batching: bool) -> None:
        from licensor_activation.backend import ActivationBackend

        self.backend = ActivationBackend(batching=batching)
        # batch size -> [core calls, thread CPU ns]: how the bursts were split, seen through the reader's one
        # place of counting (``_count(tokens, cpu_ns)`` per core call); left empty should that method go.
        self.sizes: dict[int, list[int]] = {}
        count = getattr(self.backend.reader, "_count", None)
        if callable(count):

            def counted(tokens: int, cpu_ns: int) -> None:
                entry = self.sizes.setdefault(tokens, [0, 0])
                entry[0] += 1
                entry[1] += cpu_ns
                count(tokens, cpu_ns)

            self.backend.reader._count = counted  # type: ignore[method-assign]

    @hookimpl
    def licensor_register_backends(self, register: Callable[[Any], None]) -> None:
        register(self.backend)

    @hookimpl
    def licensor_register_routes(self, register: Callable[[Any], None]) -> None:
        from licensor import PUBLIC, Operation

        counters = {"type": "integer", "minimum": 0}
        schema = {
            "type": "object",
            "properties": {
                "tokens": counters,
                "calls": counters,
                "cpu_ns": counters,
                "batching": {"type": "boolean"},
                "max_batch": counters,
                "core": {"type": "string"},
                "sizes": {"type": "object", "additionalProperties": {"type": "array", "items": counters}},
            },
            "required": ["tokens", "calls", "cpu_ns", "batching", "max_batch", "core", "sizes"],
            "additionalProperties": False,
        }
        register(
            Operation(
                method="GET",
                path=STATS_PATH,
                operation_id="bench_stats",
                summary="The activation backend's verification counters",
                handler=self._stats,
                tag="bench",
                auth=PUBLIC,
                response_schema=schema,
            )
        )

    async def _stats(self, call: Any) -> Any:
        from licensor import Reply, _impl

        reader = self.backend.reader
        stats = reader.stats
        return Reply(
            200,
            {
                "tokens": stats.tokens,
                "calls": stats.calls,
                "cpu_ns": stats.cpu_ns,
                "batching": reader.batching,
                "max_batch": reader.max_batch,
                "core": _impl.IMPLEMENTATION,
                "sizes": {str(size): list(entry) for size, entry in sorted(self.sizes.items())},
            },
        )


async def _provision(app: Any, port: int) -> dict[str, Any]:
    """A tenant, product ``cad`` with feature ``draw``, an activation policy of ``SEATS`` seats and a license."""
    tenant, key = await load.provision(app, port, "Bench devices", PRODUCT, "draw", {"backend": "activation", "seats": SEATS})
    return {"tenant": tenant, "product": PRODUCT, "license_key": key}


async def _serve(batching: bool, data_dir: str) -> None:
    from aiohttp import web
    from licensor import _impl
    from licensor.gateway.app import create_app
    from licensor.store import open_store
    from licensor.testing import fixture_settings

    store = open_store("sqlite:///" + os.path.join(data_dir, "licensor.db"))
    app = create_app(
        fixture_settings(data_dir=data_dir, master_key=os.urandom(32)), store=store, plugins=(BenchPlugin(batching),)
    )
    sock = load._listening_socket()
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        port = sock.getsockname()[1]
        info: dict[str, Any] = {
            "kind": "batching" if batching else "one-by-one",
            "batching": batching,
            "port": port,
            "pid": os.getpid(),
            "core": _impl.IMPLEMENTATION,
            **await _provision(app, port),
        }
        await load.until_stopped(info)
    finally:
        await runner.cleanup()
        sock.close()


@contextlib.contextmanager
def server(batching: bool, data_dir: str) -> Iterator[load.Server]:
    """Run ``checkins.py serve on|off DATA_DIR`` until the block ends (stopped in ``finally``)."""
    process = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "serve", "on" if batching else "off", data_dir],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "LICENSOR_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    running = load.Server(process, {})
    try:
        running.info = json.loads(load._read_line(process, load.START_TIMEOUT_SECONDS))
        yield running
    finally:
        load.stop_server(running)


def stats(port: int) -> dict[str, Any]:
    """The server's ``GET /bench/stats``."""
    connection = http.client.HTTPConnection(load.HOST, port, timeout=HTTP_TIMEOUT_SECONDS)
    try:
        connection.request("GET", STATS_PATH)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"GET {STATS_PATH}: {response.status} {body[:200]!r}")
    return orjson.loads(body)  # type: ignore[no-any-return]


# --- the devices (the benchmark's process) ---------------------------------------------------------------
@dataclass
class Device:
    """A simulated device of one server's tenant: its key, fingerprint, activation and current generation."""

    number: int
    key: Any  # licensor_client.activation.DeviceKey
    fingerprint: dict[str, str]
    activation_id: str | None = None
    generation: int = 0

    def request(self, info: dict[str, Any], op: str, **fields: Any) -> bytes:
        """The body of a device request, ``{"request": dv1 token}``."""
        from licensor_client.activation import device_request

        token = device_request(
            self.key, op, tenant=info["tenant"], product=info["product"], fingerprint=self.fingerprint, **fields
        )
        return orjson.dumps({"request": token})

    def check_in_body(self, info: dict[str, Any], generation: int | None = None) -> bytes:
        return self.request(
            info, "checkin", activation=self.activation_id, generation=self.generation if generation is None else generation
        )


def devices(info: dict[str, Any], count: int) -> list[Device]:
    """``count`` devices of the server's tenant, each a different machine with its own key."""
    from licensor.fingerprint import hash_components, product_salt
    from licensor_client.activation import DeviceKey

    salt = product_salt(info["tenant"], info["product"])
    return [
        Device(n, DeviceKey.generate(), hash_components({name: f"{value}-{n}" for name, value in MACHINE.items()}, salt))
        for n in range(count)
    ]


def _answered_activation(status: int, body: bytes, expected_status: int) -> tuple[dict[str, Any] | None, str | None]:
    """(the activation of a license-file answer, None) or (None, what is wrong with the answer)."""
    if status != expected_status:
        return None, f"status {status} (expected {expected_status}): {body[:300]!r}"
    try:
        answer = orjson.loads(body)
        activation = answer["activation"]
        if answer["object"] != "license_file" or not answer["license_file"]:
            return None, f"not a license file: {body[:300]!r}"
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None, f"not a license-file answer: {body[:300]!r}"
    return activation, None


async def activate(port: int, info: dict[str, Any], fleet: list[Device], concurrency: int, max_seconds: float) -> load.LoadResult:
    """Activate every device of ``fleet`` (each request sent once); each answer must be 201 with a new
    activation of that device, generation 1."""
    by_key = {device.key.key_id: device for device in fleet}

    def validate(status: int, body: bytes) -> str | None:
        activation, problem = _answered_activation(status, body, 201)
        if activation is None:
            return problem
        device = by_key.get(activation["device_key"])
        if device is None or device.activation_id is not None or activation["generation"] != 1:
            return f"unexpected activation {activation['id']} (generation {activation['generation']})"
        device.activation_id, device.generation = activation["id"], 1
        return None

    bodies = [
        device.request(info, "activate", license_key=info["license_key"], device_name=f"bench-{device.number}")
        for device in fleet
    ]
    result = await load.run_load(
        port,
        bodies,
        concurrency=min(concurrency, len(bodies)),
        max_requests=len(bodies),
        max_seconds=max_seconds,
        path=ACTIVATE_PATH,
        validate=validate,
    )
    missing = [device.number for device in fleet if device.activation_id is None]
    if missing and result.errors == 0:
        result.errors, result.first_error = len(missing), f"{len(missing)} device(s) not activated, first {missing[0]}"
    return result


async def check_in_burst(port: int, info: dict[str, Any], fleet: list[Device], max_seconds: float) -> load.LoadResult:
    """Every device of ``fleet`` checks in once, all at once: one connection per device, all connected first,
    then one request written on each back to back. Each answer must be 200 with that device's activation at
    the generation after the one it sent (a renewed license file); the device keeps it."""
    by_activation = {device.activation_id: device for device in fleet}
    answered: set[str] = set()

    def validate(status: int, body: bytes) -> str | None:
        activation, problem = _answered_activation(status, body, 200)
        if activation is None:
            return problem
        device = by_activation.get(activation["id"])
        if device is None or activation["id"] in answered:
            return f"an answer for activation {activation['id']}, which is not one of this burst's or answered twice"
        answered.add(activation["id"])
        if activation["generation"] != device.generation + 1:
            return f"activation {activation['id']}: generation {activation['generation']} after {device.generation}"
        device.generation = activation["generation"]
        return None

    bodies = [device.check_in_body(info) for device in fleet]
    result = await load.run_load(
        port,
        bodies,
        concurrency=len(bodies),
        max_requests=len(bodies),
        max_seconds=max_seconds,
        path=CHECKIN_PATH,
        validate=validate,
    )
    if len(answered) != len(fleet) and result.errors == 0:
        result.errors, result.first_error = len(fleet) - len(answered), f"{len(fleet) - len(answered)} device(s) not answered"
    return result


@dataclass
class Lone:
    """One server's lone device for :func:`check_in_alternately`, and what its check-ins measured."""

    port: int
    info: dict[str, Any]
    device: Device
    latencies: list[float] = field(default_factory=list)
    busy: float = 0.0  # seconds from sending a request to its whole answer, summed
    errors: int = 0
    first_error: str | None = None

    def result(self) -> load.LoadResult:
        """The latencies as a LoadResult whose requests/s is one connection's: answers / time spent waiting."""
        return load.LoadResult(len(self.latencies), max(self.busy, 1e-9), self.latencies, self.errors, self.first_error)


async def check_in_alternately(lones: list[Lone], max_requests: int, max_seconds: float) -> None:
    """Each server's lone device checks in again and again on its own keep-alive connection, the servers taking
    turns: one request at a time in all (concurrency 1 at each server), the first server of each turn
    alternating, so both are measured in the same moments of a shared machine. Stops after ``max_requests``
    check-ins per server or once ``max_seconds`` have passed (the turn in progress completes). Each answer must
    be 200 at the next generation (the requests are signed in advance: each names the last answered one); a
    wrong answer ends the run. Bounded: each answer may take at most ``HTTP_TIMEOUT_SECONDS``."""
    requests = [
        [
            load.request_bytes(lone.port, CHECKIN_PATH, lone.device.check_in_body(lone.info, lone.device.generation + n))
            for n in range(max_requests)
        ]
        for lone in lones
    ]
    streams = [
        await asyncio.wait_for(asyncio.open_connection(load.HOST, lone.port), load.CONNECT_TIMEOUT_SECONDS) for lone in lones
    ]
    try:
        deadline = time.perf_counter() + max_seconds
        for n in range(max_requests):
            if time.perf_counter() >= deadline:
                break
            for i in range(len(lones)) if n % 2 == 0 else reversed(range(len(lones))):
                lone, (reader, writer) = lones[i], streams[i]
                started = time.perf_counter()
                writer.write(requests[i][n])
                status, body = await asyncio.wait_for(load.read_answer(reader), HTTP_TIMEOUT_SECONDS)
                elapsed = time.perf_counter() - started
                activation, problem = _answered_activation(status, body, 200)
                if activation is not None and (
                    activation["id"] != lone.device.activation_id or activation["generation"] != lone.device.generation + 1
                ):
                    problem = (
                        f"activation {activation['id']}: generation {activation['generation']} after {lone.device.generation}"
                    )
                if problem is not None:
                    lone.errors += 1
                    lone.first_error = lone.first_error or problem
                    return
                assert activation is not None
                lone.device.generation = activation["generation"]
                lone.latencies.append(elapsed)
                lone.busy += elapsed
    finally:
        for _, writer in streams:
            writer.close()
        for _, writer in streams:
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _serve_main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[1] != "serve" or argv[2] not in ("on", "off"):
        print(f"usage: {argv[0]} serve on|off DATA_DIR", file=sys.stderr)
        return 2
    asyncio.run(_serve(argv[2] == "on", argv[3]))
    return 0


if __name__ == "__main__":
    sys.exit(_serve_main(sys.argv))
