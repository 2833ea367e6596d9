"""The main job end to end through the kitectl executable: serve Kontrol, a kite registers, query lists it, tell calls it.

It runs on SQLite, and on etcd and PostgreSQL when their servers are
installed (skipped otherwise, failed under KITE_REQUIRE_BACKENDS=1).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.cli.cli_support import KiteProcess, KontrolProcess, cli_env, poll_kitectl, run_kitectl
from tests.servers import free_port


@pytest.fixture(params=["sqlite", "etcd", "postgres"])
def storage_args(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """Return the kontrol serve flags and KONTROL_* variables for one storage backend."""
    if request.param == "sqlite":
        return ["--db", str(tmp_path / "kontrol.db")], {}
    if request.param == "etcd":
        etcd = request.getfixturevalue("etcd_server")
        # The session's etcd is shared: a prefix of our own keeps this Kontrol's keys apart.
        return ["--storage", "etcd", "--etcd-endpoints", etcd.endpoint], {
            "KONTROL_ETCD_PREFIX": f"/kitectl-test-{uuid.uuid4().hex[:8]}"}
    postgres = request.getfixturevalue("private_postgres_server")
    return ["--storage", "postgres", "--postgres-dsn", postgres.dsn], {}


def test_main_job(tmp_path: Path, storage_args: tuple[list[str], dict[str, str]]) -> None:
    flags, variables = storage_args
    home = tmp_path / "home"
    env = cli_env(home)
    kontrol = KontrolProcess(home, free_port(), flags, env_extra=variables)
    try:
        assert any(line.startswith("initialized Kontrol: created key pair") for line in kontrol.startup)
        assert f"wrote kite.key for user 'kontrol' to {home / 'kite.key'}" in kontrol.startup
        kite = KiteProcess(home)
        try:
            listed = poll_kitectl("query", env=env, until=lambda result: kite.url in result.stdout)
            assert listed.returncode == 0, listed.stderr
            math_rows = [line.split("\t") for line in listed.stdout.splitlines() if "\tmath\t" in line]
            assert [row[7] for row in math_rows] == [kite.url]

            told = run_kitectl("tell", "--query", "name=math", "square", "4", env=env)
            assert told.returncode == 0, told.stderr
            assert told.stdout == "16\n"
        finally:
            kite.stop()
    finally:
        assert kontrol.stop() == 0
