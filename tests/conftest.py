"""Shared pytest fixtures. Each block belongs to one area; add new blocks below."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.servers import EtcdServer, PostgresServer

# ---------------------------------------------------------------------------
# Storage backend servers (etcd, PostgreSQL). Process handling is in servers.py.
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """One etcd for the session; tests keep apart by key prefix."""
    server = EtcdServer(tmp_path_factory.mktemp("etcd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the session; tests keep apart by schema."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def private_etcd_server(tmp_path: Path) -> Iterator[EtcdServer]:
    """An etcd of the test's own, which it may stop and restart."""
    server = EtcdServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster of the test's own, which it may stop and restart."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.remove()


# --- end of storage backend servers -----------------------------------------
