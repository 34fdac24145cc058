"""Talking to the gateway, written once for the synchronous and the asynchronous client.

What the client does (activate, check in, fetch keys, retry) is written as *flows*: generators that yield what
they need done (:class:`Send` a request, :class:`Sleep`, :data:`HOLD` the device's lock) and are sent back the
outcome. A driver runs a flow: :class:`SyncDriver` with ``httpx.Client`` and ``time.sleep``,
:class:`AsyncDriver` with ``httpx.AsyncClient`` and ``asyncio.sleep``. So both clients run the same code, and a
flow can be tested without a network.

Retries (:func:`exchange`): a request that may be repeated (it carries an ``Idempotency-Key``, or is a GET) is
sent again after a transport error, a timeout, a 429 or a 5xx answer, up to :attr:`RetryPolicy.attempts` times,
waiting an exponential backoff with full jitter, or the answer's ``Retry-After`` when that is longer (bounded
by :attr:`RetryPolicy.max_wait_s`). Proxies come from the environment (``HTTPS_PROXY``, ``HTTP_PROXY``,
``ALL_PROXY``, ``NO_PROXY``), as httpx reads them.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import httpx
import orjson

from licensor_client.errors import LicensorError
from licensor_client.state import DeviceLock

__all__ = [
    "HOLD",
    "AsyncDriver",
    "Call",
    "EventStreamParser",
    "Flow",
    "GatewayUnavailableError",
    "Reply",
    "RetryPolicy",
    "Send",
    "Sleep",
    "SyncDriver",
    "exchange",
]

T = TypeVar("T")
USER_AGENT = "licensor-client/0.1"
RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


class GatewayUnavailableError(LicensorError):
    """No usable answer from the gateway after every attempt: unreachable, timing out, or answering 5xx/429."""

    code = "GATEWAY_UNAVAILABLE"
    http_status = 503


@dataclass(frozen=True)
class Call:
    """One request: ``json`` is the body; ``token`` a bearer token (a product token)."""

    method: str
    path: str
    json: Any = None
    params: Mapping[str, str] | None = None
    idempotency_key: str | None = None
    token: str | None = None
    repeat: bool = False
    """Whether a POST without an Idempotency-Key may be sent again (one that changes nothing: a query)."""

    @property
    def repeatable(self) -> bool:
        return self.method == "GET" or self.idempotency_key is not None or self.repeat


@dataclass(frozen=True)
class Reply:
    """An answer within the gateway's contract: a JSON object (an error answer with ``error.code``)."""

    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def error_code(self) -> str:
        error = self.body.get("error")
        return str(error.get("code")) if isinstance(error, dict) else f"HTTP_{self.status}"

    @property
    def error_message(self) -> str:
        error = self.body.get("error")
        return str(error.get("message", "")) if isinstance(error, dict) else ""

    def date(self) -> float | None:
        """The answer's ``Date`` header (unsigned: good for correcting a request's time, never for trusting)."""
        try:
            return email.utils.parsedate_to_datetime(self.headers["date"]).timestamp()
        except (KeyError, TypeError, ValueError, IndexError):
            return None


class Unanswered(Exception):
    """No answer within the contract (the message names the cause, never the request)."""


@dataclass(frozen=True)
class Send:
    call: Call


@dataclass(frozen=True)
class Sleep:
    seconds: float


class _Hold:
    def __repr__(self) -> str:
        return "HOLD"


HOLD: Final = _Hold()
"""Take the device's lock (state directory) for the rest of the flow: no other process or thread of the program
runs a device operation meanwhile, so two of them never send competing check-ins."""

Effect = Send | Sleep | _Hold
Flow = Generator[Effect, Any, T]


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    """How many times a repeatable request is sent at most."""
    base_s: float = 0.5
    """The first backoff's ceiling; it doubles with each attempt ..."""
    cap_s: float = 20.0
    """... up to this."""
    max_wait_s: float = 60.0
    """The longest wait, also when ``Retry-After`` asks for more."""

    def wait(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        backoff = rng.uniform(0, min(self.cap_s, self.base_s * 2**attempt))  # full jitter: retries spread out
        return min(self.max_wait_s, max(backoff, retry_after or 0.0))


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date."""
    value = headers.get("retry-after")
    if value is None:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError):
        return None


def exchange(call: Call, server: str, policy: RetryPolicy, rng: random.Random) -> Flow[Reply]:
    """Send ``call`` until it is answered within the contract (2xx, or a 4xx error other than 408/425/429).

    :raises GatewayUnavailableError: every attempt failed (only one is made for a request that is not repeatable).
    """
    attempts = policy.attempts if call.repeatable else 1
    why = ""
    for attempt in range(attempts):
        outcome = yield Send(call)
        wait_at_least = None
        if isinstance(outcome, Reply):
            if outcome.status not in RETRYABLE:
                return outcome
            why = f"HTTP {outcome.status} {outcome.error_code}"
            wait_at_least = retry_after(outcome.headers, time.time())
        else:
            why = str(outcome)
        if attempt + 1 < attempts:
            yield Sleep(policy.wait(attempt, wait_at_least, rng))
    raise GatewayUnavailableError(f"no usable answer from the gateway at {server} after {attempts} attempt(s) ({why})")


def _reply(response: httpx.Response) -> Reply | Unanswered:
    try:
        body = orjson.loads(response.content) if response.content else {}
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict) or (response.status_code >= 400 and not isinstance(body.get("error"), dict)):
        if response.status_code in RETRYABLE:  # a proxy's or load balancer's page: still worth a retry
            return Reply(response.status_code, {}, response.headers)
        return Unanswered(f"HTTP {response.status_code} outside the gateway's contract")
    return Reply(response.status_code, body, response.headers)


def _request_args(call: Call) -> dict[str, Any]:
    headers = {"Accept": "application/json"}
    if call.idempotency_key is not None:
        headers["Idempotency-Key"] = call.idempotency_key
    if call.token is not None:
        headers["Authorization"] = f"Bearer {call.token}"
    arguments: dict[str, Any] = {"headers": headers, "params": dict(call.params) if call.params else None}
    if call.json is not None:
        headers["Content-Type"] = "application/json"
        arguments["content"] = orjson.dumps(call.json)
    return arguments


class EventStreamParser:
    """Server-sent events, line by line: :meth:`feed` returns an event's data when its blank line ends it."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        line = line.rstrip("\r")
        if not line:
            data, self._data = self._data, []
            return "\n".join(data) if data else None
        if line.startswith("data:"):
            self._data.append(line[5:].removeprefix(" "))
        return None  # comments (keep-alives), ids, event names and retry hints need no action here


class SyncDriver:
    """Runs flows with ``httpx.Client`` (proxies from the environment)."""

    def __init__(self, server: str, *, timeout_s: float, lock: DeviceLock, transport: httpx.BaseTransport | None = None) -> None:
        self.server = server
        self.lock = lock
        self.http = httpx.Client(
            base_url=server, timeout=timeout_s, trust_env=True, transport=transport, headers={"User-Agent": USER_AGENT}
        )

    def run(self, flow: Flow[T]) -> T:
        held = False
        outcome: Any = None
        try:
            while True:
                try:
                    effect = flow.send(outcome)
                except StopIteration as done:
                    result: T = done.value
                    return result
                outcome = None
                if isinstance(effect, Send):
                    outcome = self._send(effect.call)
                elif isinstance(effect, Sleep):
                    time.sleep(effect.seconds)
                elif not held:
                    self.lock.acquire()
                    held = True
        finally:
            flow.close()
            if held:
                self.lock.release()

    def _send(self, call: Call) -> Reply | Unanswered:
        try:
            return _reply(self.http.request(call.method, call.path, **_request_args(call)))
        except httpx.HTTPError as error:
            return Unanswered(type(error).__name__)  # its text may quote the request

    def close(self) -> None:
        self.http.close()


class AsyncDriver:
    """Runs flows with ``httpx.AsyncClient`` (proxies from the environment); each request bounded as a whole."""

    def __init__(
        self, server: str, *, timeout_s: float, lock: DeviceLock, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.server = server
        self.lock = lock
        self.timeout_s = timeout_s
        self.http = httpx.AsyncClient(
            base_url=server, timeout=timeout_s, trust_env=True, transport=transport, headers={"User-Agent": USER_AGENT}
        )

    async def run(self, flow: Flow[T]) -> T:
        held = False
        outcome: Any = None
        try:
            while True:
                try:
                    effect = flow.send(outcome)
                except StopIteration as done:
                    result: T = done.value
                    return result
                outcome = None
                if isinstance(effect, Send):
                    outcome = await self._send(effect.call)
                elif isinstance(effect, Sleep):
                    await asyncio.sleep(effect.seconds)
                elif not held:
                    await self._acquire()
                    held = True
        finally:
            flow.close()
            if held:
                self.lock.release()

    async def _acquire(self) -> None:
        """Take the device lock in a thread (its flock blocks); if cancelled meanwhile, let it go once taken."""
        taking = asyncio.ensure_future(asyncio.to_thread(self.lock.acquire))
        try:
            await asyncio.shield(taking)
        except asyncio.CancelledError:
            taking.add_done_callback(lambda done: None if done.cancelled() or done.exception() else self.lock.release())
            raise

    async def _send(self, call: Call) -> Reply | Unanswered:
        try:
            async with asyncio.timeout(self.timeout_s):
                return _reply(await self.http.request(call.method, call.path, **_request_args(call)))
        except (httpx.HTTPError, TimeoutError) as error:
            return Unanswered(type(error).__name__)

    async def aclose(self) -> None:
        await self.http.aclose()
