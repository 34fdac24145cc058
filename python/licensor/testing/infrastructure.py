"""The infrastructure of licensor's tests: the core they must run on, and a throwaway PostgreSQL server."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
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

    def _pg_ctl(self, *arguments: str) -> None:
        self._run(os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data_dir, "-l", self.log_path, *arguments)

    @property
    def data_dir(self) -> str:
        return os.path.join(self.directory, "data")

    @property
    def log_path(self) -> str:
        return os.path.join(self.directory, "server.log")

    def server_options(self) -> str:
        """The ``postgres`` command-line options this server starts with."""
        return f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300"

    def start(self) -> ThrowawayPostgres:
        if self._as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(
            os.path.join(self.bin_dir, "initdb"), "-D", self.data_dir, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"
        )
        self.restart()
        return self

    def restart(self) -> None:
        """Start the server again (after :meth:`crash`), waiting until it accepts connections."""
        self._pg_ctl("-w", "-t", "60", "start", "-o", self.server_options())

    def crash(self) -> None:
        """Stop the server hard (``pg_ctl stop -m immediate``: no checkpoint, connections cut, as a power cut
        would), keeping its data for :meth:`restart`."""
        self._pg_ctl("-m", "immediate", "stop")

    def sql(self, statement: str) -> str:
        """Run one SQL statement with psql; its output (unaligned, tuples only)."""
        psql = os.path.join(self.bin_dir, "psql")
        command = [*self._as_postgres, psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-qAt", "-c", statement]
        return subprocess.run(command, check=True, capture_output=True, text=True, cwd=self.directory).stdout.strip()

    def create_database(self) -> str:
        """A new empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self._run(os.path.join(self.bin_dir, "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.database_url(name)

    def stop(self) -> None:
        try:
            self.crash()
        except subprocess.CalledProcessError:
            pass  # never started, or already gone
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> ThrowawayPostgres:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.stop()


class ReplicatedPostgres:
    """A throwaway primary with a synchronous hot standby, for failover tests:
    ``with ReplicatedPostgres() as pair: pair.url`` (a multi-host URL, ``target_session_attrs=read-write``).

    The standby is a ``pg_basebackup -R`` copy of the primary streaming from it over a physical replication slot;
    the primary names it in ``synchronous_standby_names`` with ``synchronous_commit = on``, so a commit is
    acknowledged only once the standby has it on disk: nothing acknowledged is lost when the primary dies and the
    standby is promoted. Both run as throwaway servers (see :class:`ThrowawayPostgres`) on ports of their own
    and are removed when the block ends.
    """

    STANDBY_NAME = "licensor_standby"

    def __init__(self) -> None:
        self.primary = ThrowawayPostgres()
        self.standby = ThrowawayPostgres()

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:P1,127.0.0.1:P2/postgres?target_session_attrs=read-write``"""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        hosts = f"127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"
        return f"postgresql://postgres@{hosts}/{name}?target_session_attrs=read-write"

    def start(self) -> ReplicatedPostgres:
        primary, standby = self.primary, self.standby
        primary.start()
        for setting in (
            f"ALTER SYSTEM SET synchronous_standby_names = '{self.STANDBY_NAME}'",
            "ALTER SYSTEM SET synchronous_commit = 'on'",
            "SELECT pg_create_physical_replication_slot('licensor_standby')",
            "SELECT pg_reload_conf()",
        ):
            primary.sql(setting)
        if standby._as_postgres:
            shutil.chown(standby.directory, "postgres", "postgres")
        standby._run(
            os.path.join(standby.bin_dir, "pg_basebackup"),
            *("-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres", "-D", standby.data_dir),
            *("-R", "-S", "licensor_standby", "-X", "stream", "--no-sync"),
        )
        with open(os.path.join(standby.data_dir, "postgresql.auto.conf"), "a") as conf:
            conf.write(
                f"primary_conninfo = 'host=127.0.0.1 port={primary.port} user=postgres application_name={self.STANDBY_NAME}'\n"
            )
            # Promoted, it serves alone: waiting for a synchronous standby of its own would hold every commit.
            conf.write("synchronous_standby_names = ''\n")
        standby.restart()
        self.wait_synchronous()
        return self

    def wait_synchronous(self, timeout_s: float = 30.0) -> None:
        """Wait until the primary streams to the standby synchronously.

        :raises RuntimeError: not within ``timeout_s``."""
        primary = self.primary
        query = f"SELECT sync_state FROM pg_stat_replication WHERE application_name = '{self.STANDBY_NAME}'"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = primary.sql(query)
            if state == "sync":
                return
            time.sleep(0.1)
        raise RuntimeError(f"the standby did not become synchronous within {timeout_s} s")

    def crash_primary(self) -> None:
        """``pg_ctl stop -m immediate`` of the primary."""
        self.primary.crash()

    def promote(self) -> None:
        """``pg_ctl promote`` of the standby, waiting until it accepts writes."""
        self.standby._pg_ctl("-w", "-t", "60", "promote")

    def stop(self) -> None:
        self.standby.stop()
        self.primary.stop()

    def __enter__(self) -> ReplicatedPostgres:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.stop()
