"""``licensor serve``: the gateway in one process, or N supervised workers on one port (PostgreSQL), stopped
gracefully by SIGTERM or SIGINT (later signals are ignored)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from licensor.cli.bootstrap import (
    check_store_url,
    create_tenant,
    describe_store,
    refuse_newer_schema,
    settings_of,
    write_secret_file,
)
from licensor.cli.config import add_setting_options
from licensor.cli.errors import UsageError

TOKEN_FILE_NAME = "admin-token"

log = logging.getLogger("licensor.serve")


def add_parser(commands: Any) -> None:
    """``licensor serve``."""
    serve = commands.add_parser(
        "serve",
        help="run the gateway",
        description="Run the gateway until SIGTERM or Ctrl-C. With --workers N (PostgreSQL only) N processes share "
        "one listening socket; a worker that dies is started again (in-flight requests on it are lost; "
        "clients retry them with their Idempotency-Key). SIGTERM stops it gracefully: new connections are refused and "
        "the requests in flight finish (for at most the setting drain_timeout_s). Runs on uvloop when installed (the "
        "setting loop). Logs one line per request to stderr: method, path, status, "
        "time and request id, never "
        'headers, bodies or query strings (one JSON object per line with the setting log_format = "json"). '
        "GET /metrics serves the metrics of all workers (docs/metrics.md).",
    )
    add_setting_options(serve)
    serve.add_argument(
        "--init-if-empty",
        action="store_true",
        help='when the store has no tenant yet, create the tenant "default" and write its admin token '
        f"to {{data-dir}}/{TOKEN_FILE_NAME} (mode 0600)",
    )
    serve.set_defaults(handler=run_serve)


# --- logging ------------------------------------------------------------------------------------------
def _setup_logging(settings: Any, with_pid: bool = False) -> None:
    from licensor.cli.logs import setup_logging

    setup_logging(settings.log_format, settings.log_level, with_pid=with_pid)


_LINK_SECRET = re.compile(r"(ptk_[0-9A-Za-z]{26})\.[A-Za-z0-9_-]*")
"""A portal link's token in a path (``/portal/{tenant}/link/ptk_….<secret>``): logged without its secret."""


def _access_logger_class() -> type:
    from aiohttp.abc import AbstractAccessLogger

    from licensor.cli.logs import ACCESS_FIELDS
    from licensor.gateway import keys as app_keys

    class AccessLogger(AbstractAccessLogger):
        """One line per request: client address (behind a trusted proxy, the client's), method, path (no query
        string; a portal link's secret cut off), status, time, request id.

        Never headers (Authorization), bodies (license keys travel only in bodies) or query strings."""

        def log(self, request: Any, response: Any, time: float) -> None:
            path = request.rel_url.raw_path  # still percent-encoded: no control characters reach the log
            if len(path) > 200:
                path = path[:200] + "..."
            path = _LINK_SECRET.sub(r"\1.…", path)  # the link's id stays, to follow it; its secret never
            remote = request.get(app_keys.CLIENT) or request.remote
            rid = response.headers.get("X-Request-Id", "-")
            fields = {
                "remote": remote,
                "method": request.method,
                "path": path,
                "status": response.status,
                "duration_ms": round(time * 1000, 3),
                "request_id": rid,
            }
            self.logger.info(
                "%s %s %s %d %.1fms rid=%s",
                remote,
                request.method,
                path,
                response.status,
                time * 1000,
                rid,
                extra={ACCESS_FIELDS: fields},  # the JSON log's fields (licensor.cli.logs)
            )

    return AccessLogger


# --- serve --------------------------------------------------------------------------------------------
def run_serve(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    check_store_url(settings.store_url)
    refuse_newer_schema(settings)
    _setup_logging(settings, with_pid=settings.workers > 1)
    from licensor.gateway.event_loop import LoopUnavailableError, choose_event_loop

    try:
        choose_event_loop(settings.loop)  # refused here, once, rather than by every worker
    except LoopUnavailableError as error:
        raise UsageError(str(error)) from None
    token_path = os.path.join(settings.data_dir, TOKEN_FILE_NAME)
    created = None
    if args.init_if_empty:
        created = asyncio.run(create_tenant(settings, "default", only_if_empty=True))
        if created is not None:
            write_secret_file(token_path, created[1] + "\n")
            print(f'licensor: created the tenant "default" ({created[0]})', flush=True)
    if os.path.exists(token_path):
        # Where the token is, never the token itself.
        print(f"licensor: the admin token is in {token_path} (mode 0600): export LICENSOR_TOKEN=$(cat {token_path})", flush=True)
    with _metrics_directory():
        if settings.workers == 1:
            return _run_worker(settings, single=True)
        return _run_workers(settings, settings.workers)


@contextlib.contextmanager
def _metrics_directory() -> Iterator[str]:
    """A fresh private directory where every worker writes its metrics (prometheus-client's multiprocess mode,
    also with one worker: one code path), named in ``PROMETHEUS_MULTIPROC_DIR`` before any worker starts or
    prometheus-client is imported; removed when the gateway stops."""
    if "prometheus_client" in sys.modules:  # too late: the mode is chosen when it is imported
        log.warning("prometheus-client was imported before licensor serve set up its metrics directory")
    directory = tempfile.mkdtemp(prefix="licensor-metrics-")  # mode 0700
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    try:
        yield directory
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(directory, ignore_errors=True)


CUT_AFTER_DRAIN_S = 0.5
"""After the drain: what aiohttp's own shutdown still waits for a request in flight (one still sending its body
when the drain timeout passed) before it cancels it."""


def _run_worker(settings: Any, *, single: bool, parent_pid: int | None = None, sock: Any = None, ready: Any = None) -> int:
    """Run one gateway process until SIGTERM or SIGINT; 0 after a graceful stop. A worker of ``--workers N``
    serves on the parent's ``sock`` and tells ``ready`` once it accepts connections.

    On the signal it stops accepting (its listening socket closes: new connections are refused), drains the
    requests in flight for at most the ``drain_timeout_s`` setting (:mod:`licensor.gateway.drain`), then closes
    the connections left and runs the clean-up (the store last)."""
    from aiohttp import web

    from licensor import _impl
    from licensor.gateway import keys as app_keys
    from licensor.gateway.app import create_app
    from licensor.gateway.drain import drain
    from licensor.gateway.event_loop import choose_event_loop
    from licensor.gateway.supervisor import READY

    event_loop = choose_event_loop(settings.loop)
    app = create_app(settings)
    app.on_startup.append(_freeze_startup_objects)
    if parent_pid is not None:
        app.cleanup_ctx.append(_exit_with_parent(parent_pid))
    url = f"http://{settings.host}:{settings.port}"
    core = _impl.IMPLEMENTATION
    if core != "rust":
        if os.environ.get("LICENSOR_PURE_PYTHON") == "1":
            log.warning("LICENSOR_PURE_PYTHON=1: serving on the pure-Python core (same answers, slower signing and verification)")
        else:
            log.warning(
                "the native core is not built: serving on the pure-Python core (same answers, slower signing "
                "and verification); `make build` builds it"
            )

    def started() -> None:
        log.info(
            "gateway listening on %s (core %s, loop %s, store %s)%s",
            url,
            core,
            event_loop.describe(),
            describe_store(settings.store_url),
            "" if not single else "; Ctrl-C stops it",
        )
        if ready is not None:
            ready.send_bytes(READY)
            ready.close()

    async def serve() -> None:
        stop = _stop_on_signals(settings.drain_timeout_s)  # first: a signal during start-up stops us once started
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log_class=_access_logger_class(),
            access_log=logging.getLogger("licensor.access"),
            shutdown_timeout=min(CUT_AFTER_DRAIN_S, settings.drain_timeout_s),
        )
        await runner.setup()
        try:
            site = web.SockSite(runner, sock) if sock is not None else web.TCPSite(runner, settings.host, settings.port)
            await site.start()
            started()
            await stop
            began = time.monotonic()
            await site.stop()  # the listening socket closes: new connections are refused from now on
            left = await drain(
                app[app_keys.IN_FLIGHT], app[app_keys.STOPPING], app.get(app_keys.UPDATES), settings.drain_timeout_s
            )
            if left:
                log.warning(
                    "%d requests still in flight after %g s (the setting drain_timeout_s): closing them",
                    left,
                    settings.drain_timeout_s,
                )
            else:
                log.info("requests in flight drained in %.2f s", time.monotonic() - began)
        finally:
            await runner.cleanup()

    try:
        with asyncio.Runner(loop_factory=event_loop.new_event_loop) as runner:
            runner.run(serve())
    except OSError as error:
        log.error("cannot listen on %s:%s: %s", settings.host, settings.port, error.strerror or error)
        return 1
    log.info("gateway stopped")
    return 0


def _stop_on_signals(drain_timeout_s: float) -> asyncio.Future[None]:
    """A future that the first SIGTERM or SIGINT completes (the gateway then stops gracefully: the requests in
    flight get up to ``drain_timeout_s`` to finish); later signals are ignored.

    (A second signal must not interrupt the drain or the clean-up half-way, which can leave the process hanging
    on the store's thread; `make` forwards SIGTERM to its child, so a second one is common.)"""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def on_signal(name: str) -> None:
        if stop.done():
            return
        # Ignored from now on, at the process level: closing the loop would put the default disposition back,
        # under which a late second SIGTERM kills us.
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
            signal.signal(signum, signal.SIG_IGN)
        log.info("%s: stopping gracefully (requests in flight get up to %g s to finish)", name, drain_timeout_s)
        stop.set_result(None)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signal.Signals(signum).name)
    return stop


async def _freeze_startup_objects(app: Any) -> None:
    """Keep what start-up made (modules, schemas, compiled validators) out of the garbage collector's full
    collections: they live as long as the process, and a full collection that walks them all costs tens of
    milliseconds in whichever request happens to trigger it."""
    import gc

    gc.collect()
    gc.freeze()


def _exit_with_parent(parent_pid: int) -> Any:
    """A cleanup context that stops the worker (gracefully) once the parent ``parent_pid`` is gone."""

    async def context(app: Any) -> Any:
        async def watch() -> None:
            while os.getppid() == parent_pid:
                await asyncio.sleep(1.0)
            log.warning("the parent process %d is gone: stopping", parent_pid)
            os.kill(os.getpid(), signal.SIGTERM)

        task = asyncio.create_task(watch())
        yield
        task.cancel()

    return context


def _worker_main(sock: Any, ready: Any, argument: tuple[Any, int]) -> None:
    """A worker of ``licensor serve --workers N`` (see :mod:`licensor.gateway.supervisor`)."""
    settings, parent_pid = argument
    os.setpgrp()  # the parent forwards SIGINT and SIGTERM; a terminal's Ctrl-C reaches only the parent
    _setup_logging(settings, with_pid=True)
    if os.getppid() != parent_pid:
        sys.exit(1)
    sys.exit(_run_worker(settings, single=False, parent_pid=parent_pid, sock=sock, ready=ready))


def _run_workers(settings: Any, count: int) -> int:
    """N supervised worker processes on one listening socket (see :mod:`licensor.gateway.supervisor`)."""
    from licensor.gateway.supervisor import listening_socket, supervise

    try:
        sock = listening_socket(settings.host, settings.port)
    except OSError as error:
        log.error("cannot listen on %s:%s: %s", settings.host, settings.port, error.strerror or error)
        return 1
    return supervise(_worker_main, (settings, os.getpid()), sock, count, on_exit=_forget_worker_gauges)


def _forget_worker_gauges(pid: int) -> None:
    """A worker is gone: its live gauges (open update connections) no longer count; its counters still do."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)
