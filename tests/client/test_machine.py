"""The fingerprint read from the machine: this machine, made-up machines (physical, a VM, a container with sources
missing), failing readers, and a vendor's own components."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from licensor_client.machine import DEFAULT_READERS, Reader, detect_environment, read_machine, readers

NAMES = {reader.name for reader in DEFAULT_READERS}


def test_this_machine_reads_without_error_and_the_same_every_time() -> None:
    first = read_machine()
    assert set(first.components) | set(first.skipped) == NAMES
    assert first.components, "this machine has at least one readable component"
    fingerprint = first.fingerprint("ten_x", "app")
    for _ in range(99):
        assert read_machine().fingerprint("ten_x", "app") == fingerprint


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def physical(root: Path, **overrides: str) -> Path:
    _write(
        root,
        {
            "etc/machine-id": "3d1219c7c4c5404aaa1f6d2a48adfda4\n",
            "sys/class/dmi/id/product_uuid": "4C4C4544-0042-3510-8052-B2C04F4E4B32\n",
            "sys/class/dmi/id/board_serial": "/7B5RNK2/CN1296372A0129/\n",
            "sys/class/dmi/id/sys_vendor": "Dell Inc.\n",
            "proc/cpuinfo": "processor\t: 0\nmodel name\t: Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz\nflags\t\t: fpu vme sse2\n",
            "proc/self/mountinfo": "27 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n30 27 0:52 / /proc rw - proc proc rw\n",
            "sys/devices/pci0000:00/ata1/host0/block/sda/device/serial": "S3Z9NB0K123456\n",
            "sys/devices/pci0000:00/ata1/host0/block/sda/sda1/partition": "1\n",
            "sys/devices/pci0000:00/0000:00:1f.6/net/eth0/address": "8C:EC:4B:11:22:33\n",
            "sys/devices/pci0000:00/0000:00:1f.6/device-placeholder": "",
            "sys/devices/virtual/net/lo/address": "00:00:00:00:00:00\n",
            "sys/devices/virtual/net/docker0/address": "02:42:ac:11:00:01\n",
            "proc/sys/kernel/hostname": "Workstation-17\n",
            **overrides,
        },
    )
    (root / "sys/dev/block").mkdir(parents=True)
    os.symlink(root / "sys/devices/pci0000:00/ata1/host0/block/sda/sda1", root / "sys/dev/block/8:1")
    (root / "sys/class/net").mkdir(parents=True)
    os.symlink(root / "sys/devices/pci0000:00/0000:00:1f.6/net/eth0", root / "sys/class/net/eth0")
    os.symlink(root / "sys/devices/pci0000:00/0000:00:1f.6", root / "sys/devices/pci0000:00/0000:00:1f.6/net/eth0/device")
    for virtual in ("lo", "docker0"):  # no bus device: not physical
        os.symlink(root / "sys/devices/virtual/net" / virtual, root / "sys/class/net" / virtual)
    return root


def test_a_physical_machine_gives_every_component(tmp_path: Path) -> None:
    reading = read_machine(root=physical(tmp_path), environ={})
    assert reading.environment.kind == "physical"
    assert reading.components == {
        "machine_id": "3d1219c7c4c5404aaa1f6d2a48adfda4",
        "board": "product_uuid=4c4c4544-0042-3510-8052-b2c04f4e4b32|board_serial=/7B5RNK2/CN1296372A0129/",
        "cpu": "Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz",
        "disk": "S3Z9NB0K123456",
        "mac": "8c:ec:4b:11:22:33",
        "hostname": "workstation-17",
    }
    assert reading.skipped == {}
    fingerprint = reading.fingerprint("ten_a", "cad")
    assert set(fingerprint) == set(reading.components)
    assert not {value for value in fingerprint.values()} & set(reading.components.values())  # hashes, not raw values
    assert reading.fingerprint("ten_a", "other") != fingerprint  # salted per product: nothing links the two


def test_placeholder_values_are_not_identities(tmp_path: Path) -> None:
    root = physical(
        tmp_path,
        **{
            "sys/class/dmi/id/product_uuid": "03000200-0400-0500-0006-000700080009\n",
            "sys/class/dmi/id/board_serial": "To be filled by O.E.M.\n",
        },
    )
    reading = read_machine(root=root, environ={})
    assert "board" not in reading.components and reading.skipped["board"] == "not present on this machine"


def test_a_virtual_machine_is_detected_and_keeps_its_components(tmp_path: Path) -> None:
    root = physical(tmp_path, **{"sys/class/dmi/id/sys_vendor": "QEMU\n"})
    reading = read_machine(root=root, environ={})
    assert (reading.environment.kind, reading.environment.evidence) == ("vm", "DMI sys_vendor qemu")
    assert set(reading.components) == NAMES
    cpu_flag = tmp_path / "flagged"
    physical(cpu_flag, **{"proc/cpuinfo": "model name\t: AMD EPYC\nflags\t\t: fpu hypervisor\n"})
    assert detect_environment(cpu_flag, {}).kind == "vm"


def test_a_container_with_sources_missing_reads_what_is_stable(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            ".dockerenv": "",
            "etc/machine-id": "00000000000000000000000000000001\n",  # baked into the image
            "proc/cpuinfo": "model name\t: AMD EPYC 7B13\n",
            "proc/self/mountinfo": "600 500 0:52 / / rw - overlay overlay rw,lowerdir=/x\n",
            "proc/sys/kernel/hostname": "3f2a9c1b7d0e\n",
        },
    )
    reading = read_machine(root=tmp_path, environ={})
    assert reading.environment.kind == "container"
    assert reading.components == {"cpu": "AMD EPYC 7B13"}
    assert reading.skipped == {
        "machine_id": "unstable in a container: dropped",
        "board": "not present on this machine",
        "disk": "not present on this machine",
        "mac": "unstable in a container: dropped",
        "hostname": "unstable in a container: dropped",
    }
    cgroup = tmp_path / "cgroup"
    _write(cgroup, {"proc/1/cgroup": "0::/kubepods/besteffort/pod1234\n"})
    assert detect_environment(cgroup, {}).kind == "container"
    assert detect_environment(Path("/"), {"container": "podman"}).kind in ("container",)


def test_an_empty_machine_reads_nothing_and_says_why(tmp_path: Path) -> None:
    reading = read_machine(root=tmp_path, environ={})
    assert reading.components == {}
    assert set(reading.skipped) == NAMES
    assert reading.skipped["cpu"].startswith("unreadable")  # /proc/cpuinfo missing


def test_a_garbled_machine_id_is_skipped_with_its_reason(tmp_path: Path) -> None:
    reading = read_machine(root=physical(tmp_path, **{"etc/machine-id": "not-an-id\n"}), environ={})
    assert reading.skipped["machine_id"].startswith("failed (ValueError")


def test_a_vendor_adds_and_replaces_components_and_a_failing_reader_never_crashes(tmp_path: Path) -> None:
    def denied(root: Path) -> str:
        raise PermissionError(13, "Permission denied")

    def broken(root: Path) -> str:
        raise RuntimeError("the dongle driver is not loaded")

    chosen = readers(
        Reader("hostname", lambda root: "fixed-name"),
        Reader("dongle", lambda root: "D-42"),
        Reader("tpm", denied),
        Reader("usb", broken),
    )
    assert [r.name for r in chosen] == ["machine_id", "board", "cpu", "disk", "mac", "hostname", "dongle", "tpm", "usb"]
    reading = read_machine(chosen, root=physical(tmp_path), environ={})
    assert reading.components["hostname"] == "fixed-name" and reading.components["dongle"] == "D-42"
    assert reading.skipped == {
        "tpm": "no permission (Permission denied)",
        "usb": "failed (RuntimeError: the dongle driver is not loaded)",
    }


@pytest.mark.parametrize("denied", ["product_uuid", "both"])
def test_dmi_serials_readable_by_root_only_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, denied: str) -> None:
    from licensor_client import machine

    root = physical(tmp_path)
    real = machine._text

    def guarded(path: Path) -> str:  # as /sys answers a user without root for these two files
        if path.name == "product_uuid" or (denied == "both" and path.name == "board_serial"):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(machine, "_text", guarded)
    reading = read_machine(root=root, environ={})
    if denied == "both":
        assert reading.skipped["board"].startswith("no permission")
    else:
        assert reading.components["board"] == "board_serial=/7B5RNK2/CN1296372A0129/"
