"""Kontrol storage backends behind one interface (see base.Storage).

``open_storage(kind, **settings)`` builds an unstarted backend:

- ``sqlite``: ``path`` (default: default_sqlite_path()), ``sweep_interval``.
- ``etcd``: ``endpoint`` (default http://127.0.0.1:2379), ``prefix``, ``timeout``.
- ``postgres``: ``dsn`` (required), ``schema``, ``min_size``, ``max_size``,
  ``timeout``, ``sweep_interval``.
"""

from __future__ import annotations

from typing import Any

from .base import (
    DEREGISTER,
    REGISTER,
    KeyPair,
    KeyPairExistsError,
    KiteRecord,
    RegistrationToken,
    Storage,
    StorageError,
    StorageEvent,
    StorageUnavailableError,
    Watcher,
)
from .sqlite import SQLiteStorage, default_sqlite_path

__all__ = [
    "DEREGISTER",
    "REGISTER",
    "KeyPair",
    "KeyPairExistsError",
    "KiteRecord",
    "RegistrationToken",
    "SQLiteStorage",
    "Storage",
    "StorageError",
    "StorageEvent",
    "StorageUnavailableError",
    "Watcher",
    "STORAGE_KINDS",
    "default_sqlite_path",
    "open_storage",
]

STORAGE_KINDS = ("sqlite", "etcd", "postgres")


def open_storage(kind: str, **settings: Any) -> Storage:
    """Build the backend named ``kind`` with ``settings``; call ``start()`` on the result.

    The etcd and PostgreSQL modules load only when asked for, so their client
    libraries stay optional.
    """
    if kind == "sqlite":
        return SQLiteStorage(**settings)
    if kind == "etcd":
        from .etcd import EtcdStorage

        return EtcdStorage(**settings)
    if kind == "postgres":
        from .postgres import PostgresStorage

        return PostgresStorage(**settings)
    raise ValueError(f"unknown storage kind {kind!r}: use one of {', '.join(STORAGE_KINDS)}")
