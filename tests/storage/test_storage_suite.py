"""One behaviour suite for every storage backend, run against real servers."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

import pytest

from kitelib.protocol.identity import Identity, IdentityError
from kitelib.protocol.query import Query
from kontrol.storage import (
    DEREGISTER,
    REGISTER,
    KeyPair,
    KeyPairExistsError,
    Storage,
    StorageEvent,
    StorageUnavailableError,
    Watcher,
    open_storage,
)
from tests.servers import free_port

# Short sweep so expiry tests finish quickly.
SWEEP_INTERVAL = 0.2
# Upper bound for an event to arrive once its cause happened (expiry adds its TTL).
EVENT_TIMEOUT = 10.0
LONG_TTL = 300.0

BACKENDS = ["sqlite", "etcd", "postgres"]


class Backend:
    """Builds Storage objects that share one backing data set (file, key prefix or schema)."""

    def __init__(self, kind: str, settings: dict):
        self.kind = kind
        self.settings = settings

    async def open(self, **overrides) -> Storage:
        storage = open_storage(self.kind, **{**self.settings, **overrides})
        await storage.start()
        return storage


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    kind = request.param
    if kind == "sqlite":
        return Backend(kind, {"path": tmp_path / "kontrol.db", "sweep_interval": SWEEP_INTERVAL})
    if kind == "etcd":
        server = request.getfixturevalue("etcd_server")
        return Backend(kind, {"endpoint": server.endpoint, "prefix": f"/test-{uuid.uuid4().hex}"})
    server = request.getfixturevalue("postgres_server")
    schema = f"t_{uuid.uuid4().hex[:16]}"
    return Backend(kind, {"dsn": server.dsn, "schema": schema, "sweep_interval": SWEEP_INTERVAL})


@pytest.fixture
async def storage(backend: Backend) -> AsyncIterator[Storage]:
    opened = await backend.open()
    yield opened
    await opened.close()


def kite(
    name: str = "math",
    *,
    username: str = "alice",
    environment: str = "production",
    version: str = "1.0.0",
    region: str = "eu",
    hostname: str = "host1",
    kite_id: str | None = None,
) -> Identity:
    return Identity(username, environment, name, version, region, hostname, kite_id or str(uuid.uuid4()))


def ids(records) -> set[str]:
    return {record.identity.id for record in records}


async def next_event(watcher: Watcher, timeout: float = EVENT_TIMEOUT) -> StorageEvent:
    return await watcher.next(timeout)


async def raises_unavailable_within(seconds: float, call: Callable[[], Awaitable[object]]) -> StorageUnavailableError:
    started = time.monotonic()
    with pytest.raises(StorageUnavailableError) as error:
        await call()
    elapsed = time.monotonic() - started
    assert elapsed < seconds, f"took {elapsed:.1f} s to report the outage"
    return error.value


async def wait_until_available(call: Callable[[], Awaitable[object]], deadline_seconds: float = 20.0) -> object:
    deadline = time.monotonic() + deadline_seconds
    while True:
        try:
            return await call()
        except StorageUnavailableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


# Kite entries.


async def test_upsert_then_get(storage: Storage):
    first = kite("math")
    second = kite("math", version="2.0.0")
    other_user = kite("math", username="bob")
    for identity in (first, second, other_user):
        await storage.upsert(identity, f"http://127.0.0.1:3636/kite/{identity.id}", "key-1", LONG_TTL)

    records = await storage.get(Query(username="alice"))
    assert ids(records) == {first.id, second.id}
    record = next(record for record in records if record.identity.id == first.id)
    assert record.identity == first
    assert record.url == f"http://127.0.0.1:3636/kite/{first.id}"
    assert record.key_id == "key-1"
    assert abs(record.updated_at - time.time()) < 5
    assert await storage.count() == 3


async def test_get_prefix_queries(storage: Storage):
    a = kite("math", version="1.0.0", region="eu")
    b = kite("math", version="1.0.0", region="us")
    c = kite("calc", version="1.0.0", region="eu")
    d = kite("math", environment="staging")
    for identity in (a, b, c, d):
        await storage.upsert(identity, "http://127.0.0.1:1/kite", "k", LONG_TTL)

    assert ids(await storage.get(Query(username="alice", environment="production"))) == {a.id, b.id, c.id}
    assert ids(await storage.get(Query(username="alice", environment="production", name="math"))) == {a.id, b.id}
    query = Query(username="alice", environment="production", name="math", version="1.0.0", region="us")
    assert ids(await storage.get(query)) == {b.id}
    assert ids(await storage.get(Query.from_identity(a))) == {a.id}
    assert await storage.get(Query(username="alice", environment="production", name="nothing")) == []


async def test_get_matches_whole_segments(storage: Storage):
    bob = kite(username="bob")
    bobby = kite(username="bobby")
    await storage.upsert(bob, "http://127.0.0.1:1/kite", "k", LONG_TTL)
    await storage.upsert(bobby, "http://127.0.0.1:2/kite", "k", LONG_TTL)

    assert ids(await storage.get(Query(username="bob"))) == {bob.id}
    assert ids(await storage.get(Query(username="bob", environment="prod"))) == set()


async def test_get_ignores_fields_after_gap(storage: Storage):
    math = kite("math", hostname="host1")
    calc = kite("calc", hostname="host2")
    for identity in (math, calc):
        await storage.upsert(identity, "http://127.0.0.1:1/kite", "k", LONG_TTL)

    assert ids(await storage.get(Query(username="alice", name="calc"))) == {math.id, calc.id}


async def test_get_rejects_query_without_username(storage: Storage):
    with pytest.raises(ValueError, match="get_by_id"):
        await storage.get(Query(id="x"))


async def test_empty_query_returns_all(storage: Storage):
    await storage.upsert(kite(username="a"), "http://127.0.0.1:1/kite", "k", LONG_TTL)
    await storage.upsert(kite(username="b"), "http://127.0.0.1:1/kite", "k", LONG_TTL)
    assert len(await storage.get(Query())) == 2


async def test_get_by_id(storage: Storage):
    identity = kite()
    await storage.upsert(identity, "http://127.0.0.1:1/kite", "key-9", LONG_TTL)

    record = await storage.get_by_id(identity.id)
    assert record is not None
    assert record.identity == identity
    assert record.key_id == "key-9"
    assert await storage.get_by_id(str(uuid.uuid4())) is None


async def test_upsert_replaces_same_id(storage: Storage):
    identity = kite()
    await storage.upsert(identity, "http://127.0.0.1:1/kite", "k1", LONG_TTL)
    await storage.upsert(identity, "http://127.0.0.1:2/kite", "k2", LONG_TTL)

    records = await storage.get(Query(username="alice"))
    assert len(records) == 1
    assert records[0].url == "http://127.0.0.1:2/kite"
    assert records[0].key_id == "k2"

    moved = identity.replace(version="2.0.0")
    await storage.upsert(moved, "http://127.0.0.1:3/kite", "k2", LONG_TTL)
    assert await storage.count() == 1
    assert (await storage.get_by_id(identity.id)).identity == moved
    assert await storage.get(Query.from_identity(identity)) == []


async def test_upsert_rejects_invalid_identity(storage: Storage):
    with pytest.raises(IdentityError, match="Empty Kite field: region"):
        await storage.upsert(kite(region=""), "http://127.0.0.1:1/kite", "k", LONG_TTL)
    with pytest.raises(IdentityError, match="must not contain '/'"):
        await storage.upsert(kite(hostname="a/b"), "http://127.0.0.1:1/kite", "k", LONG_TTL)
    with pytest.raises(ValueError, match="ttl"):
        await storage.upsert(kite(), "http://127.0.0.1:1/kite", "k", 0)


async def test_delete(storage: Storage):
    identity = kite()
    await storage.upsert(identity, "http://127.0.0.1:1/kite", "k", LONG_TTL)

    assert await storage.delete(identity) is True
    assert await storage.delete(identity) is False
    assert await storage.get(Query(username="alice")) == []
    assert await storage.get_by_id(identity.id) is None
    assert await storage.count() == 0


async def test_refresh(storage: Storage):
    identity = kite()
    await storage.upsert(identity, "http://127.0.0.1:1/kite", "k", LONG_TTL)
    before = (await storage.get_by_id(identity.id)).updated_at

    assert await storage.refresh(identity, LONG_TTL) is True
    after = await storage.get_by_id(identity.id)
    assert after.updated_at >= before
    assert after.url == "http://127.0.0.1:1/kite"
    assert await storage.refresh(kite(), LONG_TTL) is False


async def test_expiry_removes_entry_and_keeps_refreshed(storage: Storage):
    watcher = await storage.watch()
    short = kite("short")
    kept = kite("kept")
    await storage.upsert(short, "http://127.0.0.1:1/kite", "k", 1)
    await storage.upsert(kept, "http://127.0.0.1:2/kite", "k", 1)
    assert await storage.refresh(kept, LONG_TTL) is True
    assert {(await next_event(watcher)).action for _ in range(2)} == {REGISTER}

    event = await next_event(watcher)
    assert event.action == DEREGISTER
    assert event.record.identity == short
    assert event.record.url == "http://127.0.0.1:1/kite"

    assert ids(await storage.get(Query(username="alice"))) == {kept.id}
    assert await storage.get_by_id(short.id) is None
    assert await storage.count() == 1
    assert await storage.refresh(short, LONG_TTL) is False
    watcher.close()


async def test_expired_entry_can_register_again(storage: Storage):
    watcher = await storage.watch()
    identity = kite()
    await storage.upsert(identity, "http://127.0.0.1:1/kite", "k", 1)
    assert (await next_event(watcher)).action == REGISTER
    assert (await next_event(watcher)).action == DEREGISTER

    await storage.upsert(identity, "http://127.0.0.1:1/kite", "k", LONG_TTL)
    event = await next_event(watcher)
    assert event.action == REGISTER
    assert event.record.identity == identity
    watcher.close()


# Watch.


async def test_watch_register_and_deregister(storage: Storage):
    watcher = await storage.watch()
    identity = kite()
    marker = kite("marker")

    await storage.upsert(identity, "http://127.0.0.1:1/kite", "k", LONG_TTL)
    event = await next_event(watcher)
    assert event.action == REGISTER
    assert event.record.identity == identity
    assert event.record.url == "http://127.0.0.1:1/kite"

    # Neither a refresh nor an upsert with the same values is an event: the
    # next event must be the marker's.
    assert await storage.refresh(identity, LONG_TTL)
    await storage.upsert(identity, "http://127.0.0.1:1/kite", "k", LONG_TTL)
    await storage.upsert(marker, "http://127.0.0.1:9/kite", "k", LONG_TTL)
    event = await next_event(watcher)
    assert event.record.identity == marker

    await storage.upsert(identity, "http://127.0.0.1:2/kite", "k", LONG_TTL)
    event = await next_event(watcher)
    assert event.action == REGISTER
    assert event.record.url == "http://127.0.0.1:2/kite"

    await storage.delete(identity)
    event = await next_event(watcher)
    assert event.action == DEREGISTER
    assert event.record.identity == identity
    assert event.record.url == "http://127.0.0.1:2/kite"
    watcher.close()


async def test_watch_identity_change_sends_both(storage: Storage):
    identity = kite()
    await storage.upsert(identity, "http://127.0.0.1:1/kite", "k", LONG_TTL)
    watcher = await storage.watch()

    moved = identity.replace(version="2.0.0")
    await storage.upsert(moved, "http://127.0.0.1:1/kite", "k", LONG_TTL)
    first = await next_event(watcher)
    second = await next_event(watcher)
    assert (first.action, first.record.identity) == (DEREGISTER, identity)
    assert (second.action, second.record.identity) == (REGISTER, moved)
    watcher.close()


async def test_multiple_watchers_and_close(storage: Storage):
    first = await storage.watch()
    second = await storage.watch()
    identity = kite()

    await storage.upsert(identity, "http://127.0.0.1:1/kite", "k", LONG_TTL)
    assert (await next_event(first)).record.identity == identity
    assert (await next_event(second)).record.identity == identity

    first.close()
    with pytest.raises(StopAsyncIteration):
        await first.next(EVENT_TIMEOUT)

    await storage.delete(identity)
    event = await next_event(second)
    assert event.action == DEREGISTER
    second.close()
    remaining = [event async for event in second]
    assert remaining == []


# SQLite events are delivered in-process only, so only the server backends see another writer's changes.
@pytest.mark.parametrize("backend", ["etcd", "postgres"], indirect=True)
async def test_watch_sees_other_writer(backend: Backend):
    reader = await backend.open()
    writer = await backend.open()
    try:
        watcher = await reader.watch()
        identity = kite()
        await writer.upsert(identity, "http://127.0.0.1:1/kite", "k", LONG_TTL)
        event = await next_event(watcher)
        assert (event.action, event.record.identity) == (REGISTER, identity)
        watcher.close()
    finally:
        await writer.close()
        await reader.close()


async def test_watch_long_identity(storage: Storage):
    # Longer than PostgreSQL's 8000-byte NOTIFY payload limit.
    identity = kite(hostname="h" * 9000)
    watcher = await storage.watch()
    await storage.upsert(identity, "http://127.0.0.1:1/kite", "k", LONG_TTL)
    event = await next_event(watcher)
    assert (event.action, event.record.identity) == (REGISTER, identity)
    watcher.close()


async def test_postgres_watch_replays_after_reconnect(postgres_server):
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    reader = open_storage("postgres", dsn=postgres_server.dsn, schema=schema)
    writer = open_storage("postgres", dsn=postgres_server.dsn, schema=schema)
    await reader.start()
    await writer.start()
    try:
        watcher = await reader.watch()
        before = kite("before")
        await writer.upsert(before, "http://127.0.0.1:1/kite", "k", LONG_TTL)
        assert (await next_event(watcher)).record.identity == before

        # Drop the reader's LISTEN connection, then write while it reconnects.
        async with await psycopg.AsyncConnection.connect(postgres_server.dsn, autocommit=True) as admin:
            cursor = await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                (f"kontrol-listen-{schema}",),
            )
            assert (await cursor.fetchall()) == [(True,)]
        during = kite("during")
        await writer.upsert(during, "http://127.0.0.1:2/kite", "k", LONG_TTL)
        event = await next_event(watcher)
        assert (event.action, event.record.identity) == (REGISTER, during)

        # The replay must not repeat events already delivered.
        after = kite("after")
        await writer.upsert(after, "http://127.0.0.1:3/kite", "k", LONG_TTL)
        assert (await next_event(watcher)).record.identity == after
        watcher.close()
    finally:
        await writer.close()
        await reader.close()


async def test_close_ends_watchers(backend: Backend):
    storage = await backend.open()
    watcher = await storage.watch()
    await storage.close()
    with pytest.raises(StopAsyncIteration):
        await watcher.next(EVENT_TIMEOUT)


# Key pairs.


def key_pair(name: str, created_at: float) -> KeyPair:
    return KeyPair(
        str(uuid.uuid4()),
        f"-----BEGIN PUBLIC KEY-----\n{name}\n-----END PUBLIC KEY-----\n",
        f"-----BEGIN PRIVATE KEY-----\n{name}\n-----END PRIVATE KEY-----\n",
        created_at,
    )


def assert_same_key_pair(stored: KeyPair | None, expected: KeyPair) -> None:
    # PostgreSQL keeps timestamps to the microsecond.
    assert stored is not None
    assert (stored.id, stored.public_pem, stored.private_pem) == (expected.id, expected.public_pem, expected.private_pem)
    assert stored.created_at == pytest.approx(expected.created_at, abs=1e-5)
    assert stored.deleted_at == expected.deleted_at


async def test_key_pairs(storage: Storage):
    older = key_pair("older", 1_700_000_000.0)
    newer = key_pair("newer", 1_700_000_100.5)
    await storage.add_key_pair(newer)
    await storage.add_key_pair(older)

    assert_same_key_pair(await storage.get_key_pair(older.id), older)
    assert_same_key_pair(await storage.get_key_pair_by_public(newer.public_pem), newer)
    assert await storage.get_key_pair(str(uuid.uuid4())) is None
    assert await storage.get_key_pair_by_public("-----BEGIN PUBLIC KEY-----\nnone\n") is None
    assert [pair.id for pair in await storage.list_key_pairs()] == [older.id, newer.id]


async def test_key_pair_soft_delete(storage: Storage):
    pair = key_pair("one", time.time())
    await storage.add_key_pair(pair)

    assert await storage.delete_key_pair(pair.id) is True
    deleted = await storage.get_key_pair(pair.id)
    assert deleted is not None
    assert deleted.private_pem == pair.private_pem
    assert deleted.deleted_at is not None
    assert abs(deleted.deleted_at - time.time()) < 5
    assert (await storage.get_key_pair_by_public(pair.public_pem)).deleted_at == deleted.deleted_at
    assert [p.id for p in await storage.list_key_pairs()] == [pair.id]
    assert await storage.list_key_pairs(include_deleted=False) == []

    assert await storage.delete_key_pair(pair.id) is True
    assert (await storage.get_key_pair(pair.id)).deleted_at == deleted.deleted_at
    assert await storage.delete_key_pair(str(uuid.uuid4())) is False


async def test_key_pair_duplicates_rejected(storage: Storage):
    pair = key_pair("one", time.time())
    await storage.add_key_pair(pair)
    with pytest.raises(KeyPairExistsError):
        await storage.add_key_pair(KeyPair(pair.id, "other public", "other private", time.time()))
    with pytest.raises(KeyPairExistsError):
        await storage.add_key_pair(KeyPair(str(uuid.uuid4()), pair.public_pem, "other private", time.time()))
    assert len(await storage.list_key_pairs()) == 1


# Users and registration tokens.


async def test_users(storage: Storage):
    assert await storage.get_user("alice") is None
    await storage.set_user("alice", "$argon2id$first")
    await storage.set_user("bob/with slash", "$argon2id$bob")
    assert await storage.get_user("alice") == "$argon2id$first"
    await storage.set_user("alice", "$argon2id$second")
    assert await storage.get_user("alice") == "$argon2id$second"
    assert await storage.get_user("bob/with slash") == "$argon2id$bob"


async def test_registration_token_consumed_once(storage: Storage):
    await storage.add_registration_token("hash-1", "alice", time.time() + 60)
    await storage.add_registration_token("hash-any", None, time.time() + 60)

    token = await storage.get_registration_token("hash-1")
    assert token is not None
    assert token.username == "alice"
    assert (await storage.get_registration_token("hash-any")).username is None

    assert await storage.consume_registration_token("hash-1") is True
    assert await storage.consume_registration_token("hash-1") is False
    assert await storage.get_registration_token("hash-1") is None
    assert await storage.consume_registration_token("unknown") is False


async def test_registration_token_expired(storage: Storage):
    await storage.add_registration_token("old", "alice", time.time() - 1)
    assert await storage.get_registration_token("old") is None
    assert await storage.consume_registration_token("old") is False


async def test_registration_token_concurrent_consume(backend: Backend):
    first = await backend.open()
    second = await backend.open()
    try:
        await first.add_registration_token("race", "alice", time.time() + 60)
        attempts = [store.consume_registration_token("race") for store in (first, second) for _ in range(10)]
        results = await asyncio.gather(*attempts)
        assert results.count(True) == 1
    finally:
        await second.close()
        await first.close()


# Persistence.


async def test_data_survives_reopen(backend: Backend):
    storage = await backend.open()
    identity = kite()
    pair = key_pair("kept", time.time())
    await storage.upsert(identity, "http://127.0.0.1:1/kite", pair.id, LONG_TTL)
    await storage.add_key_pair(pair)
    await storage.set_user("alice", "hash")
    await storage.add_registration_token("token", "alice", time.time() + 60)
    await storage.close()

    reopened = await backend.open()
    try:
        record = await reopened.get_by_id(identity.id)
        assert record is not None
        assert record.identity == identity
        assert record.key_id == pair.id
        assert_same_key_pair(await reopened.get_key_pair(pair.id), pair)
        assert await reopened.get_user("alice") == "hash"
        assert await reopened.consume_registration_token("token") is True
    finally:
        await reopened.close()


# Outages.


async def check_outage_and_recovery(storage: Storage, stop: Callable[[], None], start: Callable[[], None]) -> None:
    identity = kite()
    await storage.upsert(identity, "http://127.0.0.1:1/kite", "k", LONG_TTL)
    watcher = await storage.watch()

    stop()
    bound = 12.0
    error = await raises_unavailable_within(bound, lambda: storage.get(Query(username="alice")))
    assert storage.address in str(error)
    await raises_unavailable_within(bound, lambda: storage.get_by_id(identity.id))
    await raises_unavailable_within(bound, lambda: storage.upsert(kite(), "http://127.0.0.1:2/kite", "k", LONG_TTL))
    await raises_unavailable_within(bound, lambda: storage.consume_registration_token("x"))

    start()
    records = await wait_until_available(lambda: storage.get(Query(username="alice")))
    assert ids(records) == {identity.id}

    # The watch reconnects by itself: a change after the restart reaches it.
    later = kite("later")
    await wait_until_available(lambda: storage.upsert(later, "http://127.0.0.1:3/kite", "k", LONG_TTL))
    while True:
        event = await next_event(watcher, 20.0)
        if event.record.identity == later:
            break
    assert event.action == REGISTER
    watcher.close()


async def test_etcd_outage_and_recovery(private_etcd_server):
    storage = open_storage("etcd", endpoint=private_etcd_server.endpoint, timeout=2.0)
    await storage.start()
    try:
        await check_outage_and_recovery(storage, private_etcd_server.stop, private_etcd_server.start)
    finally:
        await storage.close()


async def test_postgres_outage_and_recovery(private_postgres_server):
    storage = open_storage("postgres", dsn=private_postgres_server.dsn, timeout=2.0, sweep_interval=SWEEP_INTERVAL)
    await storage.start()
    try:
        await check_outage_and_recovery(storage, private_postgres_server.stop, private_postgres_server.start)
    finally:
        await storage.close()


@pytest.mark.parametrize("kind", ["etcd", "postgres"])
async def test_unreachable_at_start(kind: str):
    port = free_port()
    if kind == "etcd":
        storage = open_storage("etcd", endpoint=f"127.0.0.1:{port}", timeout=5.0)
    else:
        storage = open_storage("postgres", dsn=f"host=127.0.0.1 port={port} user=kontrol dbname=kontrol", timeout=5.0)
    error = await raises_unavailable_within(10.0, storage.start)
    assert f"127.0.0.1:{port}" in str(error)


async def test_sqlite_unwritable_path(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    storage = open_storage("sqlite", path=blocker / "kontrol.db")
    with pytest.raises(StorageUnavailableError) as error:
        await storage.start()
    assert str(blocker / "kontrol.db") in str(error.value)


def test_open_storage_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown storage kind 'redis'"):
        open_storage("redis")
