"""The infrastructure of licensor's tests: the core they must run on, and a throwaway PostgreSQL server."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from types import TracebackType

from licensor import _impl


def check_expected_implementation() -> None:
    """Refuse a test run on the wrong core: ``LICENSOR_EXPECT_IMPLEMENTATION`` (set by ``make test`` for each
    pass) must name the loaded one. A pass on the wrong core is a failed run, never a skip.

    :raises RuntimeError: another core is loaded than the one expected.
    """
    expected = os.environ.get("LICENSOR_EXPECT_IMPLEMENTATION")
    if expected and expected != _impl.IMPLEMENTATION:
        raise RuntimeError(f"expected the {expected} core, but {_impl.IMPLEMENTATION} is loaded")


def postgres_bin_dir() -> str:
    """The directory of PostgreSQL's server binaries (Debian's layout, newest version first)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]), reverse=True)
    if not found:
        raise RuntimeError("PostgreSQL's server is not installed: `make test` installs it (apt-get install postgresql)")
    return os.path.dirname(found[0])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ThrowawayPostgres:
    """A private PostgreSQL server for tests: ``with ThrowawayPostgres() as pg: pg.url``."""

    def __init__(self) -> None:
        self.bin_dir = postgres_bin_dir()
        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="licensor-pg-")
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def _run(self, *command: str) -> None:
        subprocess.run([*self._as_postgres, *command], check=True, capture_output=True, cwd=self.directory)

    def start(self) -> ThrowawayPostgres:
        if self._as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
        data = os.path.join(self.directory, "data")
        self._run(os.path.join(self.bin_dir, "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300"
        self._run(
            os.path.join(self.bin_dir, "pg_ctl"),
            "-D",
            data,
            "-l",
            os.path.join(self.directory, "server.log"),
            "-w",
            "start",
            "-o",
            options,
        )
        return self

    def create_database(self) -> str:
        """A new empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self._run(os.path.join(self.bin_dir, "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.database_url(name)

    def stop(self) -> None:
        try:
            self._run(os.path.join(self.bin_dir, "pg_ctl"), "-D", os.path.join(self.directory, "data"), "-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass  # never started, or already gone
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> ThrowawayPostgres:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.stop()
