"""``licensor serve --workers N``: worker processes on one listening socket, restarted when they die.

The parent binds the port once and hands the socket to every worker, so all of them accept from one queue:
when a worker dies, the connections waiting to be accepted stay queued for the others and the port never
closes. What a dying worker takes with it is what it was doing: its in-flight requests get no answer (the
client sees the connection reset). Every state-changing license-plane request carries an Idempotency-Key, so
a client (the SDK does) retries it and gets the one answer; nothing is counted twice, and an acknowledged
change was committed before it was acknowledged.

A worker that dies after it was serving is started again at once and logged once (a WARNING). A worker that
dies before it is ready (a bad configuration, a database that refuses it) is started again after a backoff
that doubles from 0.5 s to at most 8 s; after :data:`START_FAILURES_TO_GIVE_UP` such failures in a row of one
worker slot, the parent stops every worker and exits 1, since a restart would not help. SIGTERM or SIGINT
stops the workers gracefully (each finishes its in-flight requests) and the parent exits 0 once all are gone.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

log = logging.getLogger("licensor.serve")

START_FAILURES_TO_GIVE_UP = 5
FIRST_BACKOFF_S = 0.5
LONGEST_BACKOFF_S = 8.0
READY = b"ready"

Worker = Callable[[socket.socket, Any, Any], None]
"""A worker's entry point: ``worker(listening_socket, ready, argument)``; it calls ``ready.send_bytes(READY)``
once it accepts connections."""


def listening_socket(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening.

    :raises OSError: the address is taken or cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


@dataclass
class _Slot:
    index: int
    process: BaseProcess | None = None
    ready_from: multiprocessing.connection.Connection | None = None
    serving: bool = False
    start_failures: int = 0
    restart_at: float | None = None


def supervise(worker: Worker, argument: Any, sock: socket.socket, count: int) -> int:
    """Run ``count`` workers on ``sock`` until SIGTERM/SIGINT (0) or until one keeps dying at start (1)."""
    context = multiprocessing.get_context("spawn")
    slots = [_Slot(index) for index in range(count)]
    stopping = False
    status = 0

    def start(slot: _Slot) -> None:
        ready_from, ready_to = context.Pipe(duplex=False)
        process = context.Process(target=worker, args=(sock, ready_to, argument), name=f"licensor-worker-{slot.index}")
        process.start()
        ready_to.close()  # the child holds its own end; EOF on ours means it is gone
        slot.process, slot.ready_from, slot.serving, slot.restart_at = process, ready_from, False, None

    def stop_all(signum: int) -> None:
        for slot in slots:
            if slot.process is not None and slot.process.exitcode is None and slot.process.pid is not None:
                try:
                    os.kill(slot.process.pid, signum)
                except ProcessLookupError:
                    pass

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal stopping
        if not stopping:
            log.info("%s: stopping the workers gracefully", signal.Signals(signum).name)
        stopping = True
        stop_all(signal.SIGTERM)

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        for slot in slots:
            start(slot)
        host, port = sock.getsockname()[:2]
        log.info("started %d workers on http://%s:%s: %s", count, host, port, " ".join(str(s.process.pid) for s in slots if s.process))
        while True:
            alive = [slot for slot in slots if slot.process is not None]
            if stopping and not alive:
                break
            now = time.monotonic()
            due = [slot.restart_at for slot in slots if slot.restart_at is not None]
            timeout = max(0.0, min(due) - now) if due and not stopping else None
            waitables: list[Any] = [slot.process.sentinel for slot in alive]  # type: ignore[union-attr]
            waitables += [slot.ready_from for slot in alive if not slot.serving and slot.ready_from is not None]
            if waitables:
                fired = multiprocessing.connection.wait(waitables, timeout)
            else:  # every worker waits for its restart
                time.sleep(timeout if timeout is not None else 0.1)
                fired = []
            for slot in alive:
                if slot.ready_from in fired and not slot.serving:
                    try:
                        slot.serving = slot.ready_from.recv_bytes() == READY  # type: ignore[union-attr]
                    except (EOFError, OSError):
                        pass  # the worker died before it was ready: its sentinel says so
                    if slot.serving:
                        slot.start_failures = 0
                assert slot.process is not None
                if slot.process.sentinel in fired:
                    slot.process.join()
                    code = slot.process.exitcode
                    pid = slot.process.pid
                    was_serving = slot.serving
                    if slot.ready_from is not None:
                        slot.ready_from.close()
                    slot.process, slot.ready_from, slot.serving = None, None, False
                    if stopping:
                        if code != 0:
                            status = 1
                        continue
                    how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"status {code}"
                    if was_serving:
                        log.warning("worker %d (pid %s) died (%s) while serving: starting it again", slot.index, pid, how)
                        slot.restart_at = time.monotonic()
                        continue
                    slot.start_failures += 1
                    if slot.start_failures >= START_FAILURES_TO_GIVE_UP:
                        log.error("worker %d died (%s) before it was ready, %d times in a row: stopping the gateway",
                                  slot.index, how, slot.start_failures)
                        stopping, status = True, 1
                        stop_all(signal.SIGTERM)
                        continue
                    backoff = min(FIRST_BACKOFF_S * 2 ** (slot.start_failures - 1), LONGEST_BACKOFF_S)
                    log.warning("worker %d (pid %s) died (%s) before it was ready: starting it again in %.1f s",
                                slot.index, pid, how, backoff)
                    slot.restart_at = time.monotonic() + backoff
            if not stopping:
                now = time.monotonic()
                for slot in slots:
                    if slot.process is None and slot.restart_at is not None and slot.restart_at <= now:
                        start(slot)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sock.close()
    log.info("all workers stopped")
    return status
