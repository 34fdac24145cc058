"""licensor as an operator installs it: the five wheels ``make wheels`` builds (licensor with its native core, the
client, the three first-party backends) hold every file of their packages, declare exactly the third-party
packages their code imports (by extra), and, installed into a clean virtualenv with nothing else, give a
``licensor`` command that creates a tenant, serves, and answers a license check, and, with the extra
``licensor[postgres]``, opens the PostgreSQL store; with ``licensor[testing]``, pytest finds licensor's fixtures."""

from __future__ import annotations

import ast
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from email.parser import Parser
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from licensor.testing import free_port, wait_ready
from packaging.requirements import Requirement

from tests.client.test_distribution import CLOSURE

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / ".venv" / "wheels"
# Each distribution: its wheel's file-name prefix, and the directory its package comes from.
DISTRIBUTIONS = {
    "licensor": ("licensor-", "python/licensor"),
    "licensor-client": ("licensor_client-", "clients/python/licensor_client"),
    "licensor-activation": ("licensor_activation-", "plugins/licensor-activation/licensor_activation"),
    "licensor-cloud": ("licensor_cloud-", "plugins/licensor-cloud/licensor_cloud"),
    "licensor-cloud-lite": ("licensor_cloud_lite-", "plugins/licensor-cloud-lite/licensor_cloud_lite"),
}
# The modules that only an extra makes importable (distribution -> path in the wheel, or its folder -> extra).
EXTRA_MODULES = {
    "licensor": {
        "licensor/store/postgres.py": "postgres",
        "licensor/gateway/_uvloop.py": "uvloop",
        "licensor/testing/": "testing",
    }
}
# Requirements that no module imports and an extra still needs: why, for each.
NEEDED_WITHOUT_IMPORT = {
    ("licensor", "testing"): {"pytest-asyncio": "runs licensor.testing's fixtures, which are coroutines"},
}
BASE = ""  # the extra of what every install gets


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- the wheels -------------------------------------------------------------------------------------------
def build_wheels() -> dict[str, Path]:
    """The wheel of each distribution, brought up to date by ``make wheels`` (a no-op when they are current, as
    in ``make test``, which builds them first); one make at a time across pytest-xdist's workers."""
    WHEELS.parent.mkdir(exist_ok=True)
    with open(WHEELS.parent / "wheels.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run(["make", "--no-print-directory", "-s", "wheels"], cwd=ROOT, check=True, timeout=600)
    found = {}
    for name, (prefix, _) in DISTRIBUTIONS.items():
        (found[name],) = WHEELS.glob(f"{prefix}[0-9]*.whl")  # exactly one: make wheels empties the directory first
    return found


@pytest.fixture(scope="session")
def wheels() -> dict[str, Path]:
    return build_wheels()


def wheel_metadata(wheel: Path) -> Any:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [entry for entry in archive.namelist() if entry.endswith(".dist-info/METADATA")]
        return Parser().parsestr(archive.read(name).decode())


@dataclass
class Declared:
    """A wheel's requirements: by extra (BASE for every install), each extra's own (canonical name -> the
    requirement as written), and the extras of the same distribution an extra requires (``licensor[postgres]``)."""

    own: dict[str, dict[str, str]]
    includes: dict[str, set[str]]

    def available(self, extra: str) -> set[str]:
        """What an install with ``extra`` has: the base requirements, the extra's and those of the extras it includes."""
        names = set(self.own[BASE]) | set(self.own.get(extra, {}))
        for included in self.includes.get(extra, set()):
            names |= set(self.own[included])
        return names


def declared(wheel: Path) -> Declared:
    meta = wheel_metadata(wheel)
    extras = [BASE, *(meta.get_all("Provides-Extra") or [])]
    found = Declared({extra: {} for extra in extras}, {extra: set() for extra in extras})
    for text in meta.get_all("Requires-Dist") or []:
        requirement = Requirement(text)
        extra = next(extra for extra in extras if requirement.marker is None or requirement.marker.evaluate({"extra": extra}))
        if canonical(requirement.name) == canonical(meta["Name"]):
            found.includes[extra] |= requirement.extras
        else:
            found.own[extra][canonical(requirement.name)] = text
    return found


def top_level_packages(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {entry.split("/")[0].removesuffix(".py") for entry in archive.namelist() if ".dist-info/" not in entry}


def _imported_modules(node: ast.AST) -> Iterator[str]:
    """The absolute imports in ``node`` (a module), at any depth, except those under ``if TYPE_CHECKING:`` (never run)."""
    if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
        for statement in node.orelse:
            yield from _imported_modules(statement)
        return
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        yield node.module
    for child in ast.iter_child_nodes(node):
        yield from _imported_modules(child)


def imports(wheel: Path, extra_modules: Mapping[str, str]) -> dict[str, dict[str, set[str]]]:
    """What the wheel's code imports from outside itself and the standard library, by the extra that makes each
    module importable (BASE for the rest): top-level module -> the files importing it."""
    own = top_level_packages(wheel)
    found: dict[str, dict[str, set[str]]] = {}
    with zipfile.ZipFile(wheel) as archive:
        for entry in archive.namelist():
            if not entry.endswith(".py"):
                continue
            extra = next((extra for where, extra in extra_modules.items() if entry.startswith(where)), BASE)
            for module in _imported_modules(ast.parse(archive.read(entry), entry)):
                top = module.split(".")[0]
                if top not in own and top not in sys.stdlib_module_names:
                    found.setdefault(extra, {}).setdefault(top, set()).add(entry)
    return found


def module_owners(wheels: Iterable[Path]) -> dict[str, str]:
    """Top-level module -> the distribution that provides it: this environment's, and the wheels' own."""
    owners = {module: canonical(names[0]) for module, names in metadata.packages_distributions().items()}
    for wheel in wheels:
        owners.update(dict.fromkeys(top_level_packages(wheel), canonical(wheel_metadata(wheel)["Name"])))
    return owners


def dependency_problems(wheel: Path, owners: Mapping[str, str]) -> list[str]:
    """Each import of the wheel's code that its requirements (for that module's extra) do not cover, and each
    requirement that no code of its extra imports (nor NEEDED_WITHOUT_IMPORT names); empty when they agree."""
    name = canonical(wheel_metadata(wheel)["Name"])
    requirements = declared(wheel)
    imported = imports(wheel, EXTRA_MODULES.get(name, {}))
    problems = []
    for extra in sorted(set(requirements.own) | set(imported)):
        where = f"{name}[{extra}]" if extra else name
        used = set(NEEDED_WITHOUT_IMPORT.get((name, extra), {}))
        for module, files in sorted(imported.get(extra, {}).items()):
            owner = owners.get(module)
            if owner is None:
                problems.append(f"{where}: imports {module} ({', '.join(sorted(files))}), which no distribution provides here")
                continue
            used.add(owner)
            if owner not in requirements.available(extra):
                problems.append(f"{where}: imports {module} ({', '.join(sorted(files))}) but does not require {owner}")
        for unused in sorted(set(requirements.own.get(extra, {})) - used):
            problems.append(f"{where}: requires {requirements.own[extra][unused]} but none of its modules imports {unused}")
    return problems


def test_each_wheel_declares_exactly_what_its_code_imports(wheels: dict[str, Path]) -> None:
    owners = module_owners(wheels.values())
    problems = [problem for wheel in wheels.values() for problem in dependency_problems(wheel, owners)]
    assert problems == []
    licensor = declared(wheels["licensor"])
    assert "asyncpg" not in licensor.own[BASE], "the PostgreSQL driver is the extra licensor[postgres]"
    assert (set(licensor.own["testing"]), licensor.includes["testing"]) == ({"pytest", "pytest-asyncio"}, {"postgres"})


def test_the_comparison_names_a_missing_and_an_unused_dependency(wheels: dict[str, Path], tmp_path: Path) -> None:
    """The check above can fail: the licensor wheel without fastjsonschema (the issue's wheel) and with a
    requirement nothing imports."""
    tampered = tmp_path / wheels["licensor"].name
    with zipfile.ZipFile(wheels["licensor"]) as source, zipfile.ZipFile(tampered, "w") as target:
        for entry in source.infolist():
            data = source.read(entry)
            if entry.filename.endswith(".dist-info/METADATA"):
                text = data.decode().replace("Requires-Dist: fastjsonschema>=2.20\n", "")
                data = text.replace("Requires-Dist: pluggy", "Requires-Dist: idna>=3\nRequires-Dist: pluggy", 1).encode()
            target.writestr(entry, data)
    problems = dependency_problems(tampered, module_owners(wheels.values()))
    assert problems == [
        "licensor: imports fastjsonschema (licensor/schema.py) but does not require fastjsonschema",
        "licensor: requires idna>=3 but none of its modules imports idna",
    ]


def test_each_wheel_holds_every_file_of_its_package(wheels: dict[str, Path]) -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()
    for name, (_, source) in DISTRIBUTIONS.items():
        with zipfile.ZipFile(wheels[name]) as archive:
            packed = {entry for entry in archive.namelist() if ".dist-info/" not in entry}
        package = Path(source).name
        expected = {f"{package}/{path[len(source) + 1 :]}" for path in tracked if path.startswith(source + "/")}
        assert expected and expected <= packed, f"{name}: not in its wheel: {sorted(expected - packed)}"
    with zipfile.ZipFile(wheels["licensor"]) as archive:
        assert "licensor/_core.abi3.so" in archive.namelist()
    # The version the wheel says is the one the package says (licensor --version from a checkout prints the latter).
    for name, (_, source) in DISTRIBUTIONS.items():
        said = re.findall(r'^__version__ = "(.+)"$', (ROOT / source / "__init__.py").read_text(), re.M)
        assert said in ([], [wheel_metadata(wheels[name])["Version"]]), name
    assert "-abi3-" in wheels["licensor"].name  # one wheel for every CPython from 3.11 on
    for backend in ("licensor-activation", "licensor-cloud", "licensor-cloud-lite"):
        with zipfile.ZipFile(wheels[backend]) as archive:
            (entry_points,) = [entry for entry in archive.namelist() if entry.endswith(".dist-info/entry_points.txt")]
            assert "[licensor.backends]" in archive.read(entry_points).decode()


# --- installed into a clean virtualenv ---------------------------------------------------------------------
def _environment(home: Path) -> dict[str, str]:
    """This process's environment without licensor's own variables (the pure-Python switch, a data directory or a
    master key of the test run), so that the installed command runs as an operator's would."""
    kept = {name: value for name, value in os.environ.items() if not name.startswith(("LICENSOR_", "PYTHON", "VIRTUAL_ENV"))}
    return {**kept, "HOME": str(home)}


def _run(command: list[str], environment: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=timeout)


@pytest.mark.server  # licensor serve, from the virtualenv
async def test_the_wheels_install_into_a_clean_virtualenv_and_answer_a_check(
    wheels: dict[str, Path], licensor_postgres_url: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    venv, data = tmp_path / "venv", tmp_path / "data"
    environment = _environment(tmp_path)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python, licensor = venv / "bin" / "python", venv / "bin" / "licensor"
    # This interpreter's pip installs into the new one (--python): the wheels and what they require, from the
    # index and find-links configured for pip on this machine, and nothing else. --no-compile: compiling every
    # installed module took a third of the install (3 of 10 s); the few that run are compiled when imported.
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-compile"]
    install = [*pip, *map(str, wheels.values())]
    subprocess.run(install, check=True, timeout=300)
    installed_at = time.monotonic()

    closure = json.loads(_run([str(python), "-c", CLOSURE, *DISTRIBUTIONS], environment).stdout)
    assert set(closure["installed"]) == set(closure["needed"]), "installed but required by none of the five"
    assert not {"asyncpg", "pytest", "pytest-asyncio"} & set(closure["installed"]), "an extra came with the base install"

    version = _run([str(licensor), "--version"], environment)
    assert version.returncode == 0, version.stderr
    assert version.stdout.splitlines() == [
        "licensor 0.1.0",
        "core: rust",
        "loop: asyncio (uvloop is not installed: pip install 'licensor[uvloop]')",  # an extra
        "backends: activation (licensor-activation 0.1.0), cloud (licensor-cloud 0.1.0), cloud-lite (licensor-cloud-lite 0.1.0)",
    ]

    # A PostgreSQL URL without the extra: refused with its name, before anything is opened.
    refused = _run(
        [str(licensor), "init", "--data-dir", str(data), "--database-url", "postgresql://u@127.0.0.1:9/db"], environment
    )
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr == "error: the PostgreSQL store needs asyncpg: pip install 'licensor[postgres]'\n"

    init = _run([str(licensor), "init", "--data-dir", str(data)], environment)
    assert init.returncode == 0, init.stderr
    created = dict(line.split(": ", 1) for line in init.stdout.splitlines())
    tenant, token = created["tenant_id"], created["admin_token"]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "serve.log", "w+") as log:
        command = [str(licensor), "serve", "--data-dir", str(data), "--port", str(port)]
        server = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
        try:
            await wait_ready(url, timeout_s=60)
            served_at = time.monotonic()
            verdicts = await _check_a_cloud_lite_license(url, tenant, token)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        log.seek(0)
        output = log.read()
    assert verdicts == {"valid": "200 VALID", "not_entitled": "200 FEATURE_NOT_ENTITLED", "typo": "422 LICENSE_KEY_MALFORMED"}
    assert server.returncode == 0, output
    assert f"gateway listening on {url} (core rust, loop asyncio, store SQLite {data}/licensor.db)" in output
    assert "gateway stopped" in output and "Traceback" not in output and token not in output

    # The extras added to the same virtualenv: licensor[testing], which includes licensor[postgres]. The PostgreSQL
    # store opens (its migrations are in the wheel), and pytest finds licensor.testing's fixtures.
    checked_at = time.monotonic()
    extra = [*pip, f"{wheels['licensor']}[testing]"]
    subprocess.run(extra, check=True, timeout=300)
    extras_at = time.monotonic()
    on_postgres = _run([str(licensor), "init", "--data-dir", str(data), "--database-url", licensor_postgres_url], environment)
    assert on_postgres.returncode == 0, on_postgres.stderr
    assert on_postgres.stdout.startswith("tenant_id: ten_"), on_postgres.stdout
    (tmp_path / "kit").mkdir()
    fixtures = subprocess.run(
        [str(python), "-m", "pytest", "-p", "no:cacheprovider", "--fixtures"],
        cwd=tmp_path / "kit",
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert fixtures.returncode == 0, fixtures.stdout + fixtures.stderr
    (plugins,) = re.findall(r"^plugins: (.*)$", fixtures.stdout, re.M)
    assert {"asyncio", "licensor"} <= {plugin.split("-")[0] for plugin in plugins.split(", ")}, plugins  # and anyio's
    listed = set(re.findall(r"^(licensor_\w+)", fixtures.stdout, re.M))
    assert {"licensor_gateway", "licensor_store_url", "licensor_vendor", "licensor_fleet"} <= listed, fixtures.stdout
    print(
        f"clean virtualenv: install {installed_at - started:.1f} s, to a serving gateway {served_at - installed_at:.1f} s, "
        f"check and stop {checked_at - served_at:.1f} s, the extras' install {extras_at - checked_at:.1f} s, "
        f"PostgreSQL and pytest {time.monotonic() - extras_at:.1f} s, in all {time.monotonic() - started:.1f} s"
    )
    shutil.rmtree(venv)  # 43 MB of dependencies: not kept among pytest's last three runs


async def _check_a_cloud_lite_license(url: str, tenant: str, token: str) -> dict[str, str]:
    """Through the admin API with the token ``licensor init`` printed: a product with two features, a cloud-lite
    policy granting one, a license of it; then ``POST /v1/check`` by its key (and with a typo in it): the answers."""
    admin = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(url, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def created(path: str, body: dict[str, Any]) -> dict[str, Any]:
            async with session.post(path, json=body, headers=admin) as answer:
                assert answer.status == 201, await answer.text()
                made: dict[str, Any] = await answer.json()
                return made

        async def verdict(body: dict[str, Any]) -> str:
            """The check's answer: the status and the verdict's code (an error's code when refused)."""
            async with session.post("/v1/check", json={"tenant": tenant, "product": "cad", **body}) as answer:
                answered = await answer.json()
                code = answered["verdict"]["code"] if answer.status == 200 else answered["error"]["code"]
                return f"{answer.status} {code}"

        product = await created("/v1/admin/products", {"code": "cad", "name": "CAD"})
        for feature in ("draw", "render"):
            await created("/v1/admin/features", {"product_id": product["id"], "code": feature, "name": feature.title()})
        policy = await created(
            "/v1/admin/policies",
            {"product_id": product["id"], "name": "Standard", "backend": "cloud-lite", "features": [{"code": "draw"}]},
        )
        key = (await created("/v1/admin/licenses", {"policy_id": policy["id"]}))["key"]
        return {
            "valid": await verdict({"license_key": key, "features": ["draw"]}),
            "not_entitled": await verdict({"license_key": key, "features": ["render"]}),
            "typo": await verdict({"license_key": key[:-1] + ("A" if key[-1] != "A" else "B")}),
        }
