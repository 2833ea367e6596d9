"""The storage interface every Kontrol backend implements.

Kite entries are keyed by ``identity.id``: an upsert with a known id replaces
that entry, even when other identity fields changed. Every entry has a time
to live; once it passes, the entry is gone for every read and watchers get a
DEREGISTER event. Outages raise StorageUnavailableError and never look like
an empty result.
"""

from __future__ import annotations

import asyncio
import logging
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

from kitelib.protocol.identity import FIELDS, Identity
from kitelib.protocol.query import Query

logger = logging.getLogger(__name__)

REGISTER = "REGISTER"
DEREGISTER = "DEREGISTER"

# Events a watcher may hold before it is cut off as too slow.
DEFAULT_WATCH_QUEUE_SIZE = 10_000


class StorageError(Exception):
    """A storage operation failed."""


class StorageUnavailableError(StorageError):
    """The storage backend cannot be reached or did not respond in time."""


class KeyPairExistsError(StorageError):
    """A key pair with the same id or public key is already stored."""


@dataclass(frozen=True, slots=True)
class KiteRecord:
    """One registered kite: where to reach it and which key pair signed its kite.key.

    ``updated_at`` is the Unix time of the last upsert or refresh.
    """

    identity: Identity
    url: str
    key_id: str
    updated_at: float


@dataclass(frozen=True, slots=True)
class StorageEvent:
    """A change to the set of registered kites."""

    action: Literal["REGISTER", "DEREGISTER"]
    record: KiteRecord


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A Kontrol signing key pair in PEM form; times are Unix seconds.

    A deleted pair keeps its row with ``deleted_at`` set, so tokens it signed
    can still be verified and reported as signed by a removed key.
    """

    id: str
    public_pem: str
    private_pem: str
    created_at: float
    deleted_at: float | None = None


@dataclass(frozen=True, slots=True)
class RegistrationToken:
    """A one-time token for registerMachine, stored by its hash.

    ``username`` binds the token to one user, or is None for any user.
    """

    token_hash: str
    username: str | None
    expires_at: float


class Watcher:
    """An async iterator of StorageEvent for changes after it was opened.

    Closing it ends the iteration. A watcher that falls more than its queue
    size behind raises StorageError instead of silently skipping events.
    """

    def __init__(self, hub: "EventHub", max_pending: int):
        self._hub = hub
        self._queue: asyncio.Queue[StorageEvent | None] = asyncio.Queue()
        self._max_pending = max_pending
        self._closed = False
        self._overflowed = False

    def _deliver(self, event: StorageEvent | None) -> None:
        if self._closed or self._overflowed:
            return
        if event is not None and self._queue.qsize() >= self._max_pending:
            self._overflowed = True
            self._queue.put_nowait(None)
            return
        self._queue.put_nowait(event)

    def __aiter__(self) -> "Watcher":
        return self

    async def __anext__(self) -> StorageEvent:
        if self._closed and self._queue.empty():
            raise StopAsyncIteration
        event = await self._queue.get()
        if event is None:
            if self._overflowed:
                self._hub.unsubscribe(self)
                raise StorageError(
                    f"storage watcher fell more than {self._max_pending} events behind and was "
                    "cut off; open a new watcher and re-read the current kites with get()"
                )
            raise StopAsyncIteration
        return event

    async def next(self, timeout: float | None = None) -> StorageEvent:
        """Return the next event, raising TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            return await self.__anext__()

    def close(self) -> None:
        """Stop the watcher; a pending or later iteration ends."""
        if self._closed:
            return
        self._closed = True
        self._hub.unsubscribe(self)
        self._queue.put_nowait(None)

    async def __aenter__(self) -> "Watcher":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


class EventHub:
    """Fans out storage events to every open watcher."""

    def __init__(self, max_pending: int = DEFAULT_WATCH_QUEUE_SIZE):
        self._watchers: set[Watcher] = set()
        self._max_pending = max_pending

    def subscribe(self) -> Watcher:
        watcher = Watcher(self, self._max_pending)
        self._watchers.add(watcher)
        return watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    def publish(self, event: StorageEvent) -> None:
        for watcher in list(self._watchers):
            watcher._deliver(event)

    def publish_many(self, events: list[StorageEvent]) -> None:
        for event in events:
            self.publish(event)

    def close_all(self) -> None:
        for watcher in list(self._watchers):
            watcher.close()


def prefix_items(query: Query) -> list[tuple[str, str]]:
    """Return the (field, value) pairs of the query's gap-free prefix.

    An empty query selects every entry. A query with fields set but no
    username has an empty prefix, which would silently select everything, so
    it raises ValueError instead.
    """
    prefix = query.longest_prefix()
    items = [(key, value) for key, value in zip(FIELDS, prefix.values()) if value]
    if not items and not query.is_empty():
        raise ValueError(
            f"query {query.to_dict()} has no username, so it has no prefix to look up; "
            "set username, or use get_by_id() for an id-only query"
        )
    return items


# Seconds close() waits for a backend's background task to end before it gives up on it.
TASK_STOP_TIMEOUT = 5.0


async def stop_task(task: "asyncio.Task[None] | None") -> None:
    """Cancel a background task and wait up to TASK_STOP_TIMEOUT seconds for it to end."""
    if task is None:
        return
    task.cancel()
    try:
        await asyncio.wait_for(task, TASK_STOP_TIMEOUT)
    except (asyncio.CancelledError, asyncio.TimeoutError):
        pass


def check_ttl(ttl: float) -> float:
    if not isinstance(ttl, (int, float)) or not math.isfinite(ttl) or ttl <= 0:
        raise ValueError(f"invalid ttl {ttl!r}: it must be a positive number of seconds")
    return float(ttl)


def registration_events(old: KiteRecord | None, new: KiteRecord) -> list[StorageEvent]:
    """Return the events an upsert of ``new`` over ``old`` produces.

    A new entry, or a change of URL or key id, is a REGISTER. When the
    identity under the same id changed, the old identity gets a DEREGISTER
    first. Rewriting the same values produces no event.
    """
    if old is None:
        return [StorageEvent(REGISTER, new)]
    if old.identity != new.identity:
        return [StorageEvent(DEREGISTER, old), StorageEvent(REGISTER, new)]
    if old.url != new.url or old.key_id != new.key_id:
        return [StorageEvent(REGISTER, new)]
    return []


class Storage(ABC):
    """Kontrol's persistent state: kite entries, key pairs, users and registration tokens.

    Use ``async with storage:`` or call ``start()`` and ``close()``.
    """

    #: Backend name used in messages ("sqlite", "etcd", "postgres").
    kind: str = ""

    def __init__(self) -> None:
        self._hub = EventHub()

    async def __aenter__(self) -> "Storage":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    @abstractmethod
    def address(self) -> str:
        """Location of the data (file path or server address), used in messages."""

    @abstractmethod
    async def start(self) -> None:
        """Connect and create the schema if needed; raise StorageUnavailableError on failure."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections and background tasks and end every watcher."""

    # Kite entries.

    @abstractmethod
    async def upsert(self, identity: Identity, url: str, key_id: str, ttl: float) -> None:
        """Store or replace the entry for ``identity.id``, expiring after ``ttl`` seconds.

        Raises IdentityError when a field is empty or contains '/'.
        """

    @abstractmethod
    async def refresh(self, identity: Identity, ttl: float) -> bool:
        """Extend the entry's time to live; return False when it no longer exists."""

    @abstractmethod
    async def delete(self, identity: Identity) -> bool:
        """Remove the entry for ``identity.id``; return False when there was none."""

    @abstractmethod
    async def get(self, query: Query) -> list[KiteRecord]:
        """Return live entries whose fields equal the query's gap-free prefix.

        Fields after the first empty one are ignored; version constraints and
        shuffling are left to the caller.
        """

    @abstractmethod
    async def get_by_id(self, kite_id: str) -> KiteRecord | None:
        """Return the live entry with this kite id, or None."""

    @abstractmethod
    async def count(self) -> int:
        """Return the number of live entries."""

    async def watch(self) -> Watcher:
        """Open a watcher for every later change, from this process or any other writer.

        The subscription is active when this returns, so a change made after
        it is delivered.
        """
        watcher = self._hub.subscribe()
        try:
            await self._prepare_watch()
        except BaseException:
            watcher.close()
            raise
        return watcher

    async def _prepare_watch(self) -> None:
        """Start whatever feeds the event hub; backends with a remote event source override it."""

    # Key pairs.

    @abstractmethod
    async def add_key_pair(self, key_pair: KeyPair) -> None:
        """Store a key pair; raise KeyPairExistsError for a duplicate id or public key."""

    @abstractmethod
    async def delete_key_pair(self, key_id: str) -> bool:
        """Mark the pair deleted (it stays readable); return False when the id is unknown.

        Deleting an already deleted pair keeps its first ``deleted_at``.
        """

    @abstractmethod
    async def get_key_pair(self, key_id: str) -> KeyPair | None:
        """Return the pair with this id, deleted or not."""

    @abstractmethod
    async def get_key_pair_by_public(self, public_pem: str) -> KeyPair | None:
        """Return the pair whose public key PEM text is exactly ``public_pem``."""

    @abstractmethod
    async def list_key_pairs(self, include_deleted: bool = True) -> list[KeyPair]:
        """Return the key pairs, oldest first."""

    # Users and registration tokens for registerMachine.

    @abstractmethod
    async def set_user(self, name: str, password_hash: str) -> None:
        """Create the user or replace its password hash."""

    @abstractmethod
    async def get_user(self, name: str) -> str | None:
        """Return the user's password hash, or None for an unknown user."""

    @abstractmethod
    async def add_registration_token(self, token_hash: str, username: str | None, expires_at: float) -> None:
        """Store a one-time token hash valid until ``expires_at`` (Unix seconds)."""

    @abstractmethod
    async def get_registration_token(self, token_hash: str) -> RegistrationToken | None:
        """Return an unexpired, unconsumed token, or None."""

    @abstractmethod
    async def consume_registration_token(self, token_hash: str) -> bool:
        """Delete the token if it is unexpired; return True for exactly one caller."""
