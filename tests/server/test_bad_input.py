"""Bad input from a peer: each case gets a clear error, and the kite keeps serving its other clients.

Every test that misbehaves on one connection checks afterwards, through the
``bystander`` client connected at the same time, that the kite still replies.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
import websockets

from kitelib import (
    ArgumentError,
    Client,
    DisconnectError,
    GenericError,
    Kite,
    KiteError,
    MethodNotFoundError,
    TimeoutError,
)
from server_support import (
    WAIT,
    SockJSWebSocket,
    assert_still_serving,
    caller_identity,
    decode_data_frame,
    reply_of,
    request_text,
    session_path,
    sockjs_frame,
    wait_until,
    ws_base,
)

Connect = Callable[..., Awaitable[Client]]
OpenSocket = Callable[..., Awaitable[SockJSWebSocket]]
REQUEST_ID = re.compile(r"^[0-9a-f]{16}$")
LARGE = 100 * 1024


def logged(caplog: pytest.LogCaptureFixture, *fragments: str) -> list[logging.LogRecord]:
    """Return the kitelib records whose message contains every fragment."""
    return [record for record in caplog.records
            if record.name.startswith("kitelib") and all(fragment in record.getMessage() for fragment in fragments)]


async def wait_for_log(caplog: pytest.LogCaptureFixture, *fragments: str) -> logging.LogRecord:
    """Wait until a kitelib record with every fragment is logged, and return it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not logged(caplog, *fragments):
        if loop.time() > deadline:
            messages = [record.getMessage() for record in caplog.records]
            raise AssertionError(f"no log record containing {fragments!r}; logged: {messages!r}")
        await asyncio.sleep(0.005)
    return logged(caplog, *fragments)[0]


async def assert_next_reply(socket: SockJSWebSocket, callback_id: int, result: Any) -> None:
    """Fail unless the next data frame on ``socket`` is exactly the reply on ``callback_id``."""
    [message] = await socket.recv_messages()
    assert message["method"] == callback_id
    assert reply_of(message) == {"error": None, "result": result}


# Frames that are not SockJS or not dnode


@pytest.mark.parametrize("text", ["not json", "[\"unterminated", "[" * 100_000, ""],
                         ids=["words", "unterminated", "deep-nesting", "empty"])
async def test_non_json_sockjs_frame(kite: Kite, bystander: Client, sockjs_ws: OpenSocket,
                                     caplog: pytest.LogCaptureFixture, text: str) -> None:
    caplog.set_level(logging.WARNING, logger="kitelib")
    socket = await sockjs_ws()

    await socket.ws.send(text)

    await wait_for_log(caplog, "dropped a frame", "not valid JSON")
    await assert_still_serving(bystander)


@pytest.mark.parametrize("text", ["not json", "{\"method\":", "[1,2]"], ids=["words", "truncated", "array"])
async def test_non_json_raw_websocket(kite: Kite, bystander: Client, caplog: pytest.LogCaptureFixture,
                                      text: str) -> None:
    caplog.set_level(logging.WARNING, logger="kitelib")
    async with websockets.connect(ws_base(kite), compression=None, open_timeout=WAIT) as ws:
        await ws.send(text)

        await wait_for_log(caplog, "dropped invalid message")

        # The raw connection stays usable, so the log line is the whole error.
        await ws.send(request_text("square", [4]))
        message = orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))
        assert reply_of(message) == {"error": None, "result": 16}
    await assert_still_serving(bystander)


@pytest.mark.parametrize(("frame", "complaint"), [
    ("[1, 2]", "must hold only strings"),
    ("[[\"nested\"]]", "must hold only strings"),
    ("{\"method\": \"square\"}", "must be a JSON array of strings"),
    ("42", "must be a JSON array of strings"),
    ("null", "must be a JSON array of strings"),
])
async def test_sockjs_frame_not_string_array(kite: Kite, bystander: Client, sockjs_ws: OpenSocket,
                                             caplog: pytest.LogCaptureFixture, frame: str, complaint: str) -> None:
    caplog.set_level(logging.WARNING, logger="kitelib")
    socket = await sockjs_ws()

    await socket.ws.send(frame)

    await wait_for_log(caplog, "dropped a frame", complaint)
    await assert_still_serving(bystander)


def message_text(**fields: Any) -> str:
    return orjson.dumps(fields).decode()


@pytest.mark.parametrize(("text", "field"), [
    (message_text(method=["square"], arguments=[], callbacks={}), "'method'"),
    (message_text(method=True, arguments=[], callbacks={}), "'method'"),
    (message_text(method=None, arguments=[], callbacks={}), "'method'"),
    (message_text(method=-1, arguments=[], callbacks={}), "must not be negative"),
    (message_text(method="square", arguments=[{}], callbacks="0"), "'callbacks'"),
    (message_text(method="square", arguments=[{}], callbacks=[[0, "responseCallback"]]), "'callbacks'"),
    (message_text(method="square", arguments={"0": {}}, callbacks={}), "'arguments'"),
    (message_text(method="square", arguments=[{}], callbacks={"x": [0]}), "decimal integer"),
    (message_text(method="square", arguments=[{}], callbacks={"0": []}), "non-empty array"),
    (message_text(method="square", arguments=[{}], callbacks={"0": [0, "a", "b"]}), "does not match"),
    (message_text(method="square", arguments=[], callbacks={"0": [3]}), "does not match"),
    ("[1, 2, 3]", "must be a JSON object"),
], ids=["method-list", "method-bool", "method-null", "method-negative", "callbacks-string", "callbacks-list",
        "arguments-object", "callback-id-text", "callback-path-empty", "callback-path-deep", "callback-path-index",
        "message-array"])
async def test_dnode_field_types(kite: Kite, bystander: Client, sockjs_ws: OpenSocket,
                                 caplog: pytest.LogCaptureFixture, text: str, field: str) -> None:
    caplog.set_level(logging.WARNING, logger="kitelib")
    socket = await sockjs_ws()

    await socket.send(text)
    await socket.send(request_text("square", [5], callback_id=7))

    await wait_for_log(caplog, "dropped invalid message", field)
    # The bad message gets no reply, so the first reply is the good request's.
    await assert_next_reply(socket, 7, 25)
    await assert_still_serving(bystander)


@pytest.mark.parametrize("arguments", [
    [{"responseCallback": "[Function]", "kite": caller_identity(), "withArgs": [2]}, 5],
    [{"responseCallback": "[Function]"}, {"extra": True}],
    [{"responseCallback": "[Function]", "kite": "not an object", "withArgs": []}],
    [{"responseCallback": "[Function]", "kite": {"name": 7}, "withArgs": []}],
], ids=["two-arguments", "two-objects", "kite-string", "kite-field-number"])
async def test_malformed_options_with_callback(kite: Kite, bystander: Client, sockjs_ws: OpenSocket,
                                               arguments: list[Any]) -> None:
    socket = await sockjs_ws()

    await socket.send(message_text(method="square", arguments=arguments, callbacks={"3": [0, "responseCallback"]}))

    [message] = await socket.recv_messages()
    assert message["method"] == 3
    reply = reply_of(message)
    assert reply["result"] is None
    assert reply["error"]["type"] == "argumentError"
    assert reply["error"]["message"]
    assert set(reply["error"]) == {"type", "message", "code", "id"}
    await assert_still_serving(bystander)


async def test_malformed_options_string_path(kite: Kite, sockjs_ws: OpenSocket) -> None:
    # kite.js writes every path element as a string.
    socket = await sockjs_ws()

    await socket.send(message_text(method="square", arguments=[{"responseCallback": "[Function]"}, 1],
                                   callbacks={"0": ["0", "responseCallback"]}))

    [message] = await socket.recv_messages()
    assert reply_of(message)["error"]["type"] == "argumentError"


@pytest.mark.parametrize("arguments", [[1, 2, 3], [], ["square"], [{"withArgs": [2]}, 1]],
                         ids=["numbers", "empty", "string", "no-callback"])
async def test_malformed_options_without_callback(kite: Kite, bystander: Client, sockjs_ws: OpenSocket,
                                                  caplog: pytest.LogCaptureFixture, arguments: list[Any]) -> None:
    caplog.set_level(logging.WARNING, logger="kitelib")
    socket = await sockjs_ws()

    await socket.send(message_text(method="square", arguments=arguments, callbacks={}))
    await socket.send(request_text("square", [6], callback_id=1))

    await wait_for_log(caplog, "dropped request 'square'")
    await assert_next_reply(socket, 1, 36)
    await assert_still_serving(bystander)


# Errors a well-formed call can get


async def test_unknown_method(kite: Kite, bystander: Client, connect: Connect) -> None:
    client = await connect(kite.url)

    with pytest.raises(MethodNotFoundError) as caught:
        await client.tell("no.such.method", 1)

    assert caught.value.type == "methodNotFound"
    assert caught.value.message == "Method not found: no.such.method"
    assert caught.value.id == ""
    await assert_still_serving(bystander)


async def test_unknown_method_wire_shape(kite: Kite, sockjs_ws: OpenSocket) -> None:
    socket = await sockjs_ws()

    await socket.send(request_text("missing"))

    [message] = await socket.recv_messages()
    assert reply_of(message) == {
        "error": {"type": "methodNotFound", "message": "Method not found: missing", "code": "", "id": ""},
        "result": None,
    }


@pytest.mark.parametrize("is_async", [True, False], ids=["async", "sync"])
async def test_handler_raising(kite: Kite, bystander: Client, connect: Connect,
                               caplog: pytest.LogCaptureFixture, is_async: bool) -> None:
    caplog.set_level(logging.ERROR, logger="kitelib")

    def fail(request: Any) -> None:
        raise ValueError("disk is on fire")

    async def fail_async(request: Any) -> None:
        fail(request)

    kite.handle("fail", fail_async if is_async else fail)
    client = await connect(kite.url)

    with pytest.raises(GenericError) as caught:
        await client.tell("fail")

    error = caught.value
    assert error.type == "genericError"
    assert error.message == "disk is on fire"
    assert "Traceback" not in error.message
    assert REQUEST_ID.match(error.id), error.id
    [record] = logged(caplog, error.id)
    assert record.exc_info is not None
    assert record.exc_info[0] is ValueError
    assert "fail" in record.getMessage()
    await assert_still_serving(bystander)


async def test_handler_raising_kite_error(kite: Kite, connect: Connect) -> None:
    @kite.handle("custom")
    async def custom(request: Any) -> None:
        raise KiteError("quota used up", type="quotaError", code="Q1")

    client = await connect(kite.url)

    with pytest.raises(KiteError) as caught:
        await client.tell("custom")

    assert caught.value.type == "quotaError"
    assert caught.value.message == "quota used up"
    assert caught.value.code == "Q1"
    assert REQUEST_ID.match(caught.value.id), caught.value.id


@pytest.mark.parametrize(("args", "fragment"), [
    (["four"], "must be an integer, got string"),
    ([1.5], "must be an integer, got number"),
    ([True], "must be an integer, got boolean"),
    ([None], "must be an integer, got null"),
    ([[4]], "must be an integer, got array"),
    ([], "takes 1 argument ("),
    ([1, 2], "takes 1 argument ("),
])
async def test_wrong_argument_types(kite: Kite, bystander: Client, connect: Connect, args: list[Any],
                                    fragment: str) -> None:
    client = await connect(kite.url)

    with pytest.raises(ArgumentError) as caught:
        await client.tell("square", *args)

    assert caught.value.type == "argumentError"
    assert fragment in caught.value.message
    assert REQUEST_ID.match(caught.value.id), caught.value.id
    await assert_still_serving(bystander)


async def test_optional_and_typed_arguments(kite: Kite, connect: Connect) -> None:
    @kite.handle("describe")
    async def describe(request: Any, name: str, count: float, flags: dict, tags: list, note: str | None = None,
                       loud: bool = False) -> str:
        return f"{name}:{count}:{sorted(flags)}:{tags}:{note}:{loud}"

    client = await connect(kite.url)

    assert await client.tell("describe", "a", 2, {"x": 1}, [1]) == "a:2:['x']:[1]:None:False"
    assert await client.tell("describe", "a", 2.5, {}, [], None, True) == "a:2.5:[]:[]:None:True"
    with pytest.raises(ArgumentError, match="'flags' of describe must be an object"):
        await client.tell("describe", "a", 1, [], [])
    with pytest.raises(ArgumentError, match="'loud' of describe must be a boolean"):
        await client.tell("describe", "a", 1, {}, [], None, 1)
    with pytest.raises(ArgumentError, match="'count' of describe must be a number"):
        await client.tell("describe", "a", "1", {}, [])


# Size limits


@pytest.fixture
async def small_kite(make_kite: Callable[..., Awaitable[Kite]]) -> Kite:
    return await make_kite(name="small", max_message_size=64 * 1024)


@pytest.mark.parametrize("framed", [True, False], ids=["sockjs", "raw"])
async def test_oversized_websocket_message(small_kite: Kite, connect: Connect, framed: bool) -> None:
    bystander = await connect(small_kite.url)
    url = ws_base(small_kite) + (session_path() + "/websocket" if framed else "")
    payload = request_text("echo", ["x" * LARGE])
    if framed:
        payload = sockjs_frame(payload)

    async with websockets.connect(url, compression=None, open_timeout=WAIT, max_size=None) as ws:
        await ws.send(payload)
        with pytest.raises(websockets.ConnectionClosed) as caught:
            while True:
                await asyncio.wait_for(ws.recv(), WAIT)

    assert caught.value.rcvd is not None
    assert caught.value.rcvd.code == 1009
    await assert_still_serving(bystander)


async def test_oversized_call_from_client(small_kite: Kite, connect: Connect) -> None:
    bystander = await connect(small_kite.url)
    client = await connect(small_kite.url)

    with pytest.raises(DisconnectError):
        await client.tell("echo", "x" * LARGE)

    assert not client.connected
    await assert_still_serving(bystander)


async def test_message_under_limit_passes(small_kite: Kite, connect: Connect) -> None:
    client = await connect(small_kite.url)

    text = "y" * (48 * 1024)
    assert await client.tell("echo", text) == [text]


async def open_xhr_session(http: httpx.AsyncClient, kite: Kite) -> str:
    session_url = kite.url + session_path()
    opened = await http.post(session_url + "/xhr")
    assert opened.text == "o\n"
    return session_url


async def assert_xhr_session_works(http: httpx.AsyncClient, session_url: str, callback_id: int) -> None:
    sent = await http.post(session_url + "/xhr_send",
                           content=sockjs_frame(request_text("square", [8], callback_id=callback_id)))
    assert sent.status_code == 204
    frame = (await http.post(session_url + "/xhr")).text.rstrip("\n")
    while frame == "h":
        frame = (await http.post(session_url + "/xhr")).text.rstrip("\n")
    [message] = decode_data_frame(frame)
    assert message["method"] == callback_id
    assert reply_of(message) == {"error": None, "result": 64}


@pytest.mark.parametrize("message_size", [LARGE, 3 * LARGE], ids=["100KiB", "300KiB"])
async def test_oversized_xhr_send(small_kite: Kite, connect: Connect, http: httpx.AsyncClient,
                                  message_size: int) -> None:
    bystander = await connect(small_kite.url)
    session_url = await open_xhr_session(http, small_kite)

    response = await http.post(session_url + "/xhr_send",
                               content=sockjs_frame(request_text("echo", ["x" * message_size])))

    assert response.status_code == 413
    await assert_xhr_session_works(http, session_url, callback_id=1)
    await assert_still_serving(bystander)


@pytest.mark.parametrize(("body", "status", "text"), [
    (b"", 500, "Payload expected."),
    (b"[\"unterminated", 500, "Broken JSON encoding."),
    (b"{\"not\": \"an array\"}", 500, "Broken JSON encoding."),
    (b"[1, 2]", 500, "Broken JSON encoding."),
])
async def test_bad_xhr_send_body(kite: Kite, bystander: Client, http: httpx.AsyncClient, body: bytes, status: int,
                                 text: str) -> None:
    session_url = await open_xhr_session(http, kite)

    response = await http.post(session_url + "/xhr_send", content=body)

    assert response.status_code == status
    assert response.text == text
    await assert_xhr_session_works(http, session_url, callback_id=2)
    await assert_still_serving(bystander)


# Callbacks, disconnects and timeouts


async def test_unknown_callback_id(kite: Kite, bystander: Client, sockjs_ws: OpenSocket,
                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="kitelib")
    socket = await sockjs_ws()

    await socket.send(message_text(method=99, arguments=[{"error": None, "result": 1}], callbacks={}))
    await socket.send(request_text("square", [9], callback_id=4))

    await wait_for_log(caplog, "unknown callback id 99")
    await assert_next_reply(socket, 4, 81)
    await assert_still_serving(bystander)


@pytest.mark.parametrize("transport", ["websocket", "xhr", "raw"])
async def test_server_drops_connection_mid_call(kite: Kite, bystander: Client, connect: Connect,
                                                transport: str) -> None:
    all_started = asyncio.Event()
    cancelled: list[str] = []
    server_side: list[Any] = []

    @kite.handle("forever")
    async def forever(request: Any) -> None:
        server_side.append(request.connection)
        if len(server_side) == 3:
            all_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(request.id)
            raise

    url = ws_base(kite) if transport == "raw" else kite.url
    client = await connect(url, transport=transport)
    disconnected = asyncio.Event()
    client.on_disconnect(lambda _: disconnected.set())
    calls = [asyncio.create_task(client.tell("forever", timeout=WAIT)) for _ in range(3)]
    await asyncio.wait_for(all_started.wait(), WAIT)

    await server_side[0].close()

    for call in calls:
        with pytest.raises(DisconnectError) as caught:
            await call
        assert caught.value.message == "Remote kite has disconnected"
    await asyncio.wait_for(disconnected.wait(), WAIT)
    # The server cancels the handlers of calls whose connection is gone.
    await wait_until(lambda: len(cancelled) == 3, what="the three handlers to be cancelled")
    await assert_still_serving(bystander)


async def test_client_closes_mid_call(kite: Kite, bystander: Client, connect: Connect) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @kite.handle("forever")
    async def forever(request: Any) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    client = await connect(kite.url)
    call = asyncio.create_task(client.tell("forever"))
    await asyncio.wait_for(started.wait(), WAIT)

    await client.close()

    with pytest.raises(DisconnectError):
        await call
    # The server cancels the handler of a call whose connection is gone.
    await asyncio.wait_for(cancelled.wait(), WAIT)
    await assert_still_serving(bystander)


@pytest.mark.parametrize("transport", ["websocket", "xhr"])
async def test_timeout_then_next_call(kite: Kite, connect: Connect, caplog: pytest.LogCaptureFixture,
                                      transport: str) -> None:
    caplog.set_level(logging.WARNING, logger="kitelib")
    release = asyncio.Event()

    @kite.handle("stall")
    async def stall(request: Any) -> str:
        await release.wait()
        return "late"

    client = await connect(kite.url, transport=transport)

    with pytest.raises(TimeoutError) as caught:
        await client.tell("stall", timeout=0.2)
    assert caught.value.type == "timeout"
    assert caught.value.message == 'No response to "stall" method in 0.2s'

    assert await client.tell("square", 5) == 25

    # The late reply reaches a callback the client already dropped; it is logged and ignored.
    release.set()
    await wait_for_log(caplog, "unknown callback id")
    assert await client.tell("square", 6) == 36
    assert client.connected


@pytest.mark.parametrize("framed", [True, False], ids=["sockjs", "raw"])
async def test_peer_vanishes_without_close(kite: Kite, bystander: Client, framed: bool) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()
    disconnected = asyncio.Event()
    kite.on_disconnect(lambda connection: disconnected.set())

    @kite.handle("forever")
    async def forever(request: Any) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    url = ws_base(kite) + (session_path() + "/websocket" if framed else "")
    message = request_text("forever")
    ws = await websockets.connect(url, compression=None, open_timeout=WAIT)
    await ws.send(sockjs_frame(message) if framed else message)
    await asyncio.wait_for(started.wait(), WAIT)

    # No close frame, no FIN handshake: the TCP connection is reset.
    ws.transport.abort()

    await asyncio.wait_for(disconnected.wait(), WAIT)
    await asyncio.wait_for(cancelled.wait(), WAIT)
    await assert_still_serving(bystander)


async def test_binary_frames_on_raw_websocket(kite: Kite, bystander: Client,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="kitelib")
    async with websockets.connect(ws_base(kite), compression=None, open_timeout=WAIT) as ws:
        await ws.send(b"\xff\xfe\x00")
        await wait_for_log(caplog, "not UTF-8")

        # A binary frame holding UTF-8 JSON is read like a text frame.
        await ws.send(request_text("square", [3]).encode())
        message = orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))
    assert reply_of(message) == {"error": None, "result": 9}
    await assert_still_serving(bystander)


@pytest.mark.parametrize("result", [{1, 2}, 2**70, object()], ids=["set", "big-int", "object"])
async def test_unencodable_result(kite: Kite, bystander: Client, connect: Connect,
                                  caplog: pytest.LogCaptureFixture, result: Any) -> None:
    caplog.set_level(logging.ERROR, logger="kitelib")
    kite.handle("unencodable", lambda request: result)
    client = await connect(kite.url)

    with pytest.raises(GenericError) as caught:
        await client.tell("unencodable")

    assert caught.value.message.startswith("result could not be encoded as JSON")
    await wait_for_log(caplog, "could not be encoded")
    assert client.connected
    await assert_still_serving(bystander)


async def test_unencodable_result_carries_request_id(kite: Kite, connect: Connect) -> None:
    kite.handle("unencodable", lambda request: {1, 2})
    client = await connect(kite.url)

    with pytest.raises(GenericError) as caught:
        await client.tell("unencodable")

    assert REQUEST_ID.match(caught.value.id), caught.value.id


async def test_xhr_client_gone_detected_promptly(make_kite: Callable[..., Awaitable[Kite]],
                                                 connect: Connect) -> None:
    kite = await make_kite(heartbeat_delay=3, disconnect_delay=0.3)
    disconnected = asyncio.Event()
    kite.on_disconnect(lambda connection: disconnected.set())
    client = await connect(kite.url, transport="xhr")
    assert await client.tell("square", 2) == 4

    await client.close()

    # sockjs-go drops the receiver when the poll's socket closes, so only the disconnect delay remains.
    await asyncio.wait_for(disconnected.wait(), 1.5)
