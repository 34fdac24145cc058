"""The operator's procedures of docs/operations.md, through the real commands on real stores: ``licensor backup``
and ``licensor restore`` (back up, wipe, restore: every license checks as before), ``licensor migrate-store``
(SQLite to PostgreSQL: a gateway on the new store answers as before), and what each refuses.

Each test gets stores of its own (a new SQLite file, a new PostgreSQL database on the session's server): wiping
and restoring the session's shared database would take other tests' tenants with it.
"""

from __future__ import annotations

import asyncio
import io
import os
import uuid
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from licensor.cli import main
from licensor.fingerprint import hash_components, product_salt
from licensor.store import open_store
from licensor.store.sql import SqlStore
from licensor.testing import Gateway, Tenant, ThrowawayPostgres, Vendor, b64url_decode, make_vendor, running_gateway
from licensor_client.activation import DeviceKey, device_request
from licensor_client.entitlements import verify_entitlement_token

pytestmark = pytest.mark.server
STORES = ("sqlite", "postgresql")
MACHINE = {"machine_id": "m-1", "board": "b-1", "cpu": "c-1", "disk": "d-1", "mac": "aa:bb", "hostname": "host-1"}


@pytest.fixture(params=STORES)
def own_store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """A new, empty store of each kind for this test alone."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'licensor.db'}"
    server: ThrowawayPostgres = request.getfixturevalue("licensor_postgres")
    return server.create_database()


@pytest.fixture
def master_key(tmp_path: Any) -> Iterator[bytes]:
    """The master key of this test's gateways, also in ``tmp_path/data/master.key`` where the commands find it."""
    key = os.urandom(32)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    descriptor = os.open(data_dir / "master.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key)
    yield key


async def licensor(*argv: str) -> tuple[int, str, str]:
    """``licensor ARGV`` in this process, in a thread (the command runs an event loop of its own): (exit status,
    standard output, standard error)."""

    def run() -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main(list(argv))
            except SystemExit as exited:
                return int(exited.code or 0), out.getvalue(), err.getvalue()
        raise AssertionError("licensor returned without an exit status")

    return await asyncio.to_thread(run)


# --- licenses of the three backends, and what their devices and services hold -----------------------------
@dataclass
class Estate:
    """A tenant with a license of each backend: a cloud license whose credential holds the only seat as a lease, a
    cloud-lite license of a subject with metered usage, and an activation license with an activated device."""

    tenant: Tenant
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)  # backend -> the body of its /v1/check
    credential: dict[str, Any] = field(default_factory=dict)  # the cloud credential file
    lease: dict[str, str] = field(default_factory=dict)  # the held lease's id and secret
    product_token: str = ""  # cloud-lite's SaaS backend
    saas_product: str = ""
    usage_key: str = ""  # the Idempotency-Key of the metered usage recorded
    device: dict[str, Any] = field(default_factory=dict)  # the activated device: key, fingerprint, activation


async def build_estate(gateway: Gateway) -> Estate:
    tenant = await gateway.tenant("Estate vendor")
    estate = Estate(tenant)

    cloud: Vendor = await make_vendor(gateway, "cloud", tenant=tenant, product="cad", seats=1)
    made = await tenant.ok("POST", f"/v1/admin/licenses/{cloud.license['id']}/credentials", 201, json={"label": "office"})
    estate.credential = made["credential_file"]
    leased = await gateway.call("POST", "/v1/leases", json={**_credential(estate), "device_id": "workstation-1"})
    assert leased.status == 201, leased.text
    estate.lease = {"lease": leased.body["lease"]["id"], "lease_secret": leased.body["lease_secret"]}

    lite: Vendor = await make_vendor(
        gateway,
        "cloud-lite",
        tenant=tenant,
        product="saas",
        catalog={"reports": {}, "calls": {"metered": True, "unit": "call"}},
        features=[{"code": "reports"}, {"code": "calls", "quantity": 50}],
        license={"subject": "user-1"},
    )
    estate.product_token = await tenant.token("product", lite.product["id"])
    estate.saas_product = lite.product["code"]
    estate.usage_key = f"usage-{uuid.uuid4().hex}"
    used = await _use(gateway, estate)
    assert used.status in (200, 201), used.text

    activation: Vendor = await make_vendor(gateway, "activation", tenant=tenant, product="desktop", seats=1)
    key = DeviceKey.generate()
    fingerprint = hash_components(MACHINE, product_salt(tenant.id, "desktop"))
    estate.device = {"key": key, "fingerprint": fingerprint, "license_key": activation.license["key"]}
    activated = await _device(gateway, estate, "activate", license_key=activation.license["key"])
    assert activated.status == 201, activated.text
    estate.device.update(activation=activated.body["activation"]["id"], generation=activated.body["activation"]["generation"])

    for name, vendor in (("cloud", cloud), ("cloud-lite", lite), ("activation", activation)):
        estate.checks[name] = {"tenant": tenant.id, "product": vendor.product["code"], "license_key": vendor.license["key"]}
    return estate


def _credential(estate: Estate) -> dict[str, str]:
    return {"tenant": estate.credential["tenant"], "credential": estate.credential["credential"]}


async def _use(gateway: Gateway, estate: Estate) -> Any:
    body = {"product": estate.saas_product, "subject": "user-1", "feature": "calls", "units": 3}
    headers = {"Idempotency-Key": estate.usage_key}
    return await gateway.call("POST", "/v1/entitlements/usage", token=estate.product_token, json=body, headers=headers)


async def _device(gateway: Gateway, estate: Estate, op: str, machine: dict[str, str] | None = None, **fields: Any) -> Any:
    """A request of the activated device, or of another ``machine`` (with a key of its own)."""
    key, fingerprint = estate.device["key"], estate.device["fingerprint"]
    if machine is not None:
        key, fingerprint = DeviceKey.generate(), hash_components(machine, product_salt(estate.tenant.id, "desktop"))
    request = device_request(key, op, tenant=estate.tenant.id, product="desktop", fingerprint=fingerprint, **fields)
    return await gateway.call("POST", f"/v1/activations{'' if op == 'activate' else '/checkin'}", json={"request": request})


async def observe(gateway: Gateway, estate: Estate) -> dict[str, Any]:
    """What the licensed software and the vendor see of the estate now; each step can be repeated (a renewed
    lease and a check-in change only times and counters, which are left out)."""
    seen: dict[str, Any] = {}
    for name, body in estate.checks.items():
        for features in ([], ["draw"], ["reports"]):
            answer = await gateway.call("POST", "/v1/check", json={**body, "features": features})
            assert answer.status == 200, answer.text
            verdict = answer.body["verdict"]
            seen[f"check {name} {features}"] = (verdict["code"], verdict["valid"], verdict["license_id"])
    # cloud: the held lease renews with its secret, and it still holds the only seat.
    renewed = await gateway.call("POST", "/v1/leases/heartbeat", json={**_credential(estate), **estate.lease})
    assert renewed.status == 200, renewed.text
    seen["heartbeat"] = (renewed.status, renewed.body["lease"]["id"], renewed.body["lease"]["state"])
    estate.lease["lease_secret"] = renewed.body["lease_secret"]  # each renewal hands out the next secret
    second = await gateway.call("POST", "/v1/leases", json={**_credential(estate), "device_id": "workstation-2"})
    seen["second device"] = (second.status, second.code)
    # cloud-lite: the subject's entitlements, its usage, and the usage request replayed from its sealed answer.
    query = {"product": estate.saas_product, "subject": "user-1"}
    entitled = await gateway.call("POST", "/v1/entitlements/query", token=estate.product_token, json=query)
    assert entitled.status == 200, entitled.text
    body = entitled.body
    seen["entitlements"] = (body["code"], body["features"], body["licenses"])
    published = await gateway.call("GET", "/v1/keys", params={"tenant": estate.tenant.id})
    keys = {key["kid"]: b64url_decode(key["public_key"]) for key in published.body["keys"]}
    granted = verify_entitlement_token(
        body["token"], keys, tenant=estate.tenant.id, product=estate.saas_product, subject="user-1"
    )
    seen["entitlement token"] = (granted.features, granted.license_ids)  # signed with the restored signing key
    replayed = await _use(gateway, estate)
    assert replayed.headers.get("Idempotent-Replayed") == "true", replayed.text
    seen["usage replayed"] = (replayed.status, replayed.body)
    totals = await gateway.call("GET", "/v1/entitlements/usage", token=estate.product_token, params=query)
    seen["usage totals"] = [(item["feature"], item["used"]) for item in totals.body["totals"]]
    # activation: the device checks in with its file's generation, and holds the only seat.
    checked_in = await _device(
        gateway, estate, "checkin", activation=estate.device["activation"], generation=estate.device["generation"]
    )
    assert checked_in.status == 200, checked_in.text
    estate.device["generation"] = checked_in.body["activation"]["generation"]
    seen["check-in"] = (checked_in.body["activation"]["id"], checked_in.body["activation"]["state"])
    another_machine = {name: f"{value}-2" for name, value in MACHINE.items()}
    other = await _device(gateway, estate, "activate", machine=another_machine, license_key=estate.device["license_key"])
    seen["other device"] = (other.status, other.code)
    # the vendor: every license as the admin API lists it, and the event chain.
    licenses = await estate.tenant.list_all("/v1/admin/licenses")
    seen["licenses"] = sorted((item["id"], item["state"], item["policy_id"]) for item in licenses)
    chain = await estate.tenant.ok("GET", "/v1/admin/events/verify")
    assert chain["valid"], chain
    return seen


def _expected_answers(seen: dict[str, Any]) -> None:
    """The estate answers as built: so a comparison of two observations compares something."""
    assert seen["check cloud []"][:2] == ("VALID", True)
    assert seen["check cloud-lite ['reports']"][:2] == ("VALID", True)
    assert seen["check activation ['draw']"][:2] == ("VALID", True)
    assert seen["check cloud ['reports']"][0] == "FEATURE_NOT_ENTITLED"
    assert seen["heartbeat"][0] == 200 and seen["heartbeat"][2] == "active"
    assert seen["second device"] == (409, "SEAT_LIMIT_REACHED")
    assert seen["other device"] == (409, "SEAT_LIMIT_REACHED")
    assert seen["usage totals"] == [("calls", 3)]
    assert seen["entitlements"][0] == "VALID" and seen["entitlement token"][0] == {"calls": 50, "reports": None}


async def wipe(store_url: str) -> None:
    """Remove every table (PostgreSQL) or the whole file (SQLite) of the store."""
    if store_url.startswith("sqlite:///"):
        path = store_url[len("sqlite:///") :]
        for leftover in (path, f"{path}-wal", f"{path}-shm"):
            if os.path.exists(leftover):
                os.unlink(leftover)
        return
    connection = await asyncpg.connect(store_url)
    try:
        await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await connection.close()


async def _tables(store_url: str) -> int:
    store = open_store(store_url)
    await store.open()
    try:
        assert isinstance(store, SqlStore)
        async with store._read() as conn:
            row = await conn.fetch_one("SELECT COUNT(*) AS n FROM tenants")
        assert row is not None
        return int(row["n"])
    finally:
        await store.close()


# --- backup and restore ---------------------------------------------------------------------------------
async def test_a_restored_backup_answers_every_check_as_before(own_store_url: str, master_key: bytes, tmp_path: Any) -> None:
    data_dir = str(tmp_path / "data")
    async with running_gateway(own_store_url, data_dir, master_key=master_key) as gateway:
        estate = await build_estate(gateway)
        before = await observe(gateway, estate)
    _expected_answers(before)
    backup = str(tmp_path / "licensor-backup.db")
    store = ("--database-url", own_store_url, "--data-dir", data_dir)

    status, out, err = await licensor("backup", *store, "--out", backup)
    assert status == 0, err
    assert "every event chain verifies" in out and "master key is not in the backup" in err
    assert os.stat(backup).st_mode & 0o777 == 0o600
    assert (await licensor("backup", *store, "--out", backup))[0] == 2  # never overwritten

    await wipe(own_store_url)
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    (other_dir / "master.key").write_bytes(os.urandom(32))
    status, _, err = await licensor("restore", "--database-url", own_store_url, "--data-dir", str(other_dir), "--from", backup)
    assert status == 1 and err.startswith("error: MASTER_KEY_MISMATCH: "), err
    assert await _tables(own_store_url) == 0

    status, out, err = await licensor("restore", *store, "--from", backup)
    assert status == 0, err
    assert "row counts and digests match, every event chain verifies" in out
    status, _, err = await licensor("restore", *store, "--from", backup)
    assert status == 1 and err.startswith("error: TARGET_NOT_EMPTY: "), err
    assert not [name for name in os.listdir(tmp_path) if name.startswith("licensor-backup.db-")]  # one file, nothing beside

    async with running_gateway(own_store_url, data_dir, master_key=master_key) as gateway:
        gateway.tenants.append(estate.tenant)
        estate.tenant.gateway = gateway
        after = await observe(gateway, estate)
    assert after == before


async def test_a_backup_taken_while_the_gateway_writes_is_one_consistent_moment(
    own_store_url: str, master_key: bytes, tmp_path: Any
) -> None:
    data_dir = str(tmp_path / "data")
    backup = str(tmp_path / "licensor-backup.db")
    async with running_gateway(own_store_url, data_dir, master_key=master_key) as gateway:
        vendor = await make_vendor(gateway, "cloud-lite", product="saas")
        stop = asyncio.Event()

        async def write_until_stopped() -> int:
            made = 0
            while not stop.is_set() and made < 5_000:  # bounded; the backup takes about a second here
                await vendor.tenant.license(vendor.policy["id"])  # a license and its event, in one transaction
                made += 1
            return made

        writer = asyncio.create_task(write_until_stopped())
        await asyncio.sleep(0.1)
        status, out, err = await licensor("backup", "--database-url", own_store_url, "--data-dir", data_dir, "--out", backup)
        stop.set()
        made = await writer
    # The command verified the copy (digests, every event chain): it would exit 1 on a torn snapshot.
    assert status == 0, err
    assert made > 0 and "every event chain verifies" in out
    restored = f"sqlite:///{tmp_path / 'restored.db'}"
    assert (await licensor("restore", "--database-url", restored, "--data-dir", data_dir, "--from", backup))[0] == 0
    async with running_gateway(restored, data_dir, master_key=master_key) as gateway:
        tenant = Tenant(gateway, vendor.tenant.id, vendor.tenant.admin_token)
        licenses = await tenant.list_all("/v1/admin/licenses")
        created = [event for event in await tenant.list_all("/v1/admin/events") if event["type"] == "license.created"]
        assert len(licenses) == len(created)  # each license with its event, none without
        assert 0 < len(licenses) < made, (len(licenses), made)  # the writes went on while the backup read
        assert (await tenant.ok("GET", "/v1/admin/events/verify"))["valid"]


async def test_a_store_whose_event_log_was_altered_is_backed_up_as_evidence_and_flagged(
    own_store_url: str, master_key: bytes, tmp_path: Any
) -> None:
    data_dir = str(tmp_path / "data")
    async with running_gateway(own_store_url, data_dir, master_key=master_key) as gateway:
        vendor = await make_vendor(gateway, "cloud-lite", product="saas")
    store = open_store(own_store_url)
    await store.open()
    try:
        assert isinstance(store, SqlStore)
        async with store._write(None) as conn:  # someone with access to the database rewrites history
            await conn.execute("UPDATE events SET data = ? WHERE tenant_id = ? AND seq = 2", '{"forged": true}', vendor.tenant.id)
    finally:
        await store.close()
    backup = tmp_path / "evidence.db"
    status, out, err = await licensor("backup", "--database-url", own_store_url, "--data-dir", data_dir, "--out", str(backup))
    assert status == 1 and "\nerror: CHAIN_BROKEN: the backup " in err, err
    assert f"tenant {vendor.tenant.id} (at event 2: its content does not match its hash)" in err
    assert "event chains broken" in out and backup.exists()


async def test_restore_refuses_what_is_not_a_backup(tmp_path: Any) -> None:
    target = ("--database-url", f"sqlite:///{tmp_path / 'licensor.db'}", "--data-dir", str(tmp_path))
    (tmp_path / "notes.txt").write_text("not a database")
    status, _, err = await licensor("restore", *target, "--from", str(tmp_path / "notes.txt"))
    assert status == 2 and "is not a backup made by `licensor backup`" in err, err
    status, _, err = await licensor("restore", *target, "--from", str(tmp_path / "missing.db"))
    assert status == 2 and "does not exist" in err, err


# --- moving from SQLite to PostgreSQL ---------------------------------------------------------------------
async def test_a_store_moved_from_sqlite_to_postgresql_answers_every_check_as_before(
    licensor_postgres: ThrowawayPostgres, master_key: bytes, tmp_path: Any
) -> None:
    data_dir = str(tmp_path / "data")
    sqlite_url = f"sqlite:///{tmp_path / 'licensor.db'}"
    postgres_url = licensor_postgres.create_database()
    async with running_gateway(sqlite_url, data_dir, master_key=master_key) as gateway:
        estate = await build_estate(gateway)
        before = await observe(gateway, estate)
    _expected_answers(before)

    status, out, err = await licensor("migrate-store", "--from", sqlite_url, "--to", postgres_url)
    assert status == 0, err
    assert "row counts and digests match, every event chain verifies" in out
    status, _, err = await licensor("migrate-store", "--from", sqlite_url, "--to", postgres_url)
    assert status == 1 and err.startswith("error: TARGET_NOT_EMPTY: "), err
    assert (await licensor("migrate-store", "--from", sqlite_url, "--to", sqlite_url))[0] == 2

    async with running_gateway(postgres_url, data_dir, master_key=master_key) as gateway:
        gateway.tenants.append(estate.tenant)
        estate.tenant.gateway = gateway
        after = await observe(gateway, estate)
    assert after == before


@pytest.mark.parametrize("command", ["backup", "restore", "migrate-store"])
async def test_every_store_command_has_help(command: str) -> None:
    status, out, _ = await licensor(command, "--help")
    assert status == 0 and out.startswith(f"usage: licensor {command}")
    assert "--from" in out or "--out" in out


async def test_a_store_migrated_by_a_newer_licensor_is_neither_backed_up_nor_moved(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'licensor.db'}"
    store = open_store(url)
    await store.open()
    try:
        assert isinstance(store, SqlStore)
        async with store._write(None) as conn:
            await conn.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)", 10_000)
    finally:
        await store.close()
    status, _, err = await licensor("backup", "--database-url", url, "--data-dir", str(tmp_path), "--out", str(tmp_path / "b.db"))
    assert status == 1 and err.startswith("error: SCHEMA_TOO_NEW: "), err
    assert not os.path.exists(tmp_path / "b.db")
    status, _, err = await licensor("migrate-store", "--from", url, "--to", f"sqlite:///{tmp_path / 'moved.db'}")
    assert status == 1 and err.startswith("error: SCHEMA_TOO_NEW: "), err
