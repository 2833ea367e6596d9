"""Embedded SQLite storage, Kontrol's default.

All database work runs on one worker thread, so the event loop does not wait
on disk I/O and only that thread uses the connection. Events are in-process
only: changes that another process writes to the same file do not reach this
process's watchers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

from kitelib.protocol.identity import Identity
from kitelib.protocol.query import Query

from .base import (
    DEREGISTER,
    KeyPair,
    KeyPairExistsError,
    KiteRecord,
    RegistrationToken,
    Storage,
    StorageError,
    StorageEvent,
    StorageUnavailableError,
    check_ttl,
    prefix_items,
    registration_events,
    stop_task,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kites (
    id          TEXT PRIMARY KEY,
    username    TEXT NOT NULL,
    environment TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    region      TEXT NOT NULL,
    hostname    TEXT NOT NULL,
    url         TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    expires_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS kites_prefix_idx
    ON kites (username, environment, name, version, region, hostname);
CREATE INDEX IF NOT EXISTS kites_expires_at_idx ON kites (expires_at);
CREATE TABLE IF NOT EXISTS key_pairs (
    id          TEXT PRIMARY KEY,
    public_pem  TEXT NOT NULL UNIQUE,
    private_pem TEXT NOT NULL,
    created_at  REAL NOT NULL,
    deleted_at  REAL
);
CREATE TABLE IF NOT EXISTS users (
    name          TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    updated_at    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS registration_tokens (
    token_hash TEXT PRIMARY KEY,
    username   TEXT,
    expires_at REAL NOT NULL
);
"""

# Kite columns in identity order, then the stored values.
_KITE_COLUMNS = "username, environment, name, version, region, hostname, id, url, key_id, updated_at"


def default_sqlite_path() -> Path:
    """Return the per-user default database file, ``<user data dir>/kontrol/kontrol.db``."""
    import platformdirs

    return Path(platformdirs.user_data_dir("kontrol")) / "kontrol.db"


def _record_from_row(row: tuple[Any, ...]) -> KiteRecord:
    return KiteRecord(Identity(*row[:7]), row[7], row[8], row[9])


def _key_pair_from_row(row: tuple[Any, ...]) -> KeyPair:
    return KeyPair(row[0], row[1], row[2], row[3], row[4])


class SQLiteStorage(Storage):
    """Storage in one SQLite file (WAL journal, synchronous=NORMAL).

    ``sweep_interval`` is how often, in seconds, expired entries are deleted
    and announced as DEREGISTER events.
    """

    kind = "sqlite"

    def __init__(self, path: str | os.PathLike[str] | None = None, *, sweep_interval: float = 1.0):
        super().__init__()
        self._path = Path(path) if path is not None else default_sqlite_path()
        self._sweep_interval = sweep_interval
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return str(self._path)

    @property
    def path(self) -> Path:
        return self._path

    # Lifecycle.

    async def start(self) -> None:
        if self._executor is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kontrol-sqlite")
        try:
            await self._loop.run_in_executor(self._executor, self._open_sync)
        except (sqlite3.Error, OSError) as exc:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise StorageUnavailableError(
                f"cannot open the SQLite database {self._path}: {exc}; check that the directory "
                "exists or can be created and that the file is writable and not corrupt"
            ) from exc
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="kontrol-sqlite-sweeper")
        logger.info("SQLite storage opened at %s", self._path)

    def _open_sync(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE),
        # so writers take the lock up front instead of failing on upgrade.
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=10.0)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"schema version {version} is newer than this Kontrol supports ({SCHEMA_VERSION}); "
                    "upgrade kite-python"
                )
            connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            connection.execute("COMMIT")
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    async def close(self) -> None:
        if self._executor is None:
            return
        await stop_task(self._sweeper)
        self._sweeper = None
        self._hub.close_all()
        executor = self._executor
        self._executor = None
        await asyncio.get_running_loop().run_in_executor(executor, self._close_sync)
        executor.shutdown(wait=True)
        logger.info("SQLite storage at %s closed", self._path)

    def _close_sync(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        if self._executor is None or self._loop is None:
            raise StorageError(f"SQLite storage at {self._path} is not started; call start() first")
        try:
            return await self._loop.run_in_executor(self._executor, functools.partial(function, *args))
        except sqlite3.OperationalError as exc:
            raise StorageUnavailableError(
                f"SQLite storage at {self._path} failed: {exc}; check the disk and file permissions"
            ) from exc
        except sqlite3.Error as exc:
            raise StorageError(f"SQLite storage at {self._path} failed: {exc}") from exc

    async def _prepare_watch(self) -> None:
        if self._executor is None:
            raise StorageError(f"SQLite storage at {self._path} is not started; call start() first")

    def _publish_from_worker(self, events: list[StorageEvent]) -> None:
        # Called on the worker thread, which runs one operation at a time, so
        # events reach the loop in commit order.
        if events and self._loop is not None:
            self._loop.call_soon_threadsafe(self._hub.publish_many, events)

    def _write(self, function: Callable[[sqlite3.Connection], T]) -> T:
        connection = self._connection
        assert connection is not None
        connection.execute("BEGIN IMMEDIATE")
        try:
            result = function(connection)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        return result

    # Kite entries.

    async def upsert(self, identity: Identity, url: str, key_id: str, ttl: float) -> None:
        identity.validate()
        ttl = check_ttl(ttl)
        await self._run(self._upsert_sync, identity, url, key_id, ttl)

    def _upsert_sync(self, identity: Identity, url: str, key_id: str, ttl: float) -> None:
        def transaction(connection: sqlite3.Connection) -> list[StorageEvent]:
            now = time.time()
            events: list[StorageEvent] = []
            row = connection.execute(
                f"SELECT {_KITE_COLUMNS}, expires_at FROM kites WHERE id = ?", (identity.id,)
            ).fetchone()
            old = _record_from_row(row) if row is not None else None
            if row is not None and row[10] <= now:
                # Expired but not yet swept: it is gone as far as readers know.
                events.append(StorageEvent(DEREGISTER, old))
                old = None
            new = KiteRecord(identity, url, key_id, now)
            connection.execute(
                "INSERT INTO kites (id, username, environment, name, version, region, hostname, url, key_id,"
                " created_at, updated_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET username = excluded.username,"
                " environment = excluded.environment, name = excluded.name, version = excluded.version,"
                " region = excluded.region, hostname = excluded.hostname, url = excluded.url,"
                " key_id = excluded.key_id, updated_at = excluded.updated_at, expires_at = excluded.expires_at",
                (
                    identity.id,
                    identity.username,
                    identity.environment,
                    identity.name,
                    identity.version,
                    identity.region,
                    identity.hostname,
                    url,
                    key_id,
                    now,
                    now,
                    now + ttl,
                ),
            )
            return events + registration_events(old, new)

        self._publish_from_worker(self._write(transaction))

    async def refresh(self, identity: Identity, ttl: float) -> bool:
        ttl = check_ttl(ttl)
        return await self._run(self._refresh_sync, identity, ttl)

    def _refresh_sync(self, identity: Identity, ttl: float) -> bool:
        assert self._connection is not None
        now = time.time()
        cursor = self._connection.execute(
            "UPDATE kites SET updated_at = ?, expires_at = ? WHERE id = ? AND username = ? AND environment = ?"
            " AND name = ? AND version = ? AND region = ? AND hostname = ? AND expires_at > ?",
            (
                now,
                now + ttl,
                identity.id,
                identity.username,
                identity.environment,
                identity.name,
                identity.version,
                identity.region,
                identity.hostname,
                now,
            ),
        )
        return cursor.rowcount > 0

    async def delete(self, identity: Identity) -> bool:
        return await self._run(self._delete_sync, identity.id)

    def _delete_sync(self, kite_id: str) -> bool:
        def transaction(connection: sqlite3.Connection) -> bool:
            row = connection.execute(
                f"DELETE FROM kites WHERE id = ? RETURNING {_KITE_COLUMNS}, expires_at", (kite_id,)
            ).fetchone()
            if row is None:
                return False
            # An entry that had expired but was not swept yet still gets its
            # DEREGISTER, because the sweeper will no longer see it.
            self._publish_from_worker([StorageEvent(DEREGISTER, _record_from_row(row))])
            return row[10] > time.time()

        return self._write(transaction)

    async def get(self, query: Query) -> list[KiteRecord]:
        items = prefix_items(query)
        return await self._run(self._get_sync, items)

    def _get_sync(self, items: list[tuple[str, str]]) -> list[KiteRecord]:
        assert self._connection is not None
        conditions = "".join(f" AND {key} = ?" for key, _ in items)
        rows = self._connection.execute(
            f"SELECT {_KITE_COLUMNS} FROM kites WHERE expires_at > ?{conditions}",
            (time.time(), *(value for _, value in items)),
        ).fetchall()
        return [_record_from_row(row) for row in rows]

    async def get_by_id(self, kite_id: str) -> KiteRecord | None:
        return await self._run(self._get_by_id_sync, kite_id)

    def _get_by_id_sync(self, kite_id: str) -> KiteRecord | None:
        assert self._connection is not None
        row = self._connection.execute(
            f"SELECT {_KITE_COLUMNS} FROM kites WHERE id = ? AND expires_at > ?", (kite_id, time.time())
        ).fetchone()
        return _record_from_row(row) if row is not None else None

    async def count(self) -> int:
        return await self._run(self._count_sync)

    def _count_sync(self) -> int:
        assert self._connection is not None
        return self._connection.execute("SELECT count(*) FROM kites WHERE expires_at > ?", (time.time(),)).fetchone()[0]

    # Expiry.

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            try:
                await self._run(self._sweep_sync)
            except StorageError as exc:
                logger.error("SQLite sweeper at %s failed, retrying in %.1f s: %s", self._path, self._sweep_interval, exc)

    async def sweep(self) -> int:
        """Delete expired entries and tokens now; return the number of expired entries."""
        return await self._run(self._sweep_sync)

    def _sweep_sync(self) -> int:
        def transaction(connection: sqlite3.Connection) -> list[StorageEvent]:
            now = time.time()
            rows = connection.execute(
                f"DELETE FROM kites WHERE expires_at <= ? RETURNING {_KITE_COLUMNS}", (now,)
            ).fetchall()
            connection.execute("DELETE FROM registration_tokens WHERE expires_at <= ?", (now,))
            return [StorageEvent(DEREGISTER, _record_from_row(row)) for row in rows]

        events = self._write(transaction)
        if events:
            logger.debug("SQLite sweeper removed %d expired kites", len(events))
        self._publish_from_worker(events)
        return len(events)

    # Key pairs.

    async def add_key_pair(self, key_pair: KeyPair) -> None:
        await self._run(self._add_key_pair_sync, key_pair)

    def _add_key_pair_sync(self, key_pair: KeyPair) -> None:
        assert self._connection is not None
        try:
            self._connection.execute(
                "INSERT INTO key_pairs (id, public_pem, private_pem, created_at, deleted_at) VALUES (?, ?, ?, ?, ?)",
                (key_pair.id, key_pair.public_pem, key_pair.private_pem, key_pair.created_at, key_pair.deleted_at),
            )
        except sqlite3.IntegrityError as exc:
            raise KeyPairExistsError(
                f"key pair {key_pair.id!r} was not added: its id or public key is already stored ({exc})"
            ) from exc

    async def delete_key_pair(self, key_id: str) -> bool:
        return await self._run(self._delete_key_pair_sync, key_id)

    def _delete_key_pair_sync(self, key_id: str) -> bool:
        assert self._connection is not None
        cursor = self._connection.execute(
            "UPDATE key_pairs SET deleted_at = coalesce(deleted_at, ?) WHERE id = ?", (time.time(), key_id)
        )
        return cursor.rowcount > 0

    async def get_key_pair(self, key_id: str) -> KeyPair | None:
        return await self._run(self._select_key_pair_sync, "id", key_id)

    async def get_key_pair_by_public(self, public_pem: str) -> KeyPair | None:
        return await self._run(self._select_key_pair_sync, "public_pem", public_pem)

    def _select_key_pair_sync(self, column: str, value: str) -> KeyPair | None:
        assert self._connection is not None
        row = self._connection.execute(
            f"SELECT id, public_pem, private_pem, created_at, deleted_at FROM key_pairs WHERE {column} = ?", (value,)
        ).fetchone()
        return _key_pair_from_row(row) if row is not None else None

    async def list_key_pairs(self, include_deleted: bool = True) -> list[KeyPair]:
        return await self._run(self._list_key_pairs_sync, include_deleted)

    def _list_key_pairs_sync(self, include_deleted: bool) -> list[KeyPair]:
        assert self._connection is not None
        where = "" if include_deleted else " WHERE deleted_at IS NULL"
        rows = self._connection.execute(
            f"SELECT id, public_pem, private_pem, created_at, deleted_at FROM key_pairs{where} ORDER BY created_at, id"
        ).fetchall()
        return [_key_pair_from_row(row) for row in rows]

    # Users and registration tokens.

    async def set_user(self, name: str, password_hash: str) -> None:
        await self._run(self._set_user_sync, name, password_hash)

    def _set_user_sync(self, name: str, password_hash: str) -> None:
        assert self._connection is not None
        self._connection.execute(
            "INSERT INTO users (name, password_hash, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE"
            " SET password_hash = excluded.password_hash, updated_at = excluded.updated_at",
            (name, password_hash, time.time()),
        )

    async def get_user(self, name: str) -> str | None:
        return await self._run(self._get_user_sync, name)

    def _get_user_sync(self, name: str) -> str | None:
        assert self._connection is not None
        row = self._connection.execute("SELECT password_hash FROM users WHERE name = ?", (name,)).fetchone()
        return row[0] if row is not None else None

    async def add_registration_token(self, token_hash: str, username: str | None, expires_at: float) -> None:
        await self._run(self._add_registration_token_sync, token_hash, username, expires_at)

    def _add_registration_token_sync(self, token_hash: str, username: str | None, expires_at: float) -> None:
        assert self._connection is not None
        self._connection.execute(
            "INSERT INTO registration_tokens (token_hash, username, expires_at) VALUES (?, ?, ?)"
            " ON CONFLICT (token_hash) DO UPDATE SET username = excluded.username, expires_at = excluded.expires_at",
            (token_hash, username, expires_at),
        )

    async def get_registration_token(self, token_hash: str) -> RegistrationToken | None:
        return await self._run(self._get_registration_token_sync, token_hash)

    def _get_registration_token_sync(self, token_hash: str) -> RegistrationToken | None:
        assert self._connection is not None
        row = self._connection.execute(
            "SELECT token_hash, username, expires_at FROM registration_tokens WHERE token_hash = ? AND expires_at > ?",
            (token_hash, time.time()),
        ).fetchone()
        return RegistrationToken(*row) if row is not None else None

    async def consume_registration_token(self, token_hash: str) -> bool:
        return await self._run(self._consume_registration_token_sync, token_hash)

    def _consume_registration_token_sync(self, token_hash: str) -> bool:
        assert self._connection is not None
        # One DELETE statement is atomic, also across processes sharing the file.
        cursor = self._connection.execute(
            "DELETE FROM registration_tokens WHERE token_hash = ? AND expires_at > ?", (token_hash, time.time())
        )
        return cursor.rowcount > 0
