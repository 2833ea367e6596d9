"""Golden tests: every message captured from Go and kite.js parses, and we encode the same shapes."""

from __future__ import annotations

import json

import orjson
import pytest

from kitelib.protocol import dnode, envelope, sockjs
from kitelib.protocol.dnode import CallbackRegistry
from kitelib.protocol.identity import Identity
from tests.frames import vectors

ALL_VECTORS = vectors()


def inner_messages(vector: dict, frame: dict) -> list[str]:
    """Split one captured frame into its dnode message texts, as a receiver would."""
    wire = frame["wire"]
    if not wire.strip() or frame.get("path", "").split("?")[0].endswith("/info"):
        return []
    if vector["transport"] == "raw-websocket":
        return [wire]
    if frame["dir"] == "c2s":
        return sockjs.decode_client_frame(wire)
    return list(sockjs.decode_server_frame(wire).messages)


def compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize("vector", ALL_VECTORS, ids=[v["name"] for v in ALL_VECTORS])
def test_vector_messages_parse(vector: dict) -> None:
    for frame in vector["frames"]:
        texts = inner_messages(vector, frame)
        assert len(texts) == len(frame["dnode"]), frame["wire"][:120]
        for text, expected in zip(texts, frame["dnode"]):
            message = dnode.decode_message(text)
            assert message.method == expected["method"]
            assert message.arguments == expected["arguments"]
            assert message.callbacks == expected.get("callbacks", {})
            # Compact re-encoding in parsed key order reproduces the captured text.
            assert compact(orjson.loads(text)) == text


@pytest.mark.parametrize("vector", ALL_VECTORS, ids=[v["name"] for v in ALL_VECTORS])
def test_vector_requests_unscrub(vector: dict) -> None:
    """Every captured request decodes into options with callable callbacks at every recorded path."""
    for frame in vector["frames"]:
        for text in inner_messages(vector, frame):
            message = dnode.decode_message(text)
            placed: list[int] = []
            dnode.unscrub(message.arguments, message.callbacks, lambda cid: placed.append(cid) or (lambda *a: cid))
            assert sorted(placed) == sorted(int(key) for key in message.callbacks)
            if isinstance(message.method, str):
                options = envelope.parse_request(message)
                assert options.response_callback is not None
                assert isinstance(options.with_args, list)


def captured_request(name: str) -> dict:
    vector = next(v for v in ALL_VECTORS if v["name"] == name)
    return next(m for f in vector["frames"] if f["dir"] == "c2s" for m in f["dnode"])


def encode_call(method: str, args: list, identity: Identity, authentication: dict | None) -> dict:
    registry = CallbackRegistry()
    options = envelope.build_request_options(identity, authentication, args, lambda *a: None)
    response = options.pop("responseCallback")
    scrubbed, callbacks = registry.scrub([options], first=[(list(envelope.RESPONSE_CALLBACK_PATH), response)])
    scrubbed[0]["responseCallback"] = dnode.FUNCTION_PLACEHOLDER
    return orjson.loads(dnode.encode_message(dnode.Message(method, scrubbed, callbacks)))


@pytest.mark.parametrize("name,args", [
    ("go_ws_square", [4]),
    ("go_ws_ping", []),
    ("go_ws_echo", [{"a": [1, 2.5, {"b": None}], "s": "x"}, True]),
])
def test_request_shape_matches_go(name: str, args: list) -> None:
    captured = captured_request(name)
    identity = Identity.from_dict(captured["arguments"][0]["kite"])
    ours = encode_call(captured["method"], args, identity, None)
    assert ours["method"] == captured["method"]
    assert ours["callbacks"] == captured["callbacks"]
    assert set(ours["arguments"][0]) == set(captured["arguments"][0])
    assert ours["arguments"][0]["withArgs"] == captured["arguments"][0]["withArgs"]
    assert ours["arguments"][0]["kite"] == captured["arguments"][0]["kite"]
    assert "links" not in ours


def test_nested_callback_shape_matches_go() -> None:
    captured = captured_request("go_callback_nested")
    identity = Identity.from_dict(captured["arguments"][0]["kite"])
    ours = encode_call("callback", [{"cb": lambda n: None, "n": 3}], identity, None)
    assert ours["callbacks"] == {"0": [0, "responseCallback"], "1": [0, "withArgs", 0, "cb"]}
    assert ours["callbacks"] == captured["callbacks"]
    assert ours["arguments"][0]["withArgs"] == [{"cb": "[Function]", "n": 3}]


def test_reply_shape_matches_go() -> None:
    vector = next(v for v in ALL_VECTORS if v["name"] == "go_ws_square")
    captured_reply = next(m for f in vector["frames"] if f["dir"] == "s2c" for m in f["dnode"])
    ours = orjson.loads(dnode.encode_message(dnode.Message(0, envelope.build_response(None, 16), {})))
    assert ours == captured_reply
    assert isinstance(ours["method"], int)


def test_error_reply_keys_match_go() -> None:
    from kitelib.protocol.errors import GenericError

    vector = next(v for v in ALL_VECTORS if v["name"] == "go_error_generic")
    captured_reply = next(m for f in vector["frames"] if f["dir"] == "s2c" for m in f["dnode"])
    ours = envelope.build_response(GenericError("this method always fails", id="634cb39725a4a547"), None)
    assert list(ours[0]["error"]) == list(captured_reply["arguments"][0]["error"])
    assert ours == captured_reply["arguments"]


def test_kitejs_string_paths_accepted() -> None:
    captured = captured_request("kitejs_ws_square")
    message = dnode.decode_message(orjson.dumps(captured))
    calls: list[int] = []
    dnode.unscrub(message.arguments, message.callbacks, lambda cid: lambda *a: calls.append(cid))
    options = envelope.parse_request(message)
    options.response_callback({"error": None, "result": 16})
    assert calls == [0]
    assert options.authentication is None


def test_kitejs_bare_withargs_wrapped() -> None:
    captured = captured_request("kitejs_bare_withargs")
    message = dnode.decode_message(orjson.dumps(captured))
    dnode.unscrub(message.arguments, message.callbacks, lambda cid: lambda *a: None)
    assert envelope.parse_request(message).with_args == [5]


def test_kitejs_error_reply_parses() -> None:
    from kitelib.protocol.errors import KiteError

    vector = next(v for v in ALL_VECTORS if v["name"] == "kitejs_ws_error_custom")
    reply = next(m for f in vector["frames"] if f["dir"] == "s2c" for m in f["dnode"])
    with pytest.raises(KiteError) as caught:
        envelope.parse_response(reply["arguments"])
    assert caught.value.type == "testError"
    assert caught.value.message == "boom"
    assert caught.value.code == "E_TEST"
