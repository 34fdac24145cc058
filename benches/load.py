"""The load benchmark's two servers and its client (``benches/test_bench_load.py``); loopback only.

Servers: ``python benches/load.py serve check DATA_DIR`` runs licensor's gateway (``create_app``, SQLite in
DATA_DIR, the installed cloud-lite backend) and provisions a tenant, a product with one feature, a cloud-lite
policy and a license; ``python benches/load.py serve bare TEMPLATE_JSON`` runs a bare aiohttp app whose one
POST route parses the body with orjson and answers ``orjson.dumps(TEMPLATE)`` (a real check answer, so both
servers send the same bytes). Each is one process with one event loop, listening on 127.0.0.1 on a free port,
without access logging; it prints one JSON line (port, pid, core, and for ``check`` the request body to send)
and serves until SIGTERM/SIGINT, until its stdin closes (the parent is gone), or for at most
``MAX_LIFETIME_SECONDS``. Several ``check`` workers may share one port and one data directory (SO_REUSEPORT:
see :func:`_serve`; ``benches/goals.py`` starts them). With ``LICENSOR_BENCH_PROFILE=PATH`` it runs under
cProfile from the line on and writes the stats to PATH when it stops.

Client: :func:`run_load` keeps ``concurrency`` keep-alive HTTP/1.1 connections (plain asyncio protocols: the
client costs far less per request than either server, so it does not cap the bare one) each sending the same
request again as soon as the answer is in, until ``max_requests`` are sent or ``max_seconds`` have passed.
Every answer is checked by ``validate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

HOST = "127.0.0.1"
CHECK_PATH = "/v1/check"
MAX_LIFETIME_SECONDS = 300.0  # a server stops by itself after this, whatever happens to its parent
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 5.0
GRACE_SECONDS = 10.0  # how long in-flight answers may take after the deadline before the run is abandoned


# --- the servers (run in their own processes) ----------------------------------------------------------
def _listening_socket(port: int = 0, reuse_port: bool = False) -> socket.socket:
    """A listening socket on 127.0.0.1:``port`` (0: a free one); with ``reuse_port``, one that other workers
    bind too (SO_REUSEPORT: the kernel spreads new connections among them)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((HOST, port))
    sock.listen(1024)
    return sock


def bare_app(template: dict[str, Any]) -> Any:
    """An aiohttp app with one POST route: parse the JSON body (orjson), answer ``template`` as JSON."""
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        if not isinstance(body, dict):
            return web.Response(
                status=422, body=b'{"error":{"code":"INVALID_BODY","message":"not an object"}}', content_type="application/json"
            )
        return web.Response(body=orjson.dumps(template), content_type="application/json")

    app = web.Application()
    app.router.add_post(CHECK_PATH, handle)
    return app


async def provision(app: Any, port: int, tenant: str, product: str, feature: str, policy: dict[str, Any]) -> tuple[str, str]:
    """Through the admin API of the gateway ``app`` on ``port``: a tenant, a product with one feature, a policy
    (``policy``: its backend, seats, ...) granting it, and one license of it. (The tenant id, the license key.)"""
    import aiohttp
    from licensor.central.tenants import create_tenant
    from licensor.gateway import keys

    created = await create_tenant(app[keys.STORE], app[keys.SECRETS], tenant)
    headers = {"Authorization": f"Bearer {created.admin_token}"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(f"http://{HOST}:{port}", headers=headers, timeout=timeout) as session:

        async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            async with session.post(path, json=body) as response:
                answer = await response.json()
                if response.status != 201:
                    raise RuntimeError(f"POST {path}: {response.status} {answer}")
                return answer  # type: ignore[no-any-return]

        made = await post("/v1/admin/products", {"code": product, "name": product.upper()})
        await post("/v1/admin/features", {"product_id": made["id"], "code": feature, "name": feature.title()})
        policy_ = await post(
            "/v1/admin/policies", {"product_id": made["id"], "name": "Bench", "features": [{"code": feature}], **policy}
        )
        license_ = await post("/v1/admin/licenses", {"policy_id": policy_["id"]})
    return created.tenant_id, license_["key"]


async def _provision(app: Any, port: int) -> dict[str, Any]:
    """A tenant, product ``app`` with feature ``export``, a cloud-lite policy and one license: the check body."""
    tenant, key = await provision(app, port, "Bench", "app", "export", {"backend": "cloud-lite"})
    return {"tenant": tenant, "product": "app", "license_key": key, "features": ["export"]}


async def until_stopped(info: dict[str, Any]) -> None:
    """Print ``info`` as the server's one JSON line, then wait until SIGTERM/SIGINT, until stdin closes (the
    parent is gone), or for at most ``MAX_LIFETIME_SECONDS``."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def stdin_readable() -> None:
        try:
            data = os.read(sys.stdin.fileno(), 4096)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(sys.stdin.fileno())
            stop.set()

    loop.add_reader(sys.stdin.fileno(), stdin_readable)
    print(json.dumps(info), flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), MAX_LIFETIME_SECONDS)


async def _serve(kind: str, argument: str) -> None:
    from aiohttp import web
    from licensor import _impl

    if kind == "bare":
        app = bare_app(json.loads(argument))
        store = None
    else:
        from licensor.gateway.app import create_app
        from licensor.store import open_store
        from licensor.testing import fixture_settings

        store = open_store("sqlite:///" + os.path.join(argument, "licensor.db"))
        master_key = bytes.fromhex(os.environ.get("LICENSOR_BENCH_MASTER_KEY", "")) or os.urandom(32)
        app = create_app(fixture_settings(data_dir=argument, master_key=master_key), store=store)
    # A worker of several on one port: LICENSOR_BENCH_REUSE_PORT=1 (the first, on a free port), or
    # LICENSOR_BENCH_PORT=P (the next ones, with the first's data directory, master key and check body).
    joined = int(os.environ.get("LICENSOR_BENCH_PORT", "0"))
    sock = _listening_socket(joined, reuse_port=bool(joined) or os.environ.get("LICENSOR_BENCH_REUSE_PORT") == "1")
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    profiler = None
    try:
        await web.SockSite(runner, sock).start()
        port = sock.getsockname()[1]
        info: dict[str, Any] = {"kind": kind, "port": port, "pid": os.getpid(), "core": _impl.IMPLEMENTATION}
        if kind == "check":
            given = os.environ.get("LICENSOR_BENCH_BODY")
            info["body"] = json.loads(given) if given else await _provision(app, port)
        profile_path = os.environ.get("LICENSOR_BENCH_PROFILE")
        if profile_path:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        await until_stopped(info)
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(os.environ["LICENSOR_BENCH_PROFILE"])
        await runner.cleanup()
        sock.close()


# --- starting and stopping them (in the benchmark's process) --------------------------------------------
@dataclass
class Server:
    """A server subprocess and what it printed when it was ready."""

    process: subprocess.Popen[bytes]
    info: dict[str, Any]

    @property
    def port(self) -> int:
        return int(self.info["port"])


def _read_line(process: subprocess.Popen[bytes], timeout: float) -> bytes:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the server did not start within {timeout:.0f} s")
        ready, _, _ = select.select([process.stdout], [], [], left)
        if ready:
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"the server exited ({process.poll()}) before it was ready")
            data += chunk
    return data.split(b"\n", 1)[0]


def stop_server(server: Server) -> None:
    process = server.process
    try:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT_SECONDS)
    finally:
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()


@contextlib.contextmanager
def server(kind: str, argument: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """Run ``load.py serve KIND ARGUMENT`` until the block ends (stopped in ``finally``)."""
    process = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "serve", kind, argument],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    running = Server(process, {})
    try:
        running.info = json.loads(_read_line(process, START_TIMEOUT_SECONDS))
        yield running
    finally:
        stop_server(running)


# --- the client ---------------------------------------------------------------------------------------
@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies: list[float] = field(repr=False)
    errors: int
    first_error: str | None
    sample: bytes | None = field(default=None, repr=False)  # the first answer's body
    # (answers in before, what the probe read, requests sent after) when run_load was given a probe
    probe: tuple[int, float, int] | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, fraction: float) -> float:
        """Nearest-rank percentile of the latencies, in seconds."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
        return ordered[rank - 1]

    @property
    def p99(self) -> float:
        return self.percentile(0.99)

    @property
    def p50(self) -> float:
        return self.percentile(0.50)


Validate = Callable[[int, bytes], "str | None"]


class _Run:
    """What the connections of one run share: the budget, the clock, the latencies and the errors."""

    def __init__(self, requests: list[bytes], validate: Validate, max_requests: int, max_seconds: float) -> None:
        self.requests = requests  # sent in turn
        self.validate = validate
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.deadline = float("inf")
        self.sent = 0
        self.latencies: list[float] = []
        self.errors = 0
        self.first_error: str | None = None
        self.last_answer = 0.0
        self.sample: bytes | None = None

    def may_send(self, now: float) -> bool:
        return self.sent < self.max_requests and now < self.deadline

    def error(self, message: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = message


class _Connection(asyncio.Protocol):
    def __init__(self, run: _Run, done: asyncio.Future[None]) -> None:
        self.run = run
        self.done = done
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.sent_at = 0.0
        self.waiting = False
        self.closing = False  # this side closes it (the run is over for it)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self) -> None:
        assert self.transport is not None
        request = self.run.requests[self.run.sent % len(self.run.requests)]
        self.run.sent += 1
        self.waiting = True
        self.sent_at = time.perf_counter()
        self.transport.write(request)

    def finish(self, error: str | None = None) -> None:
        if error is not None:
            self.run.error(error)
        self.closing = True
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        lines = bytes(self.buffer[:end]).split(b"\r\n")
        try:
            status = int(lines[0].split(b" ", 2)[1])
            length = next(
                int(value)
                for name, _, value in (line.partition(b":") for line in lines[1:])
                if name.strip().lower() == b"content-length"
            )
        except (IndexError, ValueError, StopIteration):
            self.finish(f"unreadable answer head: {bytes(self.buffer[:end])[:200]!r}")
            return
        start = end + 4
        if len(self.buffer) < start + length:
            return
        body = bytes(self.buffer[start : start + length])
        if len(self.buffer) > start + length:
            self.finish("more bytes than one answer")
            return
        self.buffer.clear()
        now = time.perf_counter()
        self.waiting = False
        run = self.run
        run.latencies.append(now - self.sent_at)
        run.last_answer = now
        if run.sample is None:
            run.sample = body
        problem = run.validate(status, body)
        if problem is not None:
            run.error(problem)
        if run.may_send(now):
            self.send()
        else:
            self.finish()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            if not self.closing:
                self.run.error(f"the server closed the connection{' with a request in flight' if self.waiting else ''}: {exc!r}")
            self.done.set_result(None)


def check_answer_is_valid(status: int, body: bytes) -> str | None:
    """The validation of both servers' answers: 200 and the verdict VALID."""
    if status != 200:
        return f"status {status}: {body[:200]!r}"
    try:
        code = orjson.loads(body)["verdict"]["code"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"not a check answer: {body[:200]!r}"
    return None if code == "VALID" else f"verdict {code}"


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 answer with a Content-Length: its status and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = next(
        int(value) for name, _, value in (line.partition(b":") for line in lines[1:]) if name.strip().lower() == b"content-length"
    )
    return status, await reader.readexactly(length)


def request_bytes(port: int, path: str, body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode("ascii") + body


async def run_load(
    port: int,
    body: bytes | list[bytes],
    *,
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    path: str = CHECK_PATH,
    validate: Validate = check_answer_is_valid,
    probe: Callable[[], Awaitable[float]] | None = None,
) -> LoadResult:
    """``concurrency`` keep-alive connections to 127.0.0.1:``port`` sending ``body`` (or each of a list of
    bodies in turn) to ``path`` until ``max_requests`` are sent or ``max_seconds`` have passed (the clock starts
    once all are connected); answers in flight at the deadline still count. Abandoned (and counted as errors)
    after GRACE_SECONDS more. ``probe`` (e.g. a scrape of ``/metrics``) is awaited once, halfway through the
    time, between two counts of the run: see :attr:`LoadResult.probe`."""
    loop = asyncio.get_running_loop()
    bodies = body if isinstance(body, list) else [body]
    run = _Run([request_bytes(port, path, one) for one in bodies], validate, max_requests, max_seconds)
    connections: list[_Connection] = []
    try:
        for _ in range(concurrency):
            done: asyncio.Future[None] = loop.create_future()
            _, protocol = await asyncio.wait_for(
                loop.create_connection(lambda done=done: _Connection(run, done), HOST, port),  # type: ignore[misc]
                CONNECT_TIMEOUT_SECONDS,
            )
            connections.append(protocol)
        started = time.perf_counter()
        run.deadline = started + max_seconds
        for connection in connections:
            if run.may_send(started):
                connection.send()
            else:
                connection.finish()
        probed: list[tuple[int, float, int]] = []
        probing = None if probe is None else asyncio.ensure_future(_probe_halfway(run, probe, max_seconds / 2, probed))
        _finished, pending = await asyncio.wait(
            [connection.done for connection in connections], timeout=max_seconds + GRACE_SECONDS
        )
        if probing is not None:
            await asyncio.wait_for(probing, GRACE_SECONDS)
        if pending:
            run.error(f"{len(pending)} connection(s) still waiting {GRACE_SECONDS:.0f} s after the deadline")
        ended = run.last_answer if run.latencies else time.perf_counter()
    finally:
        for connection in connections:
            if connection.transport is not None and not connection.transport.is_closing():
                connection.closing = True
                connection.transport.abort()
        for _ in range(3):  # let the closed transports release their sockets before the loop may close
            await asyncio.sleep(0)
    return LoadResult(
        len(run.latencies),
        max(ended - started, 1e-9),
        run.latencies,
        run.errors,
        run.first_error,
        run.sample,
        probed[0] if probed else None,
    )


async def _probe_halfway(
    run: _Run, probe: Callable[[], Awaitable[float]], after: float, probed: list[tuple[int, float, int]]
) -> None:
    await asyncio.sleep(after)
    before = len(run.latencies)
    value = await probe()
    probed.append((before, value, run.sent))


async def scrape_answered(port: int, path: str = CHECK_PATH) -> float:
    """How many requests to ``path`` the gateway on 127.0.0.1:``port`` says it answered with 200, from its
    ``GET /metrics`` (served to loopback clients without a token)."""
    from prometheus_client.parser import text_string_to_metric_families

    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), CONNECT_TIMEOUT_SECONDS)
    try:
        writer.write(f"GET /metrics HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode("ascii"))
        answer = await asyncio.wait_for(reader.read(), CONNECT_TIMEOUT_SECONDS)
    finally:
        writer.close()
    head, _, text = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    return sum(
        sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
        if sample.name == "licensor_http_requests_total"
        and sample.labels.get("route") == path
        and sample.labels.get("status") == "200"
    )


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` so far (Linux /proc), or None where that is unavailable."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _serve_main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[1] != "serve" or argv[2] not in ("bare", "check"):
        print(f"usage: {argv[0]} serve bare TEMPLATE_JSON | serve check DATA_DIR", file=sys.stderr)
        return 2
    asyncio.run(_serve(argv[2], argv[3]))
    return 0


if __name__ == "__main__":
    sys.exit(_serve_main(sys.argv))
