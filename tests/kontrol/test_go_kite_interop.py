"""Our Kontrol serving a Go kite: the captured Go register and getKites requests, replayed over SockJS.

The capture's kite.key was signed by the Go Kontrol's key, whose private half
we do not have, so the replay swaps in a kite.key our Kontrol issued and
keeps every other byte of the Go requests.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
import websockets

from kitelib.protocol import sockjs
from kontrol.server import Kontrol
from kontrol.settings import KontrolSettings
from tests.frames import vectors


def captured(name: str) -> list[dict]:
    vector = next(v for v in vectors() if v["name"] == name)
    return [dict(message, _dir=frame["dir"]) for frame in vector["frames"] for message in frame["dnode"]]


@pytest.fixture
async def kontrol(tmp_path: Path):
    server = Kontrol(KontrolSettings(db_path=str(tmp_path / "kontrol.db"), host="127.0.0.1", port=0))
    await server.start()
    yield server
    await server.stop()


async def next_messages(ws, count: int) -> list[dict]:
    messages: list[dict] = []
    while len(messages) < count:
        frame = sockjs.decode_server_frame(await asyncio.wait_for(ws.recv(), 5))
        messages.extend(orjson.loads(text) for text in frame.messages)
    return messages


def with_key(message: dict, kite_key: str) -> str:
    request = {key: value for key, value in message.items() if key != "_dir"}
    request["arguments"][0]["authentication"]["key"] = kite_key
    return sockjs.encode_client_messages([orjson.dumps(request).decode()])


async def test_go_register_then_heartbeat(kontrol: Kontrol) -> None:
    messages = captured("go_register_and_heartbeat")
    register = messages[0]
    go_heartbeat_call = messages[1]
    go_register_reply = messages[2]
    url = f"ws://127.0.0.1:{kontrol.kite.port}/kite/123/0123456789abcdef0123/websocket"
    async with websockets.connect(url, compression=None) as ws:
        await ws.send(with_key(register, kontrol.own_kite_key("kontrol")))
        heartbeat_call, register_reply = await next_messages(ws, 2)

        # Kontrol requests heartbeats with the shape Go Kontrol uses.
        assert heartbeat_call["method"] == "kite.heartbeat"
        assert heartbeat_call["callbacks"] == go_heartbeat_call["callbacks"]
        options = heartbeat_call["arguments"][0]
        assert options["withArgs"] == go_heartbeat_call["arguments"][0]["withArgs"]
        assert options["authentication"] is None
        assert options["kite"]["name"] == "kontrol"
        assert set(options) == set(go_heartbeat_call["arguments"][0])

        # The register reply matches Go's byte for byte in shape and values.
        assert register_reply == {key: value for key, value in go_register_reply.items() if key != "_dir"}

        # The Go kite pings at once and replies to the heartbeat call, as in the capture.
        await ws.send(sockjs.encode_client_messages(['{"method":1,"arguments":[],"callbacks":{}}']))
        await ws.send(sockjs.encode_client_messages(
            ['{"method":0,"arguments":[{"error":null,"result":null}],"callbacks":{}}']))

        identity = register["arguments"][0]["kite"]
        stored = await kontrol.storage.get_by_id(identity["id"])
        assert stored is not None
        assert stored.url == register["arguments"][0]["withArgs"][0]["url"]
        assert stored.identity.username == "kontrol"


async def test_go_get_kites_shape(kontrol: Kontrol) -> None:
    register = captured("go_register_and_heartbeat")[0]
    get_kites = captured("go_getkites_ws")[0]
    go_reply = captured("go_getkites_ws")[1]
    kite_key = kontrol.own_kite_key("kontrol")
    base = f"ws://127.0.0.1:{kontrol.kite.port}/kite"
    async with websockets.connect(base + "/123/aaaaaaaaaaaaaaaaaaaa/websocket", compression=None) as kite_ws:
        await kite_ws.send(with_key(register, kite_key))
        await next_messages(kite_ws, 2)
        async with websockets.connect(base + "/456/bbbbbbbbbbbbbbbbbbbb/websocket", compression=None) as ws:
            await ws.send(with_key(get_kites, kite_key))
            (reply,) = await next_messages(ws, 1)
    assert reply["method"] == go_reply["method"]
    result = reply["arguments"][0]["result"]
    go_result = go_reply["arguments"][0]["result"]
    assert reply["arguments"][0]["error"] is None
    assert [set(entry) for entry in result["kites"]] == [set(entry) for entry in go_result["kites"]]
    assert result["kites"][0]["kite"] == go_result["kites"][0]["kite"]
    assert result["kites"][0]["url"] == go_result["kites"][0]["url"]
