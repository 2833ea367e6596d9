"""Fixtures for Kontrol tests: a Kontrol on each storage backend, and kites with keys it issued."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import AsyncIterator, Callable

import pytest

from kitelib import Config, Kite
from kitelib.auth.keyfile import parse_kite_key
from kontrol.server import Kontrol
from kontrol.settings import KontrolSettings
from kontrol.storage import Storage, open_storage

# Fast timings so that liveness and restart tests finish in seconds; the ratios match the defaults.
HEARTBEAT = 0.5
LIVENESS = 2.0
TTL = 6.0

BACKENDS = ["sqlite", "etcd", "postgres"]


class KontrolFactory:
    """Starts Kontrols that share one data set (file, etcd prefix or schema), so a restart keeps state."""

    def __init__(self, kind: str, storage_settings: dict, tmp_path: Path):
        self.kind = kind
        self.storage_settings = storage_settings
        self.tmp_path = tmp_path
        self.port = 0
        self.running: list[Kontrol] = []

    def open_storage(self) -> Storage:
        return open_storage(self.kind, **self.storage_settings)

    def settings(self, **overrides) -> KontrolSettings:
        values = dict(storage=self.kind, host="127.0.0.1", port=self.port, heartbeat_interval=HEARTBEAT,
                      liveness=LIVENESS, registration_ttl=TTL, machine_auth=["password", "token"],
                      postgres_dsn=self.storage_settings.get("dsn", ""))
        values.update(overrides)
        return KontrolSettings(**values)

    async def start(self, **overrides) -> Kontrol:
        kontrol = Kontrol(self.settings(**overrides), storage=self.open_storage())
        await kontrol.start()
        # Later starts reuse the port, as a restarted Kontrol at the same URL would.
        self.port = kontrol.kite.port
        self.running.append(kontrol)
        return kontrol

    async def stop(self, kontrol: Kontrol) -> None:
        if kontrol in self.running:
            self.running.remove(kontrol)
            await kontrol.stop()


@pytest.fixture(params=BACKENDS)
async def kontrols(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KontrolFactory]:
    kind = request.param
    if kind == "sqlite":
        settings: dict = {"path": tmp_path / "kontrol.db", "sweep_interval": 0.2}
    elif kind == "etcd":
        server = request.getfixturevalue("etcd_server")
        settings = {"endpoint": server.endpoint, "prefix": f"/kontrol-test-{uuid.uuid4().hex}"}
    else:
        server = request.getfixturevalue("postgres_server")
        settings = {"dsn": server.dsn, "schema": f"k_{uuid.uuid4().hex[:16]}", "sweep_interval": 0.2}
    factory = KontrolFactory(kind, settings, tmp_path)
    yield factory
    for kontrol in list(factory.running):
        await factory.stop(kontrol)


@pytest.fixture
async def kontrol(kontrols: KontrolFactory) -> Kontrol:
    return await kontrols.start()


def config_for(kontrol: Kontrol, username: str = "alice", kite_key: str | None = None) -> Config:
    """Return a kite config holding a kite.key that ``kontrol`` issued for ``username``."""
    key = parse_kite_key(kite_key or kontrol.own_kite_key(username))
    config = Config(ip="127.0.0.1", timeout=5.0)
    config.apply_kite_key(key.token, key.claims)
    return config


@pytest.fixture
async def make_kite() -> AsyncIterator[Callable[..., Kite]]:
    """Build serving kites and stop them after the test."""
    kites: list[Kite] = []

    async def build(kontrol: Kontrol, name: str = "math", username: str = "alice", *, register: bool = True,
                    kite_key: str | None = None) -> Kite:
        kite = Kite(name, "1.0.0", config=config_for(kontrol, username, kite_key))
        kite.handle("square", lambda request, number: number * number)
        await kite.start()
        kites.append(kite)
        if register:
            kite.register()
            await kite.wait_registered(timeout=10)
        return kite

    yield build
    for kite in kites:
        await kite.stop()


def write_kite_home(path: Path, kite_key: str) -> dict[str, str]:
    """Write a kite.key under ``path`` and return an environment whose KITE_HOME points there."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "kite.key").write_text(kite_key)
    env = dict(os.environ)
    env["KITE_HOME"] = str(path)
    return env
