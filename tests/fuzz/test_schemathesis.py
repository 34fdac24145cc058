"""Schemathesis against the real gateway: every operation of /openapi.json, zero 5xx, zero answers off the document.

The gateway runs on a real aiohttp server on 127.0.0.1 (a free port; an event loop in a thread of its own)
over a real store, with a tenant made by :func:`licensor.central.tenants.create_tenant`; every request carries
that tenant's admin token as ``Authorization: Bearer``. Schemathesis loads /openapi.json from the server and
runs its examples, coverage and fuzzing phases on every operation (positive and negative inputs, no deadline)
with the checks not_a_server_error, response_schema_conformance, content_type_conformance and
status_code_conformance; the test fails on any failure or error, and unless every operation was called.

Seeded objects (products, features, releases, policies, customers, licenses, spare tokens, activations,
credentials and leases) are mixed into the generated path ids, ``?tenant=`` and license keys, so operations reach
existing objects as well as missing ones. The device requests are genuine some of the time: activation requests
signed by a real device key, and lease requests carrying a real credential (and a lease's newest secret).

Knobs (environment):

* ``LICENSOR_FUZZ_EXAMPLES``: examples per operation in the fuzzing phase (80; ``make fuzz`` runs 1000).
* ``LICENSOR_FUZZ_STATEFUL_SCENARIOS`` and ``LICENSOR_FUZZ_STATEFUL_STEPS``: the stateful phase, which chains real
  objects along the OpenAPI links of /openapi.json (:func:`licensor.gateway.openapi.add_links`): 40 scenarios of at
  most 8 calls (``make fuzz``: 400 of 12); 0 scenarios leaves the phase out. make test gave up 20 examples per
  operation for it, so that the run costs no more than before.
* ``LICENSOR_FUZZ_STORES``: comma-separated stores to fuzz. By default SQLite always, and PostgreSQL only when
  the native core is loaded, so ``make test`` fuzzes PostgreSQL in its native pass and not again in its
  pure-Python pass (the gateway's code paths do not depend on the core; the run is the expensive part).
* ``LICENSOR_FUZZ_SEED``: the seed of a run to repeat (a failing run prints its seed).
* ``LICENSOR_FUZZ_TARGETED``: ``1`` (``make fuzz``) keeps Hypothesis's target phase, in which schemathesis has it
  climb towards inputs each operation accepts. ``make test`` leaves it out: the hill climbing took three
  quarters of the run's CPU (py-spy), and 240 s to over 700 s per store depending on the seed, while the seeded
  ids and genuine device requests (below) already lead every operation to existing objects.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import Phase, settings
from hypothesis import strategies as st
from licensor.central.tenants import create_tenant
from licensor.central.webhooks import WebhookSender
from licensor.fingerprint import hash_components, product_salt
from licensor.gateway import keys as app_keys
from licensor.gateway.app import create_app
from licensor.testing import fixture_settings
from licensor.testing.infrastructure import free_port
from licensor_client.activation import DeviceKey
from licensor_client.activation import device_request as client_device_request
from schemathesis.engine import Status, StopReason, events
from schemathesis.hooks import GLOBAL_HOOK_DISPATCHER

from tests.commerce.shops import StripeShop

EXAMPLES = int(os.environ.get("LICENSOR_FUZZ_EXAMPLES", "80"))
# The stateful phase: scenarios that follow the document's links (create a product, a policy of it, a license of
# that, a credential of the license, a lease with it, its heartbeat, ...), each of at most STATEFUL_STEPS calls.
STATEFUL_SCENARIOS = int(os.environ.get("LICENSOR_FUZZ_STATEFUL_SCENARIOS", "40"))
STATEFUL_STEPS = int(os.environ.get("LICENSOR_FUZZ_STATEFUL_STEPS", "8"))
# make test runs the bounded run on SQLite (every other test covers both stores); make fuzz runs both, longer.
_DEFAULT_STORES = "sqlite"
STORES = tuple(os.environ.get("LICENSOR_FUZZ_STORES", _DEFAULT_STORES).split(","))
SEED = int(os.environ["LICENSOR_FUZZ_SEED"]) if os.environ.get("LICENSOR_FUZZ_SEED") else None
TARGETED = os.environ.get("LICENSOR_FUZZ_TARGETED") == "1"
CHECKS = ("not_a_server_error", "response_schema_conformance", "content_type_conformance", "status_code_conformance")
# Answers that show a request reached an existing object (not a 404, nor a refusal before the lookup).
REACHED_AN_OBJECT = {200, 201, 409}
REFERENCES = {"product_id": "prd", "policy_id": "pol", "customer_id": "cus"}  # body fields naming objects, by id prefix


SUBJECT = "fuzz-subject"


class LiveGateway:
    """The gateway on a real socket, served by an event loop in a thread of its own."""

    def __init__(self, store_url: str, data_dir: str) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = fixture_settings(
            data_dir=data_dir,
            database_url=store_url,
            host="127.0.0.1",
            port=self.port,
            public_url=self.url,
            master_key=os.urandom(32),
            # The endpoints schemathesis creates name any host: nothing is resolved or sent (the seeded deliveries
            # are attempted once, to a closed port of 127.0.0.1, by seed_webhooks).
            webhook_allow_private=True,
            webhook_sender=False,
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="gateway", daemon=True)
        self.runner: web.AppRunner | None = None

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=120)

    def start(self) -> None:
        self.thread.start()
        self.app = create_app(self.settings)
        self.run(self._start())

    async def _start(self) -> None:
        self.runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self.runner.setup()  # opens the store (the app's cleanup context)
        await web.SockSite(self.runner, self.sock).start()

    def create_tenant(self, name: str) -> tuple[str, str]:
        """A new tenant in the gateway's own store: (tenant id, admin token)."""
        tenant = self.run(create_tenant(self.app[app_keys.STORE], self.app[app_keys.SECRETS], name))
        return tenant.tenant_id, tenant.admin_token

    def seed_webhooks(self) -> None:
        """One pass of a webhook sender: the deliveries owed now, attempted once each (refused: a closed port)."""

        async def one_pass() -> None:
            sender = WebhookSender(
                self.app[app_keys.STORE],
                self.app[app_keys.SERVICES],
                self.app[app_keys.SECRETS],
                allow_private=True,
                retry_base_s=60,
            )
            try:
                await sender.run_once()
            finally:
                await sender.close()

        self.run(one_pass())

    def stop(self) -> None:
        try:
            if self.runner is not None:
                self.run(self.runner.cleanup())
        finally:
            if self.thread.is_alive():
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join(timeout=30)
            self.loop.close()
            self.sock.close()


ACTIVATION_LICENSE: dict[str, Any] = {}  # the seeded license of the activation backend, and its tenant
DEVICE = DeviceKey.generate()  # one device, activated by the seeding, and its check-ins


def device_request(op: str, key: DeviceKey | None = None) -> str:
    """A genuine device request of the seeded activation license, made now (device requests expire in minutes):
    of the seeded device (``DEVICE``) to check in or deactivate, of a new device (unless ``key``) to activate."""
    key = key or (DEVICE if op in ("checkin", "deactivate") else DeviceKey.generate())
    machine = "seeded" if key is DEVICE else key.key_id
    fingerprint = hash_components({"machine_id": machine, "disk": machine}, product_salt(ACTIVATION_LICENSE["tenant"], "fuzz-0"))
    fields: dict[str, Any] = (
        {"activation": ACTIVATION_LICENSE.get("activation_id"), "generation": 1}
        if op in ("checkin", "deactivate")
        else {"license_key": ACTIVATION_LICENSE["key"]}
    )
    return client_device_request(
        key, op, tenant=ACTIVATION_LICENSE["tenant"], product="fuzz-0", fingerprint=fingerprint, **fields
    )


DEVICE_OPERATIONS = {
    "activate": "activate",
    "recover_activation": "recover",
    "check_in": "checkin",
    "deactivate": "deactivate",
    "answer_activation_request": "activate",
}

# The seeded cloud license's tenant, license, devices' credential, that credential's leases (id -> newest secret), and
# the ids offered to one operation alone (operationId -> ids), which no other operation may end first.
CLOUD: dict[str, Any] = {"leases": {}, "reserved": {}}
CLOUD_DEVICES = ("fuzz-device-0", "fuzz-device-1", "fuzz-device-2", "fuzz-device-3")  # the genuine requests' devices
LEASE_OPERATIONS = {"check_out_lease", "renew_lease", "release_lease"}


def credential_body() -> dict[str, Any]:
    """The tenant and the genuine credential of the seeded cloud license (never revoked by the run)."""
    return {"tenant": CLOUD["tenant"], "credential": CLOUD["credential"]}


def lease_body(pick: int) -> dict[str, Any]:
    """A genuine heartbeat or release: one of the newest leases the credential checked out, with its newest secret."""
    lease_id, secret = list(CLOUD["leases"].items())[-1 - pick % len(CLOUD["leases"])]
    return {**credential_body(), "lease": lease_id, "lease_secret": secret}


def remember_lease_secret(context: Any, case: Any, response: Any) -> None:
    # A check-out or heartbeat with the credential hands out a new secret (the old one stops working): keep it.
    if case.operation.path in ("/v1/leases", "/v1/leases/heartbeat") and response.status_code in (200, 201):
        answer = json.loads(response.content)
        if answer["lease"]["credential_id"] == CLOUD["credential"].partition(".")[0]:
            CLOUD["leases"][answer["lease"]["id"]] = answer["lease_secret"]


def _seed(url: str, token: str, tenant_id: str) -> tuple[dict[str, list[str]], list[str]]:
    """Real objects of every kind, by id prefix, and the license keys. Some are in use and some are not, so
    deletes and license actions meet both outcomes; the admin token the run uses is not among them."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = session.post(f"{url}{path}", json=body, timeout=30)
        assert response.status_code in (200, 201), (path, response.status_code, response.text)
        return response.json()  # type: ignore[no-any-return]

    ids: dict[str, list[str]] = defaultdict(list)
    keys: list[str] = []
    for n in range(2):
        product = post("/v1/admin/products", {"code": f"fuzz-{n}", "name": f"Fuzz product {n}"})
        ids["prd"].append(product["id"])
        for code in ("alpha", "beta"):
            ids["fea"].append(
                post(
                    "/v1/admin/features",
                    {"product_id": product["id"], "code": code, "name": code.title(), "metered": code == "beta"},
                )["id"]
            )
        ids["rel"].append(
            post("/v1/admin/releases", {"product_id": product["id"], "version": "1.0.0", "required_features": ["alpha"]})["id"]
        )
        subscription = post(
            "/v1/admin/policies",
            {
                "product_id": product["id"],
                "name": "Yearly",
                "backend": "cloud-lite",
                "duration": {"kind": "subscription", "days": 365},
                "maintenance_days": 365,
                "features": [{"code": "alpha"}, {"code": "beta", "quantity": 5}],
            },
        )
        perpetual = post("/v1/admin/policies", {"product_id": product["id"], "name": "Perpetual", "backend": "cloud-lite"})
        ids["pol"] += [subscription["id"], perpetual["id"]]
        ids["pol"].append(
            post("/v1/admin/policies", {"product_id": product["id"], "name": "Unused", "backend": "cloud-lite"})["id"]
        )
        customer = post("/v1/admin/customers", {"email": f"fuzz{n}@example.com", "name": f"Customer {n}"})
        ids["cus"].append(customer["id"])
        for policy in (subscription, perpetual):
            license = post("/v1/admin/licenses", {"policy_id": policy["id"], "customer_id": customer["id"], "subject": SUBJECT})
            ids["lic"].append(license["id"])
            keys.append(license["key"])
        suspended = post("/v1/admin/licenses", {"policy_id": subscription["id"]})
        post(f"/v1/admin/licenses/{suspended['id']}/suspend", {"reason": "seeded suspended"})
        ids["lic"].append(suspended["id"])
        keys.append(suspended["key"])
        ids["cus"].append(post("/v1/admin/customers", {"email": f"unused{n}@example.com", "name": f"Unused {n}"})["id"])
        ids["tok"].append(post("/v1/admin/tokens", {"name": f"spare {n}", "role": "developer"})["id"])
    ids["prd"].append(post("/v1/admin/products", {"code": "unused", "name": "Unused product"})["id"])
    # Activations (the activation backend): one active, one withdrawn, on a 3-seat license of fuzz-0.
    node_locked = post(
        "/v1/admin/policies",
        {
            "product_id": ids["prd"][0],
            "name": "Node-locked",
            "backend": "activation",
            "seats": 3,
            "features": [{"code": "alpha"}],
        },
    )
    ACTIVATION_LICENSE.update(post("/v1/admin/licenses", {"policy_id": node_locked["id"]}))
    ACTIVATION_LICENSE["tenant"] = tenant_id
    for device in (DEVICE, DeviceKey.generate()):
        ids["act"].append(post("/v1/activations", {"request": device_request("activate", device)})["activation"]["id"])
    post(f"/v1/admin/activations/{ids['act'][1]}/withdraw", {"reason": "seeded withdrawn"})
    # Leases (the cloud backend) of a 5-seat license of fuzz-0. The devices' credential, kept out of the path ids so
    # that the run never revokes it, holds a lease its genuine requests renew and release. Of the credentials in the
    # path ids, one's lease was released, one was revoked (its lease ended with it) and one holds none. The license
    # itself (the license actions could revoke it), one more credential holding a lease, and one more lease of the
    # devices' credential are offered only to the operations that list them, revoke it and end it.
    floating = post(
        "/v1/admin/policies",
        {"product_id": ids["prd"][0], "name": "Floating", "backend": "cloud", "seats": 5, "features": [{"code": "alpha"}]},
    )
    license_id = post("/v1/admin/licenses", {"policy_id": floating["id"]})["id"]
    credentials = {
        label: post(f"/v1/admin/licenses/{license_id}/credentials", {"label": label})
        for label in ("devices", "released", "revoked", "unused", "to revoke")
    }
    devices_credential = credentials["devices"]["credential_file"]["credential"]
    CLOUD.update(tenant=tenant_id, license=license_id, credential=devices_credential, leases={})
    ids["crd"] += [credentials[label]["credential"]["id"] for label in ("released", "revoked", "unused")]

    def check_out(label: str, device_id: str) -> dict[str, Any]:
        body = {
            "tenant": tenant_id,
            "credential": credentials[label]["credential_file"]["credential"],
            "device_id": device_id,
            "device_name": f"Seeded {device_id}",
            "features": ["alpha"],
        }
        granted = post("/v1/leases", body)
        return {
            "tenant": tenant_id,
            "credential": body["credential"],
            "lease": granted["lease"]["id"],
            "lease_secret": granted["lease_secret"],
        }

    held = check_out("devices", CLOUD_DEVICES[0])
    CLOUD["leases"][held["lease"]] = held["lease_secret"]
    released = check_out("released", "fuzz-released-device")
    post("/v1/leases/release", released)
    revoked = check_out("revoked", "fuzz-revoked-device")
    post(f"/v1/admin/credentials/{credentials['revoked']['credential']['id']}/revoke", {"reason": "seeded revoked"})
    ids["lse"] += [held["lease"], released["lease"], revoked["lease"]]
    check_out("to revoke", "fuzz-revoked-later")
    CLOUD["reserved"] = {
        **{operation: [license_id] for operation in ("create_credential", "list_credentials", "list_leases", "lease_usage")},
        "revoke_credential": [credentials["to revoke"]["credential"]["id"]],
        "end_lease": [check_out("devices", "fuzz-seeded-device")["lease"]],
    }
    # Order intake: two Stripe sources (one mapped, one unused), a mapping each way, and an order received.
    shop = StripeShop()
    for name in ("shop", "unused shop"):
        ids["osr"].append(post("/v1/admin/order-sources", {"kind": "stripe", "name": name, "secrets": [shop.secret]})["id"])
    for item in ("price_fuzz", "price_spare"):
        ids["omp"].append(
            post("/v1/admin/order-mappings", {"source_id": ids["osr"][0], "item": item, "policy_id": ids["pol"][0]})["id"]
        )
    order = shop.purchase("fuzz-order", "price_fuzz", "buyer@example.com")
    received = requests.post(f"{url}/v1/orders/{ids['osr'][0]}", data=order.body, headers=order.headers, timeout=30)
    assert received.status_code == 200, received.text
    ids["oev"].append(received.json()["events"][0]["id"])
    # Webhooks: an endpoint at a closed port of 127.0.0.1 owed an event (its delivery attempted once), and a spare.
    for target in ("owed", "spare"):
        endpoint = {"url": f"http://127.0.0.1:{free_port()}/{target}", "event_types": ["customer.*"]}
        ids["whe"].append(post("/v1/admin/webhook-endpoints", endpoint)["id"])
    post("/v1/admin/customers", {"email": "webhook@example.com", "name": "Webhook"})
    saas = {"name": "saas", "role": "product", "product_id": ids["prd"][0]}  # fuzz-0
    keys.append(post("/v1/admin/tokens", saas)["token"])  # the last: a product token
    return dict(ids), keys


def _seed_deliveries(url: str, token: str, ids: dict[str, list[str]]) -> None:
    """The deliveries and attempts the seeded endpoints got, by id."""
    headers = {"Authorization": f"Bearer {token}"}
    deliveries = requests.get(f"{url}/v1/admin/webhook-deliveries", headers=headers, timeout=30).json()["data"]
    attempts = requests.get(f"{url}/v1/admin/webhook-attempts", headers=headers, timeout=30).json()["data"]
    assert deliveries and attempts, (deliveries, attempts)
    ids["msg"] = [d["id"] for d in deliveries]
    ids["wha"] = [a["id"] for a in attempts]


@pytest.fixture(params=STORES)
def gateway(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> Iterator[LiveGateway]:
    if request.param == "sqlite":
        store_url = f"sqlite:///{os.path.join(tmp_path, 'licensor.db')}"
    else:
        store_url = str(request.getfixturevalue("postgres_url"))
    live = LiveGateway(store_url, str(tmp_path))
    try:
        live.start()
        yield live
    finally:
        live.stop()


def _config(url: str, token: str) -> Any:
    settings: dict[str, Any] = {
        "base-url": url,
        "workers": 1,
        "continue-on-failure": True,
        "suppress-health-check": ["all"],
        "generation": {"mode": "all", "max-examples": EXAMPLES, "database": "none"},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            # Ids seen in responses would make the id space finite: Hypothesis would stop some operations after
            # a dozen examples. The seeded ids (hooks below) reach existing objects instead.
            "fuzzing": {"enabled": True, "extra-data-sources": {"responses": False}},
            "stateful": {
                "enabled": STATEFUL_SCENARIOS > 0,
                "max-steps": STATEFUL_STEPS,
                "generation": {"max-examples": max(STATEFUL_SCENARIOS, 1)},
                # The document's own links (openapi.py) chain the operations. Inferring more from responses would
                # scan every string of every answer for URLs, and schemathesis 4.32.5's scan raises on one that
                # only looks like a URL ("https://[x", a name the fuzzer gave a product) and ends the whole run.
                "inference": {"algorithms": []},
            },
        },
    }
    if SEED is not None:
        settings["seed"] = SEED
    return schemathesis.Config.from_dict(settings)


@contextmanager
def hypothesis_phases() -> Iterator[None]:
    """Hypothesis's phases for the run: without the target phase unless ``TARGETED``. Schemathesis's config has no
    setting for it, but it takes the phases of the loaded Hypothesis profile: one is loaded for the run only."""
    if TARGETED:
        yield
        return
    previous = settings.get_current_profile_name()
    settings.register_profile(
        "licensor-fuzz", parent=settings.get_profile(previous), phases=(Phase.explicit, Phase.generate, Phase.shrink)
    )
    settings.load_profile("licensor-fuzz")
    try:
        yield
    finally:
        settings.load_profile(previous)


# Hypothesis renders an example's arguments when it records one; schemathesis's cases carry the whole operation,
# which passes its size warning on this document's larger operations. The rendering is not what is tested.
@pytest.mark.filterwarnings("ignore:Generating overly large repr")
def test_schemathesis_finds_nothing(gateway: LiveGateway) -> None:
    tenant_id, token = gateway.create_tenant("schemathesis")
    token_id = token.split(".")[0]
    seeded, license_keys = _seed(gateway.url, token, tenant_id)
    gateway.seed_webhooks()
    _seed_deliveries(gateway.url, token, seeded)
    ACTIVATION_LICENSE["activation_id"] = seeded["act"][0]
    product_token = license_keys.pop()
    document = requests.get(f"{gateway.url}/openapi.json", timeout=30).json()
    operation_ids = {
        f"{method.upper()} {path}": op["operationId"]
        for path, methods in document["paths"].items()
        for method, op in methods.items()
    }
    with_id = {
        op["operationId"]
        for methods in document["paths"].values()
        for op in methods.values()
        if any(p["in"] == "path" for p in op.get("parameters", []))
    }

    config = _config(gateway.url, token)
    # Schemathesis leaves out the operation that served the document unless a filter selects it: select all.
    schema = schemathesis.openapi.from_url(f"{gateway.url}/openapi.json", config=config).include(path_regex="^/")

    @schema.hook("flatmap_path_parameters")
    def existing_ids(context: Any, path_parameters: Any) -> Any:
        # Half the time one of the seeded objects of the id's kind instead of a random (missing) id; for the few
        # operations that have objects of their own (CLOUD["reserved"]), a third of the time one of those.
        if not isinstance(path_parameters, dict) or "id" not in path_parameters:
            return st.just(path_parameters)
        pattern = next(
            (
                p["schema"].get("pattern", "")
                for p in context.operation.definition.raw.get("parameters", [])
                if p.get("in") == "path" and p.get("name") == "id"
            ),
            "",
        )
        known = seeded.get(pattern[1:4], [])  # the prefix of "^prd_[...]{26}$"
        reserved = CLOUD["reserved"].get(context.operation.definition.raw.get("operationId"), [])
        choices = [st.sampled_from(pool).map(lambda i: {**path_parameters, "id": i}) for pool in (known, reserved) if pool]
        return st.one_of(st.just(path_parameters), *choices)

    @schema.hook("flatmap_query")
    def existing_tenant(context: Any, query: Any) -> Any:
        # GET /v1/keys?tenant=: half the time the real tenant rather than a random (missing) one.
        if not isinstance(query, dict) or "tenant" not in query:
            return st.just(query)
        return st.one_of(st.just(query), st.just({**query, "tenant": tenant_id}))

    @schema.hook("flatmap_body")
    def existing_license_key(context: Any, body: Any) -> Any:
        # Admin bodies that name other objects (a policy's product, a license's policy and customer): half the time
        # seeded ones, so that creations succeed too (random ids are never found: 0 licenses or policies created).
        references = {key: seeded[prefix] for key, prefix in REFERENCES.items() if isinstance(body, dict) and key in body}
        if references:
            found = st.fixed_dictionaries({key: st.sampled_from(ids) for key, ids in references.items()})
            return st.one_of(st.just(body), found.map(lambda ids: {**body, **ids}))
        # The license plane's bodies: half the time the seeded product and subject.
        if context.operation.definition.raw.get("tags") == ["cloud-lite"] and isinstance(body, dict):
            seeded_names = {"product": "fuzz-0", "subject": SUBJECT, "feature": "beta"}
            return st.one_of(st.just(body), st.just({**body, **{k: v for k, v in seeded_names.items() if k in body}}))
        # The cloud backend's lease requests: a third of the time with the genuine credential, a third genuine (a
        # check-out by one of the license's devices; a heartbeat or a release of a lease with its newest secret).
        operation_id = context.operation.definition.raw.get("operationId")
        if operation_id in LEASE_OPERATIONS and isinstance(body, dict):
            if operation_id == "check_out_lease":
                genuine = st.sampled_from(CLOUD_DEVICES).map(
                    lambda device: {**credential_body(), "device_id": device, "features": ["alpha"]}
                )
            else:
                genuine = st.integers(0, 3).map(lease_body)
            return st.one_of(st.just(body), st.just({**body, **credential_body()}), genuine)
        # The activation backend's device requests: half the time a genuine one, made when the example is.
        device_op = DEVICE_OPERATIONS.get(context.operation.definition.raw.get("operationId"))
        if device_op is not None and isinstance(body, dict):
            return st.one_of(st.just(body), st.builds(lambda: {"request": device_request(device_op)}))
        # POST /v1/check: half the time a real license of the real tenant.
        if context.operation.definition.raw.get("operationId") == "check" and isinstance(body, dict):
            real = st.sampled_from(license_keys).map(lambda key: {"tenant": tenant_id, "product": "fuzz-0", "license_key": key})
            return st.one_of(st.just(body), real.map(lambda found: {**body, **found}))
        # POST /v1/admin/licenses/lookup: half the time a real key, as issued or in lower case without dashes.
        if context.operation.definition.raw.get("operationId") != "lookup_license" or not isinstance(body, dict):
            return st.just(body)
        typed = st.sampled_from(license_keys).flatmap(lambda key: st.sampled_from([key, key.replace("-", "").lower()]))
        return st.one_of(st.just(body), typed.map(lambda key: {**body, "key": key}))

    def keep_admin_token(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
        # Revoking the very token the run authenticates with would turn everything after it into a 401.
        if case.path_parameters and case.path_parameters.get("id") == token_id:
            case.path_parameters["id"] = seeded["tok"][0]
        # The admin token, except for the cloud-lite operations, which serve a SaaS backend with its product token.
        bearer = product_token if case.operation.path.startswith("/v1/entitlements/") else token
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {bearer}"}

    calls: dict[str, Counter[str]] = defaultdict(Counter)  # operationId -> phase -> requests
    statuses: dict[str, Counter[int]] = defaultdict(Counter)  # operationId -> status -> responses
    failures: dict[str, str] = {}  # one example of each kind of failure
    stop_reason = None
    started = time.monotonic()
    GLOBAL_HOOK_DISPATCHER.register_hook_with_name(keep_admin_token, "before_call")  # before_call is global-only
    GLOBAL_HOOK_DISPATCHER.register_hook_with_name(remember_lease_secret, "after_call")
    with hypothesis_phases():
        try:
            for event in schemathesis.engine.from_schema(schema).execute():
                if isinstance(event, events.ScenarioFinished):
                    recorder = event.recorder
                    for case_id, interaction in recorder.interactions.items():
                        operation = recorder.cases[case_id].value.operation
                        name = operation_ids.get(f"{operation.method.upper()} {operation.path}", operation.label)
                        calls[name][event.phase.value] += 1
                        if interaction.response is not None:
                            statuses[name][interaction.response.status_code] += 1
                    for checks in recorder.checks.values():
                        for check in checks:
                            if check.status == Status.FAILURE and check.failure_info is not None:
                                failure = check.failure_info.failure
                                kind = f"{check.name} on {recorder.label}: {failure.title}: {failure.message.splitlines()[0]}"
                                failures.setdefault(kind, f"{failure.message}\n{check.failure_info.code_sample}")
                    if event.status == Status.ERROR:
                        failures.setdefault(f"error in {recorder.label} ({event.phase.value})", event.skip_reason or "")
                elif isinstance(event, events.NonFatalError):
                    failures.setdefault(f"error in {event.label}", event.info.format())
                elif isinstance(event, events.FatalError):
                    failures.setdefault("fatal error", repr(event.exception))
                elif isinstance(event, events.EngineFinished):
                    stop_reason = event.stop_reason
        finally:
            GLOBAL_HOOK_DISPATCHER.unregister(keep_admin_token)
            GLOBAL_HOOK_DISPATCHER.unregister(remember_lease_secret)

    elapsed = time.monotonic() - started
    total = sum(sum(phases.values()) for phases in calls.values())
    print(
        f"\nschemathesis on {gateway.settings.store_url.split(':')[0]}: {len(calls)} operations, {total} requests "
        f"in {elapsed:.0f}s (seed {config.seed}, {EXAMPLES} examples, target phase {'on' if TARGETED else 'off'})"
    )
    for name in sorted(operation_ids.values()):
        phases = ", ".join(f"{phase} {n}" for phase, n in sorted(calls[name].items()))
        print(f"  {name:20} {phases:40} {dict(sorted(statuses[name].items()))}")

    assert not failures, f"{len(failures)} kinds of schemathesis failures (seed {config.seed}):\n\n" + "\n\n".join(
        f"{kind}\n{example}" for kind, example in failures.items()
    )
    assert stop_reason == StopReason.COMPLETED, stop_reason
    missing = sorted(set(operation_ids.values()) - set(calls))
    assert not missing, f"operations schemathesis never called: {missing}"
    if EXAMPLES >= 80:
        # An order webhook reaches its source only with the shop's signature, which a fuzzer cannot make (tests/commerce).
        unreached = sorted(name for name in with_id - {"receive_order"} if not REACHED_AN_OBJECT & set(statuses[name]))
        assert not unreached, f"operations that never reached an existing object: {unreached}"
