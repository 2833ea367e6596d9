"""Joining two SockJS sessions message by message, as the tunnel proxy does.

A RelayEndpoint is one session of a joined pair: an outside client's session
or a private kite's tunnel. It takes the place of the dnode Connection that
the kite server's transports normally feed, so the SockJS WebSocket and XHR
code of :mod:`kitelib.transport.server` serves relay sessions unchanged.
Messages are passed on as opaque strings and never parsed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Callable

from aiohttp import web

from ..connection import new_connection_id
from ..protocol import sockjs
from ..transport.server import KiteServer, WebSocketTransport, XhrSession, _peer

if TYPE_CHECKING:
    from ..kite import Kite

logger = logging.getLogger(__name__)

# Messages sent to a peer in one SockJS frame are capped at about this many characters, so that one
# frame stays far below the 1 MiB default message limit of the receiving kite.
BATCH_CHARS = 256 * 1024
# Messages waiting for a peer that does not read, or has not joined yet, are capped at this many
# characters. Past the cap the pair is closed, so memory stays bounded.
MAX_PENDING_CHARS = 16 * 1024 * 1024
CLOSE_NORMAL = sockjs.CLOSE_GO_AWAY
CLOSE_PEER_TOO_SLOW = (3001, "Peer does not read its messages")

Rejection = Callable[[web.Request], "web.StreamResponse | None"]
SessionHook = Callable[[web.Request, "RelayEndpoint"], Any]


class RelayEndpoint:
    """One SockJS session of a joined pair; ``receive`` and ``connection_lost`` are what the transports call.

    Messages received before the peer joins wait in a backlog. A frame from
    the peer is sent at once when nothing else is being sent. Otherwise its
    messages wait in an outbox, which one task per endpoint sends in order,
    several messages per frame.
    """

    def __init__(self, transport: Any, *, role: str):
        self.transport = transport
        self.role = role
        self.id = new_connection_id(f"{role}-")
        self.peer: RelayEndpoint | None = None
        self.closed = False
        self.on_close: list[Callable[["RelayEndpoint"], Any]] = []
        self._backlog: list[str] = []
        self._backlog_chars = 0
        self._outbox: list[str] = []
        self._outbox_chars = 0
        self._wake = asyncio.Event()
        # Held while a frame is being sent, by the pump or by a peer's forward().
        self._send_lock = asyncio.Lock()
        self._close_frame: tuple[int, str] | None = None
        self._closing_transport = False
        self._pump_task = asyncio.get_running_loop().create_task(self._pump())

    @property
    def remote_address(self) -> str:
        return self.transport.remote_address

    def describe(self) -> str:
        """Return the endpoint id, transport and peer address for log lines."""
        return f"{self.id} ({self.transport.kind} {self.remote_address})"

    # Incoming, from this endpoint's own transport

    def receive(self, text: str) -> None:
        if self.closed:
            return
        if self.peer is not None:
            self.peer.deliver(text)
            return
        self._backlog.append(text)
        self._backlog_chars += len(text)
        if self._backlog_chars > MAX_PENDING_CHARS:
            logger.warning("closing %s: %d characters arrived before its peer joined, the limit is %d",
                           self.describe(), self._backlog_chars, MAX_PENDING_CHARS)
            self.close(*CLOSE_PEER_TOO_SLOW)

    async def forward(self, messages: list[str]) -> None:
        """Pass messages of one received frame to the peer, sending them at once when the peer is idle.

        Sending in the reader's task saves a task switch per frame, and a
        peer that reads slowly slows the reader instead of growing a queue.
        """
        peer = self.peer
        if self.closed or peer is None or not peer._idle():
            for text in messages:
                self.receive(text)
            return
        async with peer._send_lock:
            try:
                await peer.transport.send(messages)
            except (ConnectionError, RuntimeError) as exc:
                logger.info("sending to %s failed: %s", peer.describe(), exc)
                peer.close()

    def join(self, peer: "RelayEndpoint") -> None:
        """Pair this endpoint with ``peer`` and pass on what each received before."""
        self.peer = peer
        peer.peer = self
        for endpoint in (self, peer):
            backlog, endpoint._backlog, endpoint._backlog_chars = endpoint._backlog, [], 0
            for text in backlog:
                endpoint.peer.deliver(text)  # type: ignore[union-attr]
        for endpoint in (self, peer):
            if endpoint.closed:
                endpoint.peer.close()  # type: ignore[union-attr]

    # Outgoing, to this endpoint's transport

    def deliver(self, text: str) -> None:
        """Queue one message from the peer for sending on this endpoint's transport."""
        if self.closed or self._close_frame is not None:
            return
        self._outbox.append(text)
        self._outbox_chars += len(text)
        self._wake.set()
        if self._outbox_chars > MAX_PENDING_CHARS:
            logger.warning("closing %s: %d characters wait to be sent, the limit is %d",
                           self.describe(), self._outbox_chars, MAX_PENDING_CHARS)
            self._outbox.clear()
            self._outbox_chars = 0
            self.close(*CLOSE_PEER_TOO_SLOW)

    def _idle(self) -> bool:
        return not (self.closed or self._close_frame is not None or self._outbox or self._send_lock.locked())

    def close(self, code: int = CLOSE_NORMAL[0], reason: str = CLOSE_NORMAL[1]) -> None:
        """Send what is queued, then close the session with ``c[code, reason]``."""
        if self.closed or self._close_frame is not None:
            return
        self._close_frame = (code, reason)
        self._wake.set()

    def _take_batch(self) -> list[str]:
        count = 0
        size = 0
        for text in self._outbox:
            if count and size + len(text) > BATCH_CHARS:
                break
            count += 1
            size += len(text)
        batch = self._outbox[:count]
        del self._outbox[:count]
        self._outbox_chars -= size
        return batch

    async def _pump(self) -> None:
        error: BaseException | None = None
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._outbox:
                    async with self._send_lock:
                        await self.transport.send(self._take_batch())
                if self._close_frame is not None:
                    break
        except (ConnectionError, RuntimeError) as exc:
            error = exc
        self._closing_transport = True
        code, reason = self._close_frame or CLOSE_NORMAL
        try:
            # The lock lets a frame that a peer's forward() is sending finish before the close frame.
            async with self._send_lock:
                await self.transport.close(code, reason)
        except (ConnectionError, RuntimeError) as exc:
            logger.debug("closing %s failed: %s", self.describe(), exc)
        self.connection_lost(error)

    # End of the session

    def connection_lost(self, exc: BaseException | None) -> None:
        """Mark the session ended and close the peer after it sends what it has queued. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        if not self._closing_transport and self._pump_task is not asyncio.current_task():
            self._pump_task.cancel()
        if exc is not None:
            logger.info("relay session %s ended: %s", self.describe(), exc)
        else:
            logger.debug("relay session %s ended", self.describe())
        if self.peer is not None:
            self.peer.close()
        for hook in list(self.on_close):
            try:
                hook(self)
            except Exception:
                logger.exception("close hook failed for %s", self.describe())


class RelaySockJSServer(KiteServer):
    """SockJS routes whose sessions become RelayEndpoints instead of dnode Connections.

    ``reject(request)`` runs before a session opens and may return an HTTP
    error response, which then goes to the client instead. ``on_session(request, endpoint)`` runs for every new
    session. ``query_key`` names a query parameter that XHR clients may send
    with the session path appended to its value (``?kiteID=ID/123/abc/xhr``).
    Go's XHR client and ours build session URLs by appending to the whole
    base URL, so that is what they send for a base URL that has a query.
    """

    def __init__(self, kite: "Kite", *, role: str, reject: Rejection, on_session: SessionHook,
                 query_key: str = ""):
        # Set before KiteServer's constructor, which calls add_routes.
        self.role = role
        self.reject = reject
        self.on_session = on_session
        self.query_key = query_key
        self.endpoints: set[RelayEndpoint] = set()
        super().__init__(kite)

    def add_routes(self, app: web.Application, prefix: str) -> None:
        super().add_routes(app, prefix)
        # KiteServer's constructor also mounts /kite on its own application, which stays unused, so
        # only mounts on other applications get the extra route.
        if app is not self.app and self.query_key:
            app.router.add_post(prefix.rstrip("/"), self.handle_query_path)

    def _track(self, endpoint: RelayEndpoint) -> None:
        self.endpoints.add(endpoint)
        endpoint.on_close.append(self.endpoints.discard)

    def close_all(self) -> None:
        """Close every open session, e.g. before the proxy stops.

        XHR sessions get their close frame through the held poll and expire
        after the disconnect delay, as on a kite.
        """
        for endpoint in list(self.endpoints):
            endpoint.close()

    # Sessions carried by one WebSocket

    async def _serve_websocket(self, request: web.Request, *, framed: bool) -> web.StreamResponse:
        rejection = self.reject(request)
        if rejection is not None:
            return rejection
        config = self.kite.config
        ws = web.WebSocketResponse(max_msg_size=config.max_message_size * 2 + 1024, compress=False, autoping=True)
        await ws.prepare(request)
        endpoint = RelayEndpoint(WebSocketTransport(ws, _peer(request), framed=framed), role=self.role)
        self._track(endpoint)

        await self.run_websocket_session(ws, framed=framed, deliver=endpoint.forward, describe=endpoint.describe,
                                         lost=endpoint.connection_lost,
                                         opened=lambda: self.on_session(request, endpoint))
        return ws

    # Sessions carried by XHR requests

    def _open_session(self, request: web.Request) -> tuple[XhrSession, bool]:
        session_id = request.match_info["session"]
        session = self.xhr_sessions.get(session_id)
        if session is not None:
            return session, False
        session = XhrSession(self, session_id, _peer(request))
        endpoint = RelayEndpoint(session, role=self.role)
        session.connection = endpoint  # type: ignore[assignment]
        self.xhr_sessions[session_id] = session
        self._track(endpoint)
        self.on_session(request, endpoint)
        return session, True

    def _reject_new_session(self, request: web.Request) -> web.StreamResponse | None:
        if request.match_info["session"] in self.xhr_sessions:
            return None
        return self.reject(request)

    async def handle_xhr_poll(self, request: web.Request) -> web.Response:
        rejection = self._reject_new_session(request)
        if rejection is not None:
            return rejection  # type: ignore[return-value]
        return await super().handle_xhr_poll(request)

    async def handle_xhr_streaming(self, request: web.Request) -> web.StreamResponse:
        rejection = self._reject_new_session(request)
        if rejection is not None:
            return rejection
        return await super().handle_xhr_streaming(request)

    # Session paths appended to the query

    def split_query_path(self, request: web.Request) -> str | None:
        """Return the transport named after the query value's first ``/`` and fill in the session ids.

        Returns None when the value has no path part, so the request is an
        ordinary one.
        """
        if not self.query_key:
            return None
        value = request.query.get(self.query_key, "")
        parts = value.split("/")
        if len(parts) == 1:
            return None
        if parts[1:] == ["info"]:
            return "info"
        if len(parts) != 4 or not parts[1] or not parts[2]:
            return ""
        request.match_info["server"] = parts[1]
        request.match_info["session"] = parts[2]
        return parts[3]

    async def handle_query_path(self, request: web.Request) -> web.StreamResponse:
        transport = self.split_query_path(request)
        handlers: dict[tuple[str, str | None], Callable[[web.Request], Any]] = {
            ("POST", "xhr"): self.handle_xhr_poll,
            ("POST", "xhr_send"): self.handle_xhr_send,
            ("POST", "xhr_streaming"): self.handle_xhr_streaming,
            ("GET", "websocket"): self.handle_sockjs_websocket,
            ("GET", "info"): self.handle_info,
        }
        handler = handlers.get((request.method, transport))
        if handler is None:
            return web.Response(status=404, text=f"unknown SockJS path in the {self.query_key} query parameter: "
                                                 f"{request.query.get(self.query_key, '')!r:.120}\n")
        return await handler(request)

    async def handle_root(self, request: web.Request) -> web.StreamResponse:
        if self.split_query_path(request) is not None:
            return await self.handle_query_path(request)
        return await super().handle_root(request)
