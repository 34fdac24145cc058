"""``licensor serve`` stopped by SIGTERM drains: it stops accepting at once, lets the requests in flight finish with
their answers, and exits 0 in bounded time; a request still in flight after the ``drain_timeout_s`` setting is cut.

On SQLite one process; on PostgreSQL ``--workers 2`` (the supervisor forwards the signal and closes its own copy
of the listening socket, so nothing queues for nobody). The requests in flight are admin writes (a product each)
whose bodies are still being sent when the signal comes: they end in a store write after the signal.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from .served import Served, served

IN_FLIGHT = 4
EXIT_WITHIN_S = 15.0  # a generous bound for a hang: the drain itself takes as long as the slowest body
REFUSED_WITHIN_S = 2.0


async def _open_slow_request(server: Served, n: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A product creation whose headers and first half of body are sent; the rest is returned, to send later."""
    body = orjson.dumps({"code": f"drained-{n}", "name": f"Drained product {n}"})
    head = (
        f"POST /v1/admin/products HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {server.admin_token}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    half = len(body) // 2
    writer.write(head + body[:half])
    await writer.drain()
    return reader, writer, body[half:]


async def _status_of(reader: asyncio.StreamReader) -> int:
    line = await asyncio.wait_for(reader.readline(), EXIT_WITHIN_S)
    assert line.startswith(b"HTTP/1.1 "), line
    return int(line.split()[1])


async def _refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


async def _wait_exit(process: subprocess.Popen[bytes], within_s: float) -> tuple[int, float]:
    began = time.monotonic()
    while process.poll() is None:
        assert time.monotonic() - began < within_s, "the gateway did not stop"
        await asyncio.sleep(0.02)
    return process.returncode, time.monotonic() - began


async def test_sigterm_lets_requests_in_flight_finish_refuses_new_ones_and_exits_0(
    licensor_store_url: str, tmp_path: Path
) -> None:
    workers = ("--workers", "2") if licensor_store_url.startswith("postgresql") else ()
    with served(licensor_store_url, tmp_path / "var", *workers) as server:
        slow = [await _open_slow_request(server, n) for n in range(IN_FLIGHT)]
        await asyncio.sleep(0.3)  # the handlers have started: they wait for the rest of their bodies
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        while not await _refused(server.port):  # new connections: refused while the old ones are still open
            assert time.monotonic() - signalled < REFUSED_WITHIN_S, server.log()
            await asyncio.sleep(0.05)
        refused_after = time.monotonic() - signalled
        assert server.process.poll() is None  # still draining: the bodies are not all sent
        await asyncio.sleep(0.5)  # a slow client: the rest of each body comes well after the signal
        for _, writer, rest in slow:
            writer.write(rest)
            await writer.drain()
        statuses = [await _status_of(reader) for reader, _, _ in slow]
        status, took = await _wait_exit(server.process, EXIT_WITHIN_S)
        for _, writer, _ in slow:
            writer.close()
        log = server.log()
    print(
        f"\n{IN_FLIGHT} requests in flight at SIGTERM: answered {statuses}; new connections refused "
        f"{refused_after:.2f} s after the signal; exited {status} {took:.2f} s after the last body was sent"
    )
    assert statuses == [201] * IN_FLIGHT, log
    assert status == 0, log
    assert log.count("POST /v1/admin/products 201") == IN_FLIGHT, log
    for sign in (" ERROR ", "Traceback", " 500 "):
        assert sign not in log, log


async def test_a_request_still_in_flight_after_the_drain_timeout_is_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LICENSOR_DRAIN_TIMEOUT_S", "1")
    with served(f"sqlite:///{tmp_path / 'licensor.db'}", tmp_path / "var") as server:
        reader, writer, _ = await _open_slow_request(server, 0)  # its body never ends
        await asyncio.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        status, took = await _wait_exit(server.process, EXIT_WITHIN_S)
        cut = await asyncio.wait_for(reader.read(), 5)  # the connection is closed, unanswered or with an error
        writer.close()
        log = server.log()
    print(f"\na body that never ends: the gateway exited {status} {took:.2f} s after SIGTERM (drain_timeout_s = 1)")
    assert status == 0, log
    assert 0.9 <= took < 1.0 + 5.0, took  # waited for the drain timeout, and not much beyond
    assert not cut.startswith(b"HTTP/1.1 2"), cut
    assert "Traceback" not in log, log
