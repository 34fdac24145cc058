"""Storage: the :class:`Store` interface and its SQLite and PostgreSQL implementations."""

from __future__ import annotations

from licensor.store.base import IdempotentRequest, Page, Row, Store, StoredResponse, Transaction

__all__ = ["IdempotentRequest", "Page", "Row", "Store", "StoredResponse", "Transaction", "open_store"]


def open_store(url: str) -> Store:
    """The store for a database URL: ``sqlite:///path/to/file.db`` or ``postgresql://user@host:port/db``.

    :raises ValueError: any other scheme, or a PostgreSQL URL without the extra ``licensor[postgres]`` installed.
    """
    if url.startswith("sqlite:///"):
        from licensor.store.sqlite import SqliteStore

        return SqliteStore(url[len("sqlite:///") :])
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from licensor.store.postgres import PostgresStore
        except ModuleNotFoundError as missing:  # asyncpg is an extra: a SQLite-only install goes without it
            if missing.name != "asyncpg":
                raise
            raise ValueError("the PostgreSQL store needs asyncpg: pip install 'licensor[postgres]'") from None
        return PostgresStore(url)
    raise ValueError("the database URL must start with sqlite:/// or postgresql://")
