"""Requests sent at once, for concurrency tests."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from licensor.testing.drivers import Answer, check_error_contract


# --- requests sent at once, for concurrency tests --------------------------------------------------------
@dataclass
class Sent:
    """One request of :func:`post_json` or :func:`send_at_once`: what it was (``action``), where it went, its
    answer, and when it left and was answered (``time.monotonic()``)."""

    action: str
    url: str
    answer: Answer
    started: float
    done: float

    @property
    def seconds(self) -> float:
        return self.done - self.started


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    path: str,
    body: Any,
    *,
    action: str = "",
    idempotent: bool = False,
    extra_headers: Mapping[str, str] | None = None,
) -> Sent:
    """POST ``body`` as JSON (with an Idempotency-Key of its own if ``idempotent``, as the SDK sends them, and
    ``extra_headers``); a transport failure is an answer of status 0 (reported, never raised)."""
    started = time.monotonic()
    headers = {"Content-Type": "application/json"}
    if idempotent:
        headers["Idempotency-Key"] = f"test-{secrets.token_urlsafe(18)}"
    headers.update(extra_headers or {})
    try:
        async with session.post(url + path, data=orjson.dumps(body), headers=headers) as response:
            text = await response.text()
            parsed = orjson.loads(text) if text and response.content_type == "application/json" else None
            answer = Answer(response.status, parsed, response.headers, text)
    except (TimeoutError, aiohttp.ClientError) as error:
        answer = Answer(0, None, {}, f"{type(error).__name__}: {error}")
    return Sent(action or path, url, answer, started, time.monotonic())


def open_client(connections: int) -> aiohttp.ClientSession:
    """A client session allowing ``connections`` requests in flight at once (aiohttp's default is 100 in all)."""
    connector = aiohttp.TCPConnector(limit=connections + 16, limit_per_host=0)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60, connect=10))


Job = tuple[str, str, Any] | tuple[str, str, Any, Mapping[str, str]]
"""One request of :func:`send_at_once`: (base URL, path, JSON body), and headers of its own if any."""


async def send_at_once(jobs: Sequence[Job], *, idempotent: bool = False) -> tuple[list[Sent], float]:
    """POST every job at once: the answers in order, and the wall time of the burst.

    The client runs in a thread with an event loop of its own: sharing an in-process gateway's loop, it would
    starve that gateway, which would then answer only after another process had served the whole race. Its
    connections are opened first (one per request, on ``/healthz``), so the requests leave together."""

    async def send() -> tuple[list[Sent], float]:
        async with open_client(len(jobs)) as session:

            async def open_connection(url: str) -> None:
                async with session.get(f"{url}/healthz") as answer:
                    await answer.read()
                    assert answer.status == 200

            await asyncio.gather(*(open_connection(job[0]) for job in jobs))
            started = time.monotonic()
            sent = await asyncio.gather(
                *(
                    post_json(
                        session, job[0], job[1], job[2], idempotent=idempotent, extra_headers=job[3] if len(job) > 3 else None
                    )
                    for job in jobs
                )
            )
            return list(sent), time.monotonic() - started

    return await asyncio.to_thread(asyncio.run, send())


def no_server_errors(sent: list[Sent]) -> None:
    """No 5xx and no transport failure (listed precisely), and every error in the error format."""
    failed = [
        (s.action, s.url, s.answer.status, s.answer.text[:300]) for s in sent if s.answer.status >= 500 or s.answer.status == 0
    ]
    assert not failed, f"{len(failed)} of {len(sent)} requests failed on the server or the wire, e.g. {failed[:5]}"
    for s in sent:
        check_error_contract(s.answer)
