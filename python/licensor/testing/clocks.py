"""Clocks a test moves by hand."""

from __future__ import annotations

import datetime


class ManualClock:
    """A clock to move by hand (microseconds since the epoch), for a backend's ``clock`` and the SDK's verdicts."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    @property
    def seconds(self) -> int:
        """The time in whole seconds, as signed documents carry it."""
        return self.now // 1_000_000

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1_000_000)

    def set(self, moment: datetime.datetime) -> None:
        """Move to ``moment`` (an aware datetime)."""
        self.now = int(moment.timestamp()) * 1_000_000 + moment.microsecond
