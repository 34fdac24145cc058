"""Fixtures of both suites, tests/ and benches/, and what each pass of ``make test`` runs.

``core`` runs a test or benchmark once per core implementation this process offers (see
``licensor._impl``): both the native ``rust`` and the pure ``python`` one when the native module is loaded,
only ``python`` with ``LICENSOR_PURE_PYTHON=1``. ``LICENSOR_TEST_CORES`` (comma-separated) narrows that:
``make test``'s native pass sets it to ``rust``, since its pure-Python pass runs the same tests on ``python``.

``--twin-pass`` is ``make test``'s pure-Python pass: it runs only what can turn out differently on the
pure-Python twin of the core (see ``pytest_collection_modifyitems``); ``make coverage-proof`` shows that
it reaches every line of the twin and of its callers that the whole suite reaches.
"""

from __future__ import annotations

import os
from types import ModuleType

import pytest
from licensor import _impl

# The plugin author kit's fixtures, which the suite uses too, come from licensor's pytest11 entry point.


def pytest_sessionstart(session: pytest.Session) -> None:
    from licensor.testing import check_expected_implementation  # imported here: pytest rewrites the plugin's asserts

    try:
        check_expected_implementation()
    except RuntimeError as wrong_core:
        raise pytest.UsageError(str(wrong_core)) from None


def _test_cores() -> list[str]:
    offered = _impl.implementations()
    chosen = [name for name in os.environ.get("LICENSOR_TEST_CORES", ",".join(offered)).split(",") if name]
    unknown = sorted(set(chosen) - set(offered))
    if unknown:
        raise pytest.UsageError(
            f"LICENSOR_TEST_CORES names cores this process does not offer: {unknown} (offered: {sorted(offered)})"
        )
    return sorted(chosen)


@pytest.fixture(params=_test_cores(), ids=lambda name: name)
def core(request: pytest.FixtureRequest) -> ModuleType:
    """One core implementation module (``licensor._core`` or ``licensor._fallback``)."""
    return _impl.implementations()[request.param]


# What needs a server process: a store (SQLite file or PostgreSQL), a gateway, or `licensor serve`. `make check`
# runs everything else, for the quick loop while working.
_SERVER_FIXTURES = frozenset(
    {
        "licensor_store_url",
        "licensor_postgres",
        "licensor_postgres_url",
        "licensor_gateway",
        "licensor_fleet",
        "licensor_second_process",
    }
)
_SERVER_MODULES = frozenset(
    {"test_cli.py", "test_schemathesis.py", "test_bench_goals.py", "test_bench_writes.py"}
)  # start servers of their own


# The twin pass (--twin-pass) leaves out the PostgreSQL runs (the core never touches storage: the SQLite run of
# the same test reaches the same core code; the native pass runs both), except those of two gateway processes
# sharing one database (the only way two cores answer for the same licenses at once), and these modules, whose
# outcome cannot depend on the core: why, for each.
TWIN_PASS_LEAVES_OUT = {
    "tests/store/": "the stores: SQL, migrations, transactions, the event chain (hashed with hashlib, not the core)",
    "tests/central/test_catalog.py": "products, features, releases, policies, customers: CRUD and pagination",
    "tests/commerce/test_signatures.py": "the shops' HMAC signature schemes (hashlib and hmac, not the core)",
    "tests/portal/": "the portal's pages, sessions and forms (what it hands over is signed by the backends: both cores)",
    "tests/commerce/test_orders.py": "order intake: HMAC signatures and store effects (the update it signs is the update tests')",
    "tests/client/test_distribution.py": "the client's wheel in a clean virtualenv (the client never loads the server's core)",
    "tests/gateway/test_update_connections.py": (
        "what idle update connections cost (memory, CPU per connection); the updates pushed are signed as in "
        "tests/client/test_client_updates.py, which this pass runs"
    ),
    "tests/gateway/test_settings.py": "the configuration: TOML, environment and flags, licensor config show",
    "tests/gateway/test_rate_limits.py": "rate limits: budgets, client addresses and 429s (the checks are unsigned)",
    "tests/gateway/test_metrics.py": "what /metrics counts, /readyz and the JSON logs",
    "tests/gateway/test_metrics_serve.py": "/metrics summed over the workers of licensor serve",
    "tests/test_deploy.py": "the operator's guide and its example files",
    "tests/test_packaging.py": "the wheels and what they declare; the gateway installed from them runs in its own virtualenv",
    "tests/client/test_machine.py": "the client's fingerprint readers",
    "tests/client/test_state.py": "the client's state directory and trusted clock",
    "tests/central/test_errors.py": "the error answers of the HTTP, JSON and schema layers",
    "tests/central/test_hostile_input.py": "hostile bodies and headers, refused before any token is read",
    "tests/central/test_idempotency.py": "replayed and conflicting admin requests",
    "tests/central/test_openapi.py": "the OpenAPI document",
    "tests/gateway/test_schema.py": "licensor.schema's validation and strict JSON",
    "tests/gateway/test_serve.py": "licensor serve's supervisor: shared socket, restarts, signals, disconnects",
    "tests/gateway/test_full_disk.py": "SQLite on a full disk: the store's refusals and the admin API (no signing)",
    "tests/gateway/test_hostile_serve.py": "hostile bytes, slow clients and timeouts at the HTTP layer (unsigned answers)",
    "tests/gateway/test_drain.py": "licensor serve stopped by SIGTERM: requests in flight drained, new connections refused",
    "tests/gateway/test_seat_races.py": "seats and quotas taken by 1,000 requests at once across workers",
    "tests/gateway/test_hosts.py": "changes seen across 3 gateway processes on one database (LISTEN/NOTIFY, caches)",
    "tests/gateway/test_failover.py": "PostgreSQL stopped hard, restarted or failed over under load (PostgreSQL only)",
    "tests/plugins/test_plugins.py": "finding, loading and refusing backend plugins",
    "tests/test_verdict.py": "verdict codes and their texts",
    "plugins/licensor-cloud/tests/test_cloud_retention.py": "pruning by age (the heartbeats' signing is test_cloud.py's)",
    "plugins/licensor-cloud/tests/test_cloud_event_log.py": "the event log's size per check (the signing is test_cloud.py's)",
    "benches/test_bench_goals.py": "the speed goals: it runs a pure-Python gateway of its own beside the native ones",
    "benches/test_bench_writes.py": "one tenant's writes against many tenants' (the writes' signatures: the plugins' tests)",
}


_TWO_PROCESSES = frozenset({"licensor_fleet", "licensor_second_process"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--twin-pass",
        action="store_true",
        help="make test's pure-Python pass: only the tests whose outcome can depend on the core (conftest.py)",
    )


def _left_out_of_the_twin_pass(item: pytest.Item, on_postgres: bool) -> bool:
    if on_postgres:
        return not _TWO_PROCESSES & set(getattr(item, "fixturenames", ()))
    where = item.path.relative_to(item.config.rootpath).as_posix()
    return any(where == module or (module.endswith("/") and where.startswith(module)) for module in TWIN_PASS_LEAVES_OUT)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    twin_pass = config.getoption("twin_pass")
    if twin_pass and _impl.IMPLEMENTATION != "python":
        raise pytest.UsageError("--twin-pass runs on the pure-Python core only: set LICENSOR_PURE_PYTHON=1")
    kept, left_out = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and "postgresql" in callspec.id.split("-")  # a store asked for by name
        if _SERVER_FIXTURES & set(getattr(item, "fixturenames", ())) or item.path.name in _SERVER_MODULES or on_postgres:
            item.add_marker(pytest.mark.server)
        (left_out if twin_pass and _left_out_of_the_twin_pass(item, on_postgres) else kept).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept
    _spread_the_longest(config, items)


# The longest tests by far (minutes each, the rest seconds at most): one at the head of each xdist worker's share.
_LONGEST_MODULES = frozenset({"test_schemathesis.py"})


def _spread_the_longest(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``--dist worksteal`` each of the n workers is first handed a contiguous share of the collection
    (``remaining // workers left`` each, in order). Left where collected, both schemathesis runs fall in one
    share and run one after the other, while the other worker runs out and has nothing left to steal."""
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    longest = [item for item in items if item.path.name in _LONGEST_MODULES]
    if workers < 2 or not longest:
        return
    rest = [item for item in items if item.path.name not in _LONGEST_MODULES]
    spread: list[pytest.Item] = []
    remaining = len(items)
    for worker in range(workers):
        share = remaining // (workers - worker)
        heads = longest[worker::workers]
        taken = max(0, share - len(heads))
        spread += heads + rest[:taken]
        rest = rest[taken:]
        remaining -= share
    items[:] = spread + rest
