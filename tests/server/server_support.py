"""Helpers for the kite server and client tests: configs, hand-built dnode messages and SockJS sessions.

Tests import these directly; the fixtures that use them live in conftest.py.
They speak SockJS and dnode by hand (raw websockets and httpx) where a test
needs to act like a Go client or to send input our own Client never sends.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any

import orjson
import websockets
from websockets.asyncio.client import ClientConnection

from kitelib import Client, Config, Kite

# Upper bound for any single wait in these tests, in seconds. A healthy run
# finishes each wait in milliseconds.
WAIT = 5.0


def make_config(**overrides: Any) -> Config:
    """Return a Config for a loopback kite with authentication off and short timeouts."""
    settings: dict[str, Any] = {
        "ip": "127.0.0.1",
        "port": 0,
        "disable_authentication": True,
        "timeout": WAIT,
        "handshake_timeout": WAIT,
        "username": "tester",
        "environment": "test",
        "region": "local",
    }
    settings.update(overrides)
    return Config(**settings)


def add_math_methods(kite: Kite) -> None:
    """Register ``square`` (async, integers only) and ``echo`` (sync, any arguments)."""

    @kite.handle("square")
    async def square(request: Any, number: int) -> int:
        return number * number

    @kite.handle("echo")
    def echo(request: Any, *args: Any) -> list[Any]:
        return list(args)


async def assert_still_serving(client: Client) -> None:
    """Fail unless ``client`` still gets correct replies from its kite."""
    assert await client.tell("square", 3, timeout=WAIT) == 9
    assert await client.tell("kite.ping", timeout=WAIT) == "pong"


def caller_identity() -> dict[str, str]:
    return {"username": "raw", "environment": "test", "name": "rawclient", "version": "1.0.0",
            "region": "local", "hostname": "localhost", "id": "00000000-0000-4000-8000-000000000001"}


def request_text(method: str, args: list[Any] | None = None, callback_id: int = 0,
                 extra_callbacks: dict[str, list[Any]] | None = None) -> str:
    """Return the JSON text of a kite request as a Go client sends it, replying on ``callback_id``."""
    callbacks: dict[str, list[Any]] = {str(callback_id): [0, "responseCallback"]}
    callbacks.update(extra_callbacks or {})
    message = {
        "method": method,
        "arguments": [{
            "kite": caller_identity(),
            "authentication": None,
            "withArgs": args if args is not None else [],
            "responseCallback": "[Function]",
        }],
        "callbacks": callbacks,
    }
    return orjson.dumps(message).decode()


def sockjs_frame(*messages: str) -> str:
    """Return a client SockJS frame: a JSON array of message strings."""
    return orjson.dumps(list(messages)).decode()


def decode_data_frame(frame: str) -> list[dict[str, Any]]:
    """Decode an ``a[...]`` server frame into its dnode message objects."""
    assert frame.startswith("a"), f"expected an a[...] data frame, got {frame!r:.120}"
    return [orjson.loads(text) for text in orjson.loads(frame[1:])]


def reply_of(message: dict[str, Any]) -> dict[str, Any]:
    """Return the ``{error, result}`` object of a reply message."""
    assert isinstance(message["method"], int), f"expected a callback call, got {message!r:.200}"
    assert len(message["arguments"]) == 1, f"a reply has one argument, got {message!r:.200}"
    return message["arguments"][0]


def session_path() -> str:
    """Return ``/<3 digits>/<20 hex>``, the SockJS session path the Go client builds."""
    return f"/{secrets.randbelow(900) + 100}/{secrets.token_hex(10)}"


def ws_base(kite: Kite) -> str:
    return kite.url.replace("http://", "ws://", 1)


class SockJSWebSocket:
    """A SockJS websocket session driven by hand, frame by frame."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws

    @classmethod
    async def open(cls, kite: Kite, **options: Any) -> "SockJSWebSocket":
        url = ws_base(kite) + session_path() + "/websocket"
        ws = await websockets.connect(url, compression=None, open_timeout=WAIT, **options)
        return cls(ws)

    async def send(self, *messages: str) -> None:
        await self.ws.send(sockjs_frame(*messages))

    async def recv_frame(self, timeout: float = WAIT) -> str:
        frame = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(frame, str), f"SockJS frames are text, got {frame!r:.80}"
        return frame

    async def recv_messages(self, timeout: float = WAIT) -> list[dict[str, Any]]:
        """Return the dnode messages of the next data frame, skipping open and heartbeat frames."""
        while True:
            frame = await self.recv_frame(timeout)
            if frame in ("o", "h"):
                continue
            return decode_data_frame(frame)

    async def close(self) -> None:
        await self.ws.close()


async def wait_until(condition: Callable[[], bool], timeout: float = WAIT, what: str = "condition") -> None:
    """Yield to the loop until ``condition()`` holds, for server state that has no event to await."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.005)
