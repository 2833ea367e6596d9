"""Fixtures for the proxy tests: a Kontrol on SQLite, both proxies and kites holding keys it issued.

Everything listens on 127.0.0.1 with OS-chosen ports and stops at teardown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from kitelib import Client, Config, Kite
from kitelib.proxy import ReverseProxy, TunnelProxy
from kontrol.server import Kontrol
from kontrol.settings import KontrolSettings
from kontrol.storage import open_storage
from tests.proxy.support import WAIT, add_test_methods, config_for


@pytest.fixture
async def kontrol(tmp_path: Path) -> AsyncIterator[Kontrol]:
    settings = KontrolSettings(storage="sqlite", host="127.0.0.1", port=0, heartbeat_interval=0.5, liveness=2.0,
                               registration_ttl=6.0)
    server = Kontrol(settings, storage=open_storage("sqlite", path=tmp_path / "kontrol.db"))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def make_kite(kontrol: Kontrol) -> AsyncIterator[Callable[..., Awaitable[Kite]]]:
    """Return ``await make_kite(name, listen=True)``: a kite of user alice with the test methods."""
    kites: list[Kite] = []

    async def build(name: str = "math", *, username: str = "alice", listen: bool = True) -> Kite:
        kite = Kite(name, "1.0.0", config=config_for(kontrol, username))
        add_test_methods(kite)
        kites.append(kite)
        if listen:
            await kite.start()
        return kite

    yield build
    for kite in reversed(kites):
        await kite.stop()


@pytest.fixture
async def make_reverse_proxy(kontrol: Kontrol) -> AsyncIterator[Callable[..., Awaitable[ReverseProxy]]]:
    """Return ``await make_reverse_proxy(**options)``: a started reverse proxy registered with Kontrol."""
    proxies: list[ReverseProxy] = []

    async def build(*, port: int = 0, config: Config | None = None, **options: Any) -> ReverseProxy:
        if config is None:
            config = config_for(kontrol, "kontrol")
        config.port = port
        proxy = ReverseProxy(config, **options)
        proxies.append(proxy)
        await proxy.start()
        await proxy.kite.wait_registered(timeout=WAIT)
        return proxy

    yield build
    for proxy in proxies:
        await proxy.stop()


@pytest.fixture
async def reverse_proxy(make_reverse_proxy: Callable[..., Awaitable[ReverseProxy]]) -> ReverseProxy:
    return await make_reverse_proxy()


@pytest.fixture
async def make_tunnel_proxy(kontrol: Kontrol) -> AsyncIterator[Callable[..., Awaitable[TunnelProxy]]]:
    """Return ``await make_tunnel_proxy(**options)``: a started tunnel proxy registered with Kontrol."""
    proxies: list[TunnelProxy] = []

    async def build(**options: Any) -> TunnelProxy:
        proxy = TunnelProxy(config_for(kontrol, "kontrol"), **options)
        proxies.append(proxy)
        await proxy.start()
        await proxy.kite.wait_registered(timeout=WAIT)
        return proxy

    yield build
    for proxy in proxies:
        await proxy.stop()


@pytest.fixture
async def tunnel_proxy(make_tunnel_proxy: Callable[..., Awaitable[TunnelProxy]]) -> TunnelProxy:
    return await make_tunnel_proxy()


@pytest.fixture
async def caller(kontrol: Kontrol) -> AsyncIterator[Kite]:
    """The kite of user bob that test clients call as; it never listens."""
    kite = Kite("caller", "1.0.0", config=config_for(kontrol, "bob"))
    yield kite
    await kite.stop()


@pytest.fixture
async def connect(caller: Kite) -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    """Return ``await connect(url, transport)``: a connected Client authenticating with bob's kite.key."""
    clients: list[Client] = []

    async def open_client(url: str, transport: str = "websocket", **options: Any) -> Client:
        options.setdefault("auth", {"type": "kiteKey", "key": caller.config.kite_key})
        client = Client(url, kite=caller, transport=transport, timeout=WAIT, **options)
        clients.append(client)
        await client.connect()
        return client

    yield open_client
    for client in clients:
        await client.close()
