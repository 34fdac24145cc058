"""The only module that imports uvloop (the extra ``licensor[uvloop]``): :mod:`licensor.gateway.event_loop` imports
it when the ``loop`` setting allows, and falls back to asyncio's own loop when uvloop is not installed."""

from __future__ import annotations

import asyncio

import uvloop

VERSION: str = uvloop.__version__


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new uvloop event loop."""
    return uvloop.new_event_loop()
