"""The device's fingerprint, read from the machine (Linux).

:func:`read_machine` runs each :class:`Reader` and returns the raw values (:class:`MachineReading`); only their
salted hashes leave the device (:meth:`MachineReading.fingerprint`, salted with the tenant and product). The
components and their default weights (``licensor_client.fingerprint.DEFAULT_WEIGHTS``; the policy's match rule
decides in the end):

=============  ======  ================================================================================
component      weight  source
=============  ======  ================================================================================
``machine_id``  4      ``/etc/machine-id`` (or ``/var/lib/dbus/machine-id``), made at installation
``board``       3      DMI product UUID and board serial (``/sys/class/dmi/id``; readable by root only)
``cpu``         2      the CPU's model name (``/proc/cpuinfo``)
``disk``        2      the serial (or WWID) of the disk holding ``/``
``mac``         1      the MAC addresses of the physical network interfaces (those with a bus device)
``hostname``    1      the host name
=============  ======  ================================================================================

A reader that fails (a file missing, no permission, garbage where a value should be) is skipped and reported in
:attr:`MachineReading.skipped`; reading never raises. The environment is detected (:class:`Environment`) and
handled explicitly: **in a container** the machine id (baked into the image, shared by all its containers), the
host name and the MAC addresses (made anew for each container) are dropped as unstable, so the fingerprint rests
on the host's hardware that the container can see; **in a virtual machine** every component is kept (a clone
gets a new DMI UUID and MAC from most hypervisors, and the activation backend's generations catch the rest).

A vendor adds or replaces components with :func:`readers` (``readers(Reader("dongle", read_dongle))``). Other
operating systems: a :class:`Reader` is a name and a function of the root path, so a Windows build adds
readers of ``MachineGuid`` (registry), ``Win32_ComputerSystemProduct.UUID``, ``Win32_BaseBoard.SerialNumber``,
``Win32_DiskDrive.SerialNumber`` and the adapters' MACs, and a macOS build ``IOPlatformUUID`` and
``IOPlatformSerialNumber`` (``ioreg``), under the same component names; only Linux is built and tested.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from licensor_client.fingerprint import hash_components, product_salt

__all__ = ["DEFAULT_READERS", "Environment", "MachineReading", "Reader", "read_machine", "readers"]

_JUNK = frozenset(
    {
        "",
        "0",
        "none",
        "not specified",
        "not applicable",
        "default string",
        "to be filled by o.e.m.",
        "system serial number",
        "00000000-0000-0000-0000-000000000000",
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
        "03000200-0400-0500-0006-000700080009",  # a placeholder UUID many boards ship with
    }
)
_VM_VENDORS = ("qemu", "kvm", "vmware", "innotek", "virtualbox", "xen", "microsoft corporation", "amazon ec2", "google", "bochs")
_CONTAINER_CGROUPS = re.compile(r"docker|kubepods|containerd|libpod|lxc|garden")
_MAX_READ = 1 << 16


@dataclass(frozen=True)
class Environment:
    kind: str
    """``physical``, ``vm`` or ``container``."""
    evidence: str = ""
    """What gave it away (``/.dockerenv``, ``DMI vendor QEMU``, ``hypervisor CPU flag``, ...)."""


@dataclass(frozen=True)
class Reader:
    """One component: ``read(root)`` returns its raw value, None when the machine has none; it may raise
    (OSError, ValueError, anything): the component is then skipped and the reason reported."""

    name: str
    read: Callable[[Path], str | None]
    unstable_in: frozenset[str] = frozenset()
    """Environment kinds in which the component is dropped."""


@dataclass(frozen=True)
class MachineReading:
    components: dict[str, str]
    """Raw values by component: they never leave the device (send :meth:`fingerprint`)."""
    skipped: dict[str, str]
    """Why each component that is not in :attr:`components` was skipped."""
    environment: Environment

    def fingerprint(self, tenant: str, product: str) -> dict[str, str]:
        """The salted hashes of the components: what the device presents for ``product`` of ``tenant``."""
        return hash_components(self.components, product_salt(tenant, product))


def _text(path: Path) -> str:
    with open(path, "rb") as source:
        return source.read(_MAX_READ).decode("utf-8", "replace").strip()


def _meaningful(value: str) -> str | None:
    return None if value.strip().lower() in _JUNK else value.strip()


def read_machine_id(root: Path) -> str | None:
    for candidate in ("etc/machine-id", "var/lib/dbus/machine-id"):
        try:
            value = _text(root / candidate)
        except FileNotFoundError:
            continue
        if re.fullmatch(r"[0-9a-f]{32}", value):
            return value
        raise ValueError(f"/{candidate} does not hold a machine id")
    return None


def read_board(root: Path) -> str | None:
    values, denied = [], False
    for name in ("product_uuid", "board_serial"):
        try:
            value = _meaningful(_text(root / "sys/class/dmi/id" / name))
        except FileNotFoundError:
            continue
        except PermissionError:
            denied = True
            continue
        if value is not None:
            values.append(f"{name}={value.lower() if name == 'product_uuid' else value}")
    if not values and denied:
        raise PermissionError("the DMI product UUID and board serial are readable by root only")
    return "|".join(values) or None


def read_cpu(root: Path) -> str | None:
    found: dict[str, str] = {}
    for line in _text(root / "proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu part", "cpu implementer", "processor") and value.strip():
            found.setdefault(key, value.strip())
    if "model name" in found:
        return found["model name"]
    if "cpu implementer" in found or "hardware" in found:  # ARM: no model name line
        return "/".join(found[k] for k in ("hardware", "cpu implementer", "cpu part") if k in found)
    return None


def _root_device(root: Path) -> str | None:
    """``major:minor`` of the device mounted at ``/`` (None for overlay and other device-less mounts)."""
    for line in _text(root / "proc/self/mountinfo").splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == "/":
            number = fields[2]
            return None if number.startswith("0:") else number
    return None


def read_disk(root: Path) -> str | None:
    number = _root_device(root)
    if number is None:
        return None
    block = root / "sys/dev/block" / number
    if not block.exists():
        return None
    device = Path(os.path.realpath(block))
    if (device / "partition").exists():
        device = device.parent  # the disk, not its partition
    for candidate in ("device/serial", "serial", "wwid", "device/wwid"):
        try:
            value = _meaningful(_text(device / candidate))
        except (FileNotFoundError, NotADirectoryError):
            continue
        if value:
            return value
    by_id = root / "dev/disk/by-id"
    if by_id.is_dir():
        names = sorted(link.name for link in by_id.iterdir() if os.path.basename(os.path.realpath(link)) == device.name)
        if names:
            return names[0]
    return None


def read_macs(root: Path) -> str | None:
    addresses = set()
    net = root / "sys/class/net"
    for interface in sorted(net.iterdir()) if net.is_dir() else []:
        if not (interface / "device").exists():  # loopback, bridges, veth, tunnels: no bus device
            continue
        try:
            address = _text(interface / "address").lower()
        except (FileNotFoundError, NotADirectoryError):
            continue
        if re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", address) and address != "00:00:00:00:00:00":
            addresses.add(address)
    return ",".join(sorted(addresses)) or None


def read_hostname(root: Path) -> str | None:
    for candidate in ("proc/sys/kernel/hostname", "etc/hostname"):
        try:
            value = _text(root / candidate)
        except FileNotFoundError:
            continue
        return _meaningful(value.lower())
    return None


DEFAULT_READERS: tuple[Reader, ...] = (
    Reader("machine_id", read_machine_id, frozenset({"container"})),
    Reader("board", read_board),
    Reader("cpu", read_cpu),
    Reader("disk", read_disk),
    Reader("mac", read_macs, frozenset({"container"})),
    Reader("hostname", read_hostname, frozenset({"container"})),
)
"""The Linux readers, in the order they run."""


def readers(*custom: Reader, base: Iterable[Reader] = DEFAULT_READERS) -> tuple[Reader, ...]:
    """``base`` with each of ``custom`` replacing the reader of its name, or added after them."""
    replacing = {reader.name: reader for reader in custom}
    kept = [replacing.pop(reader.name, reader) for reader in base]
    return (*kept, *replacing.values())


def detect_environment(root: Path = Path("/"), environ: Mapping[str, str] | None = None) -> Environment:
    """Whether this is a container, a virtual machine or a physical machine, and why."""
    for marker in (".dockerenv", "run/.containerenv"):
        if (root / marker).exists():
            return Environment("container", f"/{marker}")
    environ = os.environ if environ is None else environ
    if root == Path("/") and environ.get("container"):
        return Environment("container", f"container={environ['container']}")
    try:
        if _CONTAINER_CGROUPS.search(_text(root / "proc/1/cgroup")):
            return Environment("container", "/proc/1/cgroup")
    except OSError:
        pass
    for name in ("sys_vendor", "product_name"):
        try:
            vendor = _text(root / "sys/class/dmi/id" / name).lower()
        except OSError:
            continue
        if any(known in vendor for known in _VM_VENDORS):
            return Environment("vm", f"DMI {name} {vendor}")
    try:
        if re.search(r"^flags\s*:.*\bhypervisor\b", _text(root / "proc/cpuinfo"), re.M):
            return Environment("vm", "hypervisor CPU flag")
    except OSError:
        pass
    return Environment("physical")


def read_machine(
    chosen: Iterable[Reader] = DEFAULT_READERS, *, root: str | os.PathLike[str] = "/", environ: Mapping[str, str] | None = None
) -> MachineReading:
    """Run the readers (under ``root``, which tests point at a made-up machine); never raises."""
    base = Path(root)
    environment = detect_environment(base, environ)
    components: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for reader in chosen:
        if environment.kind in reader.unstable_in:
            skipped[reader.name] = f"unstable in a {environment.kind}: dropped"
            continue
        try:
            value = reader.read(base)
        except PermissionError as error:
            skipped[reader.name] = f"no permission ({error.strerror or error})"
            continue
        except OSError as error:
            skipped[reader.name] = f"unreadable ({error.strerror or error})"
            continue
        except Exception as error:  # a vendor's reader may fail any way: report it, never crash the program
            skipped[reader.name] = f"failed ({type(error).__name__}: {error})"
            continue
        if value is None or not str(value).strip():
            skipped[reader.name] = "not present on this machine"
        else:
            components[reader.name] = str(value)
    return MachineReading(components, skipped, environment)
