"""The layering DESIGN §4 and §8 promise, read from the source: plugins import only licensor's public API, and
no package imports in a circle (imports under ``TYPE_CHECKING`` and inside functions count)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "python" / "licensor"
CLIENT = ROOT / "clients" / "python" / "licensor_client"
PLUGIN_PACKAGES = sorted(ROOT.glob("plugins/*/licensor_*"))
PUBLIC_MODULES = (
    "licensor",
    "licensor.model",
    "licensor.store",
    "licensor.fingerprint",
    "licensor.tokens",
    "licensor.schema",
    "licensor.batching",
    "licensor.orders",
    "licensor.mail",
)
"""What a plugin may import of licensor (docs/plugins.md): the package's re-exports and these modules (the client
distribution, ``licensor_client``, is a package of its own that any plugin may use)."""


def _modules(package_dir: Path, package: str) -> dict[str, Path]:
    """Module name -> file of every module of the package at ``package_dir``."""
    found = {}
    # A stub stands for its native module (licensor._core), which is a module to import like any other.
    for path in sorted([*package_dir.rglob("*.py"), *package_dir.rglob("*.pyi")]):
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join([package, *parts])] = path
    return found


def _imports(path: Path, module: str) -> Iterator[tuple[str, int]]:
    """(imported name, line) of every import in the file, wherever it stands; ``from a import b`` gives ``a.b``
    (the caller keeps ``a.b`` if it is a module, else ``a``)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:
                yield f"{origin}.{alias.name}", node.lineno


def _graph(modules: dict[str, Path], known: set[str]) -> dict[str, set[str]]:
    """Module -> the modules of ``known`` it imports."""
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        edges = graph.setdefault(module, set())
        for name, _ in _imports(path, module):
            target = name if name in known else name.rsplit(".", 1)[0]
            if target in known and target != module:
                edges.add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _is_public(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in PUBLIC_MODULES[1:])


def test_the_plugins_are_found() -> None:
    assert [p.name for p in PLUGIN_PACKAGES] == ["licensor_activation", "licensor_cloud", "licensor_cloud_lite"]


BUILT_IN_PLUGINS = {"licensor.commerce.shops": CORE / "commerce" / "shops.py"}
"""Plugins that ship inside licensor (the built-in order sources), held to the same rule as the distributions."""


def _plugin_modules(plugin: Path | str) -> dict[str, Path]:
    if isinstance(plugin, str):
        return {plugin: BUILT_IN_PLUGINS[plugin]}
    return _modules(plugin, plugin.name)


@pytest.mark.parametrize("plugin", [*PLUGIN_PACKAGES, *BUILT_IN_PLUGINS], ids=lambda p: p if isinstance(p, str) else p.name)
def test_a_plugin_imports_only_licensors_public_api(plugin: Path | str) -> None:
    core_modules = set(_modules(CORE, "licensor"))
    offending = []
    for module, path in _plugin_modules(plugin).items():
        for name, line in _imports(path, module):
            if name.split(".")[0] != "licensor":
                continue
            # `from licensor import X`: X must be a re-export of the package, not one of its modules.
            target = name if name in core_modules else name.rsplit(".", 1)[0]
            if target == "licensor" or _is_public(target):
                continue
            offending.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    assert not offending, "imports of licensor outside its public API:\n" + "\n".join(offending)


def test_the_public_api_names_resolve() -> None:
    import licensor

    missing = [name for name in licensor.__all__ if not hasattr(licensor, name)]
    assert not missing
    undocumented = [name for name in licensor.__all__ if not (getattr(licensor, name).__doc__ or "").strip()]
    # Constants (frozensets, tuples) carry their documentation in the defining module's attribute docstrings.
    assert not [name for name in undocumented if not name.isupper()], undocumented


def test_the_core_imports_in_no_circle() -> None:
    modules = _modules(CORE, "licensor")
    assert len(modules) > 40
    cycles = _cycles(_graph(modules, set(modules)))
    assert not cycles, "modules that import each other in a circle: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_client_imports_nothing_of_the_server() -> None:
    # Its distribution declares no dependency on licensor (nor on the server's stack): nothing may need one.
    server_stack = {"licensor", "aiohttp", "asyncpg", "aiosqlite", "pluggy", "fastjsonschema", "jsonschema"}
    offending = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for module, path in _modules(CLIENT, "licensor_client").items()
        for name, line in _imports(path, module)
        if name.split(".")[0] in server_stack
    ]
    assert not offending, "the client imports the server's packages:\n" + "\n".join(offending)


@pytest.mark.parametrize("package_dir", [*PLUGIN_PACKAGES, CLIENT], ids=lambda p: p.name)
def test_a_plugin_imports_in_no_circle(package_dir: Path) -> None:
    modules = _modules(package_dir, package_dir.name)
    cycles = _cycles(_graph(modules, set(modules)))
    assert not cycles, "modules that import each other in a circle: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_circle() -> None:
    # The checks above must be able to fail.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_imports_are_read_wherever_they_stand(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from licensor.gateway import keys\n"
        "def f():\n    from . import sibling\n    import licensor._impl\n"
    )
    assert [name for name, _ in _imports(source, "pkg.mod")] == [
        "typing.TYPE_CHECKING",
        "licensor.gateway.keys",
        "pkg.sibling",
        "licensor._impl",
    ]


def test_the_reference_lists_exactly_the_public_api() -> None:
    import licensor

    page = (ROOT / "docs" / "plugins.md").read_text()
    reference = page[page.index("## Reference: the public API") : page.index("### Public modules")]
    listed = re.findall(r"^\| `([A-Za-z_]+)` \|", reference, re.M)
    assert sorted(listed) == sorted(licensor.__all__)
    modules = re.findall(r"^\| `(licensor\.[a-z]+)` \|", page[page.index("### Public modules") :], re.M)
    assert set(PUBLIC_MODULES[1:]) <= set(modules)
