"""Client-side transports: SockJS over WebSocket, raw WebSocket, and SockJS XHR polling.

Each ``dial_*`` function opens the link, creates the Connection on it and
starts a reader task that feeds incoming messages to the Connection and
reports the end of the link.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ..connection import Connection
from ..protocol import sockjs

if TYPE_CHECKING:
    from ..kite import Kite

logger = logging.getLogger(__name__)


class HandshakeRejected(ConnectionError):
    """The server replied to the WebSocket upgrade with a status other than 101."""

    def __init__(self, url: str, status: int):
        super().__init__(f"WebSocket handshake to {url} was rejected with HTTP status {status}")
        self.status = status


def sockjs_session_path() -> str:
    """Return ``/<3-digit server id>/<20 hex session id>``, the form the Go client uses."""
    return f"/{random.randint(100, 999)}/{secrets.token_hex(10)}"


def websocket_url(url: str, suffix: str = "") -> str:
    """Turn an http(s) or ws(s) URL into a ws(s) URL with ``suffix`` appended to its path."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None:
        raise ValueError(f"invalid kite URL {url!r}: use http://, https://, ws:// or wss://")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + suffix, parts.query, ""))


def http_url(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"http": "http", "https": "https", "ws": "http", "wss": "https"}.get(parts.scheme)
    if scheme is None:
        raise ValueError(f"invalid kite URL {url!r}: use http://, https://, ws:// or wss://")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), parts.query, ""))


class WebSocketClientTransport:
    # Calls issued in one event loop turn go out in one SockJS frame: each frame costs the
    # websockets library far more than the JSON inside it.
    gather_sends = True

    def __init__(self, ws: Any, url: str, *, framed: bool):
        from websockets.exceptions import ConnectionClosed

        self.ws = ws
        self.framed = framed
        # Raw WebSockets carry one message per frame, so there is nothing to gather.
        self.gather_sends = framed
        self._connection_closed = ConnectionClosed
        self.kind = "sockjs-websocket" if framed else "raw-websocket"
        self.remote_address = url

    async def send(self, messages: list[str]) -> None:
        try:
            if self.framed:
                await self.ws.send(sockjs.encode_client_messages(messages))
            else:
                for message in messages:
                    await self.ws.send(message)
        except self._connection_closed as exc:
            raise ConnectionError(f"websocket closed: {exc}") from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.ws.close()


async def dial_websocket(kite: "Kite", url: str, *, framed: bool, handshake_timeout: float,
                         max_message_size: int, ssl: Any = None) -> Connection:
    """Open a WebSocket to a kite and return the Connection on it.

    With ``framed`` the URL is a SockJS base (``http://host:port/kite``) and a
    fresh session path is added; without, the URL is dialed as it is.
    """
    import websockets
    from websockets.exceptions import InvalidStatus

    target = websocket_url(url, sockjs_session_path() + "/websocket" if framed else "")
    parts = urlsplit(url)
    origin = f"{'https' if parts.scheme in ('https', 'wss') else 'http'}://{parts.netloc}"
    options: dict[str, Any] = {}
    if ssl is not None and target.startswith("wss:"):
        options["ssl"] = ssl
    try:
        ws = await websockets.connect(target, compression=None, max_size=max_message_size,
                                      open_timeout=handshake_timeout, origin=origin,  # type: ignore[arg-type]
                                      ping_interval=None, **options)
    except InvalidStatus as exc:
        raise HandshakeRejected(target, exc.response.status_code) from None
    except asyncio.TimeoutError:
        raise ConnectionError(f"timed out after {handshake_timeout:g}s opening a WebSocket to {target}") from None
    except OSError as exc:
        raise ConnectionError(f"cannot connect to {target}: {exc.strerror or exc}") from None

    transport = WebSocketClientTransport(ws, target, framed=framed)
    connection = Connection(kite, transport, dialed=True)
    if framed:
        try:
            first = await asyncio.wait_for(ws.recv(), handshake_timeout)
        except Exception as exc:
            await ws.close()
            raise ConnectionError(f"no SockJS open frame from {target}: {exc}") from None
        frame = sockjs.decode_server_frame(first if isinstance(first, str) else first.decode())
        if frame.kind != "open":
            await ws.close()
            raise ConnectionError(f"expected the SockJS open frame 'o' from {target}, got {first!r:.80}")
    connection.reader_task = asyncio.get_running_loop().create_task(
        _read_websocket(ws, connection, framed))
    return connection


async def _read_websocket(ws: Any, connection: Connection, framed: bool) -> None:
    from websockets.exceptions import ConnectionClosed

    reason: BaseException | None = None
    try:
        async for raw in ws:
            text = raw if isinstance(raw, str) else raw.decode()
            if not framed:
                connection.receive(text)
                continue
            try:
                frame = sockjs.decode_server_frame(text)
            except sockjs.FrameError as exc:
                logger.warning("dropped a frame from %s: %s", connection.describe(), exc)
                continue
            if frame.kind == "messages":
                for message in frame.messages:
                    connection.receive(message)
            elif frame.kind == "close":
                reason = ConnectionError(f"server closed the session: {frame.code} {frame.reason}")
                break
    except ConnectionClosed as exc:
        reason = exc if exc.rcvd is None or exc.rcvd.code not in (1000, 1001) else None
    except Exception as exc:  # a bug in a callback must not leave the connection half-open
        logger.exception("reader of %s failed", connection.describe())
        reason = exc
    finally:
        await ws.close()
        connection.connection_lost(reason)


class XhrClientTransport:
    """SockJS XHR polling: polls with ``POST .../xhr``, sends with ``POST .../xhr_send``."""

    kind = "xhr-polling"
    # Every send is an HTTP request, so gathering the calls of one event loop turn saves requests.
    gather_sends = True

    def __init__(self, http: Any, session_url: str, query: str = ""):
        self.http = http
        self.session_url = session_url
        self.query = query
        self.remote_address = session_url
        self._send_lock = asyncio.Lock()
        self.closed = False
        self.reader: asyncio.Task[None] | None = None

    def endpoint(self, name: str) -> str:
        """Return the URL of one SockJS endpoint; the base URL's query string goes after the path."""
        return f"{self.session_url}/{name}" + (f"?{self.query}" if self.query else "")

    async def send(self, messages: list[str]) -> None:
        import httpx

        if self.closed:
            raise ConnectionError("xhr session is closed")
        # One send at a time keeps messages in order across separate HTTP requests.
        async with self._send_lock:
            try:
                response = await self.http.post(self.endpoint("xhr_send"),
                                                content=sockjs.encode_client_messages(messages),
                                                headers={"Content-Type": "text/plain"})
            except httpx.HTTPError as exc:
                raise ConnectionError(f"xhr_send to {self.session_url} failed: {exc}") from None
        if response.status_code == 404:
            raise ConnectionError(f"xhr session {self.session_url} no longer exists on the server")
        if response.status_code not in (200, 204):
            raise ConnectionError(f"xhr_send to {self.session_url} returned HTTP {response.status_code}")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = True
        # Cancelling the held poll closes its socket, so the server notices the client left.
        if self.reader is not None and self.reader is not asyncio.current_task():
            self.reader.cancel()
            try:
                await self.reader
            except asyncio.CancelledError:
                pass
        await self.http.aclose()


async def dial_xhr(kite: "Kite", url: str, *, timeout: float, poll_timeout: float, ssl: Any = None) -> Connection:
    """Open a SockJS XHR polling session on a kite and return the Connection on it."""
    import httpx

    base = urlsplit(http_url(url))
    session_url = urlunsplit((base.scheme, base.netloc, base.path + sockjs_session_path(), "", ""))
    http = httpx.AsyncClient(timeout=httpx.Timeout(timeout, read=poll_timeout),
                             verify=ssl if ssl is not None else True)
    try:
        opening = session_url + "/xhr" + (f"?{base.query}" if base.query else "")
        response = await http.post(opening, headers={"Content-Type": "text/plain"})
    except httpx.HTTPError as exc:
        await http.aclose()
        raise ConnectionError(f"cannot open an xhr session at {session_url}: {exc}") from None
    if response.status_code != 200 or not response.text.startswith("o"):
        await http.aclose()
        raise ConnectionError(
            f"cannot open an xhr session at {session_url}: HTTP {response.status_code} {response.text[:80]!r}")
    transport = XhrClientTransport(http, session_url, base.query)
    connection = Connection(kite, transport, dialed=True)
    connection.reader_task = transport.reader = asyncio.get_running_loop().create_task(
        _poll_xhr(transport, connection))
    return connection


async def _poll_xhr(transport: XhrClientTransport, connection: Connection) -> None:
    import httpx

    reason: BaseException | None = None
    try:
        while not transport.closed:
            try:
                response = await transport.http.post(transport.endpoint("xhr"),
                                                     headers={"Content-Type": "text/plain"})
            except httpx.ReadTimeout:
                continue  # the Go client polls again when a poll times out on an open session
            if response.status_code != 200:
                reason = ConnectionError(f"xhr poll returned HTTP {response.status_code}")
                break
            text = response.text
            if not text:
                reason = ConnectionError("server ended the xhr session")
                break
            frame = sockjs.decode_server_frame(text)
            if frame.kind == "messages":
                for message in frame.messages:
                    connection.receive(message)
            elif frame.kind == "close":
                reason = ConnectionError(f"server closed the session: {frame.code} {frame.reason}")
                break
    except httpx.HTTPError as exc:
        if not transport.closed:
            reason = ConnectionError(f"xhr poll failed: {exc}")
    except sockjs.FrameError as exc:
        reason = exc
    finally:
        transport.closed = True
        await transport.http.aclose()
        connection.connection_lost(reason)
