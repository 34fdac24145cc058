"""The device's clock, checked against the highest trusted time it has seen (clock-tamper detection).

Every license decision the client makes offline (a license file's expiry and checkpoint, a trial's end, an
entitlement token's freshness) is taken at :attr:`ClockReading.now`, which is never earlier than the **mark**: the
highest time seen so far, from the device's own clock and from every signed answer of the gateway. So turning
the clock back never buys a day of anything. When the device's clock is behind the mark by more than
:data:`TOLERANCE_S`, the reading is graded (:class:`ClockGrade`):

- within the tolerance (an hour: daylight-saving mistakes, NTP steps, a drifting RTC): nothing happens;
- beyond it: ``CLOCK_TAMPERED``, and offline checks are refused until the program checks in online. A check-in
  teaches the client the gateway's signed time, and from then on it reads the device's clock corrected by that
  offset, so a machine whose date is merely wrong keeps working;
- far beyond (:data:`FAR_S`, 30 days) or repeated (:data:`REPEATED` episodes within 30 days): ``CLOCK_TAMPERED``
  and refused: a check-in no longer corrects the clock; the user must set the date and time right, after which
  everything works again (nobody is locked out for good).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from licensor_client.state import StateDir

__all__ = ["CLOCK_TAMPERED", "FAR_S", "REPEATED", "TOLERANCE_S", "ClockGrade", "ClockReading", "TrustedClock"]

CLOCK_TAMPERED = "CLOCK_TAMPERED"
TOLERANCE_S = 3600.0
"""How far the device's clock may fall behind the mark without consequence."""
FAR_S = 30 * 86400.0
"""Behind the mark by more than this: refused until the clock is set right (a check-in no longer corrects it)."""
REPEATED = 3
"""This many tamper episodes within :data:`REPEAT_WINDOW_S`: refused until the clock is set right."""
REPEAT_WINDOW_S = 30 * 86400.0
_MARK_WRITE_STEP_S = 60.0  # the mark is written when it advanced this much: a check does not cost a disk write


class ClockGrade(StrEnum):
    OK = "ok"
    """The clock is at or after the mark, or behind it within the tolerance."""
    CHECK_IN_REQUIRED = "check_in_required"
    """Behind beyond the tolerance: offline checks are refused until an online check-in succeeds."""
    REFUSED = "refused"
    """Far behind, or turned back repeatedly: refused until the device's clock is set right."""


@dataclass(frozen=True)
class ClockReading:
    now: float
    """The time to judge licenses at (seconds since the epoch): the corrected device time, never before the mark."""
    device_now: float
    """The device's own clock."""
    behind_s: float
    """How far the (corrected) device clock is behind the mark; 0 when it is not."""
    grade: ClockGrade

    @property
    def code(self) -> str | None:
        """``CLOCK_TAMPERED`` when the grade is not OK, else None."""
        return None if self.grade is ClockGrade.OK else CLOCK_TAMPERED

    @property
    def advice(self) -> str:
        """What the user should do, in a sentence (empty when nothing)."""
        hours = self.behind_s / 3600
        if self.grade is ClockGrade.CHECK_IN_REQUIRED:
            return (
                f"This computer's clock is {hours:.1f} hours behind a time it has already seen. Connect to the "
                "internet and check in (or set the date and time right)."
            )
        if self.grade is ClockGrade.REFUSED:
            return (
                f"This computer's clock is {hours:.1f} hours behind a time it has already seen, or was turned back "
                "repeatedly. Set the date and time right (automatic time is best), then start again."
            )
        return ""


class TrustedClock:
    """The mark, the offset learned from the gateway, and the tamper episodes, kept in the state's ``clock`` file."""

    def __init__(
        self, state: StateDir, clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.state = state
        self.clock = clock
        self.monotonic = monotonic
        self.boot = _boot_id()

    def _load(self) -> dict[str, Any]:
        document = self.state.read_json("clock") or {}
        mark, offset, episodes = document.get("mark", 0.0), document.get("offset", 0.0), document.get("episodes", [])
        if not (_number(mark) and _number(offset) and isinstance(episodes, list) and all(_number(e) for e in episodes)):
            mark, offset, episodes = 0.0, 0.0, []  # garbled: start over (the mark only ever protects the vendor)
        anchor = document.get("anchor")
        if not (
            isinstance(anchor, list)
            and len(anchor) == 3
            and _number(anchor[0])
            and _number(anchor[1])
            and isinstance(anchor[2], str)
        ):
            anchor = None
        return {
            "mark": float(mark),
            "offset": float(offset),
            "episodes": [float(e) for e in episodes],
            "tampered": bool(document.get("tampered")),
            "anchor": anchor,
        }

    def _floor(self, document: dict[str, Any]) -> float:
        """The mark carried forward by the monotonic clock since it was written, within this boot: time that has
        passed for certain, however the wall clock is set meanwhile (so small setbacks add nothing up)."""
        anchor, mark = document["anchor"], float(document["mark"])
        if anchor is None or self.boot is None or anchor[2] != self.boot:
            return mark
        return max(mark, float(anchor[0]) + max(0.0, self.monotonic() - float(anchor[1])))

    def _anchor(self, document: dict[str, Any]) -> None:
        document["anchor"] = [document["mark"], self.monotonic(), self.boot] if self.boot is not None else None

    def corrected(self) -> float:
        """The device's clock plus the offset learned from the gateway: the time to sign device requests with."""
        offset: float = self._load()["offset"]
        return self.clock() + offset

    def read(self) -> ClockReading:
        """Now, judged against the mark; a new tamper episode is recorded."""
        with self.state.locked():
            saved = self._load()
            document = dict(saved)
            device_now = self.clock()
            corrected = device_now + document["offset"]
            trusted = max(corrected, self._floor(document))
            behind = trusted - corrected
            if behind <= TOLERANCE_S:
                grade = ClockGrade.OK
                document["tampered"] = False
                if trusted - document["mark"] >= _MARK_WRITE_STEP_S:
                    document["mark"] = trusted
                    self._anchor(document)
            else:
                if not document["tampered"]:
                    document["tampered"] = True
                    document["episodes"] = [*self._recent(document["episodes"], document["mark"]), document["mark"]]
                repeated = len(self._recent(document["episodes"], document["mark"])) >= REPEATED
                grade = ClockGrade.REFUSED if behind > FAR_S or repeated else ClockGrade.CHECK_IN_REQUIRED
            if document != saved:
                self.state.write_json("clock", document)
            return ClockReading(max(trusted, document["mark"]), device_now, max(0.0, behind), grade)

    def observe_signed(self, server_time: float, *, fresh: bool = True) -> None:
        """Take a time the gateway signed. The mark rises to it. When ``fresh`` (the answer to a request this device
        just made: a renewed license file of a new generation, a lease just granted) it is the best time there is:
        the mark also comes down to it when the device's clock had run ahead and raised the mark past it, and the
        client adopts the offset between the two clocks, which ends a tamper episode, unless the device's clock is
        far off, or was turned back repeatedly and is still off: then only setting the clock right helps. A time
        that may be old (a file imported by hand, a pushed update) only ever raises the mark: replaying one
        buys nothing."""
        with self.state.locked():
            document = self._load()
            mark = document["mark"]
            if not fresh:
                if server_time > mark:
                    document["mark"] = server_time
                    self._anchor(document)
                    self.state.write_json("clock", document)
                return
            offset = server_time - self.clock()
            document["mark"] = server_time if mark > server_time + TOLERANCE_S else max(mark, server_time)
            self._anchor(document)
            repeated = len(self._recent(document["episodes"], document["mark"])) >= REPEATED
            if abs(offset) <= FAR_S and not (repeated and abs(offset) > TOLERANCE_S):
                document["offset"] = offset
                document["tampered"] = False
            self.state.write_json("clock", document)

    @staticmethod
    def _recent(episodes: list[float], mark: float) -> list[float]:
        return [e for e in episodes if mark - e <= REPEAT_WINDOW_S]


def _boot_id() -> str | None:
    """This boot of the machine (Linux), so a monotonic reading is compared with one of the same boot only."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as source:
            return source.read().strip() or None
    except OSError:
        return None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) < 1e12
