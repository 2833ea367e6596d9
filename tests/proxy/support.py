"""Helpers for the proxy tests: configs with Kontrol-issued keys, the test kites' methods, Kontrol lookups."""

from __future__ import annotations

import asyncio
from typing import Any

from kitelib import Client, Config, Kite
from kitelib.auth.keyfile import parse_kite_key
from kontrol.server import Kontrol

# Upper bound for one wait, in seconds; a healthy run needs milliseconds.
WAIT = 10.0


def config_for(kontrol: Kontrol, username: str) -> Config:
    """Return a loopback kite config with a kite.key that ``kontrol`` issued for ``username``."""
    key = parse_kite_key(kontrol.own_kite_key(username))
    config = Config(ip="127.0.0.1", port=0, timeout=WAIT, handshake_timeout=WAIT)
    config.apply_kite_key(key.token, key.claims)
    return config


def add_test_methods(kite: Kite) -> None:
    """Register ``square``, ``echo`` (returns its argument after ``delay`` seconds) and ``hang`` (never returns)."""


    @kite.handle("square")
    async def square(request: Any, number: int) -> int:
        return number * number

    @kite.handle("echo")
    async def echo(request: Any, value: Any, delay: float = 0.0) -> Any:
        if delay:
            await asyncio.sleep(delay)
        return value

    # Set when a call of hang has started, so tests know the call reached the kite.
    kite.hang_started = asyncio.Event()  # type: ignore[attr-defined]

    @kite.handle("hang")
    async def hang(request: Any) -> None:
        kite.hang_started.set()  # type: ignore[attr-defined]
        await asyncio.Event().wait()


async def find_one(caller: Kite, **query: str) -> Client:
    """Return a Client for the only kite in Kontrol that matches ``query``."""
    clients = await caller.get_kites(**query)
    assert len(clients) == 1, f"expected one kite for {query}, found {len(clients)}"
    return clients[0]
