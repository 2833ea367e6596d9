"""Every transport a kite serves, end to end over real sockets, plus the plain SockJS HTTP routes.

Some tests drive SockJS by hand (raw websockets, httpx) to behave exactly like
a Go client: sending before the open frame, re-polling while a poll is still
attached, or abandoning a poll.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
import websockets

from kitelib import Client, Kite
from server_support import (
    WAIT,
    SockJSWebSocket,
    decode_data_frame,
    reply_of,
    request_text,
    session_path,
    sockjs_frame,
    wait_until,
    ws_base,
)

Connect = Callable[..., Awaitable[Client]]


def server_connection_kinds(kite: Kite) -> list[str]:
    return sorted(connection.transport.kind for connection in kite.connections)


# Calls through our Client on each transport


async def test_sockjs_websocket_call(kite: Kite, connect: Connect) -> None:
    client = await connect(kite.url, transport="websocket")

    assert await client.tell("square", 4) == 16
    assert await client.tell("echo", "a", [1, 2], {"k": None}) == ["a", [1, 2], {"k": None}]
    assert client.connection is not None
    assert client.connection.transport.kind == "sockjs-websocket"
    assert server_connection_kinds(kite) == ["sockjs-websocket"]


@pytest.mark.parametrize("path", ["", "/websocket"])
async def test_raw_websocket_call(kite: Kite, connect: Connect, path: str) -> None:
    client = await connect(ws_base(kite) + path, transport="raw")

    assert await client.tell("square", 5) == 25
    assert await client.tell("echo", "x") == ["x"]
    assert server_connection_kinds(kite) == ["raw-websocket"]


async def test_xhr_polling_call(kite: Kite, connect: Connect) -> None:
    client = await connect(kite.url, transport="xhr")

    assert await client.tell("square", 6) == 36
    results = await asyncio.gather(*(client.tell("square", n) for n in range(20)))
    assert results == [n * n for n in range(20)]
    assert server_connection_kinds(kite) == ["xhr-polling"]


async def test_auto_transport_prefers_websocket(kite: Kite, connect: Connect) -> None:
    client = await connect(kite.url, transport="auto")

    assert await client.tell("square", 7) == 49
    assert client.connection is not None
    assert client.connection.transport.kind == "sockjs-websocket"


async def test_xhr_streaming_frames(kite: Kite, http: httpx.AsyncClient) -> None:
    session_url = kite.url + session_path()
    lines: asyncio.Queue[str] = asyncio.Queue()

    async def read_stream() -> None:
        async with http.stream("POST", session_url + "/xhr_streaming") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("application/javascript")
            buffer = b""
            async for chunk in response.aiter_bytes():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    await lines.put(line.decode())

    reader = asyncio.create_task(read_stream())
    try:
        prelude = await asyncio.wait_for(lines.get(), WAIT)
        assert prelude == "h" * 2048
        assert await asyncio.wait_for(lines.get(), WAIT) == "o"

        sent = await http.post(session_url + "/xhr_send", content=sockjs_frame(request_text("square", [9])))
        assert sent.status_code == 204

        frame = await asyncio.wait_for(lines.get(), WAIT)
        while frame == "h":
            frame = await asyncio.wait_for(lines.get(), WAIT)
        [message] = decode_data_frame(frame)
        assert message["method"] == 0
        assert reply_of(message) == {"error": None, "result": 81}
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


# Plain HTTP routes


async def test_info_shape_and_cors(kite: Kite, http: httpx.AsyncClient) -> None:
    response = await http.get(kite.url + "/info", headers={"Origin": "http://example.test"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    info = response.json()
    assert set(info) == {"websocket", "cookie_needed", "origins", "entropy"}
    assert info["websocket"] is True
    assert info["cookie_needed"] is False
    assert info["origins"] == ["*:*"]
    assert isinstance(info["entropy"], int)
    assert 0 <= info["entropy"] < 2**31
    assert response.headers["access-control-allow-origin"] == "http://example.test"
    assert response.headers["access-control-allow-credentials"] == "true"

    without_origin = await http.get(kite.url + "/info")
    assert without_origin.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize(
    ("suffix", "methods"),
    [("/info", "OPTIONS, GET"), ("/SESSION/xhr", "OPTIONS, POST"), ("/SESSION/xhr_send", "OPTIONS, POST"),
     ("/SESSION/xhr_streaming", "OPTIONS, POST")],
)
async def test_options_preflight(kite: Kite, http: httpx.AsyncClient, suffix: str, methods: str) -> None:
    url = kite.url + suffix.replace("/SESSION", session_path())
    headers = {"Origin": "http://example.test", "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "content-type"}

    response = await http.options(url, headers=headers)

    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["access-control-allow-methods"] == methods
    assert response.headers["access-control-allow-origin"] == "http://example.test"
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["access-control-allow-headers"] == "content-type"


@pytest.mark.parametrize("suffix", ["", "/"])
async def test_root_welcome(kite: Kite, http: httpx.AsyncClient, suffix: str) -> None:
    response = await http.get(kite.url + suffix)

    assert response.status_code == 200
    assert response.text == "Welcome to SockJS!\n"
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize("path", ["/nothing", "/kite/nothing/here/at/all", "/kite/123/abc/eventsource_x",
                                  "/kite/12.3/abc/xhr"])
async def test_unknown_path_404(kite: Kite, http: httpx.AsyncClient, path: str) -> None:
    base = kite.url.removesuffix("/kite")

    response = await http.post(base + path) if path.endswith("xhr") else await http.get(base + path)

    assert response.status_code == 404


async def test_wrong_method_405(kite: Kite, http: httpx.AsyncClient) -> None:
    response = await http.get(kite.url + session_path() + "/xhr")

    assert response.status_code == 405
    assert "POST" in response.headers["allow"]


# Go client behaviour


async def test_message_before_open_frame(sockjs_ws: Callable[..., Awaitable[SockJSWebSocket]]) -> None:
    socket = await sockjs_ws()

    # The Go client sends its first request without waiting for "o".
    await socket.send(request_text("square", [12]))

    assert await socket.recv_frame() == "o"
    [message] = decode_data_frame(await socket.recv_frame())
    assert message["method"] == 0
    assert reply_of(message) == {"error": None, "result": 144}


async def test_two_messages_in_one_frame(sockjs_ws: Callable[..., Awaitable[SockJSWebSocket]]) -> None:
    socket = await sockjs_ws()

    await socket.send(request_text("square", [2], callback_id=0), request_text("square", [3], callback_id=1))

    replies: dict[int, Any] = {}
    while len(replies) < 2:
        for message in await socket.recv_messages():
            replies[message["method"]] = reply_of(message)["result"]
    assert replies == {0: 4, 1: 9}


async def test_sockjs_websocket_heartbeat(make_kite: Callable[..., Awaitable[Kite]]) -> None:
    kite = await make_kite(heartbeat_delay=0.2)
    socket = await SockJSWebSocket.open(kite)
    try:
        assert await socket.recv_frame() == "o"
        assert await socket.recv_frame(timeout=2) == "h"
        assert await socket.recv_frame(timeout=2) == "h"
    finally:
        await socket.close()


async def test_xhr_poll_heartbeat(make_kite: Callable[..., Awaitable[Kite]], http: httpx.AsyncClient) -> None:
    kite = await make_kite(heartbeat_delay=0.2)
    session_url = kite.url + session_path()

    opened = await http.post(session_url + "/xhr")
    assert opened.text == "o\n"
    assert opened.headers["content-type"].startswith("application/javascript")

    poll = await http.post(session_url + "/xhr", timeout=2)
    assert poll.text == "h\n"


async def test_xhr_session_expires_without_poll(make_kite: Callable[..., Awaitable[Kite]],
                                                http: httpx.AsyncClient) -> None:
    kite = await make_kite(disconnect_delay=0.3)
    disconnected = asyncio.Event()
    seen: list[Any] = []

    @kite.on_disconnect
    def record(connection: Any) -> None:
        seen.append(connection)
        disconnected.set()

    session_url = kite.url + session_path()
    assert (await http.post(session_url + "/xhr")).text == "o\n"
    sent = await http.post(session_url + "/xhr_send", content=sockjs_frame(request_text("square", [3])))
    assert sent.status_code == 204

    await asyncio.wait_for(disconnected.wait(), WAIT)
    [connection] = seen
    assert connection.transport.kind == "xhr-polling"
    assert connection.remote_identity is not None
    assert connection.remote_identity.name == "rawclient"
    assert connection not in kite.connections

    late = await http.post(session_url + "/xhr_send", content=sockjs_frame(request_text("square", [4])))
    assert late.status_code == 404


async def test_xhr_session_gets_close_frame(kite: Kite, http: httpx.AsyncClient) -> None:
    session_url = kite.url + session_path()
    assert (await http.post(session_url + "/xhr")).text == "o\n"
    [connection] = kite.connections

    await connection.close()

    poll = await http.post(session_url + "/xhr")
    assert poll.text == 'c[3000,"Go away!"]\n'


async def test_sockjs_websocket_gets_close_frame(kite: Kite,
                                                 sockjs_ws: Callable[..., Awaitable[SockJSWebSocket]]) -> None:
    socket = await sockjs_ws()
    assert await socket.recv_frame() == "o"
    await wait_until(lambda: len(kite.connections) == 1, what="the server to accept the websocket")
    [connection] = kite.connections

    await connection.close()

    assert await socket.recv_frame() == 'c[3000,"Go away!"]'
    with pytest.raises(websockets.ConnectionClosed):
        await socket.recv_frame()


def count_replies(frames: list[str], callback_id: int) -> int:
    count = 0
    for frame in frames:
        frame = frame.rstrip("\n")
        if frame.startswith("a"):
            count += sum(1 for message in decode_data_frame(frame) if message["method"] == callback_id)
    return count


async def poll_until_reply(http: httpx.AsyncClient, session_url: str, frames: list[str], callback_id: int,
                           max_polls: int = 5) -> None:
    """Poll until the reply on ``callback_id`` is among ``frames``, then once more to catch a duplicate."""
    for _ in range(max_polls):
        if count_replies(frames, callback_id):
            break
        frames.append((await http.post(session_url + "/xhr")).text)
    frames.append((await http.post(session_url + "/xhr")).text)


@pytest.mark.parametrize("reply_after_second_poll", [False, True], ids=["reply-early", "reply-late"])
async def test_xhr_second_poll_keeps_reply(make_kite: Callable[..., Awaitable[Kite]], http: httpx.AsyncClient,
                                           reply_after_second_poll: bool) -> None:
    # A Go client sometimes polls again while its previous poll is still attached.
    kite = await make_kite(heartbeat_delay=0.3)
    release = asyncio.Event()
    if not reply_after_second_poll:
        release.set()

    @kite.handle("gated")
    async def gated(request: Any) -> str:
        await release.wait()
        return "done"

    session_id = session_path()
    session_url = kite.url + session_id
    assert (await http.post(session_url + "/xhr")).text == "o\n"
    session = kite._server.xhr_sessions[session_id.rsplit("/", 1)[1]]

    poll_a = asyncio.create_task(http.post(session_url + "/xhr"))
    await wait_until(lambda: session.polls_attached == 1, what="poll A to attach")
    generation_a = session.poll_generation

    sent = await http.post(session_url + "/xhr_send", content=sockjs_frame(request_text("gated")))
    assert sent.status_code == 204
    poll_b = asyncio.create_task(http.post(session_url + "/xhr"))
    if reply_after_second_poll:
        await wait_until(lambda: session.poll_generation > generation_a, what="poll B to attach")
        release.set()

    frames = [(await poll_a).text, (await poll_b).text]
    await poll_until_reply(http, session_url, frames, callback_id=0)

    assert count_replies(frames, 0) == 1, frames
    assert not any(frame.startswith("c") for frame in frames), frames
    assert session.connection is not None
    assert not session.connection.closed


def open_sockets(server: Any) -> int:
    # aiohttp drops a closed connection from server.connections only when its handler returns,
    # but clears the handler's transport as soon as the socket closes.
    return sum(1 for handler in server.connections if handler.transport is not None)


async def test_xhr_abandoned_poll_keeps_reply(make_kite: Callable[..., Awaitable[Kite]]) -> None:
    # A client whose poll timed out drops that HTTP request and polls again.
    kite = await make_kite(heartbeat_delay=1.0)
    release = asyncio.Event()

    @kite.handle("gated")
    async def gated(request: Any) -> str:
        await release.wait()
        return "done"

    session_id = session_path()
    session_url = kite.url + session_id
    async with httpx.AsyncClient(timeout=WAIT) as http, httpx.AsyncClient(timeout=WAIT) as abandoning:
        assert (await http.post(session_url + "/xhr")).text == "o\n"
        session = kite._server.xhr_sessions[session_id.rsplit("/", 1)[1]]
        server = kite._server.runner.server
        sent = await http.post(session_url + "/xhr_send", content=sockjs_frame(request_text("gated")))
        assert sent.status_code == 204

        poll_a = asyncio.create_task(abandoning.post(session_url + "/xhr"))
        await wait_until(lambda: session.polls_attached == 1, what="poll A to attach")
        open_before = open_sockets(server)
        poll_a.cancel()
        await asyncio.gather(poll_a, return_exceptions=True)
        await abandoning.aclose()
        await wait_until(lambda: open_sockets(server) < open_before, what="the server to see poll A's socket close")

        release.set()
        frames: list[str] = []
        await poll_until_reply(http, session_url, frames, callback_id=0)

    assert count_replies(frames, 0) == 1, frames
    data = [frame for frame in frames if frame.startswith("a")]
    assert reply_of(decode_data_frame(data[0].rstrip("\n"))[0]) == {"error": None, "result": "done"}


async def test_xhr_send_unknown_session_404(kite: Kite, http: httpx.AsyncClient) -> None:
    response = await http.post(kite.url + session_path() + "/xhr_send", content=sockjs_frame(request_text("square", [1])))

    assert response.status_code == 404


async def test_raw_websocket_by_hand(kite: Kite) -> None:
    # kite.js sends one dnode message per text frame with no SockJS framing.
    async with websockets.connect(ws_base(kite), compression=None, open_timeout=WAIT) as ws:
        await ws.send(request_text("square", [11], callback_id=5))
        message = orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))

    assert message["method"] == 5
    assert reply_of(message) == {"error": None, "result": 121}
