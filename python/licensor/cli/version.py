"""``licensor --version``: licensor's version, the core this process runs on, the event loop ``licensor serve`` runs
on, and the installed backend plugins."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from importlib import metadata
from typing import Any, NoReturn


def version_text() -> str:
    """Four lines: ``licensor VERSION``, ``core: rust`` or ``core: python``, ``loop: uvloop VERSION`` or ``loop:
    asyncio (why)`` (as ``licensor serve`` would choose with the ``loop`` setting of ``LICENSOR_LOOP``, default
    auto), and the backend plugins installed (found through their entry points, not loaded: a plugin that fails to
    load is still listed)."""
    import licensor
    from licensor import _impl
    from licensor.plugins import ENTRY_POINT_GROUP

    try:
        version = metadata.version("licensor")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed (PYTHONPATH=python)
        version = licensor.__version__
    plugins = []
    for entry_point in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda found: found.name):
        dist = entry_point.dist
        by = f" ({dist.name} {dist.version})" if dist is not None else ""
        plugins.append(f"{entry_point.name}{by}")
    return "\n".join(
        [
            f"licensor {version}",
            f"core: {_impl.IMPLEMENTATION}",
            f"loop: {loop_text(os.environ.get('LICENSOR_LOOP', 'auto'))}",
            f"backends: {', '.join(plugins) or 'none installed'}",
        ]
    )


def loop_text(setting: str) -> str:
    """The loop ``licensor serve`` runs on with the ``loop`` setting ``setting``: ``uvloop 0.23.0``, or ``asyncio``
    and why."""
    from licensor.gateway.event_loop import LoopUnavailableError, choose_event_loop

    try:
        chosen = choose_event_loop(setting)
    except LoopUnavailableError:
        return "none: LICENSOR_LOOP=uvloop and uvloop is not installed (pip install 'licensor[uvloop]')"
    if chosen.name == "uvloop":
        return chosen.describe()
    if setting == "asyncio":
        return "asyncio (LICENSOR_LOOP=asyncio)"
    return "asyncio (uvloop is not installed: pip install 'licensor[uvloop]')"


class VersionAction(argparse.Action):
    """``--version``: prints :func:`version_text` and exits 0 (computed only when asked: it loads the core)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option_string: str | None = None
    ) -> NoReturn:
        print(version_text())
        parser.exit(0)
