"""The gateway's metrics, in the Prometheus text format (docs/metrics.md lists every one).

One code path for one process and for ``licensor serve --workers N``: when ``PROMETHEUS_MULTIPROC_DIR`` was set
before prometheus-client was imported (``licensor serve`` sets it to a fresh private directory), every process
writes its values to files there and a scrape, answered by whichever worker accepts it, sums them all
(prometheus-client's multiprocess mode); otherwise the values live in this gateway's own registry.

What the hot path pays: a request adds one dict lookup, a counter increment and a histogram observation (about
3 µs in multiprocess mode); a check adds a counter increment. What other parts already count in plain integers
(the license cache, the remembered answers, the update connections, the webhook attempts) is copied into the
metrics about once a second and before every scrape; the webhook backlog and the seats held are read from the
store by a scrape. Labels never hold a tenant, a license, a raw path or a
client's address: their values come from bounded sets (route templates, verdict codes, backend names).

The route and who may scrape: :mod:`licensor.gateway.metrics_endpoint`.
"""

from __future__ import annotations

import logging
import os
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

log = logging.getLogger("licensor.gateway")

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TRANSACTION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
"""The route label of a request no route matched (404, 405): never its raw path."""
NO_BACKEND = "none"
"""The backend label of a verdict no backend gave (no license found)."""


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
        self._exposed = own or CollectorRegistry()
        if self.directory is not None:
            multiprocess.MultiProcessCollector(self._exposed, path=self.directory)
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._verdicts: dict[tuple[str, str], Any] = {}
        self._copied: dict[str, int] = {}
        self.seats_read_at: float | None = None  # time.monotonic() of the last read of the seats held

    # --- the hot path -----------------------------------------------------------------------------------
    def observe_request(self, request: web.Request, status: int, seconds: float) -> None:
        """Count one answered request under its route template (never its raw path)."""
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else UNMATCHED
        method = request.method if request.method in METHODS else "OTHER"
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(route, method, str(status)),
                self.request_duration.labels(route, method),
            )
        children[0].inc()
        children[1].observe(seconds)

    def count_verdict(self, backend: str | None, code: str) -> None:
        """Count one verdict of a check (``backend`` None: no license was found)."""
        key = (backend or NO_BACKEND, code)
        child = self._verdicts.get(key)
        if child is None:
            child = self._verdicts[key] = self.verdicts.labels(*key)
        child.inc()

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
