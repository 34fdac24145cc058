"""Hostile input against a live ``licensor serve``: every case answered quickly with a 4xx and a stable code, or the
connection closed, never a 5xx or a hang; slow clients (slowloris) are cut at the configured timeouts while normal
clients keep being served.

The requests go over plain sockets (an HTTP client library would refuse to send most of them) to ``licensor
serve`` on 127.0.0.1, with its header and body timeouts shortened to :data:`IDLE_TIMEOUT_S` and
:data:`BODY_TIMEOUT_S` (``--idle-timeout-s``, ``--body-timeout-s``; production defaults 75 s and 30 s). SQLite:
nothing here reaches the store beyond reading one license (tests/central/test_hostile_input.py runs the parser's
cases in-process on both stores). Run with ``-s`` for the table of status, code and time per case
(docs/architecture.md, "Faults and hostile input").
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from .served import Served, served

pytestmark = pytest.mark.server

IDLE_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
ANSWER_LIMIT_S = 5.0  # a case not answered (nor closed) within this is a hang
QUICK_S = 1.0  # what "answered quickly" means for a case that does not wait for a timeout
SLOW_CLIENTS = 200  # slowloris connections at once (50 of each kind)
NORMAL_LIMIT_S = 1.0  # the longest a normal client's request may take meanwhile
MB = 1024 * 1024


@dataclass
class Outcome:
    status: int | None  # None: the connection was closed without an answer
    code: str | None
    seconds: float


Sender = Callable[[asyncio.StreamWriter], Awaitable[None]]


def sends(data: bytes) -> Sender:
    async def send(writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()

    return send


def trickles(data: bytes, *, every_s: float, first: bytes = b"", then_stop: bool = False) -> Sender:
    """Sends ``first`` at once, then ``data`` one byte every ``every_s``; then, if ``then_stop``, nothing more while the
    connection stays open."""

    async def send(writer: asyncio.StreamWriter) -> None:
        writer.write(first)
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every_s)
        if then_stop:
            await asyncio.sleep(3600)

    return send


async def exchange(port: int, send: Sender, limit_s: float = ANSWER_LIMIT_S) -> Outcome:
    """Open a connection, run ``send`` on it while waiting for the answer: its status and error code, or closed."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def sending() -> None:
        try:
            await send(writer)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the gateway answered and closed before everything was sent

    sender = asyncio.create_task(sending())
    try:
        async with asyncio.timeout(limit_s):
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return Outcome(None, None, time.monotonic() - started)
            seconds = time.monotonic() - started
            lines = head.decode("latin-1").split("\r\n")
            headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
    except TimeoutError:
        raise AssertionError(f"no answer and no close within {limit_s} s: a hang") from None
    finally:
        sender.cancel()
        writer.close()
    status = int(lines[0].split()[1])
    code = None
    if status >= 400:
        assert headers["content-type"].startswith("application/json"), head
        error = json.loads(body)["error"]
        assert set(error) == {"code", "message"} and error["code"].isupper(), error
        code = error["code"]
    return Outcome(status, code, seconds)


def request(line: bytes, *headers: bytes, body: bytes | None = None, length: int | None = None) -> bytes:
    """A request: ``line``, a Host, ``headers``, a JSON Content-Type and Content-Length when there is a body."""
    fields = [line, b"Host: 127.0.0.1", *headers]
    if body is not None or length is not None:
        fields += [b"Content-Type: application/json", b"Content-Length: %d" % (len(body or b"") if length is None else length)]
    return b"\r\n".join(fields) + b"\r\n\r\n" + (body or b"")


def chunked(line: bytes, chunk: bytes, count: int) -> bytes:
    head = b"\r\n".join([line, b"Host: 127.0.0.1", b"Content-Type: application/json", b"Transfer-Encoding: chunked"])
    return head + b"\r\n\r\n" + (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * count + b"0\r\n\r\n"


def hostile_cases(tenant_id: str, token: str) -> dict[str, tuple[Sender, tuple[int | None, str | None]]]:
    """Case -> (what is sent, the expected (status, code)); a status of None: the connection is closed."""
    check = b"POST /v1/check HTTP/1.1"
    admin = b"POST /v1/admin/products HTTP/1.1"
    bearer = b"Authorization: Bearer " + token.encode()
    valid = json.dumps({"tenant": tenant_id, "product": "app", "license_key": "7C03-FGRD-4E3B-Z9DP-14HA-9TJE-SJJW"}).encode()
    return {
        "10 MB body, Content-Length": (
            sends(request(check, body=b"{" + b" " * (10 * MB - 2) + b"}")),
            (413, "PAYLOAD_TOO_LARGE"),
        ),
        "10 MB body, chunked": (sends(chunked(check, b" " * MB, 10)), (413, "PAYLOAD_TOO_LARGE")),
        "10 MB admin body": (sends(request(admin, bearer, body=b" " * (10 * MB))), (413, "PAYLOAD_TOO_LARGE")),
        "JSON arrays 10,000 deep": (sends(request(check, body=b"[" * 10_000 + b"]" * 10_000)), (400, "TOO_MANY_VALUES")),
        "JSON objects 10,000 deep": (
            sends(request(admin, bearer, body=b'{"a":' * 10_000 + b"1" + b"}" * 10_000)),
            (400, "TOO_MANY_VALUES"),
        ),
        "JSON 1,000 deep (under the count)": (sends(request(check, body=b"[" * 1000 + b"]" * 1000)), (400, "NESTING_TOO_DEEP")),
        "invalid UTF-8 in the body": (
            sends(request(check, body=valid.replace(b"app", b"\xff\xfe\xc3("))),
            (400, "MALFORMED_JSON"),
        ),
        "invalid UTF-8 in a header": (
            sends(request(b"GET /v1/admin/products HTTP/1.1", bearer, b"X-Note: \xff\xfe\xc3(")),
            (200, None),  # a header the gateway does not read is not read
        ),
        "invalid UTF-8 in Authorization": (
            sends(request(b"GET /v1/admin/products HTTP/1.1", b"Authorization: Bearer \xff\xfe\xc3(")),
            (401, "TOKEN_MALFORMED"),
        ),
        "invalid UTF-8 in Idempotency-Key": (
            sends(request(admin, bearer, b"Idempotency-Key: \xff\xfe", body=b'{"code":"a","name":"b"}')),
            (400, "INVALID_IDEMPOTENCY_KEY"),
        ),
        "invalid UTF-8 in the path, raw": (
            sends(request(b"GET /v1/admin/products/\xc3( HTTP/1.1", bearer)),
            (400, "INVALID_REQUEST_TARGET"),
        ),
        "invalid UTF-8 in the path, %-encoded": (
            sends(request(b"GET /v1/admin/products/%C3%28%FF HTTP/1.1", bearer)),
            (404, "NOT_FOUND"),
        ),
        "invalid UTF-8 in the query, raw": (
            sends(request(b"GET /v1/admin/customers?email=\xff\xfe HTTP/1.1", bearer)),
            (400, "INVALID_REQUEST_TARGET"),
        ),
        "invalid UTF-8 in the query, %-encoded": (
            sends(request(b"GET /v1/admin/customers?email=%FF%FE HTTP/1.1", bearer)),
            (400, "INVALID_PARAMETER"),
        ),
        "100 kB header": (sends(request(b"GET /healthz HTTP/1.1", b"X-Big: " + b"a" * 100_000)), (431, "HEADER_TOO_LARGE")),
        "100 kB of headers": (
            sends(request(b"GET /healthz HTTP/1.1", *(b"X-%d: %s" % (n, b"a" * 90) for n in range(1000)))),
            (431, "TOO_MANY_HEADERS"),
        ),
        "100 kB request line": (sends(request(b"GET /healthz?" + b"a" * 100_000 + b" HTTP/1.1")), (414, "REQUEST_LINE_TOO_LONG")),
    }


def slow_cases(tenant_id: str) -> dict[str, tuple[Sender, tuple[int | None, str | None]]]:
    """Slowloris: case -> (what is sent, the expected (status, code)); these take their timeout."""
    check = b"POST /v1/check HTTP/1.1"
    body = json.dumps({"tenant": tenant_id, "product": "app", "license_key": "7C03-FGRD-4E3B-Z9DP-14HA-9TJE-SJJW"}).encode()
    return {
        "silent connection": (trickles(b"", every_s=0, then_stop=True), (None, None)),
        "header a byte at a time": (trickles(request(b"GET /healthz HTTP/1.1") * 10, every_s=0.05), (None, None)),
        "body trickled": (
            trickles(body, first=request(check, length=len(body)), every_s=0.02),
            (408, "REQUEST_TIMEOUT"),
        ),
        "Content-Length, then nothing": (
            sends(request(check, length=len(body)) + body[:10]),
            (408, "REQUEST_TIMEOUT"),
        ),
    }


def _get(server: Served, path: str) -> Any:
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    with urllib.request.urlopen(urllib.request.Request(server.url + path, headers=headers), timeout=10) as answer:
        return json.loads(answer.read())


def _table(rows: list[tuple[str, Outcome]]) -> str:
    lines = ["| case | status | code | time |", "| --- | --- | --- | --- |"]
    for name, outcome in rows:
        status = "closed" if outcome.status is None else str(outcome.status)
        lines.append(f"| {name} | {status} | {outcome.code or '—'} | {outcome.seconds * 1000:.0f} ms |")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    data = tmp_path_factory.mktemp("hostile")
    timeouts = ("--idle-timeout-s", str(IDLE_TIMEOUT_S), "--body-timeout-s", str(BODY_TIMEOUT_S))
    with served(f"sqlite:///{data}/licensor.db", data, *timeouts) as live:
        yield live
    assert "Traceback" not in live.log(), live.log()[-3000:]


async def test_every_hostile_request_is_a_quick_4xx_with_its_code_or_closed(server: Served) -> None:
    tenant_id = _get(server, "/v1/admin/tenant")["id"]
    rows: list[tuple[str, Outcome]] = []
    mismatched = []
    for name, (send, expected) in {**hostile_cases(tenant_id, server.admin_token), **slow_cases(tenant_id)}.items():
        outcome = await exchange(server.port, send)
        rows.append((name, outcome))
        if (outcome.status, outcome.code) != expected:
            mismatched.append(f"{name}: {(outcome.status, outcome.code)}, expected {expected}")
    print(f"\nhostile input against licensor serve (idle_timeout_s {IDLE_TIMEOUT_S:g}, body_timeout_s {BODY_TIMEOUT_S:g}):")
    print(_table(rows))
    assert not mismatched, "\n".join(mismatched)
    slow = set(slow_cases(tenant_id))
    for name, outcome in rows:
        limit = (IDLE_TIMEOUT_S + BODY_TIMEOUT_S + 1.5) if name in slow else QUICK_S
        assert outcome.seconds < limit, f"{name}: answered in {outcome.seconds:.2f} s, over {limit:g} s"
    # The gateway is unharmed.
    assert _get(server, "/healthz")["status"] == "ok"


async def test_normal_clients_are_served_while_many_slow_clients_hold_connections(server: Served) -> None:
    """SLOW_CLIENTS slowloris connections at once (each kind of :func:`slow_cases`), while a normal client checks
    over and over: every normal request answered within NORMAL_LIMIT_S, every slow connection cut at its timeout."""
    tenant_id = _get(server, "/v1/admin/tenant")["id"]
    kinds = list(slow_cases(tenant_id).values())
    slow = [asyncio.create_task(exchange(server.port, kinds[n % len(kinds)][0])) for n in range(SLOW_CLIENTS)]
    check = request(
        b"POST /v1/check HTTP/1.1", body=json.dumps({"tenant": tenant_id, "product": "app", "license_key": "X"}).encode()
    )
    normal: list[Outcome] = []
    started = time.monotonic()
    while not all(task.done() for task in slow) and time.monotonic() - started < ANSWER_LIMIT_S + 2:  # bounded
        for data in (request(b"GET /healthz HTTP/1.1"), check):
            normal.append(await exchange(server.port, sends(data), limit_s=NORMAL_LIMIT_S + 1))
        await asyncio.sleep(0.02)
    outcomes = await asyncio.gather(*slow)
    worst = max(outcome.seconds for outcome in normal)
    print(
        f"\n{SLOW_CLIENTS} slow clients: cut within {max(o.seconds for o in outcomes):.2f} s; meanwhile {len(normal)} "
        f"normal requests, the slowest answered in {worst * 1000:.0f} ms"
    )
    assert len(normal) >= 20, len(normal)
    assert {(o.status, o.code) for o in normal} == {(200, None), (422, "LICENSE_KEY_MALFORMED")}, normal
    assert worst < NORMAL_LIMIT_S, worst
    expected = {expected for _, expected in kinds}
    assert {(o.status, o.code) for o in outcomes} <= expected, outcomes
    assert max(o.seconds for o in outcomes) < IDLE_TIMEOUT_S + BODY_TIMEOUT_S + 2.5
