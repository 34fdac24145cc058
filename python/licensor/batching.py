"""Device-signed tokens verified in batches when they arrive in bursts, one by one when they do not.

Each request waiting for its signature joins a queue, drained at the event loop's next turn (``loop.call_soon``,
no timer): a request that arrives alone, or with a few others, is verified at once. A burst reaches the gateway
in waves a few milliseconds apart, so when the drain finds many waiting (:data:`GATHER_FROM`), it looks again
every :data:`GATHER_STEP_S` while the queue still grows, for at most :data:`GATHER_MAX_S`, and then verifies
them together: the core's batch verification costs about half as much per signature from a few hundred
signatures on, and more than one by one below about a hundred. Tokens here are self-keyed: their key id is the
signer's base64url public key (``dv1``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from licensor_client.activation import device_public_key

from licensor import _impl as core
from licensor.errors import TokenError, UnknownKeyError

MAX_BATCH = 1024
"""The most tokens verified in one batch (a larger burst is drained in several)."""
GATHER_FROM = 16
"""A drain that finds this many tokens waiting is in a burst: it waits for the rest of it."""
GATHER_STEP_S = 0.002
GATHER_MAX_S = 0.050
"""No token waits longer than this for others to join its batch (the gateway takes about 40 µs of its loop per
request before it queues its token, so a burst of 1,000 needs this long to be queued whole)."""


@dataclass
class BatchStats:
    """How much verification work was done: tokens, core calls, and the thread CPU time spent in them."""

    tokens: int = 0
    calls: int = 0
    cpu_ns: int = 0


class SelfKeyedTokenReader:
    """Verifies tokens of one kind whose key id is the signer's public key; batches bursts when ``batching``."""

    def __init__(self, kind: str, *, batching: bool = True, max_batch: int = MAX_BATCH) -> None:
        self.kind = kind
        self.batching = batching
        self.max_batch = max_batch
        self.stats = BatchStats()
        self._queue: list[tuple[str, str, bytes, asyncio.Future[bytes]]] = []
        self._scheduled = False
        self._first_queued_at = 0.0  # loop time the oldest waiting token arrived
        self._seen_waiting = 0  # how many were waiting at the drain's last look

    async def read(self, token: str) -> bytes:
        """The payload of ``token`` once its signature verifies under the key its key id names.

        :raises licensor.errors.TokenError: as :func:`licensor._core.decode_token`.
        """
        kid = token.split(".", 2)[1] if token.count(".") == 3 else ""
        public_key = device_public_key(kid)
        if public_key is None:
            # A malformed token raises its own MalformedTokenError; a well-formed one names no usable key.
            core.decode_token(token, self.kind, {})
            raise UnknownKeyError("the token's key id is not a device public key")
        if not self.batching:
            started = time.thread_time_ns()
            try:
                return core.decode_token(token, self.kind, {kid: public_key})
            finally:
                self._count(1, time.thread_time_ns() - started)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        if not self._queue:
            self._first_queued_at = loop.time()
        self._queue.append((token, kid, public_key, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._drain, loop)
        return await future

    def _count(self, tokens: int, cpu_ns: int) -> None:
        self.stats.tokens += tokens
        self.stats.calls += 1
        self.stats.cpu_ns += cpu_ns

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        waiting = len(self._queue)
        if (
            GATHER_FROM <= waiting < self.max_batch
            and waiting > self._seen_waiting
            and loop.time() - self._first_queued_at < GATHER_MAX_S
        ):
            self._seen_waiting = waiting  # still growing: a burst is arriving
            loop.call_later(GATHER_STEP_S, self._drain, loop)
            return
        self._scheduled, self._seen_waiting = False, 0
        while self._queue:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            tokens = [token for token, _, _, _ in batch]
            keys = {kid: public_key for _, kid, public_key, _ in batch}  # each kid names its own key: no clash
            started = time.thread_time_ns()
            if len(batch) == 1:
                try:
                    results: list[bytes | TokenError] = [core.decode_token(tokens[0], self.kind, keys)]
                except TokenError as error:
                    results = [error]
            else:
                results = core.decode_tokens(tokens, self.kind, keys)
            self._count(len(batch), time.thread_time_ns() - started)
            for (_, _, _, future), result in zip(batch, results, strict=True):
                if future.done():  # the request was cancelled (its client went away)
                    continue
                if isinstance(result, TokenError):
                    future.set_exception(result)
                else:
                    future.set_result(result)
