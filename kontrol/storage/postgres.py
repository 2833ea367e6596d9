"""PostgreSQL storage through psycopg 3 and psycopg_pool.

The schema (``kite`` by default) is created at start if missing. Triggers on
the kite table send every registration change with ``pg_notify``, and one
dedicated connection per Storage object LISTENs and feeds the watchers, so
changes made by other Kontrol processes on the same database are seen too.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import time
from typing import Any, Awaitable, Callable, TypeVar

import orjson

from kitelib.protocol.identity import Identity
from kitelib.protocol.query import Query

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
    check_ttl,
    prefix_items,
    stop_task,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Unquoted identifier that leaves room for the channel suffix in Postgres's
# 63-byte name limit.
_SCHEMA_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")

# Event seqs remembered to drop duplicates between a replay and NOTIFY.
_SEEN_EVENTS_KEPT = 50_000
# Seconds a replay after reconnecting reaches back before the last delivered event.
_REPLAY_MARGIN = 30.0

# Query field name -> kite table column.
_COLUMNS = {
    "username": "username",
    "environment": "environment",
    "name": "kitename",
    "version": "version",
    "region": "region",
    "hostname": "hostname",
    "id": "id",
}

_KITE_SELECT = (
    "SELECT username, environment, kitename, version, region, hostname, id, url, key_id,"
    " extract(epoch FROM updated_at)::float8 FROM {schema}.kite"
)

_SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS {schema};

CREATE TABLE IF NOT EXISTS {schema}.key (
    id         TEXT PRIMARY KEY,
    public     TEXT NOT NULL UNIQUE,
    private    TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    deleted_at TIMESTAMPTZ NULL
);

CREATE UNLOGGED TABLE IF NOT EXISTS {schema}.kite (
    username    TEXT NOT NULL,
    environment TEXT NOT NULL,
    kitename    TEXT NOT NULL,
    version     TEXT NOT NULL,
    region      TEXT NOT NULL,
    hostname    TEXT NOT NULL,
    id          TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS kite_prefix_idx
    ON {schema}.kite (username, environment, kitename, version, region, hostname);
CREATE INDEX IF NOT EXISTS kite_expires_at_idx ON {schema}.kite (expires_at);

CREATE TABLE IF NOT EXISTS {schema}.kontrol_user (
    name          TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS {schema}.registration_token (
    token_hash TEXT PRIMARY KEY,
    username   TEXT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

-- Every kite event is also kept here for a while, so a listener that lost
-- its connection can replay what it missed.
CREATE UNLOGGED TABLE IF NOT EXISTS {schema}.kite_event (
    seq        BIGSERIAL PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    payload    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS kite_event_created_at_idx ON {schema}.kite_event (created_at);

CREATE OR REPLACE FUNCTION {schema}.kite_publish(channel TEXT, action TEXT, entry {schema}.kite) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    event_seq BIGINT := nextval(pg_get_serial_sequence('{schema}.kite_event', 'seq'));
    payload TEXT := json_build_object(
        'seq', event_seq, 'at', extract(epoch FROM clock_timestamp())::float8, 'action', action,
        'username', entry.username, 'environment', entry.environment, 'name', entry.kitename,
        'version', entry.version, 'region', entry.region, 'hostname', entry.hostname,
        'id', entry.id, 'url', entry.url, 'key_id', entry.key_id,
        'updated_at', extract(epoch FROM entry.updated_at)::float8)::text;
BEGIN
    INSERT INTO {schema}.kite_event (seq, payload) VALUES (event_seq, payload);
    -- NOTIFY payloads must stay under 8000 bytes; a longer event sends only
    -- its seq and the listener reads the rest from kite_event.
    IF octet_length(payload) < 7900 THEN
        PERFORM pg_notify(channel, payload);
    ELSE
        PERFORM pg_notify(channel, json_build_object('seq', event_seq)::text);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION {schema}.kite_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM {schema}.kite_publish(TG_ARGV[0], 'DEREGISTER', OLD);
        RETURN OLD;
    END IF;
    IF TG_OP = 'UPDATE' AND (OLD.username, OLD.environment, OLD.kitename, OLD.version, OLD.region,
            OLD.hostname) IS DISTINCT FROM (NEW.username, NEW.environment, NEW.kitename,
            NEW.version, NEW.region, NEW.hostname) THEN
        PERFORM {schema}.kite_publish(TG_ARGV[0], 'DEREGISTER', OLD);
    END IF;
    PERFORM {schema}.kite_publish(TG_ARGV[0], 'REGISTER', NEW);
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS kite_insert_delete_notify ON {schema}.kite;
CREATE TRIGGER kite_insert_delete_notify AFTER INSERT OR DELETE ON {schema}.kite
    FOR EACH ROW EXECUTE FUNCTION {schema}.kite_notify({channel_literal});

-- A refresh changes only updated_at and expires_at, which is not an event.
DROP TRIGGER IF EXISTS kite_update_notify ON {schema}.kite;
CREATE TRIGGER kite_update_notify AFTER UPDATE ON {schema}.kite
    FOR EACH ROW WHEN ((OLD.username, OLD.environment, OLD.kitename, OLD.version, OLD.region,
        OLD.hostname, OLD.url, OLD.key_id) IS DISTINCT FROM (NEW.username, NEW.environment,
        NEW.kitename, NEW.version, NEW.region, NEW.hostname, NEW.url, NEW.key_id))
    EXECUTE FUNCTION {schema}.kite_notify({channel_literal});
"""


def _import_psycopg() -> tuple[Any, Any]:
    try:
        import psycopg
        import psycopg_pool
    except ImportError as exc:
        raise StorageError(
            "PostgreSQL storage needs psycopg and psycopg_pool; install them with: "
            "pip install 'kite-python[postgres]'"
        ) from exc
    return psycopg, psycopg_pool


def _record_from_row(row: tuple[Any, ...]) -> KiteRecord:
    return KiteRecord(Identity(*row[:7]), row[7], row[8], row[9])


def _key_pair_from_row(row: tuple[Any, ...]) -> KeyPair:
    return KeyPair(row[0], row[1], row[2], row[3], row[4])


class PostgresStorage(Storage):
    """Storage in a PostgreSQL schema (tested with PostgreSQL 15); times keep microseconds.

    ``dsn`` is a libpq connection string or URL. ``timeout`` bounds, in
    seconds, both the wait for a pooled connection and each operation; past
    it the call raises StorageUnavailableError. Expired entries are deleted
    every ``sweep_interval`` seconds and announced as DEREGISTER events.
    Events stay in the ``kite_event`` table for ``event_retention`` seconds,
    so a watcher whose LISTEN connection drops for less than that misses none.
    """

    kind = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "kite",
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 5.0,
        sweep_interval: float = 1.0,
        event_retention: float = 600.0,
    ):
        super().__init__()
        self._psycopg, self._psycopg_pool = _import_psycopg()
        if not _SCHEMA_NAME_RE.match(schema):
            raise ValueError(
                f"invalid PostgreSQL schema name {schema!r}: use 1-40 lowercase letters, digits or '_', "
                "starting with a letter or '_'"
            )
        self._dsn = dsn
        self._schema = schema
        self._channel = f"{schema}_kite_events"
        self._min_size = min_size
        self._max_size = max_size
        self._timeout = timeout
        self._sweep_interval = sweep_interval
        self._pool: Any = None
        self._sweeper: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._closing = False
        self._listening = asyncio.Event()
        self._in_outage = False
        self._seen_events: set[int] = set()
        self._seen_order: collections.deque[int] = collections.deque()
        self._last_event_at = 0.0
        self._event_retention = event_retention
        self._address = self._describe_address(dsn)

    def _describe_address(self, dsn: str) -> str:
        try:
            params = self._psycopg.conninfo.conninfo_to_dict(dsn)
        except self._psycopg.ProgrammingError as exc:
            raise ValueError(f"invalid PostgreSQL connection string: {exc}") from exc
        host = params.get("host") or params.get("hostaddr") or "localhost"
        port = params.get("port") or "5432"
        database = params.get("dbname") or params.get("user") or ""
        return f"{host}:{port}/{database}"

    @property
    def address(self) -> str:
        return self._address

    def _sql(self, text: str) -> str:
        # The schema name is checked against _SCHEMA_NAME_RE, so it is a safe bare identifier.
        return text.replace("{schema}", self._schema)

    def _unavailable(self, exc: BaseException) -> StorageUnavailableError:
        return StorageUnavailableError(
            f"PostgreSQL at {self.address} is unavailable: {exc or type(exc).__name__}; check that the "
            "server is running, reachable and accepts this connection string"
        )

    async def _probe(self) -> None:
        """Open and close one direct connection; raise StorageUnavailableError with the server's reason."""
        psycopg = self._psycopg
        try:
            async with asyncio.timeout(self._timeout):
                connection = await psycopg.AsyncConnection.connect(
                    self._dsn, autocommit=True, connect_timeout=max(1, int(self._timeout))
                )
                await connection.close()
        except TimeoutError as exc:
            raise self._unavailable(TimeoutError(f"no connection within {self._timeout} s")) from exc
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from exc

    async def _call(self, operation: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``operation(connection)`` inside one transaction on a pooled connection."""
        if self._pool is None:
            raise StorageError(f"PostgreSQL storage at {self.address} is not started; call start() first")
        psycopg = self._psycopg
        if self._in_outage:
            # The pool would wait the whole timeout for a connection that a
            # refused probe shows cannot come; fail fast with the real reason.
            await self._probe()
            self._in_outage = False
            logger.info("PostgreSQL at %s is reachable again", self.address)
        try:
            async with asyncio.timeout(self._timeout):
                async with self._pool.connection() as connection:
                    async with connection.transaction():
                        return await operation(connection)
        except (TimeoutError, self._psycopg_pool.PoolTimeout, psycopg.OperationalError) as exc:
            self._in_outage = True
            await self._probe()
            # The server accepts connections again, so report the original failure.
            if isinstance(exc, TimeoutError):
                raise self._unavailable(TimeoutError(f"timed out after {self._timeout} s")) from exc
            raise self._unavailable(exc) from exc
        except psycopg.Error as exc:
            raise StorageError(f"PostgreSQL at {self.address} failed: {exc}") from exc

    async def _fetchall(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        async def operation(connection: Any) -> list[tuple[Any, ...]]:
            cursor = await connection.execute(self._sql(query), params)
            return await cursor.fetchall()

        return await self._call(operation)

    async def _fetchone(self, query: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        rows = await self._fetchall(query, params)
        return rows[0] if rows else None

    async def _rowcount(self, query: str, params: tuple[Any, ...] = ()) -> int:
        async def operation(connection: Any) -> int:
            cursor = await connection.execute(self._sql(query), params)
            return cursor.rowcount

        return await self._call(operation)

    # Lifecycle.

    async def start(self) -> None:
        if self._pool is not None:
            return
        self._closing = False
        psycopg = self._psycopg
        # One direct connection first: it fails fast with the server's own
        # error, where the pool would only report a timeout.
        try:
            async with asyncio.timeout(self._timeout):
                connection = await psycopg.AsyncConnection.connect(
                    self._dsn, autocommit=True, connect_timeout=max(1, int(self._timeout))
                )
        except (TimeoutError, psycopg.OperationalError) as exc:
            raise self._unavailable(exc) from exc
        try:
            async with connection:
                async with connection.transaction():
                    # Serializes schema creation between Kontrols starting together.
                    await connection.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"kontrol:{self._schema}",))
                    channel_literal = "'" + self._channel + "'"
                    await connection.execute(self._sql(_SCHEMA_SQL).replace("{channel_literal}", channel_literal))
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from exc
        except psycopg.Error as exc:
            raise StorageError(f"PostgreSQL at {self.address}: creating schema {self._schema!r} failed: {exc}") from exc

        pool = self._psycopg_pool.AsyncConnectionPool(
            self._dsn,
            min_size=self._min_size,
            max_size=self._max_size,
            timeout=self._timeout,
            open=False,
            kwargs={"autocommit": True},
            check=self._psycopg_pool.AsyncConnectionPool.check_connection,
            name=f"kontrol-{self._schema}",
        )
        try:
            await pool.open(wait=True, timeout=self._timeout)
        except self._psycopg_pool.PoolTimeout as exc:
            await pool.close()
            raise self._unavailable(exc) from exc
        self._pool = pool
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="kontrol-postgres-sweeper")
        logger.info("PostgreSQL storage connected to %s (schema %s)", self.address, self._schema)

    async def close(self) -> None:
        if self._pool is None:
            return
        # psycopg can turn a cancellation inside a query into a psycopg error, which the loops
        # would retry. The flag makes them return instead, and stop_task's timeout is a last resort.
        self._closing = True
        await stop_task(self._sweeper)
        await stop_task(self._listener)
        self._sweeper = None
        self._listener = None
        self._listening.clear()
        self._hub.close_all()
        pool = self._pool
        self._pool = None
        await pool.close()
        logger.info("PostgreSQL storage at %s closed", self.address)

    # Kite entries.

    async def upsert(self, identity: Identity, url: str, key_id: str, ttl: float) -> None:
        identity.validate()
        ttl = check_ttl(ttl)

        async def operation(connection: Any) -> None:
            # An expired row that the sweeper has not reached yet is deleted
            # first, so it gets its DEREGISTER and the insert a REGISTER.
            await connection.execute(
                self._sql("DELETE FROM {schema}.kite WHERE id = %s AND expires_at <= now()"), (identity.id,)
            )
            await connection.execute(
                self._sql(
                    "INSERT INTO {schema}.kite (username, environment, kitename, version, region, hostname, id,"
                    " url, key_id, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,"
                    " now() + make_interval(secs => %s))"
                    " ON CONFLICT (id) DO UPDATE SET username = EXCLUDED.username,"
                    " environment = EXCLUDED.environment, kitename = EXCLUDED.kitename,"
                    " version = EXCLUDED.version, region = EXCLUDED.region, hostname = EXCLUDED.hostname,"
                    " url = EXCLUDED.url, key_id = EXCLUDED.key_id, updated_at = now(),"
                    " expires_at = EXCLUDED.expires_at"
                ),
                (
                    identity.username,
                    identity.environment,
                    identity.name,
                    identity.version,
                    identity.region,
                    identity.hostname,
                    identity.id,
                    url,
                    key_id,
                    ttl,
                ),
            )

        await self._call(operation)

    async def refresh(self, identity: Identity, ttl: float) -> bool:
        ttl = check_ttl(ttl)
        changed = await self._rowcount(
            "UPDATE {schema}.kite SET updated_at = now(), expires_at = now() + make_interval(secs => %s)"
            " WHERE id = %s AND username = %s AND environment = %s AND kitename = %s AND version = %s"
            " AND region = %s AND hostname = %s AND expires_at > now()",
            (
                ttl,
                identity.id,
                identity.username,
                identity.environment,
                identity.name,
                identity.version,
                identity.region,
                identity.hostname,
            ),
        )
        return changed > 0

    async def delete(self, identity: Identity) -> bool:
        row = await self._fetchone(
            "DELETE FROM {schema}.kite WHERE id = %s RETURNING expires_at > now()", (identity.id,)
        )
        return bool(row and row[0])

    async def get(self, query: Query) -> list[KiteRecord]:
        items = prefix_items(query)
        conditions = "".join(f" AND {_COLUMNS[key]} = %s" for key, _ in items)
        rows = await self._fetchall(
            _KITE_SELECT + " WHERE expires_at > now()" + conditions, tuple(value for _, value in items)
        )
        return [_record_from_row(row) for row in rows]

    async def get_by_id(self, kite_id: str) -> KiteRecord | None:
        row = await self._fetchone(_KITE_SELECT + " WHERE id = %s AND expires_at > now()", (kite_id,))
        return _record_from_row(row) if row is not None else None

    async def count(self) -> int:
        row = await self._fetchone("SELECT count(*) FROM {schema}.kite WHERE expires_at > now()")
        assert row is not None
        return row[0]

    # Expiry.

    async def sweep(self) -> int:
        """Delete expired entries and tokens now; return the number of expired entries."""

        async def operation(connection: Any) -> int:
            cursor = await connection.execute(self._sql("DELETE FROM {schema}.kite WHERE expires_at <= now()"))
            removed = cursor.rowcount
            await connection.execute(
                self._sql("DELETE FROM {schema}.registration_token WHERE expires_at <= now()")
            )
            await connection.execute(
                self._sql("DELETE FROM {schema}.kite_event WHERE created_at < now() - make_interval(secs => %s)"),
                (self._event_retention,),
            )
            return removed

        return await self._call(operation)

    async def _sweep_loop(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self._sweep_interval)
            try:
                removed = await self.sweep()
            except StorageError as exc:
                if self._closing:
                    return
                # Log the first failure of an outage, not one line per second.
                if not failing:
                    logger.error("PostgreSQL sweeper at %s failed, retrying every %.1f s: %s", self.address, self._sweep_interval, exc)
                failing = True
                continue
            if failing:
                logger.info("PostgreSQL sweeper at %s works again", self.address)
                failing = False
            if removed:
                logger.debug("PostgreSQL sweeper removed %d expired kites", removed)

    # Watch.

    async def _prepare_watch(self) -> None:
        if self._pool is None:
            raise StorageError(f"PostgreSQL storage at {self.address} is not started; call start() first")
        if self._listener is None or self._listener.done():
            self._listening.clear()
            self._listener = asyncio.create_task(self._listen_loop(), name="kontrol-postgres-listener")
        try:
            async with asyncio.timeout(self._timeout):
                await self._listening.wait()
        except TimeoutError as exc:
            raise self._unavailable(TimeoutError(f"LISTEN was not set up within {self._timeout} s")) from exc

    def _event_from_payload(self, data: dict[str, Any]) -> StorageEvent:
        identity = Identity(
            data["username"], data["environment"], data["name"], data["version"], data["region"], data["hostname"], data["id"]
        )
        action = REGISTER if data["action"] == REGISTER else DEREGISTER
        return StorageEvent(action, KiteRecord(identity, data["url"], data["key_id"], float(data["updated_at"])))

    async def _deliver(self, payload: str) -> None:
        """Publish one kite_event payload unless it was already delivered."""
        try:
            data = orjson.loads(payload)
            seq = int(data["seq"])
            if seq in self._seen_events:
                return
            if "action" not in data:
                row = await self._fetchone("SELECT payload FROM {schema}.kite_event WHERE seq = %s", (seq,))
                if row is None:
                    logger.error("PostgreSQL at %s: kite event %d is gone before it was read", self.address, seq)
                    return
                data = orjson.loads(row[0])
            event = self._event_from_payload(data)
        except (ValueError, KeyError, TypeError) as exc:
            logger.error("PostgreSQL at %s sent a malformed kite event %r: %s", self.address, payload[:200], exc)
            return
        except StorageError as exc:
            logger.error("PostgreSQL at %s: cannot read a long kite event: %s", self.address, exc)
            return
        self._seen_events.add(seq)
        self._seen_order.append(seq)
        if len(self._seen_order) > _SEEN_EVENTS_KEPT:
            self._seen_events.discard(self._seen_order.popleft())
        self._last_event_at = max(self._last_event_at, float(data["at"]))
        self._hub.publish(event)

    async def _listen_loop(self) -> None:
        psycopg = self._psycopg
        delay = 0.1
        listen_started_at: float | None = None
        while True:
            try:
                connection = await psycopg.AsyncConnection.connect(
                    self._dsn,
                    autocommit=True,
                    connect_timeout=max(1, int(self._timeout)),
                    application_name=f"kontrol-listen-{self._schema}",
                )
                async with connection:
                    await connection.execute(f'LISTEN "{self._channel}"')
                    cursor = await connection.execute("SELECT extract(epoch FROM clock_timestamp())::float8")
                    server_now = (await cursor.fetchone())[0]
                    if listen_started_at is None:
                        listen_started_at = server_now
                        self._last_event_at = server_now
                    else:
                        # Replay what was committed while LISTEN was down. The
                        # margin covers transactions that took their event time
                        # before the last delivered event but committed after it.
                        since = max(listen_started_at, self._last_event_at - _REPLAY_MARGIN)
                        cursor = await connection.execute(
                            self._sql("SELECT payload FROM {schema}.kite_event WHERE created_at > to_timestamp(%s) ORDER BY seq"),
                            (since,),
                        )
                        for (payload,) in await cursor.fetchall():
                            await self._deliver(payload)
                        logger.info("PostgreSQL LISTEN at %s restored", self.address)
                    self._listening.set()
                    delay = 0.1
                    async for notify in connection.notifies():
                        await self._deliver(notify.payload)
            except psycopg.Error as exc:
                self._listening.clear()
                if self._closing:
                    return
                logger.warning("PostgreSQL LISTEN at %s failed, reconnecting in %.1f s: %s", self.address, delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    # Key pairs.

    async def add_key_pair(self, key_pair: KeyPair) -> None:
        try:
            await self._rowcount(
                "INSERT INTO {schema}.key (id, public, private, created_at, deleted_at)"
                " VALUES (%s, %s, %s, to_timestamp(%s), to_timestamp(%s))",
                (key_pair.id, key_pair.public_pem, key_pair.private_pem, key_pair.created_at, key_pair.deleted_at),
            )
        except StorageError as exc:
            if isinstance(exc.__cause__, self._psycopg.errors.UniqueViolation):
                raise KeyPairExistsError(
                    f"key pair {key_pair.id!r} was not added: its id or public key is already stored"
                ) from exc
            raise

    async def delete_key_pair(self, key_id: str) -> bool:
        changed = await self._rowcount(
            "UPDATE {schema}.key SET deleted_at = coalesce(deleted_at, now()) WHERE id = %s", (key_id,)
        )
        return changed > 0

    _KEY_SELECT = (
        "SELECT id, public, private, extract(epoch FROM created_at)::float8,"
        " extract(epoch FROM deleted_at)::float8 FROM {schema}.key"
    )

    async def get_key_pair(self, key_id: str) -> KeyPair | None:
        row = await self._fetchone(self._KEY_SELECT + " WHERE id = %s", (key_id,))
        return _key_pair_from_row(row) if row is not None else None

    async def get_key_pair_by_public(self, public_pem: str) -> KeyPair | None:
        row = await self._fetchone(self._KEY_SELECT + " WHERE public = %s", (public_pem,))
        return _key_pair_from_row(row) if row is not None else None

    async def list_key_pairs(self, include_deleted: bool = True) -> list[KeyPair]:
        where = "" if include_deleted else " WHERE deleted_at IS NULL"
        rows = await self._fetchall(self._KEY_SELECT + where + " ORDER BY created_at, id")
        return [_key_pair_from_row(row) for row in rows]

    # Users and registration tokens.

    async def set_user(self, name: str, password_hash: str) -> None:
        await self._rowcount(
            "INSERT INTO {schema}.kontrol_user (name, password_hash) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET password_hash = EXCLUDED.password_hash, updated_at = now()",
            (name, password_hash),
        )

    async def get_user(self, name: str) -> str | None:
        row = await self._fetchone("SELECT password_hash FROM {schema}.kontrol_user WHERE name = %s", (name,))
        return row[0] if row is not None else None

    async def add_registration_token(self, token_hash: str, username: str | None, expires_at: float) -> None:
        await self._rowcount(
            "INSERT INTO {schema}.registration_token (token_hash, username, expires_at)"
            " VALUES (%s, %s, to_timestamp(%s)) ON CONFLICT (token_hash) DO UPDATE"
            " SET username = EXCLUDED.username, expires_at = EXCLUDED.expires_at",
            (token_hash, username, expires_at),
        )

    async def get_registration_token(self, token_hash: str) -> RegistrationToken | None:
        row = await self._fetchone(
            "SELECT token_hash, username, extract(epoch FROM expires_at)::float8 FROM {schema}.registration_token"
            " WHERE token_hash = %s AND expires_at > to_timestamp(%s)",
            (token_hash, time.time()),
        )
        return RegistrationToken(*row) if row is not None else None

    async def consume_registration_token(self, token_hash: str) -> bool:
        # A single DELETE is atomic, so of two concurrent consumers only one deletes the row.
        removed = await self._rowcount(
            "DELETE FROM {schema}.registration_token WHERE token_hash = %s AND expires_at > to_timestamp(%s)",
            (token_hash, time.time()),
        )
        return removed > 0
