"""Interop tests against kite.js 1.0.13 running in node.

kite.js clients (tests/interop/js/client.js) call a kitelib kite over a raw
WebSocket, SockJS over WebSocket and SockJS xhr-polling, and a kitelib client
calls a kite.js KiteServer (tests/interop/js/server.js). Everything runs on
127.0.0.1.

The tests need `node` and `npm`. Without them they are skipped, unless
KITE_REQUIRE_INTEROP=1 is set (CI sets it), in which case they fail.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kitelib import Client, Config, GenericError, Kite, KiteError

from .kitejs_helpers import JS_DIR, PROCESS_DEADLINE, node, run_kitejs_client  # noqa: F401 (node is a fixture)
from .kitejs_helpers import stop_process as _stop_process

pytestmark = pytest.mark.interop


@pytest.fixture
async def kitejs_server(node: str, tmp_path: Path) -> AsyncIterator[int]:
    """Start server.js on a free loopback port and yield the port."""
    stderr_path = tmp_path / "server-js.stderr"
    with stderr_path.open("wb") as stderr_file:
        process = await asyncio.create_subprocess_exec(
            node,
            str(JS_DIR / "server.js"),
            "--port",
            "0",
            cwd=JS_DIR,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr_file,
        )
    try:
        try:
            ready_line = await asyncio.wait_for(process.stdout.readline(), timeout=PROCESS_DEADLINE)
        except asyncio.TimeoutError:
            pytest.fail(
                f"server.js printed no ready line within {PROCESS_DEADLINE} s:\n{stderr_path.read_text()}"
            )
        if not ready_line:
            await process.wait()
            pytest.fail(f"server.js exited with {process.returncode} before it was ready:\n{stderr_path.read_text()}")

        yield json.loads(ready_line)["port"]
    finally:
        await _stop_process(process)


@pytest.fixture
async def math_kite() -> AsyncIterator[Kite]:
    """Start a kitelib kite named math on a free loopback port."""
    kite = Kite("math", "1.0.0", config=Config(port=0, ip="127.0.0.1", disable_authentication=True))

    @kite.handle("square")
    def square(request, x):
        return x * x

    @kite.handle("sqrt")
    def sqrt(request, x):
        if x < 0:
            raise GenericError("negative input")
        return math.sqrt(x)

    @kite.handle("fail")
    def fail(request, *args):
        raise KiteError("boom", type="testError", code="E_TEST")

    await kite.start()
    try:
        yield kite
    finally:
        await kite.stop()


# (client.js transport, URL template): the raw WebSocket on both paths our kite
# serves it, then sockjs-client with its default transports (WebSocket first)
# and sockjs-client limited to xhr-polling.
TRANSPORTS = [
    pytest.param("websocket", "ws://127.0.0.1:{port}/kite", id="raw-websocket"),
    pytest.param("websocket", "ws://127.0.0.1:{port}/kite/websocket", id="raw-websocket-path"),
    pytest.param("sockjs", "http://127.0.0.1:{port}/kite", id="sockjs-websocket"),
    pytest.param("sockjs-xhr", "http://127.0.0.1:{port}/kite", id="sockjs-xhr-polling"),
]


@pytest.mark.parametrize(("transport", "url_template"), TRANSPORTS)
async def test_kitejs_client_square_and_ping(node, math_kite, transport, url_template):
    url = url_template.format(port=math_kite.port)

    square, ping = await run_kitejs_client(node, url, transport, [["square", [4]], ["kite.ping", []]])

    assert square["error"] is None
    assert square["result"] == 16
    assert ping["error"] is None
    assert ping["result"] == "pong"


@pytest.mark.parametrize(("transport", "url_template"), TRANSPORTS)
async def test_kitejs_client_bare_withargs(node, math_kite, transport, url_template):
    # kite.js sends a single non-list parameter as is: "withArgs": 4.
    url = url_template.format(port=math_kite.port)

    (square,) = await run_kitejs_client(node, url, transport, [["square", 4]])

    assert square["error"] is None
    assert square["result"] == 16


@pytest.mark.parametrize(("transport", "url_template"), TRANSPORTS)
async def test_kitejs_client_receives_errors(node, math_kite, transport, url_template):
    url = url_template.format(port=math_kite.port)

    generic, custom, unknown = await run_kitejs_client(
        node, url, transport, [["sqrt", [-1]], ["fail", []], ["noSuchMethod", []]]
    )

    assert generic["result"] is None
    assert generic["error"]["type"] == "genericError"
    assert generic["error"]["message"] == "negative input"

    assert custom["result"] is None
    assert custom["error"]["type"] == "testError"
    assert custom["error"]["message"] == "boom"
    assert custom["error"]["code"] == "E_TEST"

    assert unknown["result"] is None
    assert unknown["error"]["type"] == "methodNotFound"
    assert unknown["error"]["message"] == "Method not found: noSuchMethod"


async def test_kitejs_client_sequential_calls_one_connection(node, math_kite):
    url = f"ws://127.0.0.1:{math_kite.port}/kite"
    calls = [["square", [n]] for n in range(20)]

    lines = await run_kitejs_client(node, url, "websocket", calls)

    assert [line["result"] for line in lines] == [n * n for n in range(20)]
    assert all(line["error"] is None for line in lines)


async def test_our_client_calls_kitejs_square(kitejs_server):
    async with Client(f"ws://127.0.0.1:{kitejs_server}/", transport="raw", timeout=5) as client:
        assert await client.tell("square", 4) == 16


async def test_our_client_calls_kitejs_ping(kitejs_server):
    async with Client(f"ws://127.0.0.1:{kitejs_server}/", transport="raw", timeout=5) as client:
        assert await client.tell("kite.ping") == "pong"


async def test_our_client_gets_kitejs_error(kitejs_server):
    async with Client(f"ws://127.0.0.1:{kitejs_server}/", transport="raw", timeout=5) as client:
        with pytest.raises(KiteError) as caught:
            await client.tell("fail", "bad input")

    assert caught.value.type == "testError"
    assert caught.value.message == "bad input"
    assert caught.value.code == "E_TEST"
