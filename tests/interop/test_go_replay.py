"""Replay the captured Go and kite.js client traffic against our kite and compare the replies.

Our kite serves the methods the captured Go test kite served (square, echo,
callback, fail, whoami), so each captured request must get a reply of the
same shape. Random parts (request ids, Go's JSON error text) are compared by
form, not by value.
"""

from __future__ import annotations

import asyncio
import re

import httpx
import orjson
import pytest
import websockets

from kitelib import Config, GenericError, Kite, KiteError
from kitelib.protocol import sockjs
from tests.frames import vectors

ALL_VECTORS = vectors()
REQUEST_ID = re.compile(r"^[0-9a-f]{16}$")


def make_math_kite() -> Kite:
    kite = Kite("mathkite", "1.0.0", config=Config(ip="127.0.0.1", port=0, username="unknown",
                                                   kontrol_key="", kontrol_user="kontrol"))

    @kite.handle("square", auth=False)
    def square(request, number: float) -> float:
        return number * number

    @kite.handle("echo", auth=False)
    def echo(request, value, *rest):
        return value

    @kite.handle("callback", auth=False)
    async def callback(request, options: dict) -> int:
        for index in range(1, options["n"] + 1):
            await options["cb"](index)
        return options["n"]

    @kite.handle("fail", auth=False)
    def fail(request, *args):
        if args:
            raise KiteError(args[0], type="testError", code="E_TEST")
        raise GenericError("this method always fails")

    @kite.handle("whoami")
    def whoami(request):
        return {"authType": request.auth.type, "kite": request.kite.to_dict(), "username": request.username}

    return kite


@pytest.fixture
async def math_kite():
    kite = make_math_kite()
    # Short SockJS heartbeats so that an idle XHR poll returns well within the test's HTTP timeout.
    kite.config.heartbeat_delay = 1.0
    await kite.start()
    yield kite
    await kite.stop()


def expected_replies(vector: dict) -> list[dict]:
    return [m for f in vector["frames"] if f["dir"] == "s2c" for m in f["dnode"]]


def requests_of(vector: dict) -> list[str]:
    """Return the client's wire frames that carry messages (xhr_send bodies or WebSocket texts)."""
    return [f["wire"] for f in vector["frames"] if f["dir"] == "c2s" and f["dnode"]]


def assert_same_reply(ours: dict, captured: dict, vector_name: str) -> None:
    assert ours["method"] == captured["method"], vector_name
    if isinstance(captured["method"], int) and captured["arguments"] and isinstance(captured["arguments"][0], dict) \
            and "error" in captured["arguments"][0]:
        our_reply, captured_reply = ours["arguments"][0], captured["arguments"][0]
        captured_error = captured_reply.get("error")
        if captured_error is None:
            assert our_reply["error"] is None, our_reply
            if vector_name.startswith("go_whoami"):
                assert our_reply["result"]["authType"] == captured_reply["result"]["authType"]
            else:
                assert our_reply["result"] == captured_reply["result"]
            return
        our_error = our_reply["error"]
        assert our_error["type"] == captured_error["type"]
        if captured_error["type"] != "argumentError":
            assert our_error["message"] == captured_error["message"]
        if "id" in captured_error:
            assert list(our_error) == list(captured_error)
            if captured_error["id"]:
                assert REQUEST_ID.match(our_error["id"]), our_error
            else:
                assert our_error["id"] == ""
        return
    assert ours["arguments"] == captured["arguments"]


GO_WS = [v for v in ALL_VECTORS if v["peers"] == "go-client -> go-kite" and v["transport"] == "sockjs-websocket"]
# Tokens and keys in the capture have expired or come from another Kontrol: those replay only as errors.
GO_WS = [v for v in GO_WS if v["name"] not in ("go_whoami_token", "go_whoami_kitekey")]


@pytest.mark.parametrize("vector", GO_WS, ids=[v["name"] for v in GO_WS])
async def test_go_websocket_replay(math_kite: Kite, vector: dict) -> None:
    url = f"ws://127.0.0.1:{math_kite.port}/kite/721/5ad3e6512555e466f08b/websocket"
    captured = expected_replies(vector)
    async with websockets.connect(url, compression=None) as ws:
        # Like the Go client, send the request before reading the 'o' frame.
        for wire in requests_of(vector):
            await ws.send(wire)
        ours: list[dict] = []
        opened = False
        while len(ours) < len(captured):
            frame = sockjs.decode_server_frame(await asyncio.wait_for(ws.recv(), 5))
            if frame.kind == "open":
                opened = True
            ours.extend(orjson.loads(text) for text in frame.messages)
        assert opened
    for our_message, captured_message in zip(ours, captured):
        assert_same_reply(our_message, captured_message, vector["name"])


GO_XHR = [v for v in ALL_VECTORS if v["peers"] == "go-client -> go-kite" and v["transport"] == "sockjs-xhr"]


@pytest.mark.parametrize("vector", GO_XHR, ids=[v["name"] for v in GO_XHR])
async def test_go_xhr_replay(math_kite: Kite, vector: dict) -> None:
    """Replay over XHR polling; the race vector checks that no queued reply is lost to a second poll."""
    session = f"http://127.0.0.1:{math_kite.port}/kite/123/0123456789abcdef0123/"
    async with httpx.AsyncClient(timeout=10) as http:
        opened = await http.post(session + "xhr")
        assert opened.text == "o\n"
        assert opened.headers["content-type"].startswith("application/javascript")
        first_poll = asyncio.ensure_future(http.post(session + "xhr"))
        for wire in requests_of(vector):
            sent = await http.post(session + "xhr_send", content=wire)
            assert sent.status_code == 204
        # A second poll while the first may still be attached: the Go client does this under load.
        second_poll = asyncio.ensure_future(http.post(session + "xhr"))
        ours: list[dict] = []
        polls = [first_poll, second_poll]
        request = orjson.loads(orjson.loads(requests_of(vector)[0])[0])
        expected_count = 1
        if request["method"] == "callback":
            expected_count += request["arguments"][0]["withArgs"][0]["n"]
        while len(ours) < expected_count:
            if not polls:
                polls.append(asyncio.ensure_future(http.post(session + "xhr")))
            done, _ = await asyncio.wait(polls, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                polls.remove(finished)
                response = finished.result()
                assert response.status_code == 200
                frame = sockjs.decode_server_frame(response.text)
                assert frame.kind in ("messages", "heartbeat"), response.text
                ours.extend(orjson.loads(text) for text in frame.messages)
        for pending in polls:
            pending.cancel()
    assert len(ours) == expected_count
    reply = ours[-1]
    assert reply["method"] == 0
    assert reply["arguments"][0]["error"] is None
    if vector["name"] != "go_xhr_race_another_connection":
        for our_message, captured_message in zip(ours, expected_replies(vector)):
            assert_same_reply(our_message, captured_message, vector["name"])


KITEJS_RAW = [v for v in ALL_VECTORS if v["transport"] == "raw-websocket" and expected_replies(v)]


@pytest.mark.parametrize("vector", KITEJS_RAW, ids=[v["name"] for v in KITEJS_RAW])
async def test_kitejs_raw_replay(math_kite: Kite, vector: dict) -> None:
    url = f"ws://127.0.0.1:{math_kite.port}/kite"
    captured = expected_replies(vector)
    async with websockets.connect(url, compression=None) as ws:
        for wire in requests_of(vector):
            await ws.send(wire)
        ours = [orjson.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in captured]
    for our_message, captured_message in zip(ours, captured):
        assert_same_reply(our_message, captured_message, vector["name"])
