"""Rate limits: per client address, per tenant, unknown license keys and tokens per address (guessing), activations
and deactivations per license (churn), portal sign-ins and mailed links (docs/configuration.md#rate-limits).

Each limit is a budget of ``count`` per ``period``, refilled evenly (the generic cell rate algorithm: a key keeps
one number, the time at which its budget is full again), kept in this process. With ``--workers N`` each worker
keeps ``1/N`` of every budget, so N workers together never let more through than the budget, however the
connections spread over them (a client whose requests all reach one worker is limited at ``1/N``). A refused
request is answered 429 ``RATE_LIMITED`` with ``Retry-After`` and the IETF ``RateLimit-Policy`` and ``RateLimit``
header fields (draft-ietf-httpapi-ratelimit-headers).

The client address is the connection's peer, unless that peer is one of the configured trusted proxies: then it is
the last address of ``X-Forwarded-For`` that is not a trusted proxy (the ones before it are the client's to write).
The budgets per address count an IPv6 client by its /64 (:func:`limit_key`).
"""

from __future__ import annotations

import ipaddress
import itertools
import math
from collections.abc import Callable
from contextvars import ContextVar

from aiohttp import web

from licensor.errors import RateLimitedError
from licensor.gateway.settings import RateLimit, Settings

__all__ = ["CLIENT_ADDRESS", "Budget", "RateLimits", "client_address", "limit_key"]

CLIENT_ADDRESS: ContextVar[str] = ContextVar("licensor_client_address", default="")
"""The client whose request is being served, as the budgets per address count it (:func:`limit_key`; "" outside a
request), set by the gateway's middleware for what counts per address deeper down (unknown keys and tokens)."""


class Budget:
    """At most ``quota`` takes per ``window_s`` per key, refilled evenly, for at most ``max_keys`` keys at once (an
    address that has not been seen for a whole window has its full budget, so it is forgotten first)."""

    def __init__(self, policy: str, limit: RateLimit, workers: int, clock: Callable[[], float], max_keys: int = 200_000) -> None:
        self.policy = policy
        self.quota = max(1, limit.count // workers)
        self.window_s = limit.period_s
        self.interval_s = limit.period_s / self.quota
        self._clock = clock
        self._full_at: dict[str, float] = {}
        self._max_keys = max_keys

    def take(self, key: str, what: str) -> None:
        """Use one of ``key``'s budget.

        :raises RateLimitedError: it is used up; ``what`` says what was refused."""
        now = self._clock()
        full_at = self._full_at_now(key, now) + self.interval_s
        if full_at - now > self.window_s:
            self._refuse(full_at - now - self.window_s, what)
        if len(self._full_at) >= self._max_keys and key not in self._full_at:
            self._forget(now)
        self._full_at[key] = full_at

    def check(self, key: str, what: str) -> None:
        """Refuse now if ``key``'s budget is used up, without using any of it.

        :raises RateLimitedError: it is used up."""
        now = self._clock()
        full_at = self._full_at_now(key, now) + self.interval_s
        if full_at - now > self.window_s:
            self._refuse(full_at - now - self.window_s, what)

    def give_back(self, key: str) -> None:
        """Return one :meth:`take` of ``key`` (it turned out not to count)."""
        if key in self._full_at:
            now = self._clock()
            self._full_at[key] = max(self._full_at_now(key, now) - self.interval_s, now)

    def _full_at_now(self, key: str, now: float) -> float:
        """When ``key``'s budget is full again, seen from ``now`` (``now`` when it is full). Never more than a window
        ahead: a clock set back (by NTP, or a test) gives a full budget rather than a lock-out as long as the jump."""
        full_at = self._full_at.get(key, now)
        return now if full_at < now or full_at > now + self.window_s else full_at

    def _refuse(self, wait_s: float, what: str) -> None:
        raise RateLimitedError(
            f"too many {what}: try again in {max(1, math.ceil(wait_s))} s",
            policy=self.policy,
            quota=self.quota,
            window_s=self.window_s,
            retry_after_s=wait_s,
        )

    def _forget(self, now: float) -> None:
        """Make room: first the keys whose budget is full again, then the oldest ones (in one pass: deleting the
        oldest one by one costs quadratic time in a dict)."""
        kept = {key: full_at for key, full_at in self._full_at.items() if full_at > now}
        excess = len(kept) - int(self._max_keys * 0.9)
        self._full_at = dict(itertools.islice(kept.items(), excess, None)) if excess > 0 else kept


class RateLimits:
    """The budgets of one gateway process (None: that limit is off)."""

    def __init__(self, settings: Settings, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.configure(settings)

    def configure(self, settings: Settings) -> None:
        """Take the limits of ``settings``, every budget full."""

        def budget(policy: str, limit: RateLimit | None) -> Budget | None:
            return None if limit is None else Budget(policy, limit, settings.workers, self._clock)

        self.address = budget("address", settings.rate_limit_address)
        self.tenant = budget("tenant", settings.rate_limit_tenant)
        self.key_failures = budget("key-failures", settings.rate_limit_key_failures)
        self.churn = budget("churn", settings.rate_limit_churn)
        self.sign_in = budget("sign-in", settings.rate_limit_sign_in)
        self.mail_links = budget("mail-links", settings.rate_limit_mail_links)
        self.trusted_networks = settings.trusted_networks

    def before_key_lookup(self) -> str:
        """Count a lookup of a license key or token as a failure of the address that asks, before it runs (so that
        concurrent guesses cannot all pass while the first are being looked up); :meth:`after_key_lookup` gives it
        back when the key is found, or the lookup fails. Returns the address counted ("" when none is). A lookup
        answered from the cache takes and gives back within one step of the event loop; one that reads the store
        holds its count for those milliseconds.

        :raises RateLimitedError: the address has guessed too many already."""
        address = CLIENT_ADDRESS.get()
        if self.key_failures is not None and address:
            self.key_failures.take(address, "unknown license keys or tokens from this address")
            return address
        return ""

    def after_key_lookup(self, counted: str, *, found: bool) -> None:
        if found and counted and self.key_failures is not None:
            self.key_failures.give_back(counted)


def limit_key(address: str) -> str:
    """What the budgets per address count ``address`` as: an IPv6 client by its /64 (one host or site holds a whole
    /64, and would otherwise get a budget per address of it), an IPv4-mapped one as its IPv4 address."""
    if ":" not in address:
        return address  # IPv4: the common case, without parsing
    try:
        parsed = ipaddress.IPv6Address(address.split("%", 1)[0])
    except ValueError:
        return address
    if parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(ipaddress.IPv6Network(f"{parsed}/64", strict=False))


def client_address(request: web.Request, trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> str:
    """The client's address: the peer's, or, when the peer is a ``trusted`` proxy, the last address of
    ``X-Forwarded-For`` that is not one (addresses a client wrote itself come before those its proxies added)."""
    peer = request.remote or ""
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    for hop in reversed(",".join(request.headers.getall("X-Forwarded-For", ())).split(",")):
        hop = hop.strip()
        if not hop:
            continue
        if not _is_trusted(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # not an address: the proxy's is the one we know
        peer = hop
    return peer


def _is_trusted(address: str, trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped  # a dual-stack listener's view of an IPv4 proxy
    return any(parsed in network for network in trusted)
