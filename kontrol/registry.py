"""Live registrations: which kites are registered through this Kontrol, their heartbeats and expiry.

Storage contains the entries that every Kontrol reads; this module keeps storage in
line with what this process observes. A kite whose pings stop for the
liveness window, or whose connection closes, is deleted at once instead of
waiting for its storage TTL. An entry that storage lost (an outage, a restart,
an operator's delete) is written again on the kite's next ping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kitelib.protocol.identity import Identity

from .storage import Storage, StorageError

if TYPE_CHECKING:
    from kitelib.connection import Connection

logger = logging.getLogger(__name__)

# Repeated storage errors are logged at most this often, so an outage does not flood the log.
ERROR_LOG_INTERVAL = 30.0
# Storage writes (refreshes, re-registrations, deletes) in flight at once. When thousands of kites
# disconnect together, an unbounded burst timed out on etcd and exhausted PostgreSQL's connections.
MAX_CONCURRENT_WRITES = 32


@dataclass(eq=False)
class LiveKite:
    """A kite registered through this Kontrol: over RPC (``connection`` set) or over HTTP."""

    identity: Identity
    url: str
    key_id: str
    connection: "Connection | None"
    last_ping: float = field(default_factory=time.monotonic)
    last_write: float = field(default_factory=time.monotonic)
    stored: bool = False
    writing: bool = False


class RateLimitedLog:
    """Logs a repeated warning once per interval with a count of the ones it held back."""

    def __init__(self, interval: float = ERROR_LOG_INTERVAL):
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -self.interval) < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        suppressed = self._suppressed.pop(key, 0)
        self._last[key] = now
        if suppressed:
            logger.warning(message + " (%d similar messages suppressed)", *args, suppressed)
        else:
            logger.warning(message, *args)


class Registry:
    """Bookkeeping of live kites plus the tasks that refresh and expire their storage entries."""

    def __init__(self, storage: Storage, *, liveness: float, ttl: float):
        self.storage = storage
        self.liveness = liveness
        self.ttl = ttl
        # Entries are rewritten this often while their kite pings, so they outlive a Kontrol crash by at most ttl.
        self.refresh_interval = ttl / 3
        self.kites: dict[str, LiveKite] = {}
        self.errors = RateLimitedLog()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._write_slots = asyncio.Semaphore(MAX_CONCURRENT_WRITES)

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        # Let cancelled writes end before the caller closes storage under them.
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coroutine) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Registration

    def owner_of(self, kite_id: str) -> LiveKite | None:
        return self.kites.get(kite_id)

    async def add(self, live: LiveKite) -> None:
        """Store the entry and start tracking it; raises StorageError when storage fails."""
        previous = self.kites.get(live.identity.id)
        self.kites[live.identity.id] = live
        try:
            await self.storage.upsert(live.identity, live.url, live.key_id, self.ttl)
        except BaseException:
            if previous is not None:
                self.kites[live.identity.id] = previous
            else:
                self.kites.pop(live.identity.id, None)
            raise
        live.stored = True
        live.last_write = live.last_ping = time.monotonic()
        logger.info("registered %s at %s", live.identity, live.url)

    async def remove(self, live: LiveKite, reason: str) -> None:
        """Stop tracking the kite and delete its entry."""
        if self.kites.get(live.identity.id) is live:
            del self.kites[live.identity.id]
        if not live.stored:
            return
        live.stored = False
        try:
            async with self._write_slots:
                await self.storage.delete(live.identity)
            logger.info("deregistered %s: %s", live.identity, reason)
        except StorageError as exc:
            self.errors.warning("delete", "could not delete %s (%s): %s; its entry expires by TTL",
                                live.identity, reason, exc)

    def connection_closed(self, connection: "Connection") -> None:
        for live in [entry for entry in self.kites.values() if entry.connection is connection]:
            self._spawn(self.remove(live, "connection closed"))

    # Heartbeats

    def ping(self, live: LiveKite) -> None:
        """Record a heartbeat; rewrite the entry when storage lost it or its refresh is due."""
        now = time.monotonic()
        live.last_ping = now
        if self.kites.get(live.identity.id) is not live:
            # Expired earlier, or replaced: pings resumed, so register the kite again.
            self.kites[live.identity.id] = live
            live.stored = False
        if live.writing:
            return
        if not live.stored or now - live.last_write >= self.refresh_interval:
            live.writing = True
            self._spawn(self._write(live))

    async def _write(self, live: LiveKite) -> None:
        try:
            async with self._write_slots:
                await self._refresh_or_upsert(live)
            live.stored = True
            live.last_write = time.monotonic()
        except StorageError as exc:
            live.stored = False
            self.errors.warning("refresh", "could not refresh %s: %s; retrying on its next ping", live.identity, exc)
        finally:
            live.writing = False

    async def _refresh_or_upsert(self, live: LiveKite) -> None:
        if live.stored and await self.storage.refresh(live.identity, self.ttl):
            return
        await self.storage.upsert(live.identity, live.url, live.key_id, self.ttl)
        if not live.stored:
            logger.info("registered %s again after its entry was lost", live.identity)

    def entry_lost(self, kite_id: str) -> None:
        """Storage deleted an entry we did not delete: write it again on the kite's next ping."""
        live = self.kites.get(kite_id)
        if live is not None and live.stored:
            live.stored = False
            logger.info("entry of %s was removed from storage; it is written again on the next ping", live.identity)

    async def _sweep_forever(self) -> None:
        interval = min(1.0, self.liveness / 10)
        while True:
            await asyncio.sleep(interval)
            deadline = time.monotonic() - self.liveness
            for live in [entry for entry in self.kites.values() if entry.last_ping < deadline]:
                logger.info("no heartbeat from %s for %.0fs", live.identity, self.liveness)
                await self.remove(live, f"no heartbeat for {self.liveness:g}s")
