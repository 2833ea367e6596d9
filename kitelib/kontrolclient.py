"""The Kontrol client: registering a kite, finding other kites, tokens and watches.

A kite reaches Kontrol at ``config.kontrol_url`` (from its kite.key or
``KITE_KONTROL_URL``) with kiteKey authentication. Registration keeps going
for the life of the kite: it redials with backoff after Kontrol restarts and
registers again on every new connection.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .backoff import Backoff
from .protocol.errors import KiteError, SendError
from .protocol.identity import FIELDS, Identity

if TYPE_CHECKING:
    from .client import Client
    from .protocol.query import Query
    from .kite import Kite

logger = logging.getLogger(__name__)

# Go's RegisterHTTPForever backoff: start 30 s, x1.7, cap 5 min. We start sooner so tests and restarts recover fast.
HTTP_BACKOFF = dict(initial=1.0, factor=1.7, maximum=300.0)


class KontrolError(KiteError):
    """Kontrol cannot be used: no URL or key configured, or it rejected the kite."""

    type = "genericError"


@dataclass(frozen=True)
class RegisterResult:
    """The result of ``register``: the URL Kontrol stored, and new credentials after a key rotation."""

    url: str
    kite_key: str = ""
    public_key: str = ""


@dataclass(frozen=True)
class KiteEvent:
    """A change seen by a watch: ``action`` is REGISTER or DEREGISTER."""

    action: str
    identity: Identity
    url: str
    token: str = ""


def query_to_dict(query: Any = None, **fields: str) -> dict[str, str]:
    """Turn a Query, Identity, mapping or keyword fields into the wire query object."""
    values: dict[str, Any] = {}
    if query is None:
        pass
    elif isinstance(query, Mapping):
        values.update(query)
    elif hasattr(query, "to_dict"):
        values.update(query.to_dict())
    else:
        raise TypeError(f"query must be a mapping, Query or Identity, got {type(query).__name__}")
    values.update(fields)
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown query fields {sorted(unknown)}: use {', '.join(FIELDS)}")
    return {key: str(values.get(key) or "") for key in FIELDS}


class Watch:
    """A running ``getKites`` watch. ``kites`` are the matches when it started; ``cancel()`` ends it."""

    def __init__(self, kontrol: "KontrolClient", watcher_id: str, kites: list["Client"]):
        self.kontrol = kontrol
        self.id = watcher_id
        self.kites = kites

    async def cancel(self) -> None:
        client = self.kontrol.client
        if client is not None and client.connected:
            await client.tell("cancelWatcher", self.id, timeout=self.kontrol.kite.config.timeout)


class KontrolClient:
    """One kite's connection to Kontrol."""

    def __init__(self, kite: "Kite"):
        self.kite = kite
        self.client: Client | None = None
        self._connect_lock = asyncio.Lock()
        self.register_url: str | None = None
        # Resolved with the first RegisterResult; created when registration starts, on the running loop.
        self.registered: asyncio.Future[RegisterResult] | None = None
        self._register_task: asyncio.Task[None] | None = None
        self._closing = False
        self.on_register_hooks: list[Callable[[RegisterResult], Any]] = []
        self.backoff = Backoff()

    # Connecting

    def _auth(self) -> dict[str, str]:
        key = self.kite.config.kite_key
        if not key:
            raise KontrolError("this kite has no kite.key: run `kitectl register` or set KITE_HOME to where it is")
        return {"type": "kiteKey", "key": key}

    def _url(self) -> str:
        url = self.kite.config.kontrol_url
        if not url:
            raise KontrolError("no Kontrol URL: set KITE_KONTROL_URL or use a kite.key that names one")
        return url

    async def connect(self) -> "Client":
        """Return a connected client to Kontrol, dialing once if needed; raise ConnectionError if down."""
        from .client import Client

        async with self._connect_lock:
            if self.client is not None and self.client.connected:
                self.client.auth = self._auth()
                return self.client
            client = Client(self._url(), kite=self.kite, auth=self._auth())
            await client.connect()
            self.client = client
            return client

    async def tell(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        client = await self.connect()
        return await client.tell(method, *args, timeout=timeout or self.kite.config.timeout)

    async def close(self) -> None:
        """Stop registering and close the connection, so Kontrol drops this kite at once."""
        self._closing = True
        if self._register_task is not None:
            self._register_task.cancel()
            try:
                await self._register_task
            except (asyncio.CancelledError, Exception):
                pass
        if self.client is not None:
            await self.client.close()

    # Registering over RPC

    def registered_future(self) -> "asyncio.Future[RegisterResult]":
        """Return the future of the first registration, creating it on the running loop."""
        if self.registered is None:
            self.registered = asyncio.get_running_loop().create_future()
        return self.registered

    def start_registration(self, url: str) -> None:
        self.register_url = url
        loop = asyncio.get_running_loop()
        self.registered_future()
        if self._register_task is None or self._register_task.done():
            self._register_task = loop.create_task(self._register_forever())

    async def _register_forever(self) -> None:
        while not self._closing:
            try:
                client = await self.connect()
                result = await client.tell("register", {"url": self.register_url}, timeout=self.kite.config.timeout)
                self._registered(result)
                self.backoff.reset()
                assert client.connection is not None
                await client.connection.wait_closed()
                if self._closing:
                    return
                logger.info("connection to Kontrol %s lost; registering %s again", self._url(), self.kite.identity)
            except asyncio.CancelledError:
                raise
            except KontrolError as exc:
                logger.error("cannot register %s: %s", self.kite.identity, exc)
                self._fail_registered(exc)
                return
            except (ConnectionError, OSError, KiteError) as exc:
                delay = self.backoff.next_delay()
                logger.warning("registering %s with Kontrol %s failed: %s; retrying in %.1fs",
                               self.kite.identity, self.kite.config.kontrol_url, exc, delay)
                await asyncio.sleep(delay)

    def _registered(self, result: Any) -> None:
        if not isinstance(result, dict) or not isinstance(result.get("url"), str):
            raise KiteError(f"Kontrol returned an invalid register result: {result!r:.120}", type="invalidResponse")
        outcome = RegisterResult(result["url"], result.get("kiteKey") or "", result.get("publicKey") or "")
        self.apply_credentials(outcome)
        logger.info("registered %s with Kontrol %s as %s", self.kite.identity, self.kite.config.kontrol_url, outcome.url)
        if self.registered is not None and not self.registered.done():
            self.registered.set_result(outcome)
        for hook in self.on_register_hooks:
            try:
                value = hook(outcome)
                if inspect.isawaitable(value):
                    asyncio.ensure_future(value)
            except Exception:
                logger.exception("on_register hook failed")

    def _fail_registered(self, exc: BaseException) -> None:
        if self.registered is not None and not self.registered.done():
            self.registered.set_exception(exc)

    def apply_credentials(self, outcome: RegisterResult) -> None:
        """Use a re-signed kite.key or new Kontrol public key after Kontrol rotated its keys.

        The file on disk is left alone, as the Go kite does.
        """
        config = self.kite.config
        if outcome.kite_key:
            from .auth.tokens import decode_unverified

            claims = decode_unverified(outcome.kite_key).claims
            config.kite_key = outcome.kite_key
            if isinstance(claims.get("kontrolKey"), str):
                config.kontrol_key = claims["kontrolKey"]
            if self.client is not None:
                self.client.auth = self._auth()
            logger.info("Kontrol re-signed the kite.key of %s after a key rotation", self.kite.identity)
        elif outcome.public_key:
            config.kontrol_key = outcome.public_key
            logger.info("Kontrol's public key changed; %s now trusts the new one", self.kite.identity)

    # Registering over HTTP

    async def register_http_forever(self, url: str) -> None:
        import httpx

        self.registered_future()
        base = self._url()
        register_url = (base[: -len("/kite")] if base.endswith("/kite") else base.rstrip("/")) + "/register"
        heartbeat_url = register_url[: -len("/register")] + "/heartbeat"
        backoff = Backoff(**HTTP_BACKOFF)
        async with httpx.AsyncClient(timeout=self.kite.config.timeout) as http:
            while not self._closing:
                body = {"url": url, "kite": self.kite.identity.to_dict(), "auth": self._auth()}
                try:
                    response = await http.post(register_url, json=body)
                    if response.status_code != 200:
                        raise KiteError(f"HTTP register returned {response.status_code}: {response.text[:200]}")
                    result = response.json()
                    interval = result.get("heartbeatInterval") or 0
                    if interval <= 0:
                        raise KiteError("heartbeat interval cannot be zero")
                    self._registered(result)
                    backoff.reset()
                    while not self._closing:
                        await asyncio.sleep(interval)
                        beat = await http.get(heartbeat_url, params={"id": self.kite.id})
                        answer = beat.text[:16]
                        if answer == "registeragain":
                            logger.info("Kontrol asked %s to register again", self.kite.identity)
                            break
                        if answer != "pong":
                            logger.error("unexpected heartbeat reply from Kontrol: %r", answer)
                except asyncio.CancelledError:
                    raise
                except (httpx.HTTPError, KiteError, ValueError) as exc:
                    delay = backoff.next_delay()
                    logger.warning("HTTP registration of %s failed: %s; retrying in %.1fs",
                                   self.kite.identity, exc, delay)
                    await asyncio.sleep(delay)

    def start_http_registration(self, url: str) -> None:
        if self._register_task is None or self._register_task.done():
            self._register_task = asyncio.get_running_loop().create_task(self.register_http_forever(url))

    # Discovery

    def _split_query(self, query: Any, fields: dict[str, str]) -> tuple["Query", "Query"]:
        """Return (full query, part sent to Kontrol).

        Kontrol accepts only a gap-free prefix of the seven fields, so the
        longest such prefix goes to Kontrol and the rest is matched here. The
        username defaults to this kite's own, as Go's kitectl does.
        """
        from .protocol.query import Query

        wire_query = query_to_dict(query, **fields)
        if not wire_query["username"]:
            wire_query["username"] = self.kite.config.username
        full = Query.from_dict(wire_query)
        return full, full.longest_prefix()

    async def get_kites(self, query: Any = None, **fields: str) -> list["Client"]:
        """Return a ready-to-dial Client for each kite matching the query (an empty list when none).

        Any subset of the seven fields works: fields after a gap are matched
        locally on Kontrol's result.
        """
        full, sent = self._split_query(query, fields)
        result = await self.tell("getKites", {"query": sent.to_dict()})
        entries = [entry for entry in self._entries(result) if full.matches(Identity.from_dict(entry.get("kite")))]
        return [self._client_for(entry) for entry in entries]

    @staticmethod
    def _entries(result: Any) -> list[dict[str, Any]]:
        if not isinstance(result, dict) or not isinstance(result.get("kites"), list):
            raise KiteError(f"Kontrol returned an invalid getKites result: {result!r:.120}", type="invalidResponse")
        return result["kites"]

    def _client_for(self, entry: dict[str, Any]) -> "Client":
        from .client import Client

        identity = Identity.from_dict(entry.get("kite"))
        token = entry.get("token") or ""
        target_id = identity.id

        async def renew() -> str:
            return await self.get_token({"id": target_id})

        client = Client(entry["url"], kite=self.kite, auth={"type": "token", "key": token} if token else None,
                        renew_token=renew if token else None)
        client.identity = identity
        return client

    async def get_token(self, target: Any, *, force: bool = False) -> str:
        """Return a token for calling the kite ``target`` (an Identity, or a mapping with at least its id)."""
        options: dict[str, Any] = query_to_dict(target)
        options["force"] = force
        token = await self.tell("getToken", options)
        if not isinstance(token, str):
            raise KiteError(f"Kontrol returned an invalid token: {token!r:.80}", type="invalidResponse")
        return token

    async def get_key(self) -> str:
        """Return the public key Kontrol signs this kite's tokens with."""
        key = await self.tell("getKey")
        if not isinstance(key, str):
            raise KiteError(f"Kontrol returned an invalid key: {key!r:.80}", type="invalidResponse")
        return key

    async def watch_kites(self, query: Any, callback: Callable[[KiteEvent], Any]) -> Watch:
        """Call ``callback(KiteEvent)`` for every later REGISTER and DEREGISTER matching ``query``."""
        def on_event(event: Any) -> Any:
            if not isinstance(event, dict):
                logger.warning("ignored an invalid watch event from Kontrol: %r", event)
                return None
            kite_event = KiteEvent(str(event.get("action", "")), Identity.from_dict(event.get("kite")),
                                   str(event.get("url") or ""), str(event.get("token") or ""))
            return callback(kite_event)

        full, sent = self._split_query(query, {})

        def on_matching_event(event: Any) -> Any:
            if isinstance(event, dict) and not full.matches(Identity.from_dict(event.get("kite"))):
                return None
            return on_event(event)

        result = await self.tell("getKites", {"query": sent.to_dict(), "watchCallback": on_matching_event})
        watcher_id = result.get("watcherID") if isinstance(result, dict) else None
        if not isinstance(watcher_id, str):
            raise SendError("Kontrol does not support watching (no watcherID in the getKites result)")
        entries = [entry for entry in self._entries(result) if full.matches(Identity.from_dict(entry.get("kite")))]
        return Watch(self, watcher_id, [self._client_for(entry) for entry in entries])

