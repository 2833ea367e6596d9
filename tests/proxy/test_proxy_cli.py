"""``kitectl proxy serve``, ``kitectl tunnel serve`` and ``kitectl tunnel expose`` as real processes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from kitelib import Kite
from kontrol.server import Kontrol
from tests.cli.cli_support import KITECTL, Process, cli_env, run_kitectl
from tests.proxy.support import WAIT, find_one

MakeKite = Callable[..., Awaitable[Kite]]
StartKitectl = Callable[..., Awaitable[re.Match[str]]]


@pytest.fixture
async def start_kitectl(kontrol: Kontrol, tmp_path: Path) -> AsyncIterator[StartKitectl]:
    """Return ``await start_kitectl(user, *args, ready=pattern)``: run kitectl with ``user``'s kite.key.

    It returns the match of the ``ready`` pattern on the line the process printed when ready.
    """
    processes: list[Process] = []

    async def start(username: str, *args: str, ready: str) -> re.Match[str]:
        home = tmp_path / f"home-{len(processes)}"
        home.mkdir()
        (home / "kite.key").write_text(kontrol.own_kite_key(username))
        process = Process([*KITECTL, *args], cli_env(home), f"kitectl {' '.join(args[:2])}")
        processes.append(process)
        # The process may need this test's Kontrol before it prints the line, so the loop must keep running.
        return await asyncio.to_thread(process.wait_or_stop, ready, WAIT)

    yield start
    for process in processes:
        # A stopping process closes its link to this test's Kontrol, which must keep responding.
        await asyncio.to_thread(process.stop)


async def test_kitectl_proxy_serve(start_kitectl: StartKitectl, make_kite: MakeKite, caller: Kite) -> None:
    ready = await start_kitectl("kontrol", "proxy", "serve", "--host", "127.0.0.1", "--port", "0",
                                ready=r"^proxy serving on (\S+)/kite ")
    backend = await make_kite()

    proxy_url = await backend.register_to_proxy().wait_registered(timeout=WAIT)
    await backend.wait_registered(timeout=WAIT)

    assert proxy_url == f"{ready.group(1)}/proxy/{backend.id}"
    client = await find_one(caller, username="alice", name="math")
    async with client:
        assert await client.tell("square", 8) == 64


async def test_kitectl_tunnel_serve_and_expose(start_kitectl: StartKitectl, make_kite: MakeKite,
                                               caller: Kite) -> None:
    await start_kitectl("kontrol", "tunnel", "serve", "--host", "127.0.0.1", "--port", "0",
                        ready=r"^tunnel proxy serving on ")
    local = await make_kite("local")

    exposed = await start_kitectl("alice", "tunnel", "expose", local.url, "--name", "local",
                                  ready=r"^exposing \S+ at (http://127\.0\.0\.1:\d+/proxy\?kiteID=\S+), registered")

    client = await find_one(caller, username="alice", name="local")
    assert client.url == exposed.group(1)
    async with client:
        assert await client.tell("square", 13) == 169


async def test_kitectl_tunnel_expose_needs_name(kontrol: Kontrol, tmp_path: Path) -> None:
    (tmp_path / "kite.key").write_text(kontrol.own_kite_key("alice"))

    # The command fails before it dials anything, so blocking this loop does no harm.
    result = run_kitectl("tunnel", "expose", "http://127.0.0.1:1/kite", env=cli_env(tmp_path))

    assert result.returncode == 2
    assert "missing --name" in result.stderr


def test_kitectl_proxy_serve_tls_needs_both_files(tmp_path: Path) -> None:
    certificate = tmp_path / "proxy.crt"
    certificate.write_text("not used")

    result = run_kitectl("proxy", "serve", "--tls-cert", str(certificate), env=cli_env(tmp_path))

    assert result.returncode == 2
    assert "pass --tls-cert and --tls-key together" in result.stderr
