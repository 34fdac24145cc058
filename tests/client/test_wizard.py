"""licensor-activate, the real console script, driven in a pseudo-terminal (pexpect) against the real gateway on
127.0.0.1, on both stores: for each backend activate, check a feature, check in and deactivate; the activation
backend offline too (a dead server still starts it) and by request file answered with `licensor admin`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pexpect
from licensor.testing import Gateway, make_vendor
from licensor.testing.infrastructure import free_port
from licensor.testing.vendors import Vendor
from licensor_client import AsyncClient
from licensor_client.machine import Environment, MachineReading

from .test_client import saas_vendor

WIZARD = str(Path(sys.executable).with_name("licensor-activate"))


class Wizard:
    """licensor-activate with the vendor's settings file (LICENSOR_ACTIVATE_CONFIG), as a program ships it."""

    def __init__(self, settings: dict[str, Any], tmp_path: Path) -> None:
        config = tmp_path / "licensor-activate.json"
        config.write_text(json.dumps(settings))
        self.env = {**os.environ, "LICENSOR_ACTIVATE_CONFIG": str(config), "NO_COLOR": "1"}
        self.env.pop("HTTPS_PROXY", None)

    def spawn(self, *args: str) -> pexpect.spawn:
        return pexpect.spawn(WIZARD, list(args), env=self.env, encoding="utf-8", timeout=30, dimensions=(40, 200))

    def run(self, *args: str) -> tuple[int, str]:
        """A command to its end: (exit code, what it printed)."""
        child = self.spawn(*args)
        child.expect(pexpect.EOF)
        child.close()
        return child.exitstatus, child.before

    def json(self, *args: str) -> tuple[int, dict[str, Any]]:
        status, printed = self.run("--json", *args)
        return status, json.loads(printed.strip().splitlines()[-1])


async def settings_of(gateway: Gateway, vendor: Vendor, tmp_path: Path) -> dict[str, Any]:
    keys = await gateway.call("GET", "/v1/keys", params={"tenant": vendor.tenant.id})
    return {
        "server": gateway.url,
        "tenant": vendor.tenant.id,
        "product": vendor.product["code"],
        "state_dir": str(tmp_path / "state"),
        "public_keys": keys.body,
    }


def other_machine() -> MachineReading:
    return MachineReading({"machine_id": "e" * 32, "board": "other-board", "disk": "other-disk"}, {}, Environment("physical"))


def typo_of(key: str) -> str:
    last = key[-1]
    return key[:-1] + ("0" if last != "0" else "1")


async def test_activation_in_a_terminal_from_the_key_prompt_to_deactivation(licensor_gateway: Gateway, tmp_path: Path) -> None:
    vendor = await make_vendor(licensor_gateway, "activation", product="cad")
    wizard = Wizard(await settings_of(licensor_gateway, vendor, tmp_path), tmp_path)
    key = vendor.license["key"]

    def dialog() -> None:
        child = wizard.spawn("activate")
        child.expect("License key")
        child.sendline(typo_of(key))
        child.expect("typo")  # the check character, checked on enter
        child.expect("License key")
        child.sendline(key.lower().replace("-", " "))  # forgiving: case and grouping
        child.expect("the key looks right")
        child.expect("Activating with the license server")  # progress while the gateway is asked
        child.expect("Activated")
        child.expect("Next:")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0

        assert wizard.run("check", "draw")[0] == 0
        status, printed = wizard.run("check", "render")
        assert status == 1 and "FEATURE_NOT_ENTITLED" in printed
        # Offline: the license server unreachable, the program still starts.
        status, printed = wizard.run("check", "draw", "--server", f"http://127.0.0.1:{free_port()}")
        assert status == 0 and "allowed" in printed
        status, checked_in = wizard.json("check-in")
        assert (status, checked_in["code"], checked_in["generation"]) == (0, "CHECKED_IN", 2)
        status, printed = wizard.run("deactivate")
        assert status == 0 and "seat is free" in printed
        status, after = wizard.json("check", "draw")
        assert (status, after["code"]) == (1, "DEACTIVATED")

    await asyncio.to_thread(dialog)
    assert [e["type"] for e in await vendor.events() if e["type"].startswith("activation.")] == [
        "activation.created",
        "activation.checked_in",
        "activation.deactivated",
    ]


async def test_without_a_terminal_nothing_is_asked_and_exit_codes_tell(licensor_gateway: Gateway, tmp_path: Path) -> None:
    vendor = await make_vendor(licensor_gateway, "activation", product="cad")
    settings = await settings_of(licensor_gateway, vendor, tmp_path)
    wizard = Wizard(settings, tmp_path)

    def scripted() -> None:
        def run(*args: str) -> tuple[int, dict[str, Any]]:
            done = subprocess.run(
                [WIZARD, *args], env=wizard.env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
            )
            return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])

        assert run("--json", "activate") == (
            2,
            {
                "code": "USAGE",
                "command": "activate",
                "exit": 2,
                "message": "give the license key (there is no terminal to ask on)",
            },
        )
        status, typo = run("--json", "activate", typo_of(vendor.license["key"]))
        assert (status, typo["code"]) == (2, "LICENSE_KEY_MALFORMED")
        status, down = run(
            "--json", "activate", vendor.license["key"], "--server", f"http://127.0.0.1:{free_port()}", "--timeout", "1"
        )
        assert (status, down["code"]) == (3, "GATEWAY_UNAVAILABLE")
        status, done = run("--json", "activate", vendor.license["key"])
        assert (status, done["code"], done["generation"]) == (0, "ACTIVATED", 1)
        status, status_report = run("--json", "status")
        assert (status, status_report["code"], status_report["backend"]) == (0, "VALID", "activation")
        status, doctor = run("--json", "doctor")
        assert status == 0 and {f["area"] for f in doctor["findings"]} >= {
            "fingerprint",
            "clock",
            "proxy",
            "connectivity",
            "check",
        }

    await asyncio.to_thread(scripted)


async def test_offline_activation_by_request_file_answered_with_licensor_admin(licensor_gateway: Gateway, tmp_path: Path) -> None:
    vendor = await make_vendor(licensor_gateway, "activation", product="cad")
    settings = await settings_of(licensor_gateway, vendor, tmp_path)
    settings["server"] = f"http://127.0.0.1:{free_port()}"  # the device never reaches the gateway
    wizard = Wizard(settings, tmp_path)
    request, response = tmp_path / "activation-request.txt", tmp_path / "license.lf1"

    def offline() -> None:
        status, printed = wizard.run("request", vendor.license["key"], "--out", str(request))
        assert status == 0 and "request file" in printed
        first = request.read_text()
        assert wizard.run("request", vendor.license["key"], "--out", str(request))[0] == 0
        assert request.read_text() == first  # a transaction resumed: the same request, not a second one
        assert wizard.json("status")[1]["offline_pending"] is True
        # The vendor answers it with the admin CLI (twice: the same activation, never a second seat).
        for _ in range(2):
            answered = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "licensor.cli",
                    "admin",
                    "--url",
                    licensor_gateway.url,
                    "activations",
                    "answer-request",
                    "--request",
                    first.strip(),
                ],
                env={**os.environ, "LICENSOR_TOKEN": vendor.tenant.admin_token},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert answered.returncode == 0, answered.stderr
        response.write_text(json.loads(answered.stdout)["license_file"] + "\n")
        status, imported = wizard.json("import", str(response))
        assert (status, imported["code"], imported["mode"]) == (0, "ACTIVATED", "offline")
        status, checked = wizard.json("check", "draw")
        assert (status, checked["code"]) == (0, "VALID")
        assert wizard.json("status")[1]["offline_pending"] is False
        assert wizard.json("cancel")[1]["code"] == "NOTHING_PENDING"

    await asyncio.to_thread(offline)
    activations = await vendor.tenant.list_all(f"{vendor.license_path}/activations")
    assert len(activations) == 1 and activations[0]["mode"] == "offline"


async def test_a_cloud_credential_file_through_the_wizard(licensor_gateway: Gateway, tmp_path: Path) -> None:
    vendor = await make_vendor(licensor_gateway, "cloud", product="cad")
    made = await vendor.tenant.ok("POST", f"{vendor.license_path}/credentials", 201, json={"label": "lab"})
    credential = tmp_path / "lab.licensor-credential"
    credential.write_bytes(orjson.dumps(made["credential_file"]))
    wizard = Wizard(await settings_of(licensor_gateway, vendor, tmp_path), tmp_path)

    def dialog() -> None:
        status, printed = wizard.run("activate", "--credential-file", str(credential))
        assert status == 0 and "Imported credential" in printed
        status, printed = wizard.run("check", "draw")
        assert status == 0 and "allowed" in printed
        assert wizard.run("check", "render")[0] == 1
        assert wizard.json("check-in")[1]["code"] == "VALID"
        assert wizard.run("deactivate")[0] == 0
        assert wizard.json("check", "draw")[1]["code"] == "NOT_ACTIVATED"

    await asyncio.to_thread(dialog)
    leases = await vendor.tenant.list_all(f"{vendor.license_path}/leases")
    assert leases and all(lease["state"] == "released" for lease in leases)


async def test_a_saas_product_token_through_the_wizard(licensor_gateway: Gateway, tmp_path: Path) -> None:
    vendor, token = await saas_vendor(licensor_gateway)
    wizard = Wizard(await settings_of(licensor_gateway, vendor, tmp_path), tmp_path)

    def dialog() -> None:
        assert wizard.run("activate", "--product-token", token)[0] == 0
        status, printed = wizard.run("check", "--subject", "acme", "reports")
        assert status == 0 and "acme may use reports" in printed
        assert wizard.run("check", "--subject", "acme", "exports")[0] == 1
        assert wizard.run("check-in")[0] == 0
        assert wizard.run("deactivate")[0] == 0
        assert wizard.json("check", "--subject", "acme", "reports")[1]["code"] == "NOT_ACTIVATED"

    await asyncio.to_thread(dialog)


def test_the_exit_codes_are_documented() -> None:
    from licensor_client.wizard import EXIT_CODES

    page = (Path(__file__).resolve().parents[2] / "docs" / "client.md").read_text()
    for code in EXIT_CODES:
        assert f"| {code} |" in page


async def test_offline_deactivation_by_a_receipt_the_vendor_enters(licensor_gateway: Gateway, tmp_path: Path) -> None:
    vendor = await make_vendor(licensor_gateway, "activation", product="cad")
    wizard = Wizard(await settings_of(licensor_gateway, vendor, tmp_path), tmp_path)

    def offline() -> str:
        assert wizard.run("activate", vendor.license["key"])[0] == 0
        status, printed = wizard.run("deactivate", "--offline", "--server", f"http://127.0.0.1:{free_port()}")
        assert status == 0 and "LDR1-" in printed
        status, again = wizard.json("deactivate", "--offline")
        assert (status, again["code"]) == (0, "DEACTIVATED") and again["receipt"] in printed  # the same receipt
        assert wizard.json("check", "draw")[1]["code"] == "DEACTIVATED"
        entered = subprocess.run(
            [
                sys.executable,
                "-m",
                "licensor.cli",
                "admin",
                "--url",
                licensor_gateway.url,
                "activations",
                "deactivation-receipt",
                "--receipt",
                again["receipt"].lower(),
            ],
            env={**os.environ, "LICENSOR_TOKEN": vendor.tenant.admin_token},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert entered.returncode == 0, entered.stderr
        assert json.loads(entered.stdout)["state"] == "deactivated"
        return str(again["receipt"])

    receipt = await asyncio.to_thread(offline)
    # The seat (the license's only one) is free at once: another computer activates.
    keys = await vendor.public_keys()
    other = AsyncClient(
        licensor_gateway.url, vendor.tenant.id, "cad", state_dir=tmp_path / "other", public_keys=keys, machine=other_machine
    )
    assert (await other.activate(vendor.license["key"])).generation == 1
    await other.aclose()
    events = [e for e in await vendor.events("activation.deactivated")]
    assert len(events) == 1 and events[0]["data"]["reason"] == "offline receipt"
    typo = receipt[:-1] + ("0" if receipt[-1] != "0" else "1")
    refused = await vendor.tenant.call("POST", "/v1/admin/activations/deactivation-receipt", json={"receipt": typo})
    assert (refused.status, refused.code) in ((422, "RECEIPT_INVALID"), (422, "RECEIPT_MALFORMED"))
    twice = await vendor.tenant.call("POST", "/v1/admin/activations/deactivation-receipt", json={"receipt": receipt})
    assert twice.status == 200 and twice.body["state"] == "deactivated"
