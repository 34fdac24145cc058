"""The client's local state: one directory per licensed program (and tenant and product) on the device.

It holds the device's key, the license file or credential file, the tenant's public keys, a device request
waiting for its answer, and the highest trusted time seen (:mod:`licensor_client.clock`). The directory is
made with mode 0700 and every file with 0600; a file is written whole or not at all (a temporary file in the
same directory, flushed to disk, then renamed over the old one), and a lock file taken with ``flock`` keeps two
processes of the program from interleaving their changes (:meth:`StateDir.locked`).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import secrets
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from licensor_client.errors import LicensorError

__all__ = ["DeviceLock", "StateDir", "StateError", "StateLockedError"]

_NAMES = frozenset(
    {
        "device-key",  # the device's Ed25519 seed (base64url): it never leaves the device
        "license-file",  # the lf1 license file (activation backend)
        "credential",  # the credential file (cloud backend)
        "keys",  # the tenant's public keys, fetched once when the program was not given them
        "pending",  # a device request sent (or about to be) whose answer was not taken yet
        "offline",  # an offline activation in progress (request written, response not imported)
        "clock",  # the highest trusted time seen, the clock's offset and the tamper episodes
        "ended",  # why the activation ended here (deactivated, withdrawn), for the next check to say
        "product-token",  # a SaaS backend's product token (cloud-lite), kept by the activation wizard
        "update",  # the newest license update applied (generation, state, the signed up1 token)
    }
)
_LOCK = ".lock"
_MAX_FILE = 1 << 20  # no state file is near this; a bigger one is not ours


class StateError(LicensorError):
    """The state directory cannot be used: not a directory, unreadable, a file garbled, or the disk full."""

    code = "STATE_UNUSABLE"
    http_status = 500


class StateLockedError(StateError):
    """Another process of the program held the state's lock for longer than the wait allowed."""

    code = "STATE_LOCKED"


def _flock(path: Path, wait_s: float, what: str) -> int:
    """An open descriptor of ``path`` holding its exclusive ``flock``, waited for up to ``wait_s``."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as error:
        raise StateError(f"{path} cannot be opened: {error.strerror}") from None
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise StateLockedError(f"another process of this program {what} (waited {wait_s:g} s)") from None
            time.sleep(0.02)


class DeviceLock:
    """The device operations' lock (activate, check in, deactivate, recover): one at a time per device, across the
    program's threads (a ``threading.Lock``, which any thread may release) and processes (``flock`` on the state
    directory's ``.device-lock``), so two of them never send competing check-ins."""

    def __init__(self, state: StateDir, wait_s: float = 60.0) -> None:
        self.path = state.path / ".device-lock"
        self.wait_s = wait_s
        self._threads = threading.Lock()
        self._fd: int | None = None

    def acquire(self) -> None:
        """:raises StateLockedError: another device operation ran for ``wait_s`` seconds."""
        if not self._threads.acquire(timeout=self.wait_s):
            raise StateLockedError(f"another device operation of this program is running (waited {self.wait_s:g} s)")
        try:
            self._fd = _flock(self.path, self.wait_s, "runs a device operation")
        except BaseException:
            self._threads.release()
            raise

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        self._threads.release()


class StateDir:
    """The state directory at ``path``, made (0700) if missing. Names are fixed (:data:`_NAMES`)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            mode = self.path.stat().st_mode
        except OSError as error:
            raise StateError(f"the state directory {self.path} cannot be made: {error.strerror}") from None
        if not stat.S_ISDIR(mode):
            raise StateError(f"{self.path} is not a directory")
        if self.path.stat().st_uid != os.getuid():
            raise StateError(f"{self.path} belongs to another user: the program's state must be its own")
        if stat.S_IMODE(mode) & 0o077:
            # Loosened since it was made: the device key must not be readable by other users.
            os.chmod(self.path, 0o700)
        self._depth = 0
        self._thread_lock = threading.RLock()

    def __repr__(self) -> str:
        return f"<StateDir {self.path}>"

    # --- the lock ----------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self, wait_s: float = 10.0) -> Iterator[StateDir]:
        """Hold the directory's lock while the block runs: against other processes (``flock`` on its lock file)
        and other threads; re-entrant within one thread.

        :raises StateLockedError: another process or thread held it for ``wait_s`` seconds.
        """
        if not self._thread_lock.acquire(timeout=wait_s):
            raise StateLockedError(f"another thread of this program holds {self.path} (waited {wait_s:g} s)")
        try:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            with self._process_lock(wait_s):
                self._depth = 1
                try:
                    yield self
                finally:
                    self._depth = 0
        finally:
            self._thread_lock.release()

    @contextlib.contextmanager
    def _process_lock(self, wait_s: float) -> Iterator[None]:
        fd = _flock(self.path / _LOCK, wait_s, "holds the state directory")
        try:
            yield
        finally:
            os.close(fd)  # closing the only descriptor of the open file releases its flock

    # --- files -------------------------------------------------------------------------------------------------
    def _file(self, name: str) -> Path:
        if name not in _NAMES:
            raise ValueError(f"no state file is named {name!r}")
        return self.path / name

    def read_text(self, name: str) -> str | None:
        """The file's text, or None when there is none."""
        path = self._file(name)
        try:
            with open(path, "rb") as source:
                raw = source.read(_MAX_FILE + 1)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise StateError(f"{path} cannot be read: {error.strerror}") from None
        if len(raw) > _MAX_FILE:
            raise StateError(f"{path} is larger than any state file")
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise StateError(f"{path} is not text: remove it, or restore it from a backup") from None

    def write_text(self, name: str, text: str) -> None:
        """Replace the file with ``text``, atomically and durably (0600)."""
        path = self._file(name)
        temporary = self.path / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, text.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, path)
            directory = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(directory)  # the rename itself survives a power cut
            finally:
                os.close(directory)
        except OSError as error:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise StateError(f"{path} cannot be written: {error.strerror}") from None

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._file(name).unlink()

    def read_json(self, name: str) -> dict[str, Any] | None:
        """The file's JSON object, or None when there is none.

        :raises StateError: the file is not a JSON object (garbled by hand or by a disk fault)."""
        text = self.read_text(name)
        if text is None:
            return None
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            raise StateError(f"{self.path / name} is garbled: remove it, or restore it from a backup")
        return value

    def write_json(self, name: str, value: dict[str, Any]) -> None:
        self.write_text(name, orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode() + "\n")

    # --- the device key ----------------------------------------------------------------------------------------
    def device_seed(self, generate: Any) -> bytes:
        """The device key's 32-byte seed, made by ``generate()`` and stored on first use.

        :raises StateError: the stored key is garbled (the device must then recover its activation)."""
        with self.locked():
            text = self.read_text("device-key")
            if text is None:
                seed: bytes = generate()
                self.write_text("device-key", base64.urlsafe_b64encode(seed).decode().rstrip("=") + "\n")
                return seed
            try:
                seed = base64.urlsafe_b64decode(text.strip() + "=")
            except ValueError:
                seed = b""
            if len(seed) != 32:
                raise StateError(f"{self.path / 'device-key'} is garbled: this device must recover its activation")
            return seed
