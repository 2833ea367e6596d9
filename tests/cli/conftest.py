"""Fixtures for the kitectl tests: one SQLite Kontrol and one math kite per module, each with its KITE_HOME."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.cli.cli_support import KiteProcess, KontrolProcess, cli_env
from tests.servers import free_port


class CliWorld:
    """A running Kontrol and math kite sharing one KITE_HOME, as on one machine."""

    def __init__(self, home: Path, db: Path, kontrol: KontrolProcess, kite: KiteProcess):
        self.home = home
        self.db = db
        self.kontrol = kontrol
        self.kite = kite

    @property
    def env(self) -> dict[str, str]:
        return cli_env(self.home)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliWorld]:
    base = tmp_path_factory.mktemp("cli")
    home = base / "home"
    db = base / "kontrol.db"
    kontrol = KontrolProcess(home, free_port(), ["--db", str(db)])
    kite: KiteProcess | None = None
    try:
        kite = KiteProcess(home)
        yield CliWorld(home, db, kontrol, kite)
    finally:
        if kite is not None:
            kite.stop()
        kontrol.stop()


@pytest.fixture
def second_math_kite(world: CliWorld) -> Iterator[KiteProcess]:
    """Another math kite registered with the module's Kontrol, stopped after the test."""
    kite = KiteProcess(world.home)
    try:
        yield kite
    finally:
        kite.stop()
