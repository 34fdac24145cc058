"""The writes benchmark's fleet and drivers (``benches/test_bench_writes.py``); loopback only.

A throwaway PostgreSQL server, a ``licensor serve --workers 2`` gateway on it, and two layouts of the same
writers: every writer in one tenant (``solo``), or the writers spread over ``tenants`` tenants (``spread``).
A writer is one connection sending one kind of write again and again, each when the answer to the one before
is in (closed loop), each write depending on the answer before it:

- ``heartbeat``: a cloud lease renewed (``POST /v1/leases/heartbeat``, the lease secret each answer gives);
- ``checkin``: an activated device checking in (``POST /v1/activations/checkin``, a ``dv1`` request signed by
  the device at the generation the last answer gave);
- ``usage``: a subject's metered usage (``POST /v1/entitlements/usage`` with the tenant's product token and a
  new Idempotency-Key each time), each writer its own subject and license.

Every writer has its own lease, device or license (no two writers touch the same row), so only what a tenant's
writes share (today: the tenant's event-chain head, locked by every event until commit) tells the layouts
apart. Each run gives writes/s, p99, and the server CPU per write of the gateway's processes (the supervisor
and its workers) and of PostgreSQL's (the postmaster and its backends) apart, from ``/proc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from benches import load

KINDS = ("heartbeat", "checkin", "usage")
LAYOUTS = ("solo", "spread")
HEARTBEAT, CHECKIN, USAGE = "/v1/leases/heartbeat", "/v1/activations/checkin", "/v1/entitlements/usage"
ANSWER_TIMEOUT_SECONDS = 10.0  # one write's answer, at most
QUOTA = 10**9  # the metered feature's quota: never reached here


# --- writers --------------------------------------------------------------------------------------------
class Writer:
    """One connection's writes: :meth:`request` is the next request's bytes; :meth:`answered` takes the answer
    in (the next request may depend on it) and says what is wrong with it, if anything."""

    port = 0

    def request(self) -> bytes:
        raise NotImplementedError

    def answered(self, status: int, body: bytes) -> str | None:
        raise NotImplementedError


@dataclass
class LeaseWriter(Writer):
    """A device holding a cloud lease: heartbeats with the newest lease secret."""

    tenant: str
    credential: str
    lease: str
    secret: str

    def request(self) -> bytes:
        body = {"tenant": self.tenant, "credential": self.credential, "lease": self.lease, "lease_secret": self.secret}
        return load.request_bytes(self.port, HEARTBEAT, orjson.dumps(body))

    def answered(self, status: int, body: bytes) -> str | None:
        if status != 200:
            return f"heartbeat: status {status}: {body[:200]!r}"
        answer = orjson.loads(body)
        if answer.get("lease", {}).get("id") != self.lease or not answer.get("lease_secret"):
            return f"heartbeat: not this lease renewed: {body[:200]!r}"
        self.secret = answer["lease_secret"]
        return None


@dataclass
class DeviceWriter(Writer):
    """An activated device (``benches.checkins.Device``) checking in at its current generation."""

    info: dict[str, Any]
    device: Any

    def request(self) -> bytes:
        return load.request_bytes(self.port, CHECKIN, self.device.check_in_body(self.info))

    def answered(self, status: int, body: bytes) -> str | None:
        if status != 200:
            return f"check-in: status {status}: {body[:200]!r}"
        activation = orjson.loads(body).get("activation") or {}
        if activation.get("id") != self.device.activation_id or activation.get("generation") != self.device.generation + 1:
            return f"check-in: not this device's next generation: {body[:200]!r}"
        self.device.generation = activation["generation"]
        return None


@dataclass
class UsageWriter(Writer):
    """A SaaS backend reporting one unit of a subject's metered usage, each report with a new Idempotency-Key."""

    token: str
    subject: str
    recorded: int = 0

    def request(self) -> bytes:
        body = orjson.dumps({"product": "saas", "subject": self.subject, "feature": "calls", "units": 1})
        head = (
            f"POST {USAGE} HTTP/1.1\r\nHost: {load.HOST}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {self.token}\r\nIdempotency-Key: {uuid.uuid4().hex}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode("ascii") + body

    def answered(self, status: int, body: bytes) -> str | None:
        if status != 201:
            return f"usage: status {status}: {body[:200]!r}"
        self.recorded += 1
        return None


@dataclass
class Fleet:
    """One layout's writers of each kind (``len`` of each = the connections of a run)."""

    writers: dict[str, list[Writer]] = field(default_factory=lambda: {kind: [] for kind in KINDS})
    tenants: list[str] = field(default_factory=list)


# --- provisioning (through an in-process gateway on the same database) -------------------------------------
async def provision_tenant(gateway: Any, name: str, count: int, fleet: Fleet) -> None:
    """A tenant with ``count`` writers of each kind: a cloud license of ``count`` seats and as many leases checked
    out, an activation license of ``count`` seats and as many devices activated, and ``count`` cloud-lite licenses
    (one per subject) of a metered feature, with a product token."""
    from licensor.testing import make_vendor

    from benches import checkins

    cloud = await make_vendor(gateway, "cloud", name=name, product="cad", seats=count)
    tenant = cloud.tenant
    fleet.tenants.append(tenant.id)
    made = await tenant.ok("POST", f"/v1/admin/licenses/{cloud.license['id']}/credentials", 201, json={})
    credential = made["credential_file"]["credential"]
    for n in range(count):
        body = {"tenant": tenant.id, "credential": credential, "device_id": f"bench-{n}"}
        answer = await gateway.call("POST", "/v1/leases", json=body)
        assert answer.status == 201, answer.text
        fleet.writers["heartbeat"].append(
            LeaseWriter(tenant.id, credential, answer.body["lease"]["id"], answer.body["lease_secret"])
        )

    activation = await make_vendor(gateway, "activation", tenant=tenant, product="act", seats=count)
    info = {"tenant": tenant.id, "product": "act", "license_key": activation.license["key"]}
    for device in checkins.devices(info, count):
        request = device.request(info, "activate", license_key=info["license_key"], device_name=f"bench-{device.number}")
        answer = await gateway.call("POST", "/v1/activations", data=request, headers={"Content-Type": "application/json"})
        assert answer.status == 201, answer.text
        device.activation_id, device.generation = answer.body["activation"]["id"], answer.body["activation"]["generation"]
        fleet.writers["checkin"].append(DeviceWriter(info, device))

    saas = await make_vendor(
        gateway,
        "cloud-lite",
        tenant=tenant,
        product="saas",
        catalog={"calls": {"metered": True, "unit": "call"}},
        features=[{"code": "calls", "quantity": QUOTA}],
        license={"subject": "user-0"},
    )
    for n in range(1, count):
        await tenant.license(saas.policy["id"], subject=f"user-{n}")
    token = await tenant.token("product", saas.product["id"])
    fleet.writers["usage"] += [UsageWriter(token, f"user-{n}") for n in range(count)]


async def provision(store_url: str, data_dir: str, master_key: bytes, connections: int, tenants: int) -> dict[str, Fleet]:
    """Both layouts: ``solo`` (one tenant, ``connections`` writers of each kind) and ``spread`` (``tenants``
    tenants sharing as many writers)."""
    from licensor.testing import running_gateway

    assert connections % tenants == 0, "the writers spread evenly over the tenants"
    fleets = {layout: Fleet() for layout in LAYOUTS}
    async with running_gateway(store_url, data_dir, master_key=master_key) as gateway:
        await provision_tenant(gateway, "Solo", connections, fleets["solo"])
        for n in range(tenants):
            await provision_tenant(gateway, f"Spread {n}", connections // tenants, fleets["spread"])
    return fleets


# --- the processes whose CPU counts ----------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", encoding="ascii") as handle:
                    frontier += [int(child) for child in handle.read().split()]
    return found


def gateway_pids(port: int) -> list[int]:
    """The ``licensor serve`` process listening on ``port`` and its workers."""
    wanted = f"--port\0{port}\0".encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    command = handle.read()
                if b"licensor.cli\0serve" in command and wanted in command + b"\0":
                    return _children(int(entry))
    raise LookupError(f"no licensor serve process on port {port}")


def postgres_pids(data_directory: str) -> list[int]:
    """The postmaster of ``data_directory`` and its processes (backends, writer, WAL writer, ...)."""
    with open(os.path.join(data_directory, "postmaster.pid"), encoding="ascii") as handle:
        return _children(int(handle.readline()))


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the processes alive now (a process gone since is not counted: both sides' processes
    live for the whole run, PostgreSQL's backends being the gateway's pooled connections)."""
    return sum(load.process_cpu_seconds(pid) or 0.0 for pid in pids)


# --- the driver -----------------------------------------------------------------------------------------
@dataclass
class WriteRun:
    writes: int
    seconds: float
    latencies: list[float]
    errors: int
    first_error: str | None

    @property
    def rate(self) -> float:
        return self.writes / self.seconds if self.seconds > 0 else 0.0

    def p99(self) -> float:
        return load.LoadResult(len(self.latencies), 1.0, self.latencies, 0, None).p99


async def drive(port: int, writers: list[Writer], max_writes: int, max_seconds: float) -> WriteRun:
    """Each writer on its own keep-alive connection, writing in a closed loop until ``max_writes`` in all or
    ``max_seconds`` (the writes in flight then complete; each answer within ``ANSWER_TIMEOUT_SECONDS``). A wrong
    answer stops that writer and is counted."""
    latencies: list[float] = []
    problems: list[str] = []
    streams = [await asyncio.wait_for(asyncio.open_connection(load.HOST, port), load.CONNECT_TIMEOUT_SECONDS) for _ in writers]
    started = time.perf_counter()
    deadline = started + max_seconds

    async def one(writer: Writer, reader: asyncio.StreamReader, stream: asyncio.StreamWriter) -> None:
        writer.port = port
        while len(latencies) < max_writes and time.perf_counter() < deadline:
            sent = time.perf_counter()
            stream.write(writer.request())
            status, body = await asyncio.wait_for(load.read_answer(reader), ANSWER_TIMEOUT_SECONDS)
            latencies.append(time.perf_counter() - sent)
            problem = writer.answered(status, body)
            if problem is not None:
                problems.append(problem)
                return

    try:
        outcomes = await asyncio.gather(*(one(w, r, s) for w, (r, s) in zip(writers, streams)), return_exceptions=True)
    finally:
        for _, stream in streams:
            stream.close()
        for _, stream in streams:
            with contextlib.suppress(OSError):
                await stream.wait_closed()
    problems += [repr(outcome) for outcome in outcomes if isinstance(outcome, BaseException)]
    return WriteRun(len(latencies), time.perf_counter() - started, latencies, len(problems), problems[0] if problems else None)


def measure(
    loop: asyncio.AbstractEventLoop,
    port: int,
    writers: list[Writer],
    processes: dict[str, list[int]],
    max_writes: int,
    max_seconds: float,
) -> dict[str, Any]:
    """One run: writes/s, p99, and the CPU per write of each group of ``processes`` (``gateway``, ``postgres``)."""
    before = {name: cpu_seconds(pids) for name, pids in processes.items()}
    run = loop.run_until_complete(drive(port, writers, max_writes, max_seconds))
    after = {name: cpu_seconds(pids) for name, pids in processes.items()}
    assert run.errors == 0, f"{run.errors} bad answers, first: {run.first_error}"
    assert run.writes > 0, "no writes"
    return {
        "writes": run.writes,
        "rate": run.rate,
        "p99_ms": run.p99() * 1e3,
        **{f"{name}_cpu_ms": (after[name] - before[name]) / run.writes * 1e3 for name in processes},
        **{f"{name}_cpu_share": (after[name] - before[name]) / run.seconds for name in processes},
    }
