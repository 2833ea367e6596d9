"""Fixtures for the kite server and client tests: real kites on 127.0.0.1, real sockets, stopped at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from kitelib import Client, Kite
from server_support import WAIT, SockJSWebSocket, add_math_methods, make_config


@pytest.fixture
async def make_kite() -> AsyncIterator[Callable[..., Awaitable[Kite]]]:
    """Return ``await make_kite(**config_overrides)``: a started kite with square and echo."""
    kites: list[Kite] = []

    async def factory(name: str = "math", **overrides: Any) -> Kite:
        kite = Kite(name, "1.0.0", config=make_config(**overrides))
        add_math_methods(kite)
        kites.append(kite)
        await kite.start()
        return kite

    yield factory
    for kite in kites:
        await kite.stop()


@pytest.fixture
async def kite(make_kite: Callable[..., Awaitable[Kite]]) -> Kite:
    return await make_kite()


@pytest.fixture
async def client_kite() -> AsyncIterator[Kite]:
    """A kite that is never started: the caller identity of test clients and the kite serving calls back."""
    kite = Kite("caller", "2.0.0", config=make_config())
    yield kite
    await kite.stop()


@pytest.fixture
async def connect(client_kite: Kite) -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    """Return ``await connect(url, transport=..., **options)``: a connected Client."""
    clients: list[Client] = []

    async def factory(url: str, transport: str = "websocket", **options: Any) -> Client:
        options.setdefault("kite", client_kite)
        options.setdefault("timeout", WAIT)
        client = Client(url, transport=transport, **options)
        clients.append(client)
        await client.connect()
        return client

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
async def bystander(kite: Kite, connect: Callable[..., Awaitable[Client]]) -> Client:
    """A healthy client connected to ``kite`` before a test misbehaves on another connection."""
    client = await connect(kite.url, transport="websocket")
    assert await client.tell("square", 2, timeout=WAIT) == 4
    return client


@pytest.fixture
async def sockjs_ws(kite: Kite) -> AsyncIterator[Callable[..., Awaitable[SockJSWebSocket]]]:
    """Return ``await sockjs_ws()``: a hand-driven SockJS websocket to ``kite`` (or another kite)."""
    sockets: list[SockJSWebSocket] = []

    async def factory(target: Kite | None = None) -> SockJSWebSocket:
        socket = await SockJSWebSocket.open(target or kite)
        sockets.append(socket)
        return socket

    yield factory
    for socket in sockets:
        await socket.close()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=WAIT) as client:
        yield client
