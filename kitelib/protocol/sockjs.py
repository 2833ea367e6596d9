"""SockJS framing, both directions.

Server to client: ``o`` (open), ``h`` (heartbeat), ``a[...]`` (a JSON array of
JSON strings, each one whole dnode message), ``c[code,"reason"]`` (close).
Client to server: a JSON array of strings. Over XHR every server frame is one
response body followed by a newline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import orjson

OPEN = "o"
HEARTBEAT = "h"

# Close codes and reasons that sockjs-go and the Go kite send.
CLOSE_GO_AWAY = (3000, "Go away!")
CLOSE_ANOTHER_CONNECTION = (2010, "Another connection still open")
CLOSE_INTERRUPTED = (1002, "Connection interrupted")


class FrameError(ValueError):
    """A SockJS frame that breaks the framing rules; the sender is at fault."""


def encode_messages(messages: Iterable[str]) -> str:
    """Build an ``a[...]`` frame from dnode message texts."""
    return "a" + orjson.dumps(list(messages)).decode()


def encode_close(code: int, reason: str) -> str:
    return "c" + orjson.dumps([code, reason]).decode()


def encode_client_messages(messages: Iterable[str]) -> str:
    """Build the client's frame: a JSON array of message strings."""
    return orjson.dumps(list(messages)).decode()


def decode_client_frame(data: str | bytes) -> list[str]:
    """Parse a client frame into its message strings, or raise FrameError."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise FrameError(f"SockJS client frame is not valid JSON: {exc}") from None
    # sockjs-client may send a bare string for a single message.
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise FrameError(f"SockJS client frame must be a JSON array of strings, got {type(value).__name__}")
    for item in value:
        if not isinstance(item, str):
            raise FrameError(f"SockJS client frame must hold only strings, got {type(item).__name__}")
    return value


@dataclass(frozen=True, slots=True)
class ServerFrame:
    """One decoded server frame: kind is "open", "heartbeat", "messages" or "close"."""

    kind: str
    messages: tuple[str, ...] = ()
    code: int = 0
    reason: str = ""


def decode_server_frame(data: str) -> ServerFrame:
    """Parse one server frame as a client sees it, or raise FrameError.

    An empty frame counts as a heartbeat: the Go server sends an empty
    WebSocket text message when it ends a session, and the close itself
    ends the session for the client.
    """
    data = data.rstrip("\n")
    if not data or data == HEARTBEAT:
        return ServerFrame("heartbeat")
    if data == OPEN:
        return ServerFrame("open")
    kind, body = data[0], data[1:]
    try:
        if kind == "a":
            messages = orjson.loads(body)
            if not isinstance(messages, list) or not all(isinstance(item, str) for item in messages):
                raise FrameError("SockJS a[...] frame must hold a JSON array of strings")
            return ServerFrame("messages", tuple(messages))
        if kind == "m":
            message = orjson.loads(body)
            if not isinstance(message, str):
                raise FrameError("SockJS m frame must hold a JSON string")
            return ServerFrame("messages", (message,))
        if kind == "c":
            close = orjson.loads(body)
            if not (isinstance(close, list) and len(close) == 2 and isinstance(close[0], int)):
                raise FrameError("SockJS c[...] frame must hold [code, reason]")
            return ServerFrame("close", code=close[0], reason=str(close[1]))
    except orjson.JSONDecodeError as exc:
        raise FrameError(f"SockJS {kind!r} frame is not valid JSON: {exc}") from None
    raise FrameError(f"unknown SockJS frame type {kind!r} in {data!r:.80}")
