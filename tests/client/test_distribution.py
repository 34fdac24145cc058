"""licensor-client as a vendor ships it: built as a wheel, installed into a clean virtualenv (nothing else in it),
it pulls only its declared dependencies and nothing of the server, and the program in it activates, checks and
deactivates against a real gateway."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from licensor.testing import Gateway, make_vendor

ROOT = Path(__file__).resolve().parents[2]
DECLARED = {"cryptography", "httpx", "orjson"}
SERVER = {"licensor", "aiohttp", "asyncpg", "aiosqlite", "pluggy", "fastjsonschema", "jsonschema"}

# Run inside a clean virtualenv with the distributions to start from as arguments: every installed distribution,
# those the first argument requires directly, and those the arguments require, transitively (extras left out).
CLOSURE = """
import json, re, sys
from importlib import metadata
installed = {re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower(): d for d in metadata.distributions()}
def requires(name):
    found = set()
    for spec in installed[name].requires or []:
        if "extra ==" in spec:
            continue
        found.add(re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", spec).group()).lower())
    return found
needed, todo = set(), sys.argv[1:]
while todo:
    name = todo.pop()
    if name not in needed and name in installed:
        needed.add(name)
        todo.extend(requires(name))
print(json.dumps({"installed": sorted(installed), "needed": sorted(needed), "direct": sorted(requires(sys.argv[1]))}))
"""

PROGRAM = """
import json, sys
from licensor_client import Client, MachineReading
from licensor_client.machine import Environment
from licensor_client.formats import public_key_of
server, tenant, product, key, state, kid, public = sys.argv[1:8]
machine = lambda: MachineReading({"machine_id": "a" * 32, "cpu": "CPU", "disk": "D1"}, {}, Environment("physical"))
with Client(server, tenant, product, state_dir=state, public_keys={kid: public_key_of(public)}, machine=machine) as app:
    steps = {"before": app.check("draw").code}
    file = app.activate(key)
    steps["activated"] = file.generation
    steps["draw"] = app.check("draw").code
    steps["render"] = app.check("render").code
    steps["checked_in"] = app.check_in().generation
    steps["deactivated"] = app.deactivate()["state"]
    steps["after"] = app.check("draw").code
print(json.dumps(steps))
"""


@pytest.fixture(scope="session")
def clean_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    work = tmp_path_factory.mktemp("client-distribution")
    wheels = work / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(ROOT / "clients" / "python"),
        ],
        check=True,
    )
    (wheel,) = wheels.glob("licensor_client-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # This interpreter's pip installs into the new one (--python): the venv gets nothing but the wheel and what it pulls.
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", str(wheel)], check=True
    )
    yield venv / "bin" / "python"


def test_the_wheel_pulls_only_its_declared_dependencies(clean_venv: Path) -> None:
    closure = subprocess.run([str(clean_venv), "-c", CLOSURE, "licensor-client"], check=True, capture_output=True, text=True)
    report = json.loads(closure.stdout)
    assert set(report["direct"]) == DECLARED
    assert set(report["installed"]) == set(report["needed"]), "installed but not required by licensor-client"
    assert not SERVER & set(report["installed"])
    print("licensor-client pulls:", ", ".join(sorted(set(report["installed"]) - {"licensor-client"})))


async def test_the_installed_program_activates_checks_and_deactivates(
    clean_venv: Path, licensor_gateway: Gateway, tmp_path: Path
) -> None:
    vendor = await make_vendor(licensor_gateway, "activation", product="cad")
    published = await licensor_gateway.call("GET", "/v1/keys", params={"tenant": vendor.tenant.id})
    key = published.body["keys"][0]
    arguments = [
        licensor_gateway.url,
        vendor.tenant.id,
        "cad",
        vendor.license["key"],
        str(tmp_path / "state"),
        key["kid"],
        key["public_key"],
    ]
    process = await asyncio.create_subprocess_exec(
        str(clean_venv), "-c", PROGRAM, *arguments, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    assert json.loads(out) == {
        "before": "NOT_ACTIVATED",
        "activated": 1,
        "draw": "VALID",
        "render": "FEATURE_NOT_ENTITLED",
        "checked_in": 2,
        "deactivated": "deactivated",
        "after": "DEACTIVATED",
    }
