"""Client: a connection to one remote kite, for calling its methods."""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, Awaitable, Callable

from .backoff import Backoff
from .config import Config
from .connection import Connection
from .kite import Kite
from .protocol.errors import AuthenticationError, SendError
from .protocol.identity import Identity
from .transport.client import HandshakeRejected, dial_websocket, dial_xhr

logger = logging.getLogger(__name__)

TRANSPORTS = ("auto", "websocket", "xhr", "raw")
_DEFAULT = object()


class Client:
    """Calls methods on the kite at ``url`` and serves calls that kite makes back.

    ``url`` is a SockJS base URL (``http://host:port/kite``) or, for kite.js
    servers, a raw WebSocket URL (``ws://host:port/``). ``transport`` is
    ``auto`` (SockJS WebSocket, falling back to XHR polling when the upgrade is
    rejected), ``websocket``, ``xhr`` or ``raw``. A ws:// URL means ``raw``
    unless a SockJS transport is named. ``auth`` is sent with every call as
    ``{"type": ..., "key": ...}``. With ``reconnect`` the client redials with
    backoff after the link drops, and calls wait for the new link within
    their timeout.
    """

    def __init__(self, url: str, *, kite: Kite | None = None, transport: str | None = None,
                 auth: dict[str, str] | None = None, timeout: float | None = None, reconnect: bool = False,
                 renew_token: Callable[[], Awaitable[str]] | None = None, backoff: Backoff | None = None,
                 ssl: Any = None):
        self.url = url
        self.kite = kite if kite is not None else Kite("kitelib-client", "0.1.0", config=Config.load())
        config = self.kite.config
        if transport is None:
            transport = "raw" if url.startswith(("ws://", "wss://")) else config.transport
        if transport not in TRANSPORTS:
            raise ValueError(f"invalid transport {transport!r}: use one of {', '.join(TRANSPORTS)}")
        self.transport = transport
        self.auth = auth
        self.timeout = timeout if timeout is not None else config.timeout
        self.reconnect = reconnect
        self.renew_token = renew_token
        # An ssl.SSLContext for https/wss kites whose certificate the system store does not trust.
        self.ssl = ssl
        self.backoff = backoff or Backoff()
        self.connection: Connection | None = None
        # The remote kite's identity when known, e.g. for clients returned by get_kites.
        self.identity: Identity | None = None
        self.on_connect_hooks: list[Callable[["Client"], Any]] = []
        self.on_disconnect_hooks: list[Callable[["Client"], Any]] = []
        self._connected = asyncio.Event()
        self._closing = False
        self._redial_task: asyncio.Task[None] | None = None
        self._renewer: Any = None

    def __repr__(self) -> str:
        return f"<Client {self.url} {self.transport}>"

    @property
    def connected(self) -> bool:
        return self.connection is not None and not self.connection.closed

    async def __aenter__(self) -> "Client":
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    def on_connect(self, hook: Callable[["Client"], Any]) -> Callable[["Client"], Any]:
        """Run ``hook(client)`` after every successful dial, the first and each redial."""
        self.on_connect_hooks.append(hook)
        return hook

    def on_disconnect(self, hook: Callable[["Client"], Any]) -> Callable[["Client"], Any]:
        self.on_disconnect_hooks.append(hook)
        return hook

    async def connect(self) -> None:
        """Dial the kite once; raise ConnectionError with the URL and the cause when that fails."""
        self._closing = False
        await self._dial()
        # One renewer per client: a second connect() starts one only after close() stopped the first.
        if (self.auth and self.auth.get("type") == "token" and self.renew_token is not None
                and (self._renewer is None or self._renewer.stopped)):
            self._start_renewer()

    async def _dial(self) -> None:
        config = self.kite.config
        if self.transport == "raw":
            connection = await dial_websocket(self.kite, self.url, framed=False,
                                              handshake_timeout=config.handshake_timeout,
                                              max_message_size=config.max_message_size, ssl=self.ssl)
        elif self.transport == "xhr":
            connection = await self._dial_xhr()
        else:
            try:
                connection = await dial_websocket(self.kite, self.url, framed=True,
                                                  handshake_timeout=config.handshake_timeout,
                                                  max_message_size=config.max_message_size, ssl=self.ssl)
            except HandshakeRejected as exc:
                if self.transport != "auto":
                    raise
                logger.info("%s; falling back to XHR polling", exc)
                connection = await self._dial_xhr()
        self.connection = connection
        connection.on_close.append(self._connection_lost)
        self._connected.set()
        self.backoff.reset()
        logger.debug("connected to %s as %s", self.url, connection.id)
        for hook in self.on_connect_hooks:
            await _maybe_await(hook(self))

    async def _dial_xhr(self) -> Connection:
        config = self.kite.config
        poll_timeout = max(config.timeout, config.heartbeat_delay + 5)
        return await dial_xhr(self.kite, self.url, timeout=config.timeout, poll_timeout=poll_timeout, ssl=self.ssl)

    def _connection_lost(self, connection: Connection) -> None:
        if connection is not self.connection:
            return
        self._connected.clear()
        for hook in self.on_disconnect_hooks:
            try:
                result = hook(self)
                if inspect.isawaitable(result):
                    asyncio.ensure_future(result)
            except Exception:
                logger.exception("on_disconnect hook of %s failed", self)
        if self.reconnect and not self._closing:
            self._redial_task = asyncio.get_running_loop().create_task(self._redial_forever())

    async def _redial_forever(self) -> None:
        while not self._closing:
            delay = self.backoff.next_delay()
            logger.info("reconnecting to %s in %.1fs (attempt %d)", self.url, delay, self.backoff.attempts)
            await asyncio.sleep(delay)
            if self._closing:
                return
            try:
                await self._dial()
                logger.info("reconnected to %s", self.url)
                return
            except (ConnectionError, OSError) as exc:
                logger.info("reconnect to %s failed: %s", self.url, exc)

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def tell(self, method: str, *args: Any, timeout: Any = _DEFAULT) -> Any:
        """Call ``method`` with ``args`` and return the result; raise the remote KiteError on failure.

        ``timeout`` is in seconds (None waits forever); it defaults to the
        client's timeout. A call that gets no reply raises ``TimeoutError``
        (the kite wire type ``timeout``) and the connection stays usable.
        """
        if timeout is _DEFAULT:
            timeout = self.timeout
        connection = await self._ready_connection(method, timeout)
        sent_auth = self.auth
        try:
            return await connection.tell(method, *args, timeout=timeout, authentication=sent_auth)
        except AuthenticationError as exc:
            if "token is expired" not in exc.message or self._renewer is None:
                raise
            # The background renewal may have replaced the token while this call was in flight.
            if self.auth is sent_auth:
                logger.info("token for %s expired; renewing and calling %s again", self.url, method)
                await self._renewer.renew_now()
            return await connection.tell(method, *args, timeout=timeout, authentication=self.auth)

    async def _ready_connection(self, method: str, timeout: float | None) -> Connection:
        if self.connection is None:
            raise SendError(f"can't send {method!r}: call await client.connect() first")
        if self.connection.closed:
            if not self.reconnect or self._closing:
                raise SendError(f"can't send {method!r}: the connection to {self.url} is closed")
            try:
                await asyncio.wait_for(self._connected.wait(), timeout)
            except asyncio.TimeoutError:
                raise SendError(f"can't send {method!r}: not reconnected to {self.url} within {timeout:g}s") from None
        assert self.connection is not None
        return self.connection

    def _start_renewer(self) -> None:
        from .auth.renewal import TokenRenewer

        assert self.auth is not None and self.renew_token is not None

        def use_token(token: str) -> None:
            self.auth = {"type": "token", "key": token}

        self._renewer = TokenRenewer(self.renew_token, use_token, token=self.auth["key"])
        # Started here, not on the first rejection, so that the token is renewed before it expires.
        self._renewer.start()

    async def close(self) -> None:
        """Close the connection and stop redialing and token renewal."""
        self._closing = True
        if self._redial_task is not None:
            self._redial_task.cancel()
        if self._renewer is not None:
            await _maybe_await(self._renewer.close())
        if self.connection is not None:
            await self.connection.close()


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value
