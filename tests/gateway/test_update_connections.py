"""What idle update connections cost: 1,000 devices hold GET /v1/updates open on one gateway worker (licensor
serve, SQLite); its memory and CPU per connection are measured from /proc, and one push reaches all of them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from licensor.testing import TESTING_ENVIRONMENT
from licensor.testing.infrastructure import free_port

CONNECTIONS = 1000
IDLE_S = 10.0
KEEPALIVE_S = 5  # the gateway's keep-alive comment, shortened so the idle window holds two rounds of them
TICKS = os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


async def open_stream(port: int, target: str, key: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nAuthorization: License {key}\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    return reader, writer


async def next_update(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise AssertionError("the stream ended")
        if line.startswith(b"data: up1."):
            return line


@pytest.mark.alone
async def test_a_thousand_idle_update_connections_cost_little(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, **TESTING_ENVIRONMENT, "LICENSOR_UPDATES_KEEPALIVE_S": str(KEEPALIVE_S)}
    command = [
        sys.executable,
        "-m",
        "licensor.cli",
        "serve",
        "--init-if-empty",
        "--data-dir",
        str(tmp_path / "var"),
        "--port",
        str(port),
    ]
    with (
        open(tmp_path / "gateway.log", "wb") as log,
        subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT) as server,
    ):
        try:
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                for _ in range(300):
                    try:
                        if (await http.get("/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
                token = (tmp_path / "var" / "admin-token").read_text().strip()
                admin = {"Authorization": f"Bearer {token}"}

                async def made(path: str, body: dict[str, object]) -> dict[str, object]:
                    answer = await http.post(path, json=body, headers=admin)
                    assert answer.status_code == 201, answer.text
                    return dict(answer.json())

                tenant = (await http.get("/v1/admin/tenant", headers=admin)).json()["id"]
                product = await made("/v1/admin/products", {"code": "cad", "name": "CAD"})
                policy = await made(
                    "/v1/admin/policies", {"product_id": product["id"], "name": "Node", "backend": "activation", "seats": 1}
                )
                license = await made("/v1/admin/licenses", {"policy_id": policy["id"]})
                target = f"/v1/updates?tenant={tenant}&product=cad&after=1"  # current: no event until a change

                warm = [await open_stream(port, target, str(license["key"])) for _ in range(10)]
                for _, writer in warm:
                    writer.close()
                await asyncio.sleep(1.0)
                memory_before, cpu_before = rss_kib(server.pid), cpu_s(server.pid)

                started = time.monotonic()
                streams = []
                for start in range(0, CONNECTIONS, 100):  # in waves, as devices come online
                    streams += await asyncio.gather(
                        *(open_stream(port, target, str(license["key"])) for _ in range(start, start + 100))
                    )
                connect_s = time.monotonic() - started
                await asyncio.sleep(1.0)
                memory_after = rss_kib(server.pid)
                cpu_connected = cpu_s(server.pid)
                await asyncio.sleep(IDLE_S)
                cpu_idle = cpu_s(server.pid) - cpu_connected

                pushed = time.monotonic()
                answer = await http.post(f"/v1/admin/licenses/{license['id']}/push-update", json={}, headers=admin)
                assert answer.status_code == 200, answer.text
                await asyncio.wait_for(asyncio.gather(*(next_update(reader) for reader, _ in streams)), 30)
                fan_out_s = time.monotonic() - pushed
                for _, writer in streams:
                    writer.close()

            per_connection_kib = (memory_after - memory_before) / CONNECTIONS
            idle_cpu_us = cpu_idle / IDLE_S / CONNECTIONS * 1e6
            connect_cpu_ms = (cpu_connected - cpu_before) / CONNECTIONS * 1000
            print(
                f"\n{CONNECTIONS} idle update connections on one worker: {per_connection_kib:.1f} KiB of memory each "
                f"({memory_before / 1024:.0f} -> {memory_after / 1024:.0f} MiB); "
                f"idle CPU {cpu_idle * 1000:.0f} ms in {IDLE_S:.0f} s (keep-alive every {KEEPALIVE_S} s): "
                f"{idle_cpu_us:.2f} us of CPU per connection per second; "
                f"connecting all took {connect_s:.2f} s ({connect_cpu_ms:.2f} ms of CPU each); "
                f"one push reached all of them in {fan_out_s * 1000:.0f} ms"
            )
            assert per_connection_kib < 64, per_connection_kib
            assert idle_cpu_us < 100, idle_cpu_us  # under 10% of one core for 1,000 connections, keep-alives included
            assert fan_out_s < 2.0, fan_out_s
        finally:
            server.terminate()
            server.wait(timeout=30)
