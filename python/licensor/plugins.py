"""Loading plugins and collecting their backends.

Plugins are found through the entry-point group ``licensor.backends`` (unless autoloading is off: the
``load_entry_points`` argument, or ``LICENSOR_DISABLE_PLUGIN_AUTOLOAD=1``), or registered explicitly, which is
how tests add a throwaway plugin. Loading ends with ``check_pending()``, so a misspelt hook implementation fails
at start-up instead of silently never running.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import pluggy

from licensor import hookspecs
from licensor.backend import BACKEND_NAME, Backend

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
    for plugin in plugins:
        if not manager.is_registered(plugin):
            manager.register(plugin)
    manager.check_pending()
    return manager


class BackendRegistry:
    """Backends by name: the gateway looks a policy's backend up here (a dict, not a broadcast)."""

    def __init__(self) -> None:
        self._backends: dict[str, Backend] = {}

    def register(self, backend: Backend) -> None:
        """:raises ValueError: a malformed name, or a name already registered."""
        name = getattr(backend, "name", None)
        if not isinstance(name, str) or not BACKEND_NAME.fullmatch(name):
            raise ValueError(f"backend name {name!r} must be 1-32 characters of a-z, 0-9 and -, starting with a letter")
        if name in self._backends:
            raise ValueError(f"two backends are named {name!r}")
        self._backends[name] = backend

    def get(self, name: str) -> Backend | None:
        return self._backends.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._backends

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._backends))


def collect_backends(manager: pluggy.PluginManager) -> BackendRegistry:
    """Every backend the manager's plugins register."""
    registry = BackendRegistry()
    manager.hook.licensor_register_backends(register=registry.register)
    return registry
