"""The gateway's settings, read from the command line or the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Settings:
    """Where the data lives and where to listen.

    ``data_dir`` holds the SQLite file (by default) and the master key file unless ``LICENSOR_MASTER_KEY``
    gives the key (base64url, 32 bytes); every gateway sharing a PostgreSQL database needs the same key.
    """

    data_dir: str = "var"
    database_url: str | None = None  # default: sqlite:///{data_dir}/licensor.db
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None  # how clients reach this gateway; default http://{host}:{port}
    master_key: bytes | None = field(default=None, repr=False)
    # Webhooks out: the operator may allow endpoints in private ranges (LICENSOR_WEBHOOK_ALLOW_PRIVATE=1), and set
    # the first retry's delay (LICENSOR_WEBHOOK_RETRY_BASE_S, doubled per attempt up to 6 h).
    webhook_allow_private: bool = field(default_factory=lambda: os.environ.get("LICENSOR_WEBHOOK_ALLOW_PRIVATE") == "1")
    webhook_retry_base_s: float = field(default_factory=lambda: float(os.environ.get("LICENSOR_WEBHOOK_RETRY_BASE_S", "5")))
    # LICENSOR_WEBHOOK_SENDER=0: this process sends no webhooks (others on the same database do).
    webhook_sender: bool = field(default_factory=lambda: os.environ.get("LICENSOR_WEBHOOK_SENDER", "1") != "0")
    # Retention (docs/retention.md): how long what is no longer needed is kept before the background pruner deletes it.
    idempotency_retention_hours: float = 24.0  # remembered answers of Idempotency-Key requests; at least the longest lease TTL
    lease_retention_days: float = 400.0  # ended leases; the lease usage report (up to 366 days) reads them
    webhook_retention_days: float = 30.0  # delivered and failed webhook deliveries, with their attempts
    retention_interval_s: float = 60.0  # how often this process prunes; 0: never (another process on the database does)

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{os.path.join(self.data_dir, 'licensor.db')}"

    @property
    def master_key_path(self) -> str:
        return os.path.join(self.data_dir, "master.key")
