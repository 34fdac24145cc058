"""``licensor serve --workers N``: worker processes on one listening socket, restarted when they die.

The parent binds the port once and hands the socket to every worker, so all of them accept from one queue:
when a worker dies, the connections waiting to be accepted stay queued for the others and the port never
closes. What a dying worker takes with it is what it was doing: its in-flight requests get no answer (the
client sees the connection reset). Every state-changing license-plane request carries an Idempotency-Key, so
a client (the SDK does) retries it and gets the one answer; nothing is counted twice, and an acknowledged
change was committed before it was acknowledged.

A worker that dies after it was serving is started again at once and logged once (a WARNING); one that keeps
dying within :data:`STABLE_AFTER_S` of being ready (a crash on its first requests) is, after
:data:`QUICK_DEATHS_RESTARTED_AT_ONCE` such deaths in a row, started again after a backoff that doubles from
0.5 s to at most 8 s, so it never spins. A worker that dies before it is ready (a bad configuration, a
database that refuses it) is started again after that backoff; after :data:`START_FAILURES_TO_GIVE_UP` such
failures in a row of one worker slot, the parent stops every worker and exits 1, since a restart would not help. SIGTERM or SIGINT
stops the workers gracefully and the parent exits 0 once all are gone: the parent closes its copy of the listening
socket at once and each worker closes its own, so new connections are refused rather than queued for nobody, while
each worker lets its requests in flight finish (for at most the ``drain_timeout_s`` setting).
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
STABLE_AFTER_S = 5.0  # a worker that dies sooner after it was ready died "soon after starting"
QUICK_DEATHS_RESTARTED_AT_ONCE = 10
READY = b"ready"

Worker = Callable[[socket.socket, Any, Any], None]
"""A worker's entry point: ``worker(listening_socket, ready, argument)``; it calls ``ready.send_bytes(READY)``
once it accepts connections."""


def listening_socket(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening.

    :raises OSError: the address is taken or cannot be bound.
    """
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
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
    ready_at: float | None = None  # when the worker said it serves (None: not yet)
    start_failures: int = 0  # deaths before ready, in a row
    quick_deaths: int = 0  # deaths within STABLE_AFTER_S of being ready, in a row
    restart_at: float | None = None


def _backoff(times: int) -> float:
    return min(FIRST_BACKOFF_S * 2 ** (times - 1), LONGEST_BACKOFF_S)


def supervise(
    worker: Worker, argument: Any, sock: socket.socket, count: int, *, on_exit: Callable[[int], None] | None = None
) -> int:
    """Run ``count`` workers on ``sock`` until SIGTERM/SIGINT (0) or until one keeps dying at start (1);
    ``on_exit(pid)`` is told of every worker that has exited."""
    context = multiprocessing.get_context("spawn")
    slots = [_Slot(index) for index in range(count)]
    stopping = False
    starting = False  # inside start(): the socket is being handed to a new worker
    status = 0

    def stop_listening() -> None:
        """Once stopping, no worker is started again: the parent needs its copy of the socket no more, and keeping it
        open would keep the port accepting connections into a queue that nobody serves any longer."""
        if sock.fileno() != -1:
            sock.close()

    def stop_all() -> None:
        for slot in slots:
            if slot.process is not None and slot.process.exitcode is None and slot.process.pid is not None:
                try:
                    os.kill(slot.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def start(slot: _Slot) -> None:
        nonlocal starting
        starting = True
        try:
            ready_from, ready_to = context.Pipe(duplex=False)
            process = context.Process(target=worker, args=(sock, ready_to, argument), name=f"licensor-worker-{slot.index}")
            process.start()
        finally:
            starting = False
        ready_to.close()  # the child holds its own end; EOF on ours means it is gone
        slot.process, slot.ready_from, slot.ready_at, slot.restart_at = process, ready_from, None, None
        if stopping:  # a signal came while it was being started, before stop_all could see it
            stop_all()
            stop_listening()

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal stopping
        if not stopping:
            log.info("%s: stopping the workers gracefully", signal.Signals(signum).name)
        stopping = True
        stop_all()
        if not starting:  # else start() closes it once the new worker has its copy
            stop_listening()

    def ended(slot: _Slot) -> None:
        """What to do about the worker of ``slot``, which has exited."""
        nonlocal stopping, status
        assert slot.process is not None
        slot.process.join()
        code, pid, ready_at = slot.process.exitcode, slot.process.pid, slot.ready_at
        if slot.ready_from is not None:
            slot.ready_from.close()
        slot.process, slot.ready_from, slot.ready_at = None, None, None
        if on_exit is not None and pid is not None:
            try:
                on_exit(pid)
            except Exception:  # bookkeeping must never stop the supervision
                log.exception("after worker %d (pid %s) exited", slot.index, pid)
        if stopping:
            # Stopped by us, or by the signal itself before its handlers were in place: both are a clean stop.
            if code not in (0, -signal.SIGTERM, -signal.SIGINT):
                status = 1
            return
        how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"status {code}"
        now = time.monotonic()
        if ready_at is not None:
            # A worker that served a while is started again at once; one that keeps dying soon after it was
            # ready (a crash on its first requests) is started again more and more slowly, never in a spin.
            slot.start_failures = 0
            slot.quick_deaths = slot.quick_deaths + 1 if now - ready_at < STABLE_AFTER_S else 0
            delay = (
                0.0
                if slot.quick_deaths <= QUICK_DEATHS_RESTARTED_AT_ONCE
                else _backoff(slot.quick_deaths - QUICK_DEATHS_RESTARTED_AT_ONCE)
            )
            log.warning(
                "worker %d (pid %s) died (%s) while serving: starting it again%s",
                slot.index,
                pid,
                how,
                f" in {delay:.1f} s (it died soon after starting {slot.quick_deaths} times in a row)" if delay else "",
            )
            slot.restart_at = now + delay
            return
        slot.start_failures += 1
        if slot.start_failures >= START_FAILURES_TO_GIVE_UP:
            log.error(
                "worker %d died (%s) before it was ready, %d times in a row: stopping the gateway",
                slot.index,
                how,
                slot.start_failures,
            )
            stopping, status = True, 1
            stop_all()
            stop_listening()
            return
        delay = _backoff(slot.start_failures)
        log.warning("worker %d (pid %s) died (%s) before it was ready: starting it again in %.1f s", slot.index, pid, how, delay)
        slot.restart_at = now + delay

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        host, port = sock.getsockname()[:2]
        for slot in slots:
            if stopping:
                break
            start(slot)
        log.info(
            "started %d workers on http://%s:%s: %s", count, host, port, " ".join(str(s.process.pid) for s in slots if s.process)
        )
        while True:
            alive = [slot for slot in slots if slot.process is not None]
            if stopping and not alive:
                break
            due = [slot.restart_at for slot in slots if slot.restart_at is not None and slot.process is None]
            # Short waits while a restart is pending or nothing runs, so that a signal is acted on at once.
            timeout = None if not due and alive else 0.1 if not due else min(max(0.0, min(due) - time.monotonic()), 0.1)
            # Every slot of alive has a process: the test repeats it for mypy, which cannot narrow through the list.
            waitables: list[Any] = [slot.process.sentinel for slot in alive if slot.process is not None]
            waitables += [slot.ready_from for slot in alive if slot.ready_at is None and slot.ready_from is not None]
            if waitables:
                fired = multiprocessing.connection.wait(waitables, timeout)
            else:
                time.sleep(timeout or 0.1)
                fired = []
            for slot in alive:
                if slot.ready_at is None and slot.ready_from in fired:
                    try:
                        if slot.ready_from.recv_bytes() == READY:
                            slot.ready_at = time.monotonic()
                    except (EOFError, OSError):
                        pass  # the worker died before it was ready: its sentinel says so
                if slot.process is not None and slot.process.sentinel in fired:
                    ended(slot)
            if not stopping:
                now = time.monotonic()
                for slot in slots:
                    if slot.process is None and slot.restart_at is not None and slot.restart_at <= now:
                        start(slot)
    finally:
        # Once stopping, a late SIGTERM under the restored default would kill us before we report and exit.
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_IGN if stopping else handler)
        sock.close()
    log.info("all workers stopped")
    return status
