"""The gateway's metrics, in the Prometheus text format (docs/metrics.md lists every one).

One code path for one process and for ``licensor serve --workers N``: when ``PROMETHEUS_MULTIPROC_DIR`` was set
before prometheus-client was imported (``licensor serve`` sets it to a fresh private directory), every process
writes its values to files there and a scrape, answered by whichever worker accepts it, sums them all
(prometheus-client's multiprocess mode); otherwise the values live in this gateway's own registry.

What the hot path pays: a request adds to plain integers under its route, method and status (count, seconds,
one latency bucket), a check under its backend and code; :meth:`GatewayMetrics.flush` writes them into the
metrics about once a second and before every scrape (prometheus-client's own increments cost 1-3 µs each, a
histogram's observation more: per request, about 5 µs, 5-7 % of a check's server time). So a scrape sees its
own process's requests up to that moment and another worker's up to a second late; a worker killed outright
loses its last second of counts. What other parts already count in plain integers (the license cache, the
remembered answers, the update connections, the webhook attempts) is copied in at the same times; the webhook
backlog and the seats held are read from the store by a scrape.

Labels never hold a tenant, a license, a raw path or a client's address: their values come from bounded sets
(route templates, methods, statuses, verdict codes, backend names).

The route and who may scrape: :mod:`licensor.gateway.metrics_endpoint`.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from typing import Any

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TRANSACTION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
"""The route label of a request no route matched (404, 405): never its raw path."""
NO_BACKEND = "none"
"""The backend label of a verdict no backend gave (no license found)."""


class _Tally:
    """Requests of one route, method and status since the last flush: count, seconds, and count per bucket."""

    __slots__ = ("buckets", "count", "seconds")

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last: above every bound (+Inf)


def multiprocess_dir() -> str | None:
    """The directory the processes share their values in, if prometheus-client runs in multiprocess mode.

    The mode is fixed when prometheus-client is imported: what counts is how it was imported, not the
    environment now."""
    if getattr(values.ValueClass, "_multiprocess", False):
        return os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return None


class GatewayMetrics:
    """The metrics of one gateway process."""

    def __init__(self) -> None:
        # The *_created samples are noise here, and multiprocess mode has none: the same output either way.
        disable_created_metrics()
        self.directory = multiprocess_dir()
        # Multiprocess mode: the values are in files, read by a collector at each scrape, so the metrics are not
        # registered anywhere; otherwise they belong to this gateway's own registry (tests run several gateways
        # in one process, and each must count only its own requests).
        own = None if self.directory else CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "licensor_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ("route", "method", "status"),
            registry=own,
        )
        self.request_duration = Histogram(
            "licensor_http_request_duration_seconds",
            "Time from the request reaching the gateway to its answer (an update stream: its whole connection).",
            ("route", "method"),
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        self.verdicts = Counter(
            "licensor_check_verdicts",
            "Verdicts of POST /v1/check, by the backend that gave them and their code.",
            ("backend", "code"),
            registry=own,
        )
        self.cache_hits = Counter("licensor_license_cache_hits", "License cache lookups answered from memory.", registry=own)
        self.cache_misses = Counter("licensor_license_cache_misses", "License cache lookups that read the store.", registry=own)
        self.answers_reused = Counter(
            "licensor_check_answers_reused", "Checks answered with the remembered answer to an identical repeat.", registry=own
        )
        self.update_connections = Gauge(
            "licensor_update_connections",
            "Update streams (GET /v1/updates) open now.",
            registry=own,
            multiprocess_mode="livesum",
        )
        self.webhook_attempts = Counter(
            "licensor_webhook_attempts",
            "Webhook delivery attempts, by outcome (delivered: a 2xx answer; failed: anything else).",
            ("outcome",),
            registry=own,
        )
        self.webhook_deliveries = Counter(
            "licensor_webhook_deliveries",
            "Webhook deliveries that reached a final state: delivered, or failed (given up after the retry window).",
            ("state",),
            registry=own,
        )
        self.webhook_backlog = Gauge(
            "licensor_webhook_backlog",
            "Webhook deliveries waiting to be delivered (the outbox), read from the store at each scrape.",
            registry=own,
            multiprocess_mode="mostrecent",
        )
        self.seats_held = Gauge(
            "licensor_seats_held",
            "Seats held now by the backend of their license's policy (activations holding one, live leases), read "
            "from the store at most every 30 s.",
            ("backend",),
            registry=own,
            multiprocess_mode="mostrecent",
        )
        self.store_transaction = Histogram(
            "licensor_store_transaction_seconds",
            "Time of the store's write transactions, from their start to their commit or rollback.",
            buckets=TRANSACTION_BUCKETS,
            registry=own,
        )
        self.events_chained = Counter(
            "licensor_events_chained", "Events linked into their tenant's hash chain by this process.", registry=own
        )
        self.event_chain_wait = Histogram(
            "licensor_event_chain_wait_seconds",
            "How long the oldest event of each linking waited, from its append to being linked into the chain.",
            buckets=TRANSACTION_BUCKETS,
            registry=own,
        )
        self._exposed = own or CollectorRegistry()
        if self.directory is not None:
            multiprocess.MultiProcessCollector(self._exposed, path=self.directory)
        self._requests: dict[tuple[str, str, int], _Tally] = {}  # by (route, method, status), since the last flush
        self._verdicts: dict[tuple[str, str], int] = {}  # by (backend, code), since the last flush
        self._copied: dict[str, int] = {}
        self.seats_read_at: float | None = None  # time.monotonic() of the last read of the seats held

    # --- the hot path: plain integers, written to the metrics by flush() -------------------------------------
    def observe_request(self, request: web.Request, status: int, seconds: float) -> None:
        """Count one answered request under its route template (never its raw path)."""
        resource = request.match_info.route.resource
        method = request.method if request.method in METHODS else "OTHER"
        key = (resource.canonical if resource is not None else UNMATCHED, method, status)
        tally = self._requests.get(key)
        if tally is None:
            tally = self._requests[key] = _Tally()
        tally.count += 1
        tally.seconds += seconds
        tally.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1  # the first bucket whose bound is >= seconds

    def count_verdict(self, backend: str | None, code: str) -> None:
        """Count one verdict of a check (``backend`` None: no license was found)."""
        key = (backend or NO_BACKEND, code)
        self._verdicts[key] = self._verdicts.get(key, 0) + 1

    def flush(self) -> None:
        """Write what the hot path counted since the last flush into the metrics (in multiprocess mode, into
        this process's file, where a scrape by any worker reads it)."""
        requests, self._requests = self._requests, {}
        verdicts, self._verdicts = self._verdicts, {}
        for (route, method, status), tally in requests.items():
            self.requests.labels(route, method, str(status)).inc(tally.count)
            histogram = self.request_duration.labels(route, method)
            # prometheus-client observes one value at a time; these are the two values observe() adds to (its
            # sum and one bucket), added to once per flush instead of once per request.
            histogram._sum.inc(tally.seconds)
            for bucket, count in enumerate(tally.buckets):
                if count:
                    histogram._buckets[bucket].inc(count)
        for (backend, code), count in verdicts.items():
            self.verdicts.labels(backend, code).inc(count)

    def observe_chaining(self, count: int, waited: float) -> None:
        self.events_chained.inc(count)
        self.event_chain_wait.observe(waited)

    # --- copied from what other parts count ---------------------------------------------------------------
    def copy(self, name: str, current: int, counter: Any) -> None:
        """Add to ``counter`` what the count ``name``, kept elsewhere in plain integers, grew by since the last copy."""
        delta = current - self._copied.get(name, 0)
        if delta > 0:
            counter.inc(delta)
        self._copied[name] = current

    def render(self) -> bytes:
        """The text of a scrape: every process's values in multiprocess mode, else this gateway's."""
        return generate_latest(self._exposed)
