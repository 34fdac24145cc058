"""The client's state directory (modes, atomic writes, the lock across processes) and the trusted clock's grades."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from licensor_client.clock import FAR_S, TOLERANCE_S, ClockGrade, TrustedClock
from licensor_client.state import DeviceLock, StateDir, StateError, StateLockedError

DAY = 86400.0


def test_the_directory_and_its_files_are_private(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "deep" / "state")
    assert stat.S_IMODE((tmp_path / "deep" / "state").stat().st_mode) == 0o700
    state.write_text("license-file", "lf1.x\n")
    state.write_json("clock", {"mark": 1.0})
    for name in ("license-file", "clock"):
        assert stat.S_IMODE((state.path / name).stat().st_mode) == 0o600
    os.chmod(state.path, 0o755)  # loosened by hand: tightened again when opened
    StateDir(state.path)
    assert stat.S_IMODE(state.path.stat().st_mode) == 0o700
    seed = state.device_seed(lambda: b"\x07" * 32)
    assert seed == b"\x07" * 32 and state.device_seed(lambda: b"\x00" * 32) == seed  # made once
    assert stat.S_IMODE((state.path / "device-key").stat().st_mode) == 0o600


def test_a_write_replaces_the_file_whole_and_leaves_nothing_behind(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    for n in range(20):
        state.write_text("license-file", f"version {n}\n" * 100)
    assert state.read_text("license-file") == "version 19\n" * 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["license-file"]
    state.remove("license-file")
    state.remove("license-file")  # removing what is not there is no error
    assert state.read_text("license-file") is None
    with pytest.raises(ValueError):
        state.read_text("../etc/passwd")


def test_garbled_files_are_named_not_crashed_on(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    (tmp_path / "pending").write_text("{not json")
    with pytest.raises(StateError) as garbled:
        state.read_json("pending")
    assert garbled.value.code == "STATE_UNUSABLE" and "pending" in garbled.value.message
    (tmp_path / "device-key").write_text("short\n")
    with pytest.raises(StateError, match="recover"):
        state.device_seed(lambda: b"\x00" * 32)
    (tmp_path / "clock").write_text('{"mark": "soon", "offset": 0}')
    assert TrustedClock(state, lambda: 1000.0).read().grade is ClockGrade.OK  # a garbled clock starts over
    (tmp_path / "file").write_text("")
    with pytest.raises(StateError):
        StateDir(tmp_path / "file")


HOLDER = """
import sys, time
from licensor_client.state import StateDir
with StateDir(sys.argv[1]).locked():
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""

COUNTER = """
import sys
from licensor_client.state import StateDir
state = StateDir(sys.argv[1])
for _ in range(int(sys.argv[2])):
    with state.locked():
        document = state.read_json("clock") or {"mark": 0}
        state.write_json("clock", {"mark": document["mark"] + 1})
"""


def test_the_lock_keeps_another_process_out(tmp_path: Path) -> None:
    with subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), "1.5"], stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        state = StateDir(tmp_path)
        started = time.monotonic()
        with pytest.raises(StateLockedError) as locked, state.locked(wait_s=0.2):
            pass
        assert locked.value.code == "STATE_LOCKED" and time.monotonic() - started < 1.0
        with state.locked(wait_s=10), state.locked():  # waits for the holder; re-entrant in this thread
            state.write_text("license-file", "mine\n")
    assert state.read_text("license-file") == "mine\n"


def test_two_processes_changing_the_state_lose_no_update(tmp_path: Path) -> None:
    workers = [subprocess.Popen([sys.executable, "-c", COUNTER, str(tmp_path), "40"]) for _ in range(2)]
    assert [worker.wait(timeout=60) for worker in workers] == [0, 0]
    assert StateDir(tmp_path).read_json("clock") == {"mark": 80}


def test_the_device_lock_is_one_at_a_time_across_objects(tmp_path: Path) -> None:
    first, second = DeviceLock(StateDir(tmp_path), wait_s=0.2), DeviceLock(StateDir(tmp_path), wait_s=0.2)
    first.acquire()
    with pytest.raises(StateLockedError):
        second.acquire()
    first.release()
    second.acquire()
    second.release()


# --- the trusted clock ---------------------------------------------------------------------------------------


class Device:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("back_s", "grade"),
    [
        (0, ClockGrade.OK),
        (600, ClockGrade.OK),  # ten minutes: nothing
        (TOLERANCE_S, ClockGrade.OK),
        (TOLERANCE_S + 1, ClockGrade.CHECK_IN_REQUIRED),
        (2 * DAY, ClockGrade.CHECK_IN_REQUIRED),
        (FAR_S + 1, ClockGrade.REFUSED),
    ],
)
def test_a_clock_behind_the_mark_is_graded(tmp_path: Path, back_s: float, grade: ClockGrade) -> None:
    device = Device()
    clock = TrustedClock(StateDir(tmp_path), device, monotonic=lambda: 0.0)
    clock.read()
    mark = device.now
    device.now -= back_s
    reading = clock.read()
    assert reading.grade is grade and reading.code == (None if grade is ClockGrade.OK else "CLOCK_TAMPERED")
    assert reading.now >= mark - 60  # never judged before the mark (it is written in 60-s steps)
    assert bool(reading.advice) == (grade is not ClockGrade.OK)


def test_a_signed_time_corrects_a_wrong_clock_and_comes_down_from_a_clock_that_ran_ahead(tmp_path: Path) -> None:
    device = Device()
    real = device.now
    clock = TrustedClock(StateDir(tmp_path), device)
    device.now = real + 365 * DAY  # the device ran a year ahead once: the mark followed it
    clock.read()
    device.now = real
    assert clock.read().grade is ClockGrade.REFUSED  # a year behind the mark
    clock.observe_signed(real)  # the gateway's signed time: the mark comes down to it
    reading = clock.read()
    assert reading.grade is ClockGrade.OK and abs(reading.now - real) < 1

    device.now = real - 2 * DAY  # the date set wrong: corrected by the next signed time
    assert clock.read().grade is ClockGrade.CHECK_IN_REQUIRED
    clock.observe_signed(real + 10)
    reading = clock.read()
    assert reading.grade is ClockGrade.OK and abs(reading.now - (real + 10)) < 1
    assert abs(clock.corrected() - (real + 10)) < 1  # device requests are signed at the corrected time


def test_a_far_wrong_clock_is_not_corrected_by_a_signed_time(tmp_path: Path) -> None:
    device = Device()
    real = device.now
    clock = TrustedClock(StateDir(tmp_path), device)
    clock.observe_signed(real)
    device.now = real - 40 * DAY
    clock.observe_signed(real + 5)
    assert clock.read().grade is ClockGrade.REFUSED
    device.now = real + 6  # set right
    assert clock.read().grade is ClockGrade.OK


def test_small_setbacks_add_nothing_up(tmp_path: Path) -> None:
    """Turning the clock back 50 minutes every 50 minutes (each within the tolerance) does not stop time: the
    monotonic clock carries the mark forward within a boot, so the second setback is already an hour behind."""
    device, elapsed = Device(), [0.0]
    clock = TrustedClock(StateDir(tmp_path), device, monotonic=lambda: elapsed[0])
    start = clock.read().now
    grades = []
    for _ in range(3):
        elapsed[0] += 3000  # 50 minutes pass ...
        grades.append(clock.read().grade)  # (the device's clock ran with them: read at +50 min, then set back)
        reading = clock.read()
        assert reading.now >= start + elapsed[0] - 60  # ... and count, whatever the wall clock says
    assert grades[0] is ClockGrade.OK and ClockGrade.CHECK_IN_REQUIRED in grades[1:]


def test_an_old_signed_time_only_ever_raises_the_mark(tmp_path: Path) -> None:
    device = Device()
    clock = TrustedClock(StateDir(tmp_path), device, monotonic=lambda: 0.0)
    clock.observe_signed(device.now)
    clock.observe_signed(device.now - 10 * 3600, fresh=False)  # a replayed file or update: nothing moves back
    device.now -= 10 * 3600
    assert clock.read().grade is ClockGrade.CHECK_IN_REQUIRED
    clock.observe_signed(device.now + 20 * 3600, fresh=False)
    assert clock.read().now >= device.now + 20 * 3600
