"""The ``licensor`` command, run as a real process: init, serve (one process and workers), and the admin client.

Every server is started as ``python -m licensor.cli serve`` on a free port of 127.0.0.1 and always stopped in
``finally``. The subprocesses inherit ``LICENSOR_PURE_PYTHON``, so the pure-Python pass runs them on that core.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from licensor import _impl
from licensor.testing import free_port

PYTHON_DIR = str(Path(__file__).resolve().parent.parent / "python")
START_TIMEOUT = 60.0  # seconds for a gateway to answer /healthz (2 shared cores, maybe under load)
COMMAND_TIMEOUT = 60.0
TOKEN = re.compile(r"^tok_[0-9A-HJKMNP-TV-Z]{26}\.[A-Za-z0-9_-]{43}$")
TENANT_ID = re.compile(r"^ten_[0-9A-HJKMNP-TV-Z]{26}$")
CREDENTIAL = re.compile(r"^crd_[0-9A-HJKMNP-TV-Z]{26}\.[A-Za-z0-9_-]{43}$")


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LICENSOR_") or k == "LICENSOR_PURE_PYTHON"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PYTHON_DIR, os.environ.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def run_cli(*args: str, stdin: str | None = None, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "licensor.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        env=cli_env(**env),
        cwd=cwd,
    )


def http_get(url: str, token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def http_post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class Gateway:
    """``licensor serve`` in a subprocess; its output goes to files in ``directory``."""

    def __init__(self, data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stdout_path = data_dir.parent / f"serve-{self.port}.out"
        self.stderr_path = data_dir.parent / f"serve-{self.port}.err"
        with open(self.stdout_path, "w") as out, open(self.stderr_path, "w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "licensor.cli", "serve", "--data-dir", str(data_dir), "--port", str(self.port), *extra],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=cli_env(**(env or {})),
            )

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"licensor serve exited with {self.process.returncode}: {self.stderr}")
            try:
                if http_get(f"{self.url}/healthz") == (200, {"status": "ok"}):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"licensor serve did not answer /healthz within {START_TIMEOUT} s: {self.stderr}")

    def stop(self) -> int:
        """SIGTERM, then SIGKILL if it has not stopped within 20 s; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def admin(
        self, *args: str, token: str, stdin: str | None = None, cwd: Path | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return run_cli("admin", "--url", self.url, *args, stdin=stdin, cwd=cwd, LICENSOR_TOKEN=token, **env)


# --- fixtures: one tenant made by `licensor init`, and a gateway serving its data directory ----------------
@pytest.fixture(scope="module")
def initialized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    data_dir = tmp_path_factory.mktemp("cli") / "var"
    return data_dir, run_cli("init", "--data-dir", str(data_dir), "--name", "acme")


@pytest.fixture(scope="module")
def init_output(initialized: tuple[Path, subprocess.CompletedProcess[str]]) -> dict[str, str]:
    _, completed = initialized
    assert completed.returncode == 0, completed.stderr
    return dict(line.split(": ", 1) for line in completed.stdout.splitlines())


@pytest.fixture(scope="module")
def gateway(initialized: tuple[Path, subprocess.CompletedProcess[str]]) -> Iterator[Gateway]:
    data_dir, _ = initialized
    server = Gateway(data_dir)
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


# --- licensor init ------------------------------------------------------------------------------------
def test_init_prints_the_tenant_id_and_a_token_that_works(
    initialized: tuple[Path, subprocess.CompletedProcess[str]], init_output: dict[str, str], gateway: Gateway
) -> None:
    data_dir, completed = initialized
    assert list(init_output) == ["tenant_id", "admin_token"]
    assert TENANT_ID.fullmatch(init_output["tenant_id"])
    assert TOKEN.fullmatch(init_output["admin_token"])
    assert "shown only now" in completed.stderr
    assert stat.S_IMODE(os.stat(data_dir / "master.key").st_mode) == 0o600

    status, tenant = http_get(f"{gateway.url}/v1/admin/tenant", init_output["admin_token"])
    assert status == 200
    assert (tenant["id"], tenant["name"]) == (init_output["tenant_id"], "acme")
    status, keys = http_get(f"{gateway.url}/v1/keys?tenant={init_output['tenant_id']}")
    assert status == 200 and len(keys["keys"]) == 1


def test_init_twice_makes_two_tenants(tmp_path: Path) -> None:
    first = run_cli("init", "--data-dir", str(tmp_path))
    second = run_cli("init", "--data-dir", str(tmp_path), "--name", "other")
    assert first.returncode == second.returncode == 0, (first.stderr, second.stderr)
    assert first.stdout.splitlines()[0] != second.stdout.splitlines()[0]


# --- licensor serve -----------------------------------------------------------------------------------
def test_serve_answers_healthz_and_readyz(gateway: Gateway) -> None:
    assert http_get(f"{gateway.url}/healthz") == (200, {"status": "ok"})
    assert http_get(f"{gateway.url}/readyz") == (200, {"status": "ready"})
    # The gateway names the core it runs on: the same one this process loads.
    assert f"(core {_impl.IMPLEMENTATION}, loop uvloop 0.23.0, store SQLite " in gateway.stderr


def test_serve_refuses_workers_on_sqlite(tmp_path: Path) -> None:
    completed = run_cli("serve", "--data-dir", str(tmp_path), "--port", str(free_port()), "--workers", "2")
    assert completed.returncode == 2
    assert "setting server.workers (--workers): 2 workers need PostgreSQL" in completed.stderr
    assert not (tmp_path / "licensor.db").exists()


def test_serve_refuses_a_store_url_it_cannot_open_before_starting(tmp_path: Path) -> None:
    completed = run_cli("serve", "--data-dir", str(tmp_path), "--port", str(free_port()), "--database-url", "mysql://db/x")
    assert (completed.returncode, completed.stderr) == (
        2,
        "error: setting store.database_url (--database-url): must be postgresql://user@host:port/database or "
        "sqlite:///path\n",  # a database URL may hold a password: never repeated
    )


def test_init_reports_a_postgresql_it_cannot_reach(tmp_path: Path) -> None:
    completed = run_cli("init", "--data-dir", str(tmp_path), "--database-url", f"postgresql://u:secret@127.0.0.1:{free_port()}/x")
    assert completed.returncode == 2 and completed.stdout == ""
    assert completed.stderr.startswith("error: cannot open the store (PostgreSQL u@127.0.0.1:"), completed.stderr
    assert "secret" not in completed.stderr and "Traceback" not in completed.stderr


def test_serve_init_if_empty_writes_the_token_file_and_never_prints_the_token(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    server = Gateway(data_dir, "--init-if-empty")
    try:
        server.wait_healthy()
        token_file = data_dir / "admin-token"
        assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
        token = token_file.read_text().strip()
        assert TOKEN.fullmatch(token)
        status, tenant = http_get(f"{server.url}/v1/admin/tenant", token)
        assert (status, tenant["name"]) == (200, "default")
        assert f"the admin token is in {token_file}" in server.stdout
        assert 'created the tenant "default"' in server.stdout
    finally:
        assert server.stop() == 0
    secret = token.split(".")[1]
    assert secret not in server.stdout + server.stderr
    assert "gateway stopped" in server.stderr

    # A second start finds the tenant: nothing is created, the token file stays as it was.
    again = Gateway(data_dir, "--init-if-empty")
    try:
        again.wait_healthy()
        assert "created" not in again.stdout
        assert (data_dir / "admin-token").read_text().strip() == token
    finally:
        assert again.stop() == 0


def test_serve_stops_once_on_repeated_signals(tmp_path: Path) -> None:
    # `make serve` gets SIGTERM and forwards it, so the gateway often gets two: the second must not cut the
    # clean-up short (exit 1, or a hang on the store's thread), nor kill the process once its loop is closed.
    for signals, late in (
        ((signal.SIGTERM, signal.SIGTERM), None),
        ((signal.SIGINT, signal.SIGTERM), None),
        ((signal.SIGTERM,), "gateway stopped"),
    ):
        server = Gateway(tmp_path / "var")
        try:
            server.wait_healthy()
            for signum in signals:
                server.process.send_signal(signum)
            if late is not None:  # the second one comes after the event loop has been closed
                deadline = time.monotonic() + 20
                while late not in server.stderr and server.process.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.001)
                if server.process.poll() is None:
                    server.process.send_signal(signal.SIGTERM)
            assert server.process.wait(timeout=20) == 0
        finally:
            server.stop()
        assert server.stderr.count("stopping gracefully") == 1
        assert "gateway stopped" in server.stderr


def test_serve_reports_a_port_in_use(gateway: Gateway, tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "licensor.cli", "serve", "--data-dir", str(tmp_path), "--port", str(gateway.port)],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        env=cli_env(),
    )
    assert completed.returncode == 1
    assert f"cannot listen on 127.0.0.1:{gateway.port}" in completed.stderr


def test_serve_with_workers_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    server = Gateway(tmp_path / "var", "--database-url", postgres_url, "--workers", "2")
    try:
        server.wait_healthy()
        deadline = time.monotonic() + START_TIMEOUT
        while server.stderr.count("gateway listening") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.stderr.count("gateway listening") == 2, server.stderr
        workers = [int(pid) for pid in re.search(r"started 2 workers on \S+: (\d+) (\d+)", server.stderr).groups()]  # type: ignore[union-attr]
        for _ in range(20):
            assert http_get(f"{server.url}/readyz") == (200, {"status": "ready"})
        assert postgres_url.rsplit("/", 1)[1] in server.stderr  # the store is named (without a password)
    finally:
        assert server.stop() == 0
    assert server.stderr.count("gateway stopped") == 2
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


# --- licensor admin -----------------------------------------------------------------------------------
def test_admin_products_create_list_and_get(gateway: Gateway, init_output: dict[str, str]) -> None:
    token = init_output["admin_token"]
    created = gateway.admin("products", "create", "--code", "photo-pro", "--name", "Photo Pro", token=token)
    assert created.returncode == 0, created.stderr
    product = json.loads(created.stdout)
    assert (product["object"], product["code"], product["name"]) == ("product", "photo-pro", "Photo Pro")

    listed = gateway.admin("products", "list", token=token)
    assert listed.returncode == 0, listed.stderr
    assert product["id"] in [item["id"] for item in json.loads(listed.stdout)["data"]]

    got = gateway.admin("products", "get", product["id"], token=token)
    assert got.returncode == 0 and json.loads(got.stdout) == product


def test_admin_reports_api_errors_with_their_code_and_exit_1(gateway: Gateway, init_output: dict[str, str]) -> None:
    token = init_output["admin_token"]
    first = gateway.admin("products", "create", "--code", "dupe", "--name", "One", token=token)
    assert first.returncode == 0, first.stderr
    second = gateway.admin("products", "create", "--code", "dupe", "--name", "Two", token=token)
    assert second.returncode == 1
    assert second.stderr.startswith("error: PRODUCT_ALREADY_EXISTS: ")
    assert second.stdout == ""

    invalid = gateway.admin("products", "create", "--code", "Not A Code", "--name", "x", token=token)
    assert invalid.returncode == 1 and invalid.stderr.startswith("error: INVALID_FIELD: ")
    missing = gateway.admin("products", "get", "prd_00000000000000000000000000", token=token)
    assert missing.returncode == 1 and missing.stderr.startswith("error: PRODUCT_NOT_FOUND: ")
    wrong_token = gateway.admin("products", "list", token="tok_00000000000000000000000000." + "A" * 43)
    assert wrong_token.returncode == 1 and wrong_token.stderr.startswith("error: TOKEN_INVALID: ")


def test_admin_license_lifecycle(gateway: Gateway, init_output: dict[str, str]) -> None:
    token = init_output["admin_token"]
    product = json.loads(gateway.admin("products", "create", "--code", "cycle", "--name", "Cycle", token=token).stdout)
    policy_run = gateway.admin(
        "policies",
        "create",
        "--product-id",
        product["id"],
        "--name",
        "Yearly",
        "--backend",
        "cloud-lite",
        "--seats",
        "2",
        "--duration",
        '{"kind": "subscription", "days": 365}',
        "--maintenance-days",
        "365",
        token=token,
    )
    assert policy_run.returncode == 0, policy_run.stderr
    policy = json.loads(policy_run.stdout)
    assert (policy["seats"], policy["duration"], policy["maintenance_days"]) == (2, {"kind": "subscription", "days": 365}, 365)

    created = gateway.admin("licenses", "create", "--policy-id", policy["id"], "--order-ref", "order-7", token=token)
    assert created.returncode == 0, created.stderr
    license_ = json.loads(created.stdout)
    key = license_.pop("key")
    got = json.loads(gateway.admin("licenses", "get", license_["id"], token=token).stdout)
    assert "key" not in got and got["id"] == license_["id"]
    found = gateway.admin("licenses", "lookup", token=token, stdin=key + "\n")
    assert found.returncode == 0 and json.loads(found.stdout)["id"] == license_["id"]

    assert json.loads(gateway.admin("licenses", "suspend", license_["id"], token=token).stdout)["state"] == "suspended"
    assert (
        json.loads(gateway.admin("licenses", "list", "--state", "suspended", token=token).stdout)["data"][0]["id"]
        == license_["id"]
    )
    assert json.loads(gateway.admin("licenses", "reinstate", license_["id"], token=token).stdout)["state"] == "active"
    renewed = json.loads(gateway.admin("licenses", "renew", license_["id"], token=token).stdout)
    assert renewed["expires_at"] > license_["expires_at"]
    assert (
        json.loads(gateway.admin("licenses", "revoke", license_["id"], "--reason", "refund", token=token).stdout)["state"]
        == "revoked"
    )
    refused = gateway.admin("licenses", "reinstate", license_["id"], token=token)
    assert refused.returncode == 1 and refused.stderr.startswith("error: INVALID_STATE: ")

    # The gateway's log has one line per request, without the token or the license key.
    log = gateway.stderr
    assert "POST /v1/admin/licenses/lookup 200" in log
    assert key not in log and token.split(".")[1] not in log


def test_admin_answers_an_offline_activation_request_file(gateway: Gateway, init_output: dict[str, str], tmp_path: Path) -> None:
    from licensor.fingerprint import hash_components, product_salt
    from licensor_client.activation import DeviceKey, device_request, verify_license_file

    token, tenant = init_output["admin_token"], init_output["tenant_id"]

    def ok(*args: str) -> Any:
        completed = gateway.admin(*args, token=token)
        assert completed.returncode == 0, completed.stderr
        return json.loads(completed.stdout)

    product = ok("products", "create", "--code", "offline-cad", "--name", "Offline CAD")
    policy = ok("policies", "create", "--product-id", product["id"], "--name", "Node-locked", "--backend", "activation")
    license = ok("licenses", "create", "--policy-id", policy["id"])
    # The offline device writes its request file ...
    device = DeviceKey.generate()
    fingerprint = hash_components({"machine_id": "lab-pc", "disk": "ssd-1"}, product_salt(tenant, "offline-cad"))
    request_file, license_file = tmp_path / "activation-request.txt", tmp_path / "license.lf1"
    request_file.write_text(
        device_request(
            device, "activate", tenant=tenant, product="offline-cad", fingerprint=fingerprint, license_key=license["key"]
        )
        + "\n"
    )
    # ... the vendor answers it with the CLI ...
    answered = ok("activations", "answer-request", "--request", request_file.read_text().strip())
    assert answered["activation"]["mode"] == "offline"
    license_file.write_text(answered["license_file"] + "\n")
    listed = ok("activations", "list", "--license-id", license["id"])
    assert [item["id"] for item in listed["data"]] == [answered["activation"]["id"]]
    # ... and the device imports the license file and verifies it offline.
    _, keyset = http_get(f"{gateway.url}/v1/keys?tenant={tenant}")
    keys = {
        key["kid"]: base64.urlsafe_b64decode(key["public_key"] + "=" * (-len(key["public_key"]) % 4)) for key in keyset["keys"]
    }
    verdict = verify_license_file(
        license_file.read_text().strip(),
        keys,
        tenant=tenant,
        product="offline-cad",
        fingerprint=fingerprint,
        device_key=device.key_id,
    )
    assert verdict.valid and verdict.file.activation_id == answered["activation"]["id"]
    # A request file that is not one is refused with its code, and nothing is activated.
    request_file.write_text("not a request\n")
    refused = gateway.admin("activations", "answer-request", "--request", request_file.read_text().strip(), token=token)
    assert refused.returncode == 1 and "DEVICE_REQUEST_INVALID" in refused.stderr
    assert len(ok("activations", "list", "--license-id", license["id"])["data"]) == 1


def admin_ok(gateway: Gateway, token: str, *args: str) -> Any:
    completed = gateway.admin(*args, token=token)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def cloud_license(gateway: Gateway, token: str, code: str, seats: int = 2) -> dict[str, Any]:
    """A new product ``code`` with a cloud policy of ``seats`` seats, and a license of it."""
    product = admin_ok(gateway, token, "products", "create", "--code", code, "--name", code.title())
    policy = admin_ok(
        gateway,
        token,
        "policies",
        "create",
        "--product-id",
        product["id"],
        "--name",
        "Floating",
        "--backend",
        "cloud",
        "--seats",
        str(seats),
        "--options",
        '{"lease_ttl_seconds": 600, "on_seat_limit": "take_over"}',
    )
    # The backend fills in its defaults.
    assert policy["options"] == {"lease_ttl_seconds": 600, "on_seat_limit": "take_over", "heartbeat_interval_seconds": 300}
    return admin_ok(gateway, token, "licenses", "create", "--policy-id", policy["id"])


def test_admin_credentials_create_writes_a_0600_file_and_never_prints_its_secret(
    gateway: Gateway, init_output: dict[str, str], tmp_path: Path
) -> None:
    token, tenant = init_output["admin_token"], init_output["tenant_id"]
    license = cloud_license(gateway, token, "cloud-cad")
    path = tmp_path / "credential.json"
    created = gateway.admin(
        "credentials", "create", "--license-id", license["id"], "--label", "build-farm", "--out", str(path), token=token
    )
    assert created.returncode == 0, created.stderr
    answer = json.loads(created.stdout)
    # The file: mode 0600, the credential file as JSON (indented, one trailing newline).
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    credential_file = json.loads(text)
    assert text == json.dumps(credential_file, indent=2) + "\n"
    assert credential_file["format"] == "licensor-credential-1"
    assert CREDENTIAL.fullmatch(credential_file["credential"])
    assert (
        credential_file["server"],
        credential_file["tenant"],
        credential_file["product"],
        credential_file["license"],
        credential_file["label"],
    ) == (gateway.url, tenant, "cloud-cad", license["id"], "build-farm")
    assert credential_file["keys"]
    # The printed answer: the credential and where its file went, never the secret.
    assert answer["credential_file_written_to"] == str(path) and "credential_file" not in answer
    credential = answer["credential"]
    assert credential["id"] == credential_file["credential"].split(".")[0]
    assert (credential["state"], credential["label"], credential["license_id"]) == ("active", "build-farm", license["id"])
    secret = credential_file["credential"].split(".")[1]
    assert secret not in created.stdout + created.stderr

    # An existing file is never overwritten: refused before the gateway is asked, so no credential is made.
    again = gateway.admin("credentials", "create", "--license-id", license["id"], "--out", str(path), token=token)
    assert again.returncode == 2 and "exists already" in again.stderr and again.stdout == ""
    assert path.read_text() == text
    reissue = gateway.admin("credentials", "reissue", credential["id"], "--out", str(path), token=token)
    assert reissue.returncode == 2 and "exists already" in reissue.stderr
    assert path.read_text() == text
    listed = admin_ok(gateway, token, "credentials", "list", "--license-id", license["id"])
    assert [(item["id"], item["state"]) for item in listed["data"]] == [(credential["id"], "active")]

    # A refusal leaves no file behind.
    other = admin_ok(gateway, token, "products", "create", "--code", "not-cloud", "--name", "Not cloud")
    policy = admin_ok(
        gateway, token, "policies", "create", "--product-id", other["id"], "--name", "Lite", "--backend", "cloud-lite"
    )
    lite = admin_ok(gateway, token, "licenses", "create", "--policy-id", policy["id"])
    refused = gateway.admin(
        "credentials", "create", "--license-id", lite["id"], "--out", str(tmp_path / "lite.json"), token=token
    )
    assert refused.returncode == 1 and refused.stderr.startswith("error: LICENSE_NOT_CLOUD: ")
    assert not (tmp_path / "lite.json").exists()

    # With --out - the whole answer is printed: the secret is shown this once.
    shown = admin_ok(gateway, token, "credentials", "create", "--license-id", license["id"], "--out", "-")
    assert shown["object"] == "credential_file" and CREDENTIAL.fullmatch(shown["credential_file"]["credential"])
    assert shown["credential_file"]["label"] is None and shown["credential"]["label"] is None


def test_admin_credentials_and_leases_of_a_cloud_license(gateway: Gateway, init_output: dict[str, str], tmp_path: Path) -> None:
    token, tenant = init_output["admin_token"], init_output["tenant_id"]
    license = cloud_license(gateway, token, "cloud-render")
    first_path, second_path = tmp_path / "first.json", tmp_path / "second.json"
    first = admin_ok(gateway, token, "credentials", "create", "--license-id", license["id"], "--out", str(first_path))[
        "credential"
    ]
    first_credential = json.loads(first_path.read_text())["credential"]

    # get, label, clear the label
    assert admin_ok(gateway, token, "credentials", "get", first["id"]) == first
    labelled = admin_ok(gateway, token, "credentials", "label", first["id"], "--label", "render node 1")
    assert (labelled["id"], labelled["label"]) == (first["id"], "render node 1")
    assert admin_ok(gateway, token, "credentials", "label", first["id"], "--no-label")["label"] is None

    # A device checks out a lease with the credential: the admin API lists it and counts it in today's usage.
    status, checked_out = http_post(
        f"{gateway.url}/v1/leases",
        {"tenant": tenant, "credential": first_credential, "device_id": "render-1", "device_name": "Render 1"},
    )
    assert status == 201, checked_out
    lease = checked_out["lease"]
    leases = admin_ok(gateway, token, "leases", "list", "--license-id", license["id"])
    assert [(item["id"], item["state"], item["credential_id"]) for item in leases["data"]] == [
        (lease["id"], "active", first["id"])
    ]
    assert admin_ok(gateway, token, "leases", "list", "--license-id", license["id"], "--state", "released")["data"] == []
    got = admin_ok(gateway, token, "leases", "get", lease["id"])
    assert (got["id"], got["device_id"], got["device_name"], got["state"]) == (lease["id"], "render-1", "Render 1", "active")
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    usage = admin_ok(gateway, token, "leases", "usage", "--license-id", license["id"], "--from", today, "--to", today)
    assert (usage["object"], usage["license_id"], usage["seats"]) == ("lease_usage", license["id"], 2)
    assert usage["days"] == [{"date": today, "peak": 1, "checkouts": 1}]
    assert admin_ok(gateway, token, "leases", "usage", "--license-id", license["id"])["days"][-1] == usage["days"][0]

    # Reissue: a new credential (to a new file), the old one revoked and its lease ended.
    reissued = admin_ok(
        gateway, token, "credentials", "reissue", first["id"], "--label", "render node 1b", "--out", str(second_path)
    )
    second = reissued["credential"]
    assert reissued["credential_file_written_to"] == str(second_path) and "credential_file" not in reissued
    assert (second["reissue_of"], second["state"], second["label"]) == (first["id"], "active", "render node 1b")
    assert stat.S_IMODE(os.stat(second_path).st_mode) == 0o600
    second_credential = json.loads(second_path.read_text())["credential"]
    assert second_credential.split(".")[0] == second["id"] and second_credential.split(".")[1] not in json.dumps(reissued)
    old = admin_ok(gateway, token, "credentials", "get", first["id"])
    assert old["state"] == "revoked" and old["revoked_at"] is not None
    assert admin_ok(gateway, token, "leases", "get", lease["id"])["state"] == "revoked"
    status, refused = http_post(
        f"{gateway.url}/v1/leases", {"tenant": tenant, "credential": first_credential, "device_id": "render-1"}
    )
    assert (status, refused["error"]["code"]) == (403, "CREDENTIAL_REVOKED")
    by_state = {
        state: [
            item["id"]
            for item in admin_ok(gateway, token, "credentials", "list", "--license-id", license["id"], "--state", state)["data"]
        ]
        for state in ("active", "revoked")
    }
    assert by_state == {"active": [second["id"]], "revoked": [first["id"]]}

    # The vendor frees a seat: the lease is revoked, and releasing it again is refused.
    status, checked_out = http_post(
        f"{gateway.url}/v1/leases", {"tenant": tenant, "credential": second_credential, "device_id": "render-2"}
    )
    assert status == 201, checked_out
    released = admin_ok(gateway, token, "leases", "end", checked_out["lease"]["id"], "--reason", "node retired")
    assert (released["id"], released["state"]) == (checked_out["lease"]["id"], "revoked") and released["ended_at"] is not None
    again = gateway.admin("leases", "end", checked_out["lease"]["id"], token=token)
    assert again.returncode == 1 and again.stderr.startswith("error: LEASE_ENDED: ")

    # Revoke (final), with a reason.
    revoked = admin_ok(gateway, token, "credentials", "revoke", second["id"], "--reason", "contract ended")
    assert (revoked["id"], revoked["state"]) == (second["id"], "revoked") and revoked["revoked_at"] is not None
    # Secrets never reach the gateway's log.
    for secret in (first_credential, second_credential):
        assert secret.split(".")[1] not in gateway.stdout + gateway.stderr


def test_admin_without_a_gateway_exits_2(init_output: dict[str, str]) -> None:
    completed = run_cli(
        "admin", "--url", f"http://127.0.0.1:{free_port()}", "products", "list", LICENSOR_TOKEN=init_output["admin_token"]
    )
    assert completed.returncode == 2
    assert "connection refused" in completed.stderr


def test_admin_without_a_token_exits_2(gateway: Gateway, tmp_path: Path) -> None:
    completed = run_cli("admin", "--url", gateway.url, "products", "list")
    assert completed.returncode == 2 and "no API token" in completed.stderr
    token_file = tmp_path / "token"
    token_file.write_text("")
    completed = run_cli("admin", "--url", gateway.url, "--token-file", str(token_file), "products", "list")
    assert completed.returncode == 2 and "is empty" in completed.stderr


def test_admin_reads_the_token_file(gateway: Gateway, init_output: dict[str, str], tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(init_output["admin_token"] + "\n")
    completed = run_cli("admin", "--url", gateway.url, "--token-file", str(token_file), "products", "list")
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["object"] == "list"


def test_version_names_licensor_the_core_the_loop_and_the_installed_backends() -> None:
    completed = run_cli("--version")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == [
        "licensor 0.1.0",
        f"core: {_impl.IMPLEMENTATION}",  # the pure-Python pass runs it on python
        "loop: uvloop 0.23.0",  # requirements.txt installs it
        "backends: activation (licensor-activation 0.1.0), cloud (licensor-cloud 0.1.0), cloud-lite (licensor-cloud-lite 0.1.0)",
    ]
    turned_off = run_cli("--version", LICENSOR_LOOP="asyncio")
    assert turned_off.stdout.splitlines()[2] == "loop: asyncio (LICENSOR_LOOP=asyncio)"


@pytest.mark.parametrize("command", [(), ("serve",), ("init",), ("admin",)], ids=lambda c: " ".join(c) or "licensor")
def test_every_command_has_help(command: tuple[str, ...]) -> None:
    completed = run_cli(*command, "--help")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("usage: licensor")


# --- the admin commands are generated from the operations ------------------------------------------------
def admin_parsers(parser: argparse.ArgumentParser) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """(GROUP,) and (GROUP, VERB) -> the parser of ``licensor admin GROUP [VERB]``."""

    def children(of: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        (subparsers,) = [action for action in of._actions if isinstance(action, argparse._SubParsersAction)]
        return dict(subparsers.choices)

    found: dict[tuple[str, ...], argparse.ArgumentParser] = {}
    for group, group_parser in children(children(parser)["admin"]).items():
        found[(group,)] = group_parser
        for verb, verb_parser in children(group_parser).items():
            found[(group, verb)] = verb_parser
    return found


def operation_of(parser: argparse.ArgumentParser) -> Any:
    return parser.get_default("admin_command").operation


def admin_operations_of(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        operation["operationId"]: operation
        for path, methods in document["paths"].items()
        if path.startswith("/v1/admin/")
        for operation in methods.values()
    }


def test_the_admin_commands_are_the_admin_operations_of_the_openapi_document(gateway: Gateway) -> None:
    from importlib.metadata import entry_points

    from licensor.cli import build_parser

    # The gateway serves all three first-party backends.
    assert {"activation", "cloud", "cloud-lite"} <= {ep.name for ep in entry_points(group="licensor.backends")}
    status, document = http_get(f"{gateway.url}/openapi.json")
    assert status == 200
    operations = admin_operations_of(document)
    assert {"list_credentials", "list_activations", "list_leases", "list_customers", "list_events"} <= set(operations)

    commands = {name: parser for name, parser in admin_parsers(build_parser()).items() if len(name) == 2}
    by_operation = [operation_of(parser).operation_id for parser in commands.values()]
    assert sorted(by_operation) == sorted(operations)  # one command per operation, and no other
    assert len(commands) == len(operations) >= 58
    # The flows that keep secrets off the command line and the screen, declared once: in OpenAPI and the CLI.
    assert operations["lookup_license"]["x-secret-input"] == {"field": "key", "prompt": "License key: "}
    for made in ("create_credential", "reissue_credential"):
        assert operations[made]["x-secret-output"]["field"] == "credential_file", made
    for name, parser in commands.items():
        declared = operations[operation_of(parser).operation_id]
        options = {option for action in parser._actions for option in action.option_strings}
        if "x-secret-input" in declared:
            assert f"--{declared['x-secret-input']['field']}" not in options, name
        assert ("--out" in options) == ("x-secret-output" in declared), name


def test_the_admin_commands_are_named_by_group_and_verb() -> None:
    from licensor.cli import admin_commands, admin_operations

    names = {(c.group, c.verb): c.operation.operation_id for c in admin_commands(admin_operations())}
    assert names["credentials", "list"] == "list_credentials"
    assert names["credentials", "reissue"] == "reissue_credential"
    assert names["licenses", "lookup"] == "lookup_license"
    assert names["leases", "usage"] == "lease_usage"
    assert names["tenant", "get"] == "get_tenant"
    assert names["tokens", "revoke"] == "revoke_token"
    flags = {(c.group, c.verb): [(i.place, i.name, i.option) for i in c.inputs] for c in admin_commands(admin_operations())}
    # A path parameter of the group's own collection is the positional ID; another one is named after its segment.
    assert flags["credentials", "revoke"] == [("path", "id", None), ("body", "reason", "--reason")]
    assert flags["credentials", "list"][0] == ("path", "id", "--license-id")


def test_building_the_admin_commands_compiles_no_validator() -> None:
    from licensor.cli import admin_commands, admin_operations

    operations = admin_operations()
    admin_commands(operations)
    compiled = [op.operation_id for op in operations if {"body_schema", "query_schema"} & set(vars(op))]
    assert not compiled


def test_every_admin_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    from licensor.cli import admin_commands, admin_operations, build_parser
    from licensor.plugins import plugin_manager

    from tests.example_backend import ExamplePlugin

    # The installed backends' commands, and a third party's, registered as any plugin is.
    parser = build_parser(admin_commands(admin_operations(plugin_manager([ExamplePlugin()]))))
    parsers = admin_parsers(parser)
    assert ("example", "get-terms") in parsers
    for name in parsers:
        with pytest.raises(SystemExit) as exited:
            parser.parse_args(["admin", *name, "--help"])
        assert exited.value.code == 0, name
        shown = " ".join(capsys.readouterr().out.split())
        assert shown.startswith(f"usage: licensor admin {' '.join(name)} "), name
        if len(name) == 2:
            operation = operation_of(parsers[name])
            assert " ".join(operation.summary.split()) in shown, name
            assert " ".join(operation.description.split()) in shown, name
            assert f"{operation.method} {operation.path}" in shown, name


def install_example_backend(directory: Path) -> str:
    """tests/example_backend.py installed as a third party's distribution would be: a dist-info with an entry
    point of the group licensor.backends, on the path (no change to licensor). The PYTHONPATH that finds it."""
    (directory / "licensor_example_entry.py").write_text(
        "from tests.example_backend import ExamplePlugin\n\nplugin = ExamplePlugin()\n"
    )
    dist_info = directory / "licensor_example-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: licensor-example\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[licensor.backends]\nexample = licensor_example_entry:plugin\n")
    root = str(Path(__file__).resolve().parent.parent)  # for the `tests` package
    return os.pathsep.join(p for p in (PYTHON_DIR, str(directory), root, os.environ.get("PYTHONPATH")) if p)


def test_an_installed_third_party_backend_gets_admin_commands(tmp_path: Path) -> None:
    pythonpath = install_example_backend(tmp_path)
    listed = run_cli("admin", "example", "--help", PYTHONPATH=pythonpath)
    assert listed.returncode == 0, listed.stderr
    assert "get-terms" in listed.stdout and "read what the example backend allows a license" in listed.stdout

    server = Gateway(tmp_path / "var", "--init-if-empty", env={"PYTHONPATH": pythonpath})
    try:
        server.wait_healthy()
        token = (tmp_path / "var" / "admin-token").read_text().strip()

        def ok(*args: str) -> Any:
            completed = server.admin(*args, token=token, PYTHONPATH=pythonpath)
            assert completed.returncode == 0, completed.stderr
            return json.loads(completed.stdout)

        product = ok("products", "create", "--code", "example-app", "--name", "Example app")
        options = '{"max_major_version": 3}'
        policy = ok(
            "policies", "create", "--product-id", product["id"], "--name", "v3", "--backend", "example", "--options", options
        )
        license = ok("licenses", "create", "--policy-id", policy["id"])
        assert ok("example", "get-terms", "--license-id", license["id"]) == {
            "license_id": license["id"],
            "max_major_version": 3,
        }
    finally:
        assert server.stop() == 0


def test_admin_lookup_reads_the_key_from_standard_input_only(gateway: Gateway, init_output: dict[str, str]) -> None:
    token = init_output["admin_token"]
    empty = gateway.admin("licenses", "lookup", token=token, stdin="")
    assert empty.returncode == 2 and "no key on standard input" in empty.stderr
    flag = gateway.admin("licenses", "lookup", "--key", "ABCD-EFGH", token=token, stdin="")
    assert flag.returncode == 2 and "unrecognized arguments: --key" in flag.stderr


def test_admin_lookup_asks_for_the_key_without_echo_on_a_terminal(
    gateway: Gateway, init_output: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from licensor.cli import admin, main

    asked = []

    class Terminal:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(admin.sys, "stdin", Terminal())

    def getpass(prompt: str) -> str:
        asked.append(prompt)
        return "not a key\n"

    monkeypatch.setattr(admin.getpass, "getpass", getpass)
    monkeypatch.setenv("LICENSOR_TOKEN", init_output["admin_token"])
    with pytest.raises(SystemExit) as exited:
        main(["admin", "--url", gateway.url, "licenses", "lookup"])
    # What was typed went to the gateway, which told it from a key.
    assert (exited.value.code, asked) == (1, ["License key: "])
    assert capsys.readouterr().err.startswith("error: LICENSE_KEY_MALFORMED: ")


def test_admin_credentials_create_writes_the_declared_default_file(
    gateway: Gateway, init_output: dict[str, str], tmp_path: Path
) -> None:
    token = init_output["admin_token"]
    _, document = http_get(f"{gateway.url}/openapi.json")
    declared = admin_operations_of(document)["create_credential"]["x-secret-output"]
    license = cloud_license(gateway, token, "cloud-default-file")
    created = gateway.admin("credentials", "create", "--license-id", license["id"], token=token, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    path = tmp_path / declared["default_file"]
    assert json.loads(created.stdout)[f"{declared['field']}_written_to"] == declared["default_file"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert CREDENTIAL.fullmatch(json.loads(path.read_text())["credential"])
    again = gateway.admin("credentials", "create", "--license-id", license["id"], token=token, cwd=tmp_path)
    assert again.returncode == 2 and "exists already" in again.stderr
