"""The kite's HTTP server: SockJS (WebSocket, XHR polling, XHR streaming) and raw WebSocket on one port.

Routes under the prefix (``/kite`` by default), as sockjs-go serves them plus
the raw WebSocket that kite.js dials by default:

- ``GET /kite`` (WebSocket upgrade) and ``GET /kite/websocket``: raw WebSocket,
  one dnode message per text frame.
- ``GET /kite/info``: the SockJS info document.
- ``GET /kite/{server}/{session}/websocket``: SockJS-framed WebSocket.
- ``POST /kite/{server}/{session}/xhr``, ``xhr_send``, ``xhr_streaming``: SockJS
  HTTP transports, with CORS preflights.

Every route checks the request's ``Origin`` against the kite's
``allowed_origins`` (see :mod:`kitelib.protocol.origin`) and returns 403 to a
page from an origin that is not allowed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from typing import TYPE_CHECKING, Awaitable, Callable

from aiohttp import WSMsgType, web

from ..connection import Connection, new_connection_id
from ..protocol import sockjs
from ..protocol.origin import OriginPolicy

if TYPE_CHECKING:
    from ..kite import Kite

logger = logging.getLogger(__name__)

# sockjs-go's ResponseLimit: an xhr_streaming response ends after this many bytes and the client reopens it.
STREAMING_RESPONSE_LIMIT = 128 * 1024
# sockjs-client treats a streaming response as usable only after this 2 KiB prelude of 'h'.
STREAMING_PRELUDE = b"h" * 2048 + b"\n"
JAVASCRIPT = "application/javascript; charset=UTF-8"
# aiohttp has no event for a client that closed a held poll, so the poll checks its socket this often (seconds).
CLOSED_CLIENT_CHECK_INTERVAL = 0.5
SESSION_PART = r"[^/.]+"


def _cors_headers(request: web.Request) -> dict[str, str]:
    headers = {
        "Access-Control-Allow-Origin": request.headers.get("Origin", "*"),
        "Access-Control-Allow-Credentials": "true",
    }
    requested = request.headers.get("Access-Control-Request-Headers")
    if requested:
        headers["Access-Control-Allow-Headers"] = requested
    return headers


def _public_host_and_scheme(request: web.Request) -> tuple[str, str]:
    """Return the host and scheme the browser used, as a reverse proxy reports them in X-Forwarded-* headers.

    Behind a proxy that ends TLS, requests reach the kite as http while the page is https.
    Trusting these headers is safe for the origin check: a page's script
    cannot set them on a WebSocket, and an XHR that sets them needs a
    preflight, which the same check rejects first.
    """
    host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip() or request.host
    scheme = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower() or request.scheme
    return host, scheme


def _peer(request: web.Request) -> str:
    remote = request.remote or "unknown"
    peername = request.transport.get_extra_info("peername") if request.transport else None
    if isinstance(peername, tuple) and len(peername) >= 2:
        return f"{peername[0]}:{peername[1]}"
    return remote


async def read_text_frames(ws: web.WebSocketResponse, on_text: Callable[[str], Awaitable[None] | None],
                           describe: Callable[[], str]) -> BaseException | None:
    """Pass the text of every frame to ``on_text`` until the socket closes; return the error that ended it.

    Binary frames are read as UTF-8 text, and dropped with a warning when they are not.
    """
    async for frame in ws:
        if frame.type == WSMsgType.TEXT:
            text = frame.data
        elif frame.type == WSMsgType.BINARY:
            try:
                text = frame.data.decode()
            except UnicodeDecodeError:
                logger.warning("dropped a binary frame that is not UTF-8 from %s", describe())
                continue
        elif frame.type == WSMsgType.ERROR:
            reason = ws.exception()
            logger.warning("closing %s: %s", describe(), reason)
            return reason
        else:
            continue
        pending = on_text(text)
        if pending is not None:
            await pending
    return None


class WebSocketTransport:
    """Server side of a WebSocket, with SockJS framing or raw (one message per frame)."""

    def __init__(self, ws: web.WebSocketResponse, remote_address: str, *, framed: bool):
        self.ws = ws
        self.remote_address = remote_address
        self.framed = framed
        self.kind = "sockjs-websocket" if framed else "raw-websocket"

    async def send(self, messages: list[str]) -> None:
        if self.ws.closed:
            raise ConnectionError("websocket is closed")
        if self.framed:
            await self.ws.send_str(sockjs.encode_messages(messages))
        else:
            for message in messages:
                await self.ws.send_str(message)

    async def close(self, code: int = 3000, reason: str = "Go away!") -> None:
        if self.ws.closed:
            return
        try:
            if self.framed:
                await self.ws.send_str(sockjs.encode_close(code, reason))
            await self.ws.close()
        except (ConnectionError, RuntimeError):
            pass


class XhrSession:
    """A SockJS session carried by HTTP polls (xhr or xhr_streaming) and xhr_send posts.

    Outgoing messages wait in ``queue`` until a poll takes them. A message
    leaves the queue only when it is written into a response whose client is
    still connected, so a poll that is replaced or abandoned loses nothing.
    """

    kind = "xhr-polling"

    def __init__(self, server: "KiteServer", session_id: str, remote_address: str):
        self.server = server
        self.session_id = session_id
        self.remote_address = remote_address
        self.queue: list[str] = []
        self.close_frame: str | None = None
        self.wakeup = asyncio.Event()
        self.poll_generation = 0
        self.polls_attached = 0
        self.connection: Connection | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self.closed = False

    async def send(self, messages: list[str]) -> None:
        if self.closed or self.close_frame is not None:
            raise ConnectionError("xhr session is closed")
        self.queue.extend(messages)
        self.wakeup.set()

    async def close(self, code: int = 3000, reason: str = "Go away!") -> None:
        if self.close_frame is None:
            self.close_frame = sockjs.encode_close(code, reason)
            self.wakeup.set()
        # A client that never polls again still frees the session after the disconnect delay.
        if self.polls_attached == 0:
            self.schedule_expiry()

    def poll_attached(self) -> int:
        """Register a new poll and return its generation; an older attached poll is released."""
        self.polls_attached += 1
        self.poll_generation += 1
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self.wakeup.set()
        return self.poll_generation

    def poll_detached(self) -> None:
        self.polls_attached -= 1
        if self.polls_attached == 0:
            self.schedule_expiry()

    def schedule_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(self.server.kite.config.disconnect_delay, self.expire)

    def expire(self) -> None:
        """End the session: no poll came within the disconnect delay."""
        if self.closed:
            return
        self.closed = True
        self.server.xhr_sessions.pop(self.session_id, None)
        if self.connection is not None:
            self.connection.connection_lost(None)

    def take_frame(self) -> str | None:
        """Remove and return the next frame to send, or None when there is nothing."""
        if self.queue:
            frame = sockjs.encode_messages(self.queue)
            self.queue = []
            return frame
        if self.close_frame is not None:
            return self.close_frame
        return None


def _receive_all(connection: Connection, messages: list[str]) -> None:
    for message in messages:
        connection.receive(message)


class KiteServer:
    """Serves one kite's routes in an aiohttp application."""

    def __init__(self, kite: "Kite"):
        self.kite = kite
        config = kite.config
        # xhr_send bodies are client frames; allow the message limit plus the SockJS array's quoting.
        self.app = web.Application(client_max_size=config.max_message_size * 2 + 1024)
        self.xhr_sessions: dict[str, XhrSession] = {}
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.url = ""
        self._origin_policy = OriginPolicy(config.allowed_origins)
        self.add_routes(self.app, "/kite")

    def add_routes(self, app: web.Application, prefix: str) -> None:
        prefix = prefix.rstrip("/")
        session = f"{prefix}/{{server:{SESSION_PART}}}/{{session:{SESSION_PART}}}"
        guard = self._check_origin
        app.router.add_get(prefix, guard(self.handle_root))
        app.router.add_get(prefix + "/", guard(self.handle_root))
        app.router.add_get(prefix + "/websocket", guard(self.handle_raw_websocket))
        app.router.add_get(prefix + "/info", guard(self.handle_info))
        app.router.add_route("OPTIONS", prefix + "/info", guard(self.handle_preflight_info))
        app.router.add_get(session + "/websocket", guard(self.handle_sockjs_websocket))
        app.router.add_post(session + "/xhr", guard(self.handle_xhr_poll))
        app.router.add_post(session + "/xhr_send", guard(self.handle_xhr_send))
        app.router.add_post(session + "/xhr_streaming", guard(self.handle_xhr_streaming))
        for name in ("xhr", "xhr_send", "xhr_streaming"):
            app.router.add_route("OPTIONS", f"{session}/{name}", guard(self.handle_preflight_post))

    def origin_policy(self) -> OriginPolicy:
        """Return the policy for the kite's current ``allowed_origins``, rebuilt when the setting changes."""
        entries = tuple(self.kite.config.allowed_origins)
        if entries != self._origin_policy.entries:
            self._origin_policy = OriginPolicy(entries)
        return self._origin_policy

    def _check_origin(self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def checked(request: web.Request) -> web.StreamResponse:
            origin = request.headers.get("Origin")
            if origin is not None and not self.origin_policy().allows(origin, *_public_host_and_scheme(request)):
                logger.warning("rejected %s %s from %s: origin %r is not in allowed_origins",
                               request.method, request.path, _peer(request), origin)
                # Without CORS headers the page's script gets a failed request, not this text.
                text = (f"Origin {origin!r} may not use this kite. Add it to the kite's allowed_origins"
                        " (KITE_ALLOWED_ORIGINS) to let its pages connect.\n")
                return web.Response(status=403, text=text, content_type="text/plain")
            return await handler(request)

        return checked

    # Lifecycle

    async def start(self, host: str, port: int) -> None:
        config = self.kite.config
        ssl_context = None
        if config.tls_cert or config.tls_key:
            if not (config.tls_cert and config.tls_key):
                raise ValueError("TLS needs both a certificate and a key file: set tls_cert and tls_key together")
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(config.tls_cert, config.tls_key)
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host or None, port, ssl_context=ssl_context)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1] if sockets else port
        # A kite listening on every address is reachable on loopback at least.
        if host in ("", "0.0.0.0"):
            public_host = "127.0.0.1"
        elif host == "::":
            public_host = "[::1]"
        else:
            public_host = host
        scheme = "https" if ssl_context else "http"
        self.url = f"{scheme}://{public_host}:{self.port}/kite"

    async def stop(self) -> None:
        for connection in list(self.kite.connections):
            await connection.close()
        for session in list(self.xhr_sessions.values()):
            session.expire()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    # Plain routes

    async def handle_root(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self.handle_raw_websocket(request)
        return web.Response(text="Welcome to SockJS!\n", content_type="text/plain")

    async def handle_info(self, request: web.Request) -> web.Response:
        body = {"websocket": True, "cookie_needed": False, "origins": ["*:*"], "entropy": random.getrandbits(31)}
        response = web.json_response(body, headers=_cors_headers(request))
        response.headers["Cache-Control"] = "no-store, no-cache, must-revalidate, max-age=0"
        return response

    async def handle_preflight_info(self, request: web.Request) -> web.Response:
        headers = _cors_headers(request)
        headers["Access-Control-Allow-Methods"] = "OPTIONS, GET"
        headers["Access-Control-Max-Age"] = "31536000"
        return web.Response(status=204, headers=headers)

    async def handle_preflight_post(self, request: web.Request) -> web.Response:
        headers = _cors_headers(request)
        headers["Access-Control-Allow-Methods"] = "OPTIONS, POST"
        headers["Access-Control-Max-Age"] = "31536000"
        return web.Response(status=204, headers=headers)

    # WebSockets

    async def handle_raw_websocket(self, request: web.Request) -> web.StreamResponse:
        return await self._serve_websocket(request, framed=False)

    async def handle_sockjs_websocket(self, request: web.Request) -> web.StreamResponse:
        return await self._serve_websocket(request, framed=True)

    async def _serve_websocket(self, request: web.Request, *, framed: bool) -> web.StreamResponse:
        config = self.kite.config
        ws = web.WebSocketResponse(max_msg_size=config.max_message_size, compress=False, autoping=True)
        try:
            await ws.prepare(request)
        except ConnectionResetError:
            # A browser that navigates away mid-handshake drops the socket before anything was opened.
            logger.debug("WebSocket upgrade from %s ended before it completed", _peer(request))
            return ws
        transport = WebSocketTransport(ws, _peer(request), framed=framed)
        connection = Connection(self.kite, transport, dialed=False)
        self.kite.connection_made(connection)
        # A message a Go client sent before the open frame is already buffered and is read in the session.
        await self.run_websocket_session(ws, framed=framed, deliver=lambda messages: _receive_all(connection, messages),
                                         describe=connection.describe, lost=connection.connection_lost)
        return ws

    async def run_websocket_session(self, ws: web.WebSocketResponse, *, framed: bool,
                                    deliver: Callable[[list[str]], Awaitable[None] | None],
                                    describe: Callable[[], str], lost: Callable[[BaseException | None], None],
                                    opened: Callable[[], None] | None = None) -> None:
        """Run one accepted WebSocket until it closes, passing each frame's dnode messages to ``deliver``.

        With SockJS framing it sends ``o`` and then ``h`` every heartbeat
        delay, and drops (with a warning) a client frame that is not an array
        of strings. ``opened`` runs once the session is open; ``lost`` runs
        last with the error that ended the socket, if any.
        """
        def on_text(text: str) -> Awaitable[None] | None:
            if not framed:
                return deliver([text])
            try:
                messages = sockjs.decode_client_frame(text)
            except sockjs.FrameError as exc:
                logger.warning("dropped a frame from %s: %s", describe(), exc)
                return None
            return deliver(messages)

        heartbeat = None
        if framed:
            await ws.send_str(sockjs.OPEN)
            heartbeat = asyncio.get_running_loop().create_task(self._send_heartbeats(ws))
        if opened is not None:
            opened()
        reason: BaseException | None = None
        try:
            reason = await read_text_frames(ws, on_text, describe)
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
            if not ws.closed:
                await ws.close()
            lost(reason)

    async def _send_heartbeats(self, ws: web.WebSocketResponse) -> None:
        delay = self.kite.config.heartbeat_delay
        try:
            while not ws.closed:
                await asyncio.sleep(delay)
                await ws.send_str(sockjs.HEARTBEAT)
        except (ConnectionError, RuntimeError):
            return

    # XHR transports

    def _open_session(self, request: web.Request) -> tuple[XhrSession, bool]:
        session_id = request.match_info["session"]
        session = self.xhr_sessions.get(session_id)
        if session is not None:
            return session, False
        session = XhrSession(self, session_id, _peer(request))
        connection = Connection(self.kite, session, dialed=False, connection_id=new_connection_id("xhr-"))
        session.connection = connection
        self.xhr_sessions[session_id] = session
        self.kite.connection_made(connection)
        return session, True

    async def handle_xhr_poll(self, request: web.Request) -> web.Response:
        headers = _cors_headers(request)
        session, created = self._open_session(request)
        if created:
            session.schedule_expiry()
            return web.Response(text="o\n", content_type="application/javascript", charset="utf-8", headers=headers)
        frame = await self._wait_for_frame(session, request)
        return web.Response(text=frame + "\n", content_type="application/javascript", charset="utf-8",
                            headers=headers)

    async def _wait_for_frame(self, session: XhrSession, request: web.Request) -> str:
        """Hold a poll until a frame is ready, a newer poll replaces it, or the heartbeat delay passes."""
        generation = session.poll_attached()
        deadline = time.monotonic() + self.kite.config.heartbeat_delay
        try:
            while True:
                if generation != session.poll_generation:
                    # A newer poll owns the session now; this one leaves the queue alone.
                    return sockjs.HEARTBEAT
                if request.transport is None or request.transport.is_closing():
                    return sockjs.HEARTBEAT
                frame = session.take_frame()
                if frame is not None:
                    return frame
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return sockjs.HEARTBEAT
                session.wakeup.clear()
                try:
                    # Wake at least this often to notice a client that closed its socket.
                    await asyncio.wait_for(session.wakeup.wait(), min(remaining, CLOSED_CLIENT_CHECK_INTERVAL))
                except asyncio.TimeoutError:
                    pass
        finally:
            session.poll_detached()

    async def handle_xhr_send(self, request: web.Request) -> web.Response:
        headers = _cors_headers(request)
        session = self.xhr_sessions.get(request.match_info["session"])
        if session is None or session.connection is None:
            return web.Response(status=404, text="Session not found.", headers=headers)
        body = await request.read()
        if not body:
            return web.Response(status=500, text="Payload expected.", headers=headers)
        limit = self.kite.config.max_message_size
        if len(body) > limit:
            # The body is the frame a WebSocket client would send, so it gets the same limit.
            logger.warning("rejected a %d-byte xhr_send body from %s: the limit is %d bytes", len(body),
                           session.connection.describe(), limit)
            return web.Response(status=413, text=f"Payload larger than {limit} bytes.", headers=headers)
        try:
            messages = sockjs.decode_client_frame(body)
        except sockjs.FrameError as exc:
            logger.warning("rejected xhr_send body from %s: %s", session.connection.describe(), exc)
            return web.Response(status=500, text="Broken JSON encoding.", headers=headers)
        for message in messages:
            session.connection.receive(message)
        return web.Response(status=204, headers=headers)

    async def handle_xhr_streaming(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers=_cors_headers(request))
        response.content_type = "application/javascript"
        response.charset = "utf-8"
        await response.prepare(request)
        await response.write(STREAMING_PRELUDE)
        session, created = self._open_session(request)
        if created:
            await response.write(b"o\n")
        sent = 0
        try:
            while sent < STREAMING_RESPONSE_LIMIT:
                frame = await self._wait_for_frame(session, request)
                if request.transport is None or request.transport.is_closing():
                    break
                data = (frame + "\n").encode()
                await response.write(data)
                sent += len(data)
                if frame.startswith("c"):
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        return response
