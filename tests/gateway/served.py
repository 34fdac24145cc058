"""A real ``licensor serve`` process for the tests that need the whole command: its own log, its CPU time, its
workers and signals (the in-process test server cancels handlers on disconnect, ``licensor serve`` does not)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from licensor.testing import TESTING_ENVIRONMENT, free_port

START_TIMEOUT_S = 60.0


@dataclass
class Served:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    admin_token: str

    def cpu_ns(self) -> int:
        """The CPU time the process has used (all its threads), in nanoseconds, read from the kernel's
        process CPU clock: exact, unlike the 10 ms ticks of /proc/PID/stat."""
        return time.clock_gettime_ns(((~self.process.pid) << 3) | 2)  # CPUCLOCK_SCHED of the process

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def workers(self) -> list[int]:
        """The pids of the worker processes (``--workers N``), not multiprocessing's helper."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        found = []
        for pid in children:
            try:
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(int(pid))
            except FileNotFoundError:
                pass
        return found

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


@contextmanager
def served(store_url: str, data_dir: Path, *arguments: str, wait: bool = True) -> Iterator[Served]:
    """A new tenant (``licensor init``) and ``licensor serve`` on ``store_url``, on a free port of 127.0.0.1, its
    output in ``data_dir/serve.log``; stopped (SIGTERM, then SIGKILL) when the block ends."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    store = ["--database-url", store_url, "--data-dir", str(data_dir)]
    init = subprocess.run(
        [sys.executable, "-m", "licensor.cli", "init", "--name", "served", *store],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )
    assert init.returncode == 0, init.stderr
    admin_token = dict(line.split(": ", 1) for line in init.stdout.splitlines())["admin_token"]
    log_path = data_dir / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "licensor.cli", "serve", *store, "--port", str(port), *arguments],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **TESTING_ENVIRONMENT, "PYTHONUNBUFFERED": "1"},
        )
    server = Served(f"http://127.0.0.1:{port}", port, process, log_path, admin_token)
    try:
        if wait:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                assert process.poll() is None, f"licensor serve exited {process.returncode}: {server.log()}"
                try:
                    with urllib.request.urlopen(f"{server.url}/readyz", timeout=2) as answer:
                        if answer.status == 200:
                            break
                except (urllib.error.URLError, OSError):
                    pass
                assert time.monotonic() < deadline, f"licensor serve not ready: {server.log()}"
                time.sleep(0.05)
        yield server
    finally:
        server.stop()
