"""Loading plugins and collecting their backends.

Plugins are found through the entry-point group ``licensor.backends`` (unless autoloading is off: the
``load_entry_points`` argument, or ``LICENSOR_DISABLE_PLUGIN_AUTOLOAD=1``), or registered explicitly, which is
how tests add a throwaway plugin. Loading ends with ``check_pending()``, so a misspelt hook implementation fails
at start-up instead of silently never running.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import pluggy

from licensor import hookspecs
from licensor.backend import BACKEND_NAME, VERDICT_CODE, Backend, own_code_prefix
from licensor.verdict import Code

if TYPE_CHECKING:
    from licensor.operations import Services
    from licensor.orders import OrderSource

ENTRY_POINT_GROUP = "licensor.backends"


def plugin_manager(plugins: Iterable[object] = (), *, load_entry_points: bool | None = None) -> pluggy.PluginManager:
    """A plugin manager with licensor's hooks, the installed plugins (unless disabled) and ``plugins``.

    :raises pluggy.PluginValidationError: a plugin implements a hook licensor does not have.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    if load_entry_points is None:
        load_entry_points = os.environ.get("LICENSOR_DISABLE_PLUGIN_AUTOLOAD") != "1"
    if load_entry_points:
        manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    from licensor.commerce import shops  # the built-in order sources: a plugin like any other, always there

    for plugin in (shops, *plugins):
        if not manager.is_registered(plugin):
            manager.register(plugin)
    manager.check_pending()
    return manager


class BackendRegistry:
    """Backends by name: the gateway looks a policy's backend up here (a dict, not a broadcast)."""

    def __init__(self) -> None:
        self._backends: dict[str, Backend] = {}

    def register(self, backend: Backend) -> None:
        """:raises ValueError: a malformed name, a name already registered, or a verdict code of the backend's own
        that is malformed, undescribed or not prefixed with its name (see :attr:`Backend.verdict_codes`)."""
        name = getattr(backend, "name", None)
        if not isinstance(name, str) or not BACKEND_NAME.fullmatch(name):
            raise ValueError(f"backend name {name!r} must be 1-32 characters of a-z, 0-9 and -, starting with a letter")
        if name in self._backends:
            raise ValueError(f"two backends are named {name!r}")
        prefix = own_code_prefix(name)
        for code, description in backend.verdict_codes.items():
            if not VERDICT_CODE.fullmatch(code) or not code.startswith(prefix) or code in Code.__members__:
                raise ValueError(f"backend {name!r}: verdict code {code!r} must be A-Z, 0-9 and _ and start with {prefix}")
            if not isinstance(description, str) or not description.strip():
                raise ValueError(f"backend {name!r}: verdict code {code} needs a description")
        self._backends[name] = backend

    def get(self, name: str) -> Backend | None:
        return self._backends.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._backends

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._backends))

    def hand_over(self, services: Services) -> None:
        """Give every backend the gateway that serves it (:attr:`Backend.services`)."""
        for backend in self._backends.values():
            backend.services = services

    def verdict_codes(self) -> dict[str, str]:
        """Every registered backend's own verdict codes: code -> description."""
        return {code: text for name in self for code, text in self._backends[name].verdict_codes.items()}


def collect_backends(manager: pluggy.PluginManager) -> BackendRegistry:
    """Every backend the manager's plugins register."""
    registry = BackendRegistry()
    manager.hook.licensor_register_backends(register=registry.register)
    return registry


def collect_order_sources(manager: pluggy.PluginManager) -> dict[str, OrderSource]:
    """Every order source the manager's plugins register, by kind.

    :raises ValueError: a malformed kind, or two sources of one kind."""
    sources: dict[str, OrderSource] = {}

    def register(source: OrderSource) -> None:
        kind = getattr(source, "kind", None)
        if not isinstance(kind, str) or not BACKEND_NAME.fullmatch(kind):
            raise ValueError(f"order source kind {kind!r} must be 1-32 characters of a-z, 0-9 and -, starting with a letter")
        if kind in sources:
            raise ValueError(f"two order sources are of kind {kind!r}")
        sources[kind] = source

    manager.hook.licensor_register_order_sources(register=register)
    return sources
