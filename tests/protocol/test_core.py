"""Unit tests for the sans-I/O core: identity, dnode scrubbing, SockJS frames, envelope and errors."""

from __future__ import annotations

import pytest

from kitelib.protocol import dnode, envelope, sockjs
from kitelib.protocol.dnode import CallbackRegistry, ProtocolError
from kitelib.protocol.errors import (
    ArgumentError,
    AuthenticationError,
    GenericError,
    InvalidResponseError,
    KiteError,
    MethodNotFoundError,
    error_from_wire,
)
from kitelib.protocol.identity import Identity, IdentityError, new_kite_id


# Identity

def test_identity_round_trip() -> None:
    identity = Identity("alice", "prod", "math", "1.0.0", "eu", "box1", new_kite_id())
    assert Identity.parse(str(identity)) == identity
    assert str(identity).count("/") == 7


def test_identity_id_may_contain_slash() -> None:
    identity = Identity.parse("/a/b/c/1.0.0/r/h/id/with/slash")
    assert identity.id == "id/with/slash"


def test_identity_missing_parts_empty() -> None:
    identity = Identity.parse("/alice/prod")
    assert identity.environment == "prod"
    assert identity.name == ""


def test_identity_parse_needs_leading_slash() -> None:
    with pytest.raises(IdentityError, match="must start with '/'"):
        Identity.parse("alice/prod")


@pytest.mark.parametrize("field", ["username", "environment", "name", "version", "region", "hostname", "id"])
def test_identity_validate_empty_field(field: str) -> None:
    values = dict(username="u", environment="e", name="n", version="1.0.0", region="r", hostname="h", id="i")
    values[field] = ""
    with pytest.raises(IdentityError, match=f"Empty Kite field: {field}"):
        Identity(**values).validate()
    values[field] = "a/b"
    with pytest.raises(IdentityError, match=f'Field "{field}" must not contain'):
        Identity(**values).validate()


def test_identity_from_dict_rejects_numbers() -> None:
    with pytest.raises(IdentityError, match="'version' must be a string"):
        Identity.from_dict({"version": 1})


def test_kite_ids_are_unique_uuid4() -> None:
    first, second = new_kite_id(), new_kite_id()
    assert first != second
    assert first[14] == "4"


# dnode

def test_scrub_nested_callables() -> None:
    registry = CallbackRegistry()

    def first(): ...
    def second(): ...

    arguments, callbacks = registry.scrub([{"a": [1, first], "b": {"c": second}}, second, (first,)])
    assert arguments == [{"a": [1, "[Function]"], "b": {"c": "[Function]"}}, "[Function]", ["[Function]"]]
    assert callbacks == {"0": [0, "a", 1], "1": [0, "b", "c"], "2": [1], "3": [2, 0]}
    assert registry.get(0) is first
    assert registry.get(2) is second


def test_scrub_ids_count_from_zero() -> None:
    registry = CallbackRegistry()
    _, callbacks = registry.scrub([lambda: 1])
    _, more = registry.scrub([lambda: 2])
    assert list(callbacks) == ["0"]
    assert list(more) == ["1"]


def test_unscrub_numeric_and_string_paths() -> None:
    arguments = [{"withArgs": [3, "[Function]"], "responseCallback": "[Function]"}]
    dnode.unscrub(arguments, {"0": ["0", "responseCallback"], "1": [0, "withArgs", "1"]}, lambda cid: ("proxy", cid))
    assert arguments[0]["responseCallback"] == ("proxy", 0)
    assert arguments[0]["withArgs"][1] == ("proxy", 1)


def test_unscrub_bad_path_rejected() -> None:
    with pytest.raises(ProtocolError, match="does not match"):
        dnode.unscrub([{"a": 1}], {"0": [0, "missing", "deeper"]}, lambda cid: None)
    with pytest.raises(ProtocolError, match="does not match"):
        dnode.unscrub([1], {"0": [5]}, lambda cid: None)


@pytest.mark.parametrize("text,fragment", [
    ("not json", "not valid JSON"),
    ("[1,2]", "must be a JSON object"),
    ('{"method": [1], "arguments": []}', "'method' must be a string"),
    ('{"method": true, "arguments": []}', "'method' must be a string"),
    ('{"method": "m", "arguments": {}}', "'arguments' must be an array"),
    ('{"method": "m", "arguments": [], "callbacks": []}', "'callbacks' must be an object"),
    ('{"method": "m", "arguments": [], "callbacks": {"x": [0]}}', "decimal integer"),
    ('{"method": "m", "arguments": [], "callbacks": {"0": []}}', "non-empty array"),
    ('{"method": "m", "arguments": [], "callbacks": {"0": [null]}}', "path element"),
    ('{"method": -1, "arguments": []}', "must not be negative"),
])
def test_decode_rejects_bad_messages(text: str, fragment: str) -> None:
    with pytest.raises(ProtocolError, match=fragment):
        dnode.decode_message(text)


def test_decode_accepts_and_ignores_links() -> None:
    message = dnode.decode_message('{"method":0,"arguments":[],"callbacks":{},"links":[]}')
    assert message.method == 0
    assert "links" not in dnode.encode_message(message)


# SockJS

def test_sockjs_server_frames() -> None:
    assert sockjs.decode_server_frame("o").kind == "open"
    assert sockjs.decode_server_frame("h").kind == "heartbeat"
    assert sockjs.decode_server_frame("").kind == "heartbeat"
    frame = sockjs.decode_server_frame(sockjs.encode_messages(['{"a":1}', "x"]) + "\n")
    assert frame.messages == ('{"a":1}', "x")
    close = sockjs.decode_server_frame(sockjs.encode_close(3000, "Go away!"))
    assert (close.kind, close.code, close.reason) == ("close", 3000, "Go away!")
    assert sockjs.decode_server_frame('m"one"').messages == ("one",)


@pytest.mark.parametrize("text", ["x", "a{", "a[1]", "c[1]", 'm[1]'])
def test_sockjs_bad_server_frames(text: str) -> None:
    with pytest.raises(sockjs.FrameError):
        sockjs.decode_server_frame(text)


def test_sockjs_client_frames() -> None:
    assert sockjs.decode_client_frame('["a","b"]') == ["a", "b"]
    assert sockjs.decode_client_frame(sockjs.encode_client_messages(["x"])) == ["x"]
    for bad in ("{}", "[1]", "nope", '[["a"]]'):
        with pytest.raises(sockjs.FrameError):
            sockjs.decode_client_frame(bad)


# Envelope and errors

def test_parse_request_requires_options_object() -> None:
    with pytest.raises(ProtocolError, match="one-element array"):
        envelope.parse_request(dnode.Message("m", [1, 2], {}))


def test_parse_request_null_withargs_is_empty() -> None:
    options = envelope.parse_request(dnode.Message("m", [{"withArgs": None, "kite": None}], {}))
    assert options.with_args == []
    assert options.response_callback is None


def test_parse_request_bad_identity_is_argument_error() -> None:
    with pytest.raises(ArgumentError, match="kite identity"):
        envelope.parse_request(dnode.Message("m", [{"kite": "alice"}], {}))


def test_find_response_callback_both_forms() -> None:
    assert envelope.find_response_callback(dnode.Message("m", [1], {"4": ["0", "responseCallback"]})) == 4
    assert envelope.find_response_callback(dnode.Message("m", [1], {"2": [0, "responseCallback"]})) == 2
    assert envelope.find_response_callback(dnode.Message("m", [1], {"2": [0, "other"]})) is None


def test_parse_response_variants() -> None:
    assert envelope.parse_response([{"error": None, "result": 16}]) == 16
    assert envelope.parse_response([None, 16]) == 16
    with pytest.raises(MethodNotFoundError):
        envelope.parse_response([{"error": {"type": "methodNotFound", "message": "x"}, "result": None}])
    with pytest.raises(InvalidResponseError):
        envelope.parse_response([])
    with pytest.raises(InvalidResponseError):
        envelope.parse_response([{"unrelated": 1}])


def test_error_wire_round_trip() -> None:
    error = AuthenticationError("token: token is expired", id="0123456789abcdef")
    parsed = error_from_wire(error.to_wire())
    assert isinstance(parsed, AuthenticationError)
    assert parsed.to_wire() == error.to_wire()
    assert str(parsed) == "authenticationError: token: token is expired (0123456789abcdef)"


def test_error_unknown_type_kept() -> None:
    parsed = error_from_wire({"type": "testError", "message": "boom", "code": "E_TEST"})
    assert type(parsed) is KiteError
    assert parsed.type == "testError"
    assert parsed.code == "E_TEST"


def test_generic_error_string_omits_type() -> None:
    assert str(GenericError("negative", id="ab")) == "negative (ab)"
    assert isinstance(error_from_wire("plain text"), GenericError)
