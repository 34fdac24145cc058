"""Offline deactivation receipts: their text form, typos, and the stale receipt of a reverted snapshot."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from licensor.testing import Gateway, make_vendor
from licensor_client import AsyncClient, RetryPolicy
from licensor_client.activation import DeviceKey
from licensor_client.codec import verify
from licensor_client.machine import Environment, MachineReading
from licensor_client.receipts import ReceiptError, make_receipt, read_receipt, receipt_message

DEVICE = DeviceKey(bytes(range(32)))
TENANT, ACTIVATION = "ten_01JBZ8Q3V6N2K4M7P9R1T5W8XE", "act_01JBZ8Q3V6N2K4M7P9R1T5W8XG"


def test_a_receipt_is_short_groupable_and_reads_back() -> None:
    receipt = make_receipt(DEVICE.seed, TENANT, ACTIVATION, 7)
    assert receipt.startswith("LDR1-") and len(receipt.replace("-", "")) == 4 + 136
    content = read_receipt(receipt.lower().replace("-", " "))
    assert (content.activation_id, content.generation) == (ACTIVATION, 7)
    assert verify(DEVICE.public_key, receipt_message(TENANT, ACTIVATION, 7), content.signature)


def test_every_mistyped_character_is_told_as_a_typo() -> None:
    receipt = make_receipt(DEVICE.seed, TENANT, ACTIVATION, 7)
    for position, char in enumerate(receipt):
        if char == "-" or position < 5:
            continue
        for other in ("Z", "Y", "0"):
            if other != char:
                with pytest.raises(ReceiptError) as typo:
                    read_receipt(receipt[:position] + other + receipt[position + 1 :])
                assert "typo" in typo.value.message
    for garbage in ("", "LDR1", "LDR2-" + receipt[5:], receipt + "0"):
        with pytest.raises(ReceiptError):
            read_receipt(garbage)


def machine() -> MachineReading:
    return MachineReading({"machine_id": "f" * 32, "cpu": "CPU", "disk": "D"}, {}, Environment("physical"))


async def test_the_receipt_of_a_reverted_snapshot_is_refused(licensor_gateway: Gateway, tmp_path: Path) -> None:
    vendor = await make_vendor(licensor_gateway, "activation", product="cad")
    keys = await vendor.public_keys()
    fast = RetryPolicy(attempts=2, base_s=0.01, cap_s=0.02)
    app = AsyncClient(
        licensor_gateway.url, vendor.tenant.id, "cad", state_dir=tmp_path / "vm", public_keys=keys, machine=machine, retry=fast
    )
    await app.activate(vendor.license["key"])
    shutil.copytree(tmp_path / "vm", tmp_path / "snapshot")  # the VM's snapshot, taken at generation 1
    await app.check_in()  # generation 2
    await app.aclose()
    reverted = AsyncClient(
        licensor_gateway.url, vendor.tenant.id, "cad", state_dir=tmp_path / "snapshot", public_keys=keys, machine=machine
    )
    stale = reverted.offline_deactivation()
    refused = await vendor.tenant.call("POST", "/v1/admin/activations/deactivation-receipt", json={"receipt": stale})
    assert (refused.status, refused.code) == (409, "RECEIPT_STALE")
    other_tenant = await make_vendor(licensor_gateway, "activation", name="Other", product="cad")
    foreign = await other_tenant.tenant.call("POST", "/v1/admin/activations/deactivation-receipt", json={"receipt": stale})
    assert (foreign.status, foreign.code) == (404, "ACTIVATION_NOT_FOUND")  # another tenant's activation is not found
    await reverted.aclose()
