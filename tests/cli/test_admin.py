"""kitectl kontrol init / keys rotate / user add / token create / serve, and kitectl register, as subprocesses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.cli.cli_support import KontrolProcess, cli_env, error_line, run_kitectl
from tests.cli.conftest import CliWorld
from tests.servers import free_port


def showkey(home: Path) -> dict:
    result = run_kitectl("showkey", "--json", env=cli_env(home))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# --- kontrol init -------------------------------------------------------------


def test_init_creates_key_pair_and_kite_key(tmp_path: Path) -> None:
    home, db = tmp_path / "home", tmp_path / "kontrol.db"
    first = run_kitectl("kontrol", "init", "--db", str(db), "--port", "4123", env=cli_env(home))
    assert first.returncode == 0, first.stderr
    assert re.search(r"initialized Kontrol: created key pair [0-9a-f-]{36} in sqlite storage", first.stdout)
    assert f"wrote kite.key for user 'kontrol' to {home / 'kite.key'}" in first.stdout
    key = showkey(home)
    assert key["claims"]["sub"] == "kontrol"
    assert key["claims"]["kontrolURL"] == "http://127.0.0.1:4123/kite"

    again = run_kitectl("kontrol", "init", "--db", str(db), "--port", "4123", env=cli_env(home))
    assert again.returncode == 0, again.stderr
    assert "already has key pair" in again.stdout
    assert "kept kite.key" in again.stdout
    assert showkey(home)["claims"]["jti"] == key["claims"]["jti"]


def test_init_refuses_other_kontrols_key_without_force(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = run_kitectl("kontrol", "init", "--db", str(tmp_path / "first.db"), env=cli_env(home))
    assert first.returncode == 0, first.stderr
    original = showkey(home)["claims"]["kontrolKey"]

    refused = run_kitectl("kontrol", "init", "--db", str(tmp_path / "second.db"), env=cli_env(home))
    assert refused.returncode == 1
    line = error_line(refused)
    assert "signed by another Kontrol" in line
    assert "--force" in line
    assert showkey(home)["claims"]["kontrolKey"] == original

    forced = run_kitectl("kontrol", "init", "--db", str(tmp_path / "second.db"), "--force", env=cli_env(home))
    assert forced.returncode == 0, forced.stderr
    assert showkey(home)["claims"]["kontrolKey"] != original


def test_init_kite_key_option_writes_elsewhere(tmp_path: Path) -> None:
    home, target = tmp_path / "home", tmp_path / "kontrol-own" / "kite.key"
    result = run_kitectl("kontrol", "init", "--db", str(tmp_path / "k.db"), "--kite-key", str(target),
                         env=cli_env(home))
    assert result.returncode == 0, result.stderr
    assert target.is_file()
    assert not (home / "kite.key").exists()


def test_init_invalid_storage_exits_2(tmp_path: Path) -> None:
    result = run_kitectl("kontrol", "init", "--storage", "floppy", env=cli_env(tmp_path))
    assert result.returncode == 2
    assert "floppy" in error_line(result)


def test_init_postgres_without_dsn_exits_2(tmp_path: Path) -> None:
    result = run_kitectl("kontrol", "init", "--storage", "postgres", env=cli_env(tmp_path))
    assert result.returncode == 2
    assert "missing PostgreSQL DSN" in error_line(result)


def test_init_reads_kontrol_environment(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = cli_env(home, KONTROL_DB_PATH=str(tmp_path / "env.db"), KONTROL_PUBLIC_URL="http://kontrol.test:9/kite")
    result = run_kitectl("kontrol", "init", env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "env.db").exists()
    assert showkey(home)["claims"]["kontrolURL"] == "http://kontrol.test:9/kite"


# --- kontrol keys rotate --------------------------------------------------------


def test_keys_rotate_resigns_own_kite_key(tmp_path: Path) -> None:
    home, db = tmp_path / "home", tmp_path / "kontrol.db"
    assert run_kitectl("kontrol", "init", "--db", str(db), env=cli_env(home)).returncode == 0
    before = showkey(home)

    result = run_kitectl("kontrol", "keys", "rotate", "--db", str(db), env=cli_env(home))
    assert result.returncode == 0, result.stderr
    match = re.search(r"created key pair ([0-9a-f-]{36}); retired key pair ([0-9a-f-]{36})", result.stdout)
    assert match and match.group(1) != match.group(2)
    assert "re-signed kite.key" in result.stdout
    assert "switch to the new key pair within 10 seconds" in result.stdout

    after = showkey(home)
    assert after["signature"]["valid"] is True
    assert after["claims"]["kontrolKey"] != before["claims"]["kontrolKey"]
    assert after["claims"]["jti"] == before["claims"]["jti"]


def test_keys_rotate_without_keys_exits_1(tmp_path: Path) -> None:
    result = run_kitectl("kontrol", "keys", "rotate", "--db", str(tmp_path / "empty.db"), env=cli_env(tmp_path))
    assert result.returncode == 1
    assert "kitectl kontrol init" in error_line(result)


def test_rotated_kontrol_serves_new_key(tmp_path: Path) -> None:
    home, db = tmp_path / "home", tmp_path / "kontrol.db"
    port = free_port()
    assert run_kitectl("kontrol", "init", "--db", str(db), "--port", str(port), env=cli_env(home)).returncode == 0
    assert run_kitectl("kontrol", "keys", "rotate", "--db", str(db), env=cli_env(home)).returncode == 0
    kontrol = KontrolProcess(home, port, ["--db", str(db)])
    try:
        # The re-signed kite.key authenticates with the restarted Kontrol: it lists itself.
        result = run_kitectl("query", "--name", "kontrol", "--json", env=cli_env(home))
        assert result.returncode == 0, result.stderr
        assert [entry["url"] for entry in json.loads(result.stdout)] == [kontrol.url]
    finally:
        kontrol.stop()


# --- kontrol serve ----------------------------------------------------------------


def test_serve_no_init_on_empty_storage_exits_1(tmp_path: Path) -> None:
    result = run_kitectl("kontrol", "serve", "--no-init", "--db", str(tmp_path / "empty.db"), "--port", "0",
                         "--host", "127.0.0.1", env=cli_env(tmp_path))
    assert result.returncode == 1
    assert "kitectl kontrol init" in result.stderr.strip().splitlines()[-1]


def test_serve_port_in_use_exits_1(world: CliWorld, tmp_path: Path) -> None:
    port = world.kontrol.url.split(":")[2].split("/")[0]
    result = run_kitectl("kontrol", "serve", "--db", str(tmp_path / "k.db"), "--port", port, "--host", "127.0.0.1",
                         env=cli_env(tmp_path / "home"))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"kitectl: cannot listen on 127.0.0.1:{port}")
    assert "--port" in last


def test_serve_keeps_other_kontrols_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run_kitectl("kontrol", "init", "--db", str(tmp_path / "other.db"), env=cli_env(home)).returncode == 0
    original = (home / "kite.key").read_text()
    kontrol = KontrolProcess(home, free_port(), ["--db", str(tmp_path / "fresh.db")])
    try:
        assert any(line.startswith("initialized Kontrol") for line in kontrol.startup)
        assert (home / "kite.key").read_text() == original
    finally:
        kontrol.stop()
    assert any("another Kontrol signed it" in line and "--force" in line for line in kontrol.stderr_lines)


# --- users, tokens and register ------------------------------------------------------


def test_register_with_password(world: CliWorld, tmp_path: Path) -> None:
    added = run_kitectl("kontrol", "user", "add", "alice", "--password-stdin", "--db", str(world.db),
                        input="s3cret\n", env=world.env)
    assert added.returncode == 0, added.stderr
    assert "added user 'alice'" in added.stdout

    home = tmp_path / "alice"
    registered = run_kitectl("register", "--kontrol-url", world.kontrol.url, "--username", "alice",
                             "--password-stdin", input="s3cret\n", env=cli_env(home))
    assert registered.returncode == 0, registered.stderr
    assert f"wrote kite.key to {home / 'kite.key'}" in registered.stdout
    key = showkey(home)
    assert key["claims"]["sub"] == "alice"
    assert key["claims"]["iss"] == "kontrol"

    # alice's key works for Kontrol: she can call kontrol's math kite through the tokens Kontrol gives her.
    called = run_kitectl("tell", "--query", "username=kontrol,name=math", "square", "6", env=cli_env(home))
    assert called.returncode == 0, called.stderr
    assert called.stdout == "36\n"

    refused = run_kitectl("register", "--kontrol-url", world.kontrol.url, "--username", "alice",
                          "--password-stdin", input="s3cret\n", env=cli_env(home))
    assert refused.returncode == 1
    assert "kite.key already exists" in error_line(refused)

    wrong = run_kitectl("register", "--kontrol-url", world.kontrol.url, "--username", "alice", "--force",
                        env=cli_env(home, KITE_PASSWORD="wrong"))
    assert wrong.returncode == 65
    assert "invalid password" in error_line(wrong)
    assert showkey(home)["claims"]["jti"] == key["claims"]["jti"]

    updated = run_kitectl("kontrol", "user", "add", "alice", "--password-stdin", "--db", str(world.db),
                          input="n3w\n", env=world.env)
    assert "updated the password of user 'alice'" in updated.stdout
    again = run_kitectl("register", "--kontrol-url", world.kontrol.url, "--username", "alice", "--force",
                        env=cli_env(home, KITE_PASSWORD="n3w"))
    assert again.returncode == 0, again.stderr
    assert showkey(home)["claims"]["jti"] != key["claims"]["jti"]


def test_register_unknown_user_exits_65(world: CliWorld, tmp_path: Path) -> None:
    result = run_kitectl("register", "--kontrol-url", world.kontrol.url, "--username", "nobody",
                         env=cli_env(tmp_path, KITE_PASSWORD="x"))
    assert result.returncode == 65
    assert "unknown user 'nobody'" in error_line(result)


def test_register_with_token_once(world: CliWorld, tmp_path: Path) -> None:
    created = run_kitectl("kontrol", "token", "create", "--username", "bob", "--ttl", "10m", "--db", str(world.db),
                          env=world.env)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{20,}", token)

    home = tmp_path / "bob"
    first = run_kitectl("register", "--kontrol-url", world.kontrol.url, "--username", "bob", "--token", token,
                        env=cli_env(home))
    assert first.returncode == 0, first.stderr
    assert showkey(home)["claims"]["sub"] == "bob"

    reused = run_kitectl("register", "--kontrol-url", world.kontrol.url, "--username", "bob", "--token", token,
                         env=cli_env(tmp_path / "bob2"))
    assert reused.returncode == 65
    assert "already used" in error_line(reused)


def test_register_open_refused_by_default(world: CliWorld, tmp_path: Path) -> None:
    result = run_kitectl("register", "--kontrol-url", world.kontrol.url, "--open", env=cli_env(tmp_path))
    assert result.returncode == 65
    assert "open registration" in error_line(result)


def test_register_unreachable_kontrol_exits_1(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/kite"
    result = run_kitectl("register", "--kontrol-url", url, "--token", "x", env=cli_env(tmp_path))
    assert result.returncode == 1
    assert f"cannot reach Kontrol at {url}" in error_line(result)


def test_register_conflicting_options_exit_2(tmp_path: Path) -> None:
    result = run_kitectl("register", "--token", "x", "--open", env=cli_env(tmp_path))
    assert result.returncode == 2
    assert "conflicting authentication options" in error_line(result)


@pytest.mark.parametrize(("name", "fragment"), [("a/b", "invalid user name"), ("anonymous", "invalid user name")])
def test_user_add_rejects_names(tmp_path: Path, name: str, fragment: str) -> None:
    result = run_kitectl("kontrol", "user", "add", name, "--password-stdin", "--db", str(tmp_path / "k.db"),
                         input="x\n", env=cli_env(tmp_path))
    assert result.returncode == 2
    assert fragment in error_line(result)


def test_user_add_without_terminal_exits_2(tmp_path: Path) -> None:
    result = run_kitectl("kontrol", "user", "add", "carol", "--db", str(tmp_path / "k.db"), env=cli_env(tmp_path))
    assert result.returncode == 2
    assert "--password-stdin" in error_line(result)
