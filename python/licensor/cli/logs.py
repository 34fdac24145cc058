"""The logs of ``licensor serve``: readable lines (``log_format = "text"``) or one JSON object per line
(``"json"``), for the access log and the application's logs alike, on stderr.

What the gateway logs never holds a secret: no header (Authorization), no body (license keys travel only in
bodies), no query string, no token or key. A JSON record has ``time`` (UTC, ISO 8601, milliseconds),
``level``, ``logger``, ``pid`` and ``message``; an access record adds ``remote``, ``method``, ``path`` (without
its query string), ``status``, ``duration_ms`` and ``request_id``; a failure adds ``exception`` (its traceback).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

ACCESS_FIELDS = "access"
"""The attribute of an access record holding its fields (passed as ``extra={ACCESS_FIELDS: {...}}``)."""


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (a message's own line breaks are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.gmtime(record.created)
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        fields = getattr(record, ACCESS_FIELDS, None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def setup_logging(log_format: str = "text", log_level: str = "INFO", *, with_pid: bool = False) -> None:
    """Send every log record of this process to stderr in ``log_format`` from ``log_level`` up (both checked by
    the configuration, :mod:`licensor.gateway.settings`)."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        process = " [%(process)d]" if with_pid else ""
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s %(name)s{process}: %(message)s", "%Y-%m-%dT%H:%M:%S"))
    logging.basicConfig(level=log_level.upper(), handlers=[handler], force=True)
