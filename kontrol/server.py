"""The Kontrol kite: registration, discovery and tokens for other kites.

Kontrol is an ordinary kite named ``kontrol``. Its RPC methods are
``register``, ``getKites``, ``getToken``, ``getKey``, ``registerMachine`` and
``cancelWatcher``; HTTP ``POST /register`` and ``GET /heartbeat`` serve kites
that register over HTTP. Argument shapes, results and error texts follow Go
Kontrol so that Go kites register and query without change.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kitelib import __version__
from kitelib.auth.tokens import sign_claims
from kitelib.config import Config
from kitelib.connection import Connection
from kitelib.kite import Kite
from kitelib.method import Request
from kitelib.protocol.errors import ArgumentError, GenericError, KiteError
from kitelib.protocol.identity import Identity, IdentityError
from kitelib.protocol.query import Query, VersionConstraintError

from . import machine
from .keys import KeyRing, NoKeysError, TokenCache
from .registry import LiveKite, RateLimitedLog, Registry
from .settings import KontrolSettings
from .storage import DEREGISTER, REGISTER, KiteRecord, Storage, StorageError, open_storage

logger = logging.getLogger(__name__)

KONTROL_NAME = "kontrol"
# How long Kontrol waits for the kite.heartbeat reply, as Go Kontrol does.
HEARTBEAT_CALL_TIMEOUT = 4.0
# How often a running Kontrol rereads key pairs, so `kitectl kontrol keys rotate` takes effect without a restart.
KEY_RELOAD_INTERVAL = 10.0


class StorageUnavailable(GenericError):
    """Raised for a request that needs storage while it is down, instead of returning an empty result."""


def _storage_error(exc: StorageError) -> KiteError:
    return StorageUnavailable(f"storage unavailable: {exc}")


@dataclass(eq=False)
class QueryWatcher:
    id: str
    query: Query
    callback: Any
    connection: Connection
    username: str


class Kontrol:
    """A Kontrol server over one storage backend. ``await start()``, then ``await stop()``."""

    def __init__(self, settings: KontrolSettings, storage: Storage | None = None, *, auto_init: bool = True):
        settings.validate()
        self.settings = settings
        self.storage = storage or open_storage(settings.storage, **settings.storage_settings())
        self.auto_init = auto_init
        self.keys = KeyRing(self.storage)
        self.tokens = TokenCache(self.keys, ttl=settings.token_ttl, leeway=settings.token_leeway)
        self.registry = Registry(self.storage, liveness=settings.liveness, ttl=settings.registration_ttl)
        self.watchers: dict[str, QueryWatcher] = {}
        self.errors = RateLimitedLog()
        self.initialized = False  # set when start() had to create the first key pair
        config = Config(username=settings.username, environment=settings.environment, region=settings.region,
                        kontrol_user=settings.username, kontrol_url=settings.url, ip=settings.host,
                        port=settings.port, tls_cert=settings.tls_cert, tls_key=settings.tls_key,
                        leeway=settings.token_leeway)
        self.kite = Kite(KONTROL_NAME, __version__, config=config)
        self._tasks: list[asyncio.Task[None]] = []
        self._register_methods()

    @property
    def url(self) -> str:
        return self.settings.url

    # Lifecycle

    async def start(self) -> None:
        """Open storage, load keys (creating the first pair when allowed), and serve."""
        await asyncio.wait_for(self.storage.start(), self.settings.storage_timeout + 1)
        try:
            await self.keys.load()
        except NoKeysError:
            if not self.auto_init:
                raise
            await self.keys.create()
            self.initialized = True
        self._apply_current_key()
        self.kite.authenticators.verify_func = self.keys.is_known
        self.registry.start()
        self._tasks.append(asyncio.get_running_loop().create_task(self._follow_storage_events()))
        await self.kite.start()
        if self.settings.port == 0:
            self.settings.port = self.kite.port
            self.kite.config.kontrol_url = self.settings.url
        self._tasks.append(asyncio.get_running_loop().create_task(self._keep_self_registered()))
        self._tasks.append(asyncio.get_running_loop().create_task(self._reload_keys_forever()))
        logger.info("kontrol %s serving on %s with %s storage at %s", self.kite.identity, self.url,
                    self.storage.kind, self.storage.address)

    async def stop(self) -> None:
        """Stop serving, leaving the entries of kites registered here in storage.

        Those kites register again with the next Kontrol at this URL, and the
        entries of kites that died meanwhile expire by TTL.
        """
        if self._connection_closed in self.kite.on_disconnect_hooks:
            self.kite.on_disconnect_hooks.remove(self._connection_closed)
        for task in self._tasks:
            task.cancel()
        await self.registry.stop()
        await self.kite.stop()
        try:
            await self.storage.delete(self.kite.identity)
        except StorageError:
            pass
        await self.storage.close()
        logger.info("kontrol %s stopped", self.kite.identity)

    def _apply_current_key(self) -> None:
        self.kite.config.kontrol_key = self.keys.require_current().public_pem

    def own_kite_key(self, username: str | None = None) -> str:
        """Return a kite.key for Kontrol's user (or ``username``) signed by the current pair."""
        return self.keys.sign_kite_key(username or self.settings.username, self.settings.username, self.url,
                                       leeway=self.settings.token_leeway)

    async def rotate_keys(self) -> str:
        """Create a new key pair and retire the old one; return the new pair's id."""
        new, _old = await self.keys.rotate()
        self._apply_current_key()
        return new.id

    async def _reload_keys_forever(self) -> None:
        while True:
            await asyncio.sleep(KEY_RELOAD_INTERVAL)
            previous = self.keys.current
            try:
                await self.keys.load()
            except (StorageError, NoKeysError) as exc:
                self.errors.warning("keys", "could not reload key pairs: %s", exc)
                continue
            if self.keys.current is not previous and self.keys.current is not None:
                self._apply_current_key()
                logger.info("key pair %s is now current", self.keys.current.id)

    # Self registration

    async def _keep_self_registered(self) -> None:
        identity = self.kite.identity
        stored = False
        while True:
            try:
                key_id = self.keys.require_current().id
                if not stored or not await self.storage.refresh(identity, self.settings.registration_ttl):
                    await self.storage.upsert(identity, self.url, key_id, self.settings.registration_ttl)
                    if not stored:
                        logger.info("registered kontrol itself as %s", identity)
                stored = True
            except StorageError as exc:
                stored = False
                self.errors.warning("self", "could not register kontrol itself: %s; retrying", exc)
            await asyncio.sleep(min(self.registry.refresh_interval, 30.0) if stored else 1.0)

    async def _follow_storage_events(self) -> None:
        """Feed storage events to query watchers and notice entries deleted behind our back."""
        delay = 0.5
        while True:
            try:
                watcher = await self.storage.watch()
                delay = 0.5
                async with watcher:
                    async for event in watcher:
                        if event.action == DEREGISTER:
                            self.registry.entry_lost(event.record.identity.id)
                        self._notify_watchers(event.action, event.record)
            except asyncio.CancelledError:
                raise
            except StorageError as exc:
                self.errors.warning("watch", "storage watch failed: %s; retrying in %.1fs", exc, delay)
            except Exception:
                logger.exception("storage watch failed; retrying in %.1fs", delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _notify_watchers(self, action: str, record: KiteRecord) -> None:
        for watcher in list(self.watchers.values()):
            try:
                if not watcher.query.matches(record.identity):
                    continue
            except VersionConstraintError:
                continue
            event: dict[str, Any] = {"action": action, "kite": record.identity.to_dict(), "url": record.url}
            if action == REGISTER:
                event["token"] = self.tokens.token(audience=watcher.query.audience(), subject=watcher.username,
                                                   issuer=self.settings.username, key_id=record.key_id)
            try:
                watcher.callback(event)
            except Exception as exc:
                logger.info("dropping watcher %s of %s: %s", watcher.id, watcher.connection.describe(), exc)
                self.watchers.pop(watcher.id, None)

    # RPC methods

    def _register_methods(self) -> None:
        kite = self.kite
        kite.handle("register", self.handle_register, spread_args=False)
        kite.handle("getKites", self.handle_get_kites, spread_args=False)
        kite.handle("getToken", self.handle_get_token, spread_args=False)
        kite.handle("getKey", self.handle_get_key, spread_args=False)
        kite.handle("cancelWatcher", self.handle_cancel_watcher, spread_args=False)
        # Password guessing is slowed by a shared bucket: 10 attempts, then one per second.
        kite.handle("registerMachine", self.handle_register_machine, auth=False, spread_args=False,
                    throttle=(1.0, 10))
        kite.on_disconnect(self._connection_closed)
        self.kite.make_app().router.add_post("/register", self.handle_http_register)
        self.kite.make_app().router.add_get("/heartbeat", self.handle_http_heartbeat)

    def _connection_closed(self, connection: Connection) -> None:
        self.registry.connection_closed(connection)
        for watcher_id in [w.id for w in self.watchers.values() if w.connection is connection]:
            self.watchers.pop(watcher_id, None)

    @staticmethod
    def _options(request: Request, method: str, shape: str) -> dict[str, Any]:
        if len(request.args) != 1 or not isinstance(request.args[0], dict):
            raise ArgumentError(f"{method} takes one object argument {shape}, got {request.args!r:.100}")
        return request.args[0]

    def _require_kite_key(self, request: Request) -> dict[str, Any]:
        auth = request.auth
        if auth is None or auth.type != "kiteKey":
            auth_type = auth.type if auth is not None else "none"
            raise GenericError(f"Unexpected authentication type: {auth_type}")
        return dict(auth.claims)

    async def handle_register(self, request: Request) -> dict[str, Any]:
        claims = self._require_kite_key(request)
        options = self._options(request, "register", '{"url": "http://host:port/kite"}')
        url = options.get("url")
        if not url:
            raise GenericError("empty url")
        if not isinstance(url, str):
            raise ArgumentError(f"invalid register URL: url must be a string, got {url!r:.80}")
        self._check_url(url)
        identity = request.kite.replace(username=request.username)
        try:
            identity.validate()
        except IdentityError as exc:
            raise GenericError(str(exc)) from None

        owner = self.registry.owner_of(identity.id)
        if (owner is not None and owner.connection is not None and owner.connection is not request.connection
                and not owner.connection.closed):
            raise GenericError(
                f"kite {identity} is already registered from another live connection "
                f"({owner.connection.remote_address}); stop that kite or give this one a new id"
            )

        result, key_id = self._key_result(claims)
        result = {"url": url, "heartbeatInterval": 0, **result}
        live = LiveKite(identity, url, key_id, request.connection)
        try:
            await self.registry.add(live)
        except StorageError as exc:
            logger.warning("register of %s failed: %s", identity, exc)
            raise _storage_error(exc) from None

        def ping(*_args: Any) -> None:
            self.registry.ping(live)

        request.connection.spawn(self._ask_for_heartbeats(request.connection, ping, identity))
        # Let the kite.heartbeat call go out before the register reply, in the order Go Kontrol sends them.
        await asyncio.sleep(0)
        return result

    @staticmethod
    def _check_url(url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            raise GenericError(
                f"invalid register URL: {url!r:.200} is not an http(s) or ws(s) URL with a host"
            )

    def _key_result(self, claims: dict[str, Any]) -> tuple[dict[str, str], str]:
        """Return the extra register result fields and the key id for a caller's kite.key claims.

        A kite.key signed by a retired pair is re-signed with the current pair,
        keeping every other claim, and the new key goes back to the kite.
        """
        kontrol_key = claims.get("kontrolKey")
        pair = self.keys.by_public(kontrol_key) if isinstance(kontrol_key, str) else None
        if pair is None:
            raise GenericError("no valid authentication key found")
        if not pair.deleted:
            return {}, pair.id
        current = self.keys.require_current()
        renewed = sign_claims({**claims, "kontrolKey": current.public_pem}, current.private_key)
        return {"kiteKey": renewed, "publicKey": current.public_pem}, current.id

    async def _ask_for_heartbeats(self, connection: Connection, ping: Any, identity: Identity) -> None:
        try:
            await connection.tell("kite.heartbeat", self.settings.heartbeat_interval, ping,
                                  timeout=HEARTBEAT_CALL_TIMEOUT)
        except KiteError as exc:
            logger.info("kite.heartbeat call to %s failed: %s; it expires without pings", identity, exc)

    def _parse_query(self, raw: Any) -> Query:
        if raw is None:
            raise ArgumentError('missing query: send {"query": {"username": ..., ...}}')
        try:
            query = Query.from_dict(raw)
            query.validate_prefix()
            query.version_constraint()
        except (IdentityError, VersionConstraintError) as exc:
            raise GenericError(str(exc)) from None
        return query

    async def _find(self, query: Query) -> list[KiteRecord]:
        try:
            records = await self.storage.get(query.storage_prefix())
        except StorageError as exc:
            self.errors.warning("get", "query %s failed: %s", query.to_dict(), exc)
            raise _storage_error(exc) from None
        matches = [record for record in records if query.matches(record.identity)]
        random.shuffle(matches)
        return matches

    async def handle_get_kites(self, request: Request) -> dict[str, Any]:
        options = self._options(request, "getKites", '{"query": {...}, "watchCallback": function}')
        query = self._parse_query(options.get("query"))
        records = await self._find(query)
        audience = query.audience()
        kites = [
            {
                "kite": record.identity.to_dict(),
                "url": record.url,
                "keyId": record.key_id,
                "token": self.tokens.token(audience=audience, subject=request.username,
                                           issuer=self.settings.username, key_id=record.key_id),
            }
            for record in records
        ]
        result: dict[str, Any] = {"kites": kites}
        callback = options.get("watchCallback")
        if callable(callback):
            watcher = QueryWatcher(str(uuid.uuid4()), query, callback, request.connection, request.username)
            self.watchers[watcher.id] = watcher
            result["watcherID"] = watcher.id
            logger.info("watcher %s for %s opened by %s", watcher.id, query.to_dict(), request.connection.describe())
        return result

    async def handle_get_token(self, request: Request) -> str:
        options = self._options(request, "getToken", '{"id": ..., "force": false} or a query')
        force = bool(options.get("force", False))
        try:
            query = Query.from_dict(options)
        except IdentityError as exc:
            raise GenericError(f"invalid query: {exc}") from None
        if query.id and not any(query.values()[:6]):
            try:
                record = await self.storage.get_by_id(query.id)
            except StorageError as exc:
                raise _storage_error(exc) from None
            records = [record] if record is not None else []
        else:
            try:
                query.validate_prefix()
            except IdentityError as exc:
                raise GenericError(f"invalid query: {exc}") from None
            records = await self._find(query)
        if not records:
            raise GenericError("no kites found")
        if len(records) > 1:
            raise GenericError("query matches more than one kite")
        return self.tokens.token(audience=query.audience(), subject=request.username,
                                 issuer=self.settings.username, key_id=records[0].key_id, force=force)

    async def handle_get_key(self, request: Request) -> str:
        claims = self._require_kite_key(request)
        kontrol_key = claims.get("kontrolKey")
        if not kontrol_key:
            raise GenericError("public key is not passed")
        pair = self.keys.by_public(kontrol_key)
        if pair is None:
            raise GenericError("no valid authentication key found")
        if pair.deleted:
            return self.keys.require_current().public_pem
        return pair.public_pem

    async def handle_cancel_watcher(self, request: Request) -> None:
        if len(request.args) != 1 or not isinstance(request.args[0], str):
            raise ArgumentError(f"cancelWatcher takes one watcher id string, got {request.args!r:.80}")
        watcher = self.watchers.get(request.args[0])
        if watcher is None or watcher.connection is not request.connection:
            raise GenericError(f"watcher not found: {request.args[0]!r:.80}")
        del self.watchers[watcher.id]
        logger.info("watcher %s cancelled by %s", watcher.id, request.connection.describe())
        return None

    async def handle_register_machine(self, request: Request) -> str:
        username = await machine.authenticate(self, request)
        key = self.own_kite_key(username)
        logger.info("issued a kite.key to user %r for %s", username, request.connection.describe())
        return key

    # HTTP registration

    async def handle_http_register(self, http_request: Any) -> Any:
        from . import http

        return await http.register(self, http_request)

    async def handle_http_heartbeat(self, http_request: Any) -> Any:
        from . import http

        return await http.heartbeat(self, http_request)


async def serve(settings: KontrolSettings, *, auto_init: bool = True, ready: Any = None) -> None:
    """Run a Kontrol until SIGINT or SIGTERM."""
    import signal

    kontrol = Kontrol(settings, auto_init=auto_init)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    await kontrol.start()
    try:
        if ready is not None:
            ready(kontrol)
        await stop.wait()
    finally:
        await kontrol.stop()

