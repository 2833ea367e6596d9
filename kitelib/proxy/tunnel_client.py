"""The private kite's side of a tunnel: dialing the URL a tunnel proxy sends with ``kite.tunnel``.

The tunnel proxy serves ``/tunnel/<server>/<session>/websocket?token=<jwt>``
as a SockJS endpoint, so the private kite dials it as a SockJS client: it
waits for ``o``, reads ``a[...]`` frames and sends JSON arrays of message
strings. The messages on that session come from an outside client, so the
kite serves the session as an accepted connection (``dialed=False``): its
methods authenticate callers as on any incoming connection. The Go kite
trusts requests that arrive through a tunnel; this kite does not.

:class:`TunnelBridge` is the variant for a kite in another process: each
tunnel is joined to a new SockJS session on that kite's URL.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ..connection import Connection
from ..protocol import sockjs
from ..protocol.errors import ArgumentError, GenericError
from ..transport.client import WebSocketClientTransport, _read_websocket, sockjs_session_path, websocket_url

if TYPE_CHECKING:
    from ..kite import Kite
    from ..method import Request

logger = logging.getLogger(__name__)


def redact_url(url: str) -> str:
    """Return ``url`` without its query string, which holds the tunnel token."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def tunnel_url_argument(request: "Request") -> str:
    """Return the ``url`` of ``kite.tunnel``'s ``[{"url": "ws://..."}]`` argument, or raise ArgumentError."""
    args = request.args
    if len(args) != 1 or not isinstance(args[0], dict) or not isinstance(args[0].get("url"), str):
        raise ArgumentError(f'kite.tunnel takes [{{"url": "ws://..."}}], got {len(args)} argument(s)')
    url = args[0]["url"]
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ArgumentError(f"invalid tunnel URL {redact_url(url)!r:.200}: use a ws:// or wss:// URL with a host")
    return url


def check_tunnel_caller(request: "Request") -> None:
    """Reject ``kite.tunnel`` unless it came on a connection this kite dialed.

    A tunnel proxy calls it on the link the kite opened to register, so a
    caller on an accepted connection is never a tunnel proxy of this kite and
    must not make it dial an arbitrary URL.
    """
    if not request.connection.dialed:
        raise GenericError("kite.tunnel is accepted only from a tunnel proxy this kite registered with")


async def dial_sockjs_url(url: str, *, handshake_timeout: float, max_message_size: int | None,
                          ssl: Any = None) -> Any:
    """Open a WebSocket to a full SockJS session URL and wait for the open frame; return the websocket.

    Raises ConnectionError naming the URL without its query.
    """
    import websockets
    from websockets.exceptions import InvalidStatus

    shown = redact_url(url)
    parts = urlsplit(url)
    # The Go kite sends the Origin of the tunnel host as http.
    origin = f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"
    options: dict[str, Any] = {"ssl": ssl} if ssl is not None and parts.scheme == "wss" else {}
    try:
        ws = await websockets.connect(url, compression=None, max_size=max_message_size, open_timeout=handshake_timeout,
                                      origin=origin, ping_interval=None, **options)  # type: ignore[arg-type]
    except InvalidStatus as exc:
        body = exc.response.body.decode(errors="replace").strip() if exc.response.body else ""
        detail = f": {body[:200]}" if body else ""
        raise ConnectionError(f"{shown} rejected the WebSocket upgrade with HTTP {exc.response.status_code}{detail}") from None
    except asyncio.TimeoutError:
        raise ConnectionError(f"timed out after {handshake_timeout:g}s opening a WebSocket to {shown}") from None
    except OSError as exc:
        raise ConnectionError(f"cannot connect to {shown}: {exc.strerror or exc}") from None
    try:
        first = await asyncio.wait_for(ws.recv(), handshake_timeout)
        frame = sockjs.decode_server_frame(first if isinstance(first, str) else first.decode())
    except Exception as exc:
        await ws.close()
        raise ConnectionError(f"no SockJS open frame from {shown}: {exc}") from None
    if frame.kind != "open":
        await ws.close()
        raise ConnectionError(f"expected the SockJS open frame 'o' from {shown}, got a {frame.kind} frame")
    return ws


async def open_tunnel(kite: "Kite", url: str) -> Connection:
    """Dial a tunnel URL and serve the session on ``kite`` as an accepted connection."""
    config = kite.config
    ws = await dial_sockjs_url(url, handshake_timeout=config.handshake_timeout,
                               max_message_size=config.max_message_size)
    transport = WebSocketClientTransport(ws, redact_url(url), framed=True)
    transport.kind = "tunnel"
    connection = Connection(kite, transport, dialed=False)
    kite.connection_made(connection)
    connection.reader_task = asyncio.get_running_loop().create_task(_read_websocket(ws, connection, True))
    logger.info("opened tunnel %s to %s", connection.id, transport.remote_address)
    return connection


async def handle_tunnel(request: "Request") -> None:
    """Serve ``kite.tunnel``: dial the URL and serve it; errors go back to the tunnel proxy."""
    check_tunnel_caller(request)
    url = tunnel_url_argument(request)
    try:
        await open_tunnel(request.local_kite, url)
    except ConnectionError as exc:
        logger.warning("kite.tunnel failed: %s", exc)
        raise GenericError(f"cannot open the tunnel: {exc}") from None
    return None


class TunnelBridge:
    """Serves ``kite.tunnel`` on ``kite`` for the kite at ``local_url``, which may live in another process.

    For each tunnel it opens a new SockJS WebSocket session on ``local_url``
    and passes messages both ways until either side closes. The local kite
    sees an ordinary incoming session and authenticates the outside caller's
    requests itself.
    """

    def __init__(self, kite: "Kite", local_url: str):
        self.kite = kite
        self.local_url = local_url
        self.tasks: set[asyncio.Task[None]] = set()
        kite.handle("kite.tunnel", self.handle_tunnel, spread_args=False)

    async def handle_tunnel(self, request: "Request") -> None:
        check_tunnel_caller(request)
        url = tunnel_url_argument(request)
        config = self.kite.config
        local = websocket_url(self.local_url, sockjs_session_path() + "/websocket")
        try:
            local_ws = await dial_sockjs_url(local, handshake_timeout=config.handshake_timeout, max_message_size=None)
        except ConnectionError as exc:
            logger.warning("cannot reach the local kite for a tunnel: %s", exc)
            raise GenericError(f"cannot reach the exposed kite: {exc}") from None
        try:
            tunnel_ws = await dial_sockjs_url(url, handshake_timeout=config.handshake_timeout, max_message_size=None)
        except ConnectionError as exc:
            await local_ws.close()
            logger.warning("kite.tunnel failed: %s", exc)
            raise GenericError(f"cannot open the tunnel: {exc}") from None
        task = asyncio.get_running_loop().create_task(self._join(tunnel_ws, local_ws, redact_url(url)))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return None

    async def _join(self, tunnel_ws: Any, local_ws: Any, shown: str) -> None:
        logger.info("bridging tunnel %s to %s", shown, self.local_url)
        pumps = [asyncio.ensure_future(_pump_frames(tunnel_ws, local_ws)),
                 asyncio.ensure_future(_pump_frames(local_ws, tunnel_ws))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(tunnel_ws.close(), local_ws.close(), return_exceptions=True)
            logger.info("tunnel %s closed", shown)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _pump_frames(source: Any, sink: Any) -> None:
    """Pass the messages of SockJS server frames from ``source`` to ``sink`` as client frames."""
    from websockets.exceptions import ConnectionClosed

    try:
        async for raw in source:
            try:
                frame = sockjs.decode_server_frame(raw if isinstance(raw, str) else raw.decode())
            except sockjs.FrameError as exc:
                logger.warning("dropped a bridged frame: %s", exc)
                continue
            if frame.kind == "messages":
                await sink.send(sockjs.encode_client_messages(frame.messages))
            elif frame.kind == "close":
                return
    except ConnectionClosed:
        return
