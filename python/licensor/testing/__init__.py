"""Test helpers for licensor and for authors of backend plugins (a pytest plugin; tests only).

Installed with licensor, the plugin registers itself (entry point ``pytest11``): a plugin's tests need no
``conftest.py`` to get its fixtures. It is made of:

- :mod:`licensor.testing.infrastructure`: :class:`ThrowawayPostgres`, a real, private PostgreSQL server (initdb +
  pg_ctl in a temporary directory, a free port on 127.0.0.1), removed afterwards; as root, the server runs as the
  ``postgres`` user. :func:`check_expected_implementation` refuses a run on the wrong core.
- :mod:`licensor.testing.drivers`: :class:`Gateway` / :class:`Tenant`: ``await gateway.tenant()`` creates a tenant
  and gives its admin token; ``tenant.product()``, ``.feature()``, ``.policy()``, ``.license()``, ``.token(role)``
  go through the admin API; every answer is checked against the error contract (:func:`check_error_contract`).
  :func:`running_gateway` and :func:`gateway_process` start one in this process or as ``licensor serve``.
- :mod:`licensor.testing._pytest_plugin`: the fixtures ``licensor_postgres`` (one server per session),
  ``licensor_store_url`` (each test runs on a new SQLite file and on the session's PostgreSQL database),
  ``licensor_plugins`` (override it to return your plugin objects; installed plugins load through their entry
  points anyway), ``licensor_gateway`` (the real gateway with those plugins on that store, as a :class:`Gateway`)
  and ``licensor_fleet`` (that gateway plus, on PostgreSQL, a second gateway process on the same database:
  :class:`GatewayFleet`).
- :mod:`licensor.testing.vendors`: :class:`Vendor`, a tenant with a product, a policy of the backend under test and a
  license of it, made by :func:`make_vendor` (the fixture ``licensor_vendor`` makes them on ``licensor_gateway``);
  plugins' test kits subclass it.
- :mod:`licensor.testing.clocks`: :class:`ManualClock`, the clock :meth:`Gateway.freeze_clock` stops and a test
  moves by hand (the gateway's verdicts, signed answers and backends all read it).
- :mod:`licensor.testing.burst`: :func:`send_at_once` and :func:`no_server_errors` for concurrent requests.
- :mod:`licensor.testing.conformance`: :class:`BackendConformance`, the suite every backend must pass (verdict
  codes, error format, its own operations, tenant isolation, idempotency, policy options). Subclass it in a test
  module as ``TestMyBackendConformance``, setting ``backend`` (and ``options``, ``invalid_options``).
"""

import pytest

pytest.register_assert_rewrite("licensor.testing")  # the suite's asserts explain their failures

from licensor.testing.burst import Sent, no_server_errors, open_client, post_json, send_at_once  # noqa: E402
from licensor.testing.clocks import ManualClock  # noqa: E402
from licensor.testing.conformance import BackendConformance, MadeLicense  # noqa: E402
from licensor.testing.drivers import (  # noqa: E402
    ROLES,
    TESTING_ENVIRONMENT,
    Answer,
    Gateway,
    GatewayFleet,
    Tenant,
    check_error_contract,
    fixture_settings,
    gateway_process,
    running_gateway,
    wait_ready,
)
from licensor.testing.infrastructure import (  # noqa: E402
    ReplicatedPostgres,
    ThrowawayPostgres,
    check_expected_implementation,
    free_port,
)
from licensor.testing.vendors import Vendor, b64url_decode, make_vendor  # noqa: E402

__all__ = [
    "ROLES",
    "TESTING_ENVIRONMENT",
    "Answer",
    "BackendConformance",
    "Gateway",
    "GatewayFleet",
    "MadeLicense",
    "ManualClock",
    "ReplicatedPostgres",
    "Sent",
    "Tenant",
    "ThrowawayPostgres",
    "Vendor",
    "b64url_decode",
    "check_error_contract",
    "check_expected_implementation",
    "fixture_settings",
    "free_port",
    "gateway_process",
    "make_vendor",
    "no_server_errors",
    "open_client",
    "post_json",
    "running_gateway",
    "send_at_once",
    "wait_ready",
]
