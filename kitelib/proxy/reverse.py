"""The reverse proxy: many kites with reachable addresses behind one public host and port.

A kite dials the proxy (a kite named ``proxy``) and calls ``register`` with
its own URL; the reply is its public URL,
``<scheme>://<public host>:<public port>/proxy/<kite id>``. The mapping lasts
as long as that registration connection.

Requests under ``/proxy/<kite id>/<rest>`` go to the kite's URL path + ``/`` +
``<rest>``, with the query string kept. WebSocket upgrades are joined frame
by frame. Other requests, such as the SockJS ``info``, ``xhr``, ``xhr_send``
and ``xhr_streaming`` transports, are forwarded with their bodies streamed in
both directions. ``/kite`` is the proxy's own kite. These rules follow the Go
reverseproxy (koding/kite, revision baa1a549).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, WSMsgType, web

from ..config import Config
from ..kite import Kite
from ..protocol.errors import ArgumentError, GenericError

if TYPE_CHECKING:
    from aiohttp import ClientResponse, ClientWebSocketResponse

    from ..method import Request

logger = logging.getLogger(__name__)

NAME = "proxy"
VERSION = "0.0.1"  # the Go reverseproxy kite's version
DEFAULT_PORT = 3999
DEFAULT_CONNECT_TIMEOUT = 5.0  # seconds to open a TCP connection to a backend kite
DEFAULT_HANDSHAKE_TIMEOUT = 15.0  # seconds for a backend's WebSocket handshake, the Go kite's handshake timeout
# Seconds without a byte from a backend before a forwarded request fails. SockJS servers hold an
# xhr poll for up to their heartbeat delay (10 s on kites, 25 s in sockjs-go), so this must be longer.
DEFAULT_READ_TIMEOUT = 60.0
# The proxy notices an outside client that closed a held request this often (seconds), and then
# closes the backend request so the backend keeps any message it had not sent yet.
CLIENT_CHECK_INTERVAL = 0.5

# Headers that describe one hop and are never forwarded (RFC 9110 section 7.6.1).
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
                        "te", "trailer", "transfer-encoding", "upgrade", "host"})
WEBSOCKET_HANDSHAKE_HEADERS = frozenset({"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
                                         "sec-websocket-accept", "sec-websocket-protocol"})


def _error(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n")


class ReverseProxy:
    """A reverse proxy on one port for kites that registered with it.

    ``public_host`` and ``public_port`` go into the URLs the proxy hands out
    (defaults: 127.0.0.1 and the listening port). TLS is on when
    ``config.tls_cert`` and ``config.tls_key`` are set; backends are then
    still reached with the scheme of the URL they registered.
    ``backend_ssl`` is an ssl.SSLContext for https backends with private
    certificates.
    """

    def __init__(self, config: Config | None = None, *, public_host: str = "127.0.0.1", public_port: int = 0,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
                 read_timeout: float = DEFAULT_READ_TIMEOUT, backend_ssl: Any = None, version: str = VERSION):
        self.kite = Kite(NAME, version, config=config)
        self.public_host = public_host
        self._public_port = public_port
        self.connect_timeout = connect_timeout
        self.handshake_timeout = handshake_timeout
        self.read_timeout = read_timeout
        self.backend_ssl = backend_ssl
        # Kite id -> (backend URL, the registration connection that owns the entry).
        self.backends: dict[str, tuple[str, Any]] = {}
        self.http: ClientSession | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

        self.kite.handle("register", self.handle_register, spread_args=False)
        app = self.kite.make_app()
        app.router.add_route("*", "/proxy/{kite_id}", self.handle_proxy)
        app.router.add_route("*", "/proxy/{kite_id}/{rest:.*}", self.handle_proxy)

    # Lifecycle

    @property
    def scheme(self) -> str:
        return "https" if self.kite.config.tls_cert else "http"

    @property
    def public_port(self) -> int:
        return self._public_port or self.kite.port

    @property
    def public_url(self) -> str:
        """``<scheme>://<public host>:<public port>``, the base of every URL the proxy hands out."""
        return f"{self.scheme}://{self.public_host}:{self.public_port}"

    @property
    def kite_url(self) -> str:
        """The URL of the proxy's own kite, as it registers it with Kontrol."""
        return self.public_url + "/kite"

    async def start(self, *, register: bool | None = None) -> None:
        """Serve, then register with Kontrol when ``register`` is true or, by default, when a kite.key is set."""
        # limit=0: one held poll or open WebSocket per outside session, so no pool cap fits every proxy.
        connector = TCPConnector(limit=0, ssl=self.backend_ssl if self.backend_ssl is not None else True)
        timeout = ClientTimeout(total=None, connect=self.connect_timeout, sock_read=self.read_timeout)
        self.http = ClientSession(connector=connector, timeout=timeout, auto_decompress=False, cookie_jar=None)
        await self.kite.start()
        config = self.kite.config
        if register is None:
            register = bool(config.kite_key and config.kontrol_url)
        if register:
            self.kite.register(self.kite_url)
        logger.info("reverse proxy serving on %s, public URL %s", self.kite.url, self.public_url)

    async def stop(self) -> None:
        for task in list(self._handlers):
            task.cancel()
        await self.kite.stop()
        if self.http is not None:
            await self.http.close()
            self.http = None

    # The register method

    async def handle_register(self, request: "Request") -> str:
        if len(request.args) != 1 or not isinstance(request.args[0], str):
            raise ArgumentError(f"register takes one string, the kite's URL, got {request.args!r:.120}")
        url = request.args[0]
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            raise ArgumentError(f"invalid kite URL {url!r:.200}: use http://host:port/kite")
        kite_id = request.kite.id
        if not kite_id:
            raise ArgumentError("register needs the caller's kite id in options.kite.id")
        connection = request.connection
        current = self.backends.get(kite_id)
        if current is not None and current[1] is not connection and not current[1].closed:
            if current[1].remote_username != connection.remote_username:
                raise GenericError(f"kite id {kite_id} is already registered by another user's live connection")
            logger.info("kite %s registered again from a new connection; dropping the old entry", kite_id)
        self.backends[kite_id] = (url, connection)

        def forget(_connection: Any) -> None:
            entry = self.backends.get(kite_id)
            if entry is not None and entry[1] is connection:
                del self.backends[kite_id]
                logger.info("kite %s left the reverse proxy", kite_id)

        connection.on_close.append(forget)
        logger.info("kite %s registered with the reverse proxy: %s", request.kite, url)
        return f"{self.public_url}/proxy/{kite_id}"

    # Forwarding

    def backend_url(self, kite_id: str, rest: str, query: str, *, websocket: bool) -> str | None:
        """Return the backend URL for ``/proxy/<kite_id>/<rest>?<query>``, or None for an unknown kite."""
        entry = self.backends.get(kite_id)
        if entry is None:
            return None
        parts = urlsplit(entry[0])
        secure = parts.scheme in ("https", "wss")
        if websocket:
            scheme = "wss" if secure else "ws"
        else:
            scheme = "https" if secure else "http"
        path = parts.path.rstrip("/") + "/" + rest
        return urlunsplit((scheme, parts.netloc, path, query, ""))

    async def handle_proxy(self, request: web.Request) -> web.StreamResponse:
        kite_id = request.match_info["kite_id"]
        websocket = (request.headers.get("Upgrade", "").lower() == "websocket"
                     and "upgrade" in request.headers.get("Connection", "").lower())
        target = self.backend_url(kite_id, request.match_info.get("rest", ""), request.query_string,
                                  websocket=websocket)
        if target is None:
            return _error(404, f"kite {kite_id} is not registered with this proxy")
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            if websocket:
                return await self._forward_websocket(request, target, kite_id)
            return await self._forward_http(request, target, kite_id)
        finally:
            self._handlers.discard(task)

    def _forwarded_headers(self, request: web.Request) -> dict[str, str]:
        headers = {key: value for key, value in request.headers.items()
                   if key.lower() not in HOP_BY_HOP and key.lower() not in WEBSOCKET_HANDSHAKE_HEADERS}
        previous = request.headers.get("X-Forwarded-For")
        client = request.remote or ""
        headers["X-Forwarded-For"] = f"{previous}, {client}" if previous else client
        headers["X-Forwarded-Host"] = request.host
        headers["X-Forwarded-Proto"] = request.scheme
        return headers

    async def _forward_http(self, request: web.Request, target: str, kite_id: str) -> web.StreamResponse:
        assert self.http is not None
        headers = self._forwarded_headers(request)
        body = request.content if request.body_exists else None
        sending = asyncio.ensure_future(self.http.request(request.method, target, headers=headers, data=body,
                                                          allow_redirects=False))
        try:
            backend = await self._unless_client_leaves(request, sending)
        except (ClientError, OSError, asyncio.TimeoutError) as exc:
            return self._backend_failed(kite_id, target, exc)
        except _ClientLeft:
            logger.debug("client of %s left before the backend responded", target)
            return web.Response(status=499)
        try:
            return await self._stream_response(request, backend, target)
        finally:
            if backend.content.is_eof():
                backend.release()
            else:
                # Closing, not pooling, the connection tells the backend that no one reads the rest.
                backend.close()

    async def _stream_response(self, request: web.Request, backend: "ClientResponse",
                               target: str) -> web.StreamResponse:
        response = web.StreamResponse(status=backend.status, reason=backend.reason)
        for key, value in backend.headers.items():
            if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                response.headers.add(key, value)
        if backend.content_length is not None:
            response.content_length = backend.content_length
        try:
            await response.prepare(request)
            while True:
                try:
                    chunk = await self._unless_client_leaves(
                        request, asyncio.ensure_future(backend.content.readany()))
                except (ClientError, asyncio.TimeoutError) as exc:
                    # The status line is sent, so the client only sees the response end early.
                    logger.warning("reading the response of %s failed: %s", target, exc or type(exc).__name__)
                    break
                if not chunk:
                    await response.write_eof()
                    break
                await response.write(chunk)
        except (_ClientLeft, ConnectionError):
            logger.debug("client of %s left during the response", target)
        return response

    async def _unless_client_leaves(self, request: web.Request, operation: "asyncio.Future[Any]") -> Any:
        """Await ``operation``; cancel it and raise _ClientLeft when the outside client closes its connection."""
        try:
            while True:
                done, _pending = await asyncio.wait({operation}, timeout=CLIENT_CHECK_INTERVAL)
                if done:
                    return operation.result()
                if request.transport is None or request.transport.is_closing():
                    raise _ClientLeft()
        finally:
            if not operation.done():
                operation.cancel()
                try:
                    await operation
                except (asyncio.CancelledError, Exception):
                    pass

    def _backend_failed(self, kite_id: str, target: str, exc: BaseException) -> web.Response:
        if isinstance(exc, asyncio.TimeoutError):
            logger.warning("backend of kite %s timed out: %s", kite_id, target)
            return _error(504, f"kite {kite_id} did not answer in time at {target}")
        logger.warning("backend of kite %s failed: %s: %s", kite_id, target, exc)
        return _error(502, f"cannot reach kite {kite_id} at {target}: {exc}")

    async def _forward_websocket(self, request: web.Request, target: str, kite_id: str) -> web.StreamResponse:
        from aiohttp import ClientWSTimeout, WSServerHandshakeError

        assert self.http is not None
        headers = self._forwarded_headers(request)
        protocols = [item.strip() for item in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
                     if item.strip()]
        try:
            backend = await asyncio.wait_for(
                self.http.ws_connect(target, headers=headers, protocols=protocols, compress=0, max_msg_size=0,
                                     autoping=True, timeout=ClientWSTimeout(ws_receive=None, ws_close=5.0)),
                self.handshake_timeout)
        except WSServerHandshakeError as exc:
            logger.warning("backend of kite %s rejected the WebSocket upgrade: %s: HTTP %d", kite_id, target, exc.status)
            return _error(exc.status if exc.status >= 400 else 502,
                          f"kite {kite_id} rejected the WebSocket upgrade at {target} with HTTP {exc.status}")
        except (ClientError, OSError, asyncio.TimeoutError) as exc:
            return self._backend_failed(kite_id, target, exc)

        config = self.kite.config
        client = web.WebSocketResponse(protocols=[backend.protocol] if backend.protocol else (), compress=False,
                                       autoping=True, max_msg_size=config.max_message_size * 2 + 1024)
        try:
            await client.prepare(request)
        except Exception:
            await backend.close()
            raise
        await _join_websockets(client, backend)
        return client


class _ClientLeft(Exception):
    """The outside client closed its connection while the proxy waited for the backend."""


async def _join_websockets(client: web.WebSocketResponse, backend: "ClientWebSocketResponse") -> None:
    """Pass frames both ways until one side closes, then close the other with the same code."""
    async def pump(source: Any, sink: Any) -> None:
        async for message in source:
            if message.type == WSMsgType.TEXT:
                await sink.send_str(message.data)
            elif message.type == WSMsgType.BINARY:
                await sink.send_bytes(message.data)
            elif message.type == WSMsgType.ERROR:
                return

    upstream = asyncio.ensure_future(pump(client, backend))
    downstream = asyncio.ensure_future(pump(backend, client))
    try:
        await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (upstream, downstream):
            task.cancel()
        await asyncio.gather(upstream, downstream, return_exceptions=True)
        code = backend.close_code or client.close_code or 1000
        # 1005 and 1006 are reserved for reporting and must not be sent in a close frame.
        if code in (1005, 1006):
            code = 1000
        await asyncio.gather(client.close(code=code), backend.close(code=code), return_exceptions=True)
