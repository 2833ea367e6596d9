"""etcd v3 storage through aetcd.

Layout under an optional key prefix (``prefix`` setting, empty by default):

- ``/kites/<username>/<environment>/<name>/<version>/<region>/<hostname>/<id>``
  holds JSON ``{"url", "key_id", "updated_at", "ttl"}`` on a lease of ``ttl``
  seconds, so etcd itself deletes it when the kite stops refreshing.
- ``/kiteids/<id>`` holds the full key above, on the same lease.
- ``/kontrol/keys/<id>``, ``/kontrol/users/<name>`` and
  ``/kontrol/registration-tokens/<hash>`` hold key pairs, password hashes and
  one-time tokens as JSON. Path segments other than identity fields are
  percent-encoded.

This is not the v2 layout Go Kontrol uses, so the two cannot share an etcd.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import urllib.parse
from typing import Any, Awaitable, Callable, TypeVar

import orjson

from kitelib.protocol.identity import FIELDS, Identity
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

DEFAULT_ENDPOINT = "http://127.0.0.1:2379"

# Optimistic transactions retry this often when another writer changes the
# same keys in between.
_TRANSACTION_ATTEMPTS = 10

# gRPC redials a lost server with exponential backoff; capping it keeps the
# first successful call after an etcd restart within about two seconds.
_GRPC_OPTIONS = {
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 2000,
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
}


def _import_aetcd() -> Any:
    try:
        import aetcd
    except ImportError as exc:
        raise StorageError(
            "etcd storage needs the aetcd package; install it with: pip install 'kite-python[etcd]'"
        ) from exc
    return aetcd


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """Split ``[http://]host[:port]`` into host and port; a missing scheme means http."""
    text = endpoint.strip()
    if "://" not in text:
        text = "http://" + text
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme != "http":
        raise ValueError(
            f"unsupported etcd endpoint {endpoint!r}: only plain http:// endpoints are supported"
        )
    if not parsed.hostname:
        raise ValueError(f"invalid etcd endpoint {endpoint!r}: it has no host; use e.g. {DEFAULT_ENDPOINT}")
    try:
        port = parsed.port or 2379
    except ValueError as exc:
        raise ValueError(f"invalid etcd endpoint {endpoint!r}: {exc}") from exc
    return parsed.hostname, port


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


class EtcdStorage(Storage):
    """Storage in etcd v3 (tested with etcd 3.4).

    ``timeout`` bounds each request in seconds; a request that fails or
    times out raises StorageUnavailableError. Lease TTLs are whole seconds,
    so a fractional ``ttl`` is rounded up, and etcd raises TTLs below its
    minimum (about 1.5 election timeouts) to that minimum.
    """

    kind = "etcd"

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, *, prefix: str = "", timeout: float = 5.0):
        super().__init__()
        self._aetcd = _import_aetcd()
        self._host, self._port = parse_endpoint(endpoint)
        self._prefix = prefix.rstrip("/")
        if self._prefix and not self._prefix.startswith("/"):
            self._prefix = "/" + self._prefix
        self._timeout = timeout
        self._client: Any = None
        self._watch_task: asyncio.Task[None] | None = None
        self._watch_ready = asyncio.Event()
        self._watch_error: BaseException | None = None

    @property
    def address(self) -> str:
        return f"http://{self._host}:{self._port}"

    # Keys.

    def _key(self, *segments: str) -> bytes:
        return (self._prefix + "/" + "/".join(segments)).encode()

    def _kite_key(self, identity: Identity) -> bytes:
        return self._key("kites", *(getattr(identity, field) for field in FIELDS))

    def _kites_prefix(self) -> bytes:
        return self._key("kites") + b"/"

    def _id_key(self, kite_id: str) -> bytes:
        return self._key("kiteids", _quote(kite_id))

    def _key_pair_key(self, key_id: str) -> bytes:
        return self._key("kontrol", "keys", _quote(key_id))

    def _user_key(self, name: str) -> bytes:
        return self._key("kontrol", "users", _quote(name))

    def _token_key(self, token_hash: str) -> bytes:
        return self._key("kontrol", "registration-tokens", _quote(token_hash))

    def _record_from_kv(self, key: bytes, value: bytes) -> KiteRecord:
        parts = key[len(self._kites_prefix()) :].decode().split("/", 6)
        data = orjson.loads(value)
        return KiteRecord(Identity(*parts), data["url"], data["key_id"], float(data["updated_at"]))

    # Calls.

    def _unavailable(self, exc: BaseException) -> StorageUnavailableError:
        return StorageUnavailableError(
            f"etcd at {self.address} is unavailable: {exc or type(exc).__name__}; check that etcd is "
            "running and reachable at that address"
        )

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        if self._client is None:
            raise StorageError(f"etcd storage at {self.address} is not started; call start() first")
        aetcd = self._aetcd
        try:
            async with asyncio.timeout(self._timeout):
                return await operation()
        except TimeoutError as exc:
            raise self._unavailable(TimeoutError(f"timed out after {self._timeout} s")) from exc
        except (
            aetcd.exceptions.ConnectionFailedError,
            aetcd.exceptions.ConnectionTimeoutError,
        ) as exc:
            raise self._unavailable(exc) from exc
        except aetcd.exceptions.ClientError as exc:
            raise StorageError(f"etcd at {self.address} rejected the request: {exc}") from exc

    # Lifecycle.

    async def start(self) -> None:
        if self._client is not None:
            return
        self._client = self._aetcd.Client(
            host=self._host, port=self._port, timeout=self._timeout, options=_GRPC_OPTIONS
        )
        try:
            await self._call(self._client.status)
        except StorageError:
            await self._client.close()
            self._client = None
            raise
        logger.info("etcd storage connected to %s (key prefix %r)", self.address, self._prefix or "/")

    async def close(self) -> None:
        if self._client is None:
            return
        if self._watch_task is not None:
            await stop_task(self._watch_task)
            self._watch_task = None
            self._watch_ready.clear()
        self._hub.close_all()
        client = self._client
        self._client = None
        await client.close()
        logger.info("etcd storage at %s closed", self.address)

    # Kite entries.

    async def _grant(self, ttl: float) -> Any:
        return await self._client.lease(max(1, math.ceil(ttl)))

    async def _revoke_quietly(self, lease_id: int) -> None:
        # The lease no longer carries keys, so a failure only delays its
        # own expiry.
        try:
            await self._call(lambda: self._client.revoke_lease(lease_id))
        except StorageError as exc:
            logger.warning("etcd at %s: could not revoke unused lease %x: %s", self.address, lease_id, exc)

    async def upsert(self, identity: Identity, url: str, key_id: str, ttl: float) -> None:
        identity.validate()
        ttl = check_ttl(ttl)
        key = self._kite_key(identity)
        id_key = self._id_key(identity.id)
        value = orjson.dumps({"url": url, "key_id": key_id, "updated_at": time.time(), "ttl": ttl})
        lease = await self._call(lambda: self._grant(ttl))
        transactions = self._client.transactions

        for _ in range(_TRANSACTION_ATTEMPTS):
            index = await self._call(lambda: self._client.get(id_key))
            old_key = index.value if index is not None else None
            old = await self._call(lambda: self._client.get(old_key)) if old_key else None
            compare = [transactions.mod(id_key) == index.mod_revision] if index else [transactions.version(id_key) == 0]
            if old is not None:
                compare.append(transactions.mod(old_key) == old.mod_revision)
            success = []
            if old_key and old_key != key:
                success.append(transactions.delete(old_key))
            success += [transactions.put(key, value, lease=lease), transactions.put(id_key, key, lease=lease)]
            succeeded, _ = await self._call(lambda: self._client.transaction(compare=compare, success=success, failure=[]))
            if succeeded:
                if old is not None and old.lease and old.lease != lease.id:
                    await self._revoke_quietly(old.lease)
                return
        await self._revoke_quietly(lease.id)
        raise StorageError(
            f"etcd at {self.address}: upsert of kite {identity.id} lost {_TRANSACTION_ATTEMPTS} races "
            "with concurrent writers; retry it"
        )

    async def refresh(self, identity: Identity, ttl: float) -> bool:
        ttl = check_ttl(ttl)
        try:
            identity.validate()
        except ValueError:
            return False
        key = self._kite_key(identity)
        id_key = self._id_key(identity.id)
        current = await self._call(lambda: self._client.get(key))
        if current is None:
            return False

        data = orjson.loads(current.value)
        data["updated_at"] = time.time()
        data["ttl"] = ttl
        value = orjson.dumps(data)
        # A fresh lease per refresh lets the TTL change; rewriting the value
        # keeps updated_at true. Watchers skip the PUT because url and
        # key_id are unchanged.
        lease = await self._call(lambda: self._grant(ttl))
        transactions = self._client.transactions
        succeeded, _ = await self._call(
            lambda: self._client.transaction(
                compare=[transactions.mod(key) == current.mod_revision],
                success=[transactions.put(key, value, lease=lease), transactions.put(id_key, key, lease=lease)],
                failure=[],
            )
        )
        if succeeded:
            if current.lease and current.lease != lease.id:
                await self._revoke_quietly(current.lease)
            return True

        await self._revoke_quietly(lease.id)
        # Another writer touched the entry in between; it exists if the key is still there.
        return await self._call(lambda: self._client.get(key)) is not None

    async def delete(self, identity: Identity) -> bool:
        id_key = self._id_key(identity.id)
        transactions = self._client.transactions
        for _ in range(_TRANSACTION_ATTEMPTS):
            index = await self._call(lambda: self._client.get(id_key))
            if index is None:
                return False
            succeeded, responses = await self._call(
                lambda: self._client.transaction(
                    compare=[transactions.mod(id_key) == index.mod_revision],
                    success=[transactions.delete(index.value), transactions.delete(id_key)],
                    failure=[],
                )
            )
            if succeeded:
                return responses[0].response_delete_range.deleted > 0
            # Re-registered or expired in between: look the entry up again.
        raise StorageError(
            f"etcd at {self.address}: delete of kite {identity.id} lost {_TRANSACTION_ATTEMPTS} races "
            "with concurrent writers; retry it"
        )

    async def get(self, query: Query) -> list[KiteRecord]:
        items = prefix_items(query)
        values = [value for _, value in items]
        if any("/" in value for value in values):
            return []
        if len(values) == len(FIELDS):
            key = self._key("kites", *values)
            found = await self._call(lambda: self._client.get(key))
            return [self._record_from_kv(key, found.value)] if found is not None else []
        prefix = self._key("kites", *values) + b"/" if values else self._kites_prefix()
        result = await self._call(lambda: self._client.get_prefix(prefix))
        return [self._record_from_kv(kv.key, kv.value) for kv in result.kvs]

    async def get_by_id(self, kite_id: str) -> KiteRecord | None:
        index = await self._call(lambda: self._client.get(self._id_key(kite_id)))
        if index is None:
            return None
        found = await self._call(lambda: self._client.get(index.value))
        return self._record_from_kv(index.value, found.value) if found is not None else None

    async def count(self) -> int:
        prefix = self._kites_prefix()
        result = await self._call(lambda: self._client.get_prefix(prefix, keys_only=True))
        return result.count

    # Watch.

    async def _prepare_watch(self) -> None:
        if self._client is None:
            raise StorageError(f"etcd storage at {self.address} is not started; call start() first")
        if self._watch_task is None or self._watch_task.done():
            # Start right after the current revision, so nothing committed
            # after watch() returns can be missed.
            probe = self._key("kontrol", "watch-revision-probe")
            current = await self._call(lambda: self._client.get_prefix(probe, keys_only=True))
            self._watch_ready.clear()
            self._watch_task = asyncio.create_task(
                self._watch_loop(current.header.revision + 1), name="kontrol-etcd-watch"
            )
        try:
            async with asyncio.timeout(self._timeout):
                await self._watch_ready.wait()
        except TimeoutError as exc:
            raise self._unavailable(TimeoutError(f"the watch was not set up within {self._timeout} s")) from exc

    def _event_from_etcd(self, event: Any) -> StorageEvent | None:
        previous = event.prev_kv if event.prev_kv is not None and event.prev_kv.key else None
        if event.kind == "DELETE":
            if previous is None:
                # Compacted history gives no old value to report.
                logger.warning("etcd at %s: a kite was deleted but its last value is unknown", self.address)
                return None
            return StorageEvent(DEREGISTER, self._record_from_kv(previous.key, previous.value))
        record = self._record_from_kv(event.kv.key, event.kv.value)
        if previous is not None:
            old = orjson.loads(previous.value)
            if old["url"] == record.url and old["key_id"] == record.key_id:
                return None
        return StorageEvent(REGISTER, record)

    async def _watch_loop(self, start_revision: int) -> None:
        exceptions = self._aetcd.exceptions
        next_revision = start_revision
        delay = 0.1
        while True:
            try:
                watch = await self._client.watch_prefix(
                    self._kites_prefix(), start_revision=next_revision, prev_kv=True
                )
                self._watch_ready.set()
                if delay > 0.1:
                    logger.info("etcd watch at %s resumed from revision %d", self.address, next_revision)
                delay = 0.1
                async for event in watch:
                    next_revision = event.kv.mod_revision + 1
                    storage_event = self._event_from_etcd(event)
                    if storage_event is not None:
                        self._hub.publish(storage_event)
                # The iterator ends only when the watch was cancelled.
                raise exceptions.ClientError("watch stream ended")
            except exceptions.RevisionCompactedError as exc:
                logger.error(
                    "etcd watch at %s: revisions before %d were compacted, so some kite events "
                    "were lost; watchers should re-read with get()",
                    self.address,
                    exc.compacted_revision,
                )
                next_revision = exc.compacted_revision
            except Exception as exc:  # noqa: BLE001 - any failure means: reconnect and resume
                self._watch_ready.clear()
                logger.warning(
                    "etcd watch at %s failed, retrying in %.1f s from revision %d: %s",
                    self.address,
                    delay,
                    next_revision,
                    exc,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    # Key pairs.

    @staticmethod
    def _key_pair_from_json(value: bytes) -> KeyPair:
        data = orjson.loads(value)
        return KeyPair(data["id"], data["public"], data["private"], data["created_at"], data["deleted_at"])

    @staticmethod
    def _key_pair_to_json(key_pair: KeyPair) -> bytes:
        return orjson.dumps(
            {
                "id": key_pair.id,
                "public": key_pair.public_pem,
                "private": key_pair.private_pem,
                "created_at": key_pair.created_at,
                "deleted_at": key_pair.deleted_at,
            }
        )

    async def add_key_pair(self, key_pair: KeyPair) -> None:
        if await self.get_key_pair_by_public(key_pair.public_pem) is not None:
            raise KeyPairExistsError(f"key pair {key_pair.id!r} was not added: its public key is already stored")
        key = self._key_pair_key(key_pair.id)
        transactions = self._client.transactions
        succeeded, _ = await self._call(
            lambda: self._client.transaction(
                compare=[transactions.version(key) == 0],
                success=[transactions.put(key, self._key_pair_to_json(key_pair))],
                failure=[],
            )
        )
        if not succeeded:
            raise KeyPairExistsError(f"key pair {key_pair.id!r} was not added: that id is already stored")

    async def delete_key_pair(self, key_id: str) -> bool:
        key = self._key_pair_key(key_id)
        transactions = self._client.transactions
        for _ in range(_TRANSACTION_ATTEMPTS):
            current = await self._call(lambda: self._client.get(key))
            if current is None:
                return False
            key_pair = self._key_pair_from_json(current.value)
            if key_pair.deleted_at is not None:
                return True
            deleted = KeyPair(key_pair.id, key_pair.public_pem, key_pair.private_pem, key_pair.created_at, time.time())
            succeeded, _ = await self._call(
                lambda: self._client.transaction(
                    compare=[transactions.mod(key) == current.mod_revision],
                    success=[transactions.put(key, self._key_pair_to_json(deleted))],
                    failure=[],
                )
            )
            if succeeded:
                return True
        raise StorageError(f"etcd at {self.address}: deleting key pair {key_id!r} kept racing other writers; retry it")

    async def get_key_pair(self, key_id: str) -> KeyPair | None:
        found = await self._call(lambda: self._client.get(self._key_pair_key(key_id)))
        return self._key_pair_from_json(found.value) if found is not None else None

    async def get_key_pair_by_public(self, public_pem: str) -> KeyPair | None:
        # Kontrol stores a handful of pairs, so a scan is one small range read.
        for key_pair in await self.list_key_pairs():
            if key_pair.public_pem == public_pem:
                return key_pair
        return None

    async def list_key_pairs(self, include_deleted: bool = True) -> list[KeyPair]:
        prefix = self._key("kontrol", "keys") + b"/"
        result = await self._call(lambda: self._client.get_prefix(prefix))
        pairs = [self._key_pair_from_json(kv.value) for kv in result.kvs]
        if not include_deleted:
            pairs = [pair for pair in pairs if pair.deleted_at is None]
        return sorted(pairs, key=lambda pair: (pair.created_at, pair.id))

    # Users and registration tokens.

    async def set_user(self, name: str, password_hash: str) -> None:
        value = orjson.dumps({"password_hash": password_hash, "updated_at": time.time()})
        await self._call(lambda: self._client.put(self._user_key(name), value))

    async def get_user(self, name: str) -> str | None:
        found = await self._call(lambda: self._client.get(self._user_key(name)))
        return orjson.loads(found.value)["password_hash"] if found is not None else None

    async def add_registration_token(self, token_hash: str, username: str | None, expires_at: float) -> None:
        remaining = expires_at - time.time()
        if remaining <= 0:
            # Already expired: storing it would only make consume fail later.
            return
        value = orjson.dumps({"username": username, "expires_at": expires_at})
        # The lease makes etcd delete the token when it expires unused.
        lease = await self._call(lambda: self._grant(remaining))
        await self._call(lambda: self._client.put(self._token_key(token_hash), value, lease=lease))

    async def get_registration_token(self, token_hash: str) -> RegistrationToken | None:
        found = await self._call(lambda: self._client.get(self._token_key(token_hash)))
        if found is None:
            return None
        data = orjson.loads(found.value)
        if data["expires_at"] <= time.time():
            return None
        return RegistrationToken(token_hash, data["username"], data["expires_at"])

    async def consume_registration_token(self, token_hash: str) -> bool:
        key = self._token_key(token_hash)
        found = await self._call(lambda: self._client.get(key))
        if found is None or orjson.loads(found.value)["expires_at"] <= time.time():
            return False
        transactions = self._client.transactions
        # Only the caller whose delete matches the revision it read wins.
        succeeded, _ = await self._call(
            lambda: self._client.transaction(
                compare=[transactions.mod(key) == found.mod_revision],
                success=[transactions.delete(key)],
                failure=[],
            )
        )
        return bool(succeeded)
