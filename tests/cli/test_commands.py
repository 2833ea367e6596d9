"""kitectl query, tell, ping and showkey against a real Kontrol and math kite, through the kitectl executable."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest

import kitelib
from kitelib.auth.tokens import sign_claims
from kontrol.storage.sqlite import SQLiteStorage
from tests.cli.cli_support import Process, KITECTL, cli_env, error_line, run_kitectl
from tests.cli.conftest import CliWorld
from tests.servers import free_port


def write_expired_kite_key(world: CliWorld, home: Path) -> None:
    """Write a kite.key signed by the module Kontrol's current key pair that expired an hour ago."""
    async def current_pair() -> tuple[str, str]:
        storage = SQLiteStorage(path=world.db)
        await storage.start()
        try:
            pairs = [pair for pair in await storage.list_key_pairs(include_deleted=False)]
        finally:
            await storage.close()
        newest = max(pairs, key=lambda pair: pair.created_at)
        return newest.public_pem, newest.private_pem

    public_pem, private_pem = asyncio.run(current_pair())
    now = int(time.time())
    claims = {"sub": "kontrol", "iss": "kontrol", "kontrolURL": world.kontrol.url, "kontrolKey": public_pem,
              "iat": now - 7200, "exp": now - 3600, "jti": "expired-test-key"}
    home.mkdir(parents=True, exist_ok=True)
    (home / "kite.key").write_text(sign_claims(claims, private_pem))


# --- version, help --------------------------------------------------------


def test_version_matches_library(tmp_path: Path) -> None:
    result = run_kitectl("--version", env=cli_env(tmp_path))
    assert result.returncode == 0
    assert result.stdout.strip() == f"kitectl {kitelib.__version__}"


def test_help_lists_exit_codes(tmp_path: Path) -> None:
    result = run_kitectl("--help", env=cli_env(tmp_path))
    assert result.returncode == 0
    for fragment in ("Exit status:", "3  no kite matches", "64  the remote kite returned", "66  authenticationError",
                     "67  methodNotFound", "68  argumentError", "69  requestLimitError"):
        assert fragment in result.stdout


def test_group_without_subcommand_prints_help(tmp_path: Path) -> None:
    result = run_kitectl("kontrol", "keys", env=cli_env(tmp_path))
    assert result.returncode == 2
    assert "Usage: kitectl kontrol keys" in result.stdout
    assert "rotate" in result.stdout


# --- query ----------------------------------------------------------------


def test_query_piped_is_tab_separated(world: CliWorld) -> None:
    result = run_kitectl("query", env=world.env)
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert all(len(row) == 8 for row in rows), rows
    math_rows = [row for row in rows if row[2] == "math"]
    assert len(math_rows) == 1
    assert math_rows[0][0] == "kontrol"
    assert math_rows[0][7] == world.kite.url
    assert "\x1b[" not in result.stdout


def test_query_json(world: CliWorld) -> None:
    result = run_kitectl("query", "--name", "math", "--json", env=world.env)
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    assert [entry["url"] for entry in entries] == [world.kite.url]
    assert entries[0]["kite"]["name"] == "math"
    assert entries[0]["kite"]["version"] == "1.0.0"


def test_query_fields_after_gap(world: CliWorld) -> None:
    # version without environment and name leaves a gap that kitectl fills by filtering locally.
    result = run_kitectl("query", "--version", "1.0.0", "--json", env=world.env)
    assert result.returncode == 0, result.stderr
    assert [entry["kite"]["name"] for entry in json.loads(result.stdout)] == ["math"]


def test_query_no_match_exits_3(world: CliWorld) -> None:
    result = run_kitectl("query", "--name", "nosuchkite", env=world.env)
    assert result.returncode == 3
    assert "no kite matches the query" in error_line(result)
    assert "name=nosuchkite" in result.stderr


def test_query_unreachable_kontrol_exits_1(world: CliWorld) -> None:
    url = f"http://127.0.0.1:{free_port()}/kite"
    result = run_kitectl("query", "--kontrol-url", url, env=world.env)
    assert result.returncode == 1
    line = error_line(result)
    assert f"cannot reach Kontrol at {url}" in line
    assert "--kontrol-url" in line


def test_query_invalid_kontrol_url_exits_2(world: CliWorld) -> None:
    result = run_kitectl("query", "--kontrol-url", "kontrol.example:4000", env=world.env)
    assert result.returncode == 2
    assert "invalid Kontrol URL" in error_line(result)


def test_query_without_kite_key_exits_1(tmp_path: Path) -> None:
    result = run_kitectl("query", env=cli_env(tmp_path / "empty-home"))
    assert result.returncode == 1
    line = error_line(result)
    assert "kite.key not found" in line
    assert "kitectl register" in line


def test_query_expired_kite_key_exits_66(world: CliWorld, tmp_path: Path) -> None:
    home = tmp_path / "expired-home"
    write_expired_kite_key(world, home)
    result = run_kitectl("query", env=cli_env(home))
    assert result.returncode == 66
    line = error_line(result)
    assert "authenticationError" in line
    assert "expired" in line
    assert "kitectl register --force" in line


@pytest.mark.parametrize("as_json", [False, True], ids=["plain", "json"])
def test_query_watch_prints_events(world: CliWorld, as_json: bool) -> None:
    args = [*KITECTL, "query", "--watch", "--name", "math", *(["--json"] if as_json else [])]
    watch = Process(args, world.env, "kitectl query --watch")
    try:
        first = watch.wait_or_stop(r"PRESENT")
        assert world.kite.url in first.string

        def event(pattern: str) -> tuple[str, str]:
            line = watch.wait_or_stop(pattern).string
            if as_json:
                document = json.loads(line)
                assert document["kite"]["name"] == "math"
                return document["action"], document["url"]
            fields = line.split("\t")
            assert len(fields) == 9
            return fields[0], fields[8]

        from tests.cli.cli_support import KiteProcess

        extra = KiteProcess(world.home)
        try:
            assert event(r"REGISTER") == ("REGISTER", extra.url)
        finally:
            extra.stop()
        assert event(r"DEREGISTER") == ("DEREGISTER", extra.url)
        watch.send_signal(signal.SIGINT)
        assert watch.wait() == 0
    finally:
        watch.stop()


# --- tell -------------------------------------------------------------------


def test_tell_url_square(world: CliWorld) -> None:
    result = run_kitectl("tell", world.kite.url, "square", "4", env=world.env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "16\n"


def test_tell_argument_parsing(world: CliWorld) -> None:
    result = run_kitectl("tell", world.kite.url, "echo", "007", "1.5", "true", '{"a": 1}', "null", "hello", '"4"',
                         env=world.env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["007", 1.5, True, {"a": 1}, None, "hello", "4"]


def test_tell_negative_number_after_separator(world: CliWorld) -> None:
    result = run_kitectl("tell", world.kite.url, "square", "--", "-3", env=world.env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "9\n"


def test_tell_args_json(world: CliWorld) -> None:
    result = run_kitectl("tell", "--args-json", '[1, "2", [3]]', world.kite.url, "echo", env=world.env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [1, "2", [3]]


@pytest.mark.parametrize("transport", ["websocket", "xhr", "auto"])
def test_tell_transports(world: CliWorld, transport: str) -> None:
    result = run_kitectl("tell", "--transport", transport, world.kite.url, "square", "5", env=world.env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "25\n"


def test_tell_query_single_match_prints_result(world: CliWorld) -> None:
    result = run_kitectl("tell", "--query", "name=math", "square", "4", env=world.env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "16\n"


def test_tell_query_version_constraint_keeps_comma(world: CliWorld) -> None:
    result = run_kitectl("tell", "--query", "name=math,version=>=1.0.0, <2.0.0", "square", "2", env=world.env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "4\n"

    excluded = run_kitectl("tell", "--query", "name=math,version=>=2.0.0, <3.0.0", "square", "2", env=world.env)
    assert excluded.returncode == 3
    assert "version=>=2.0.0, <3.0.0" in error_line(excluded)


def test_tell_query_calls_every_match(world: CliWorld, second_math_kite: Process) -> None:
    result = run_kitectl("tell", "--query", "name=math,version=1.0.0", "square", "3", env=world.env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert all(line.startswith("/kontrol/unknown/math/1.0.0/") and line.endswith("\t9") for line in lines)

    one = run_kitectl("tell", "--query", "name=math", "--one", "square", "3", env=world.env)
    assert one.returncode == 0, one.stderr
    assert one.stdout == "9\n"

    as_json = run_kitectl("tell", "--json", "-q", "name=math", "square", "2", env=world.env)
    assert as_json.returncode == 0, as_json.stderr
    documents = json.loads(as_json.stdout)
    assert sorted(document["url"] for document in documents) == sorted([world.kite.url, second_math_kite.url])
    assert [document["result"] for document in documents] == [4, 4]
    assert all(document["error"] is None for document in documents)


def test_tell_json_reports_error(world: CliWorld) -> None:
    result = run_kitectl("tell", "--json", world.kite.url, "squar", "4", env=world.env)
    assert result.returncode == 67
    documents = json.loads(result.stdout)
    assert documents[0]["result"] is None
    assert documents[0]["error"]["type"] == "methodNotFound"
    assert documents[0]["error"]["exitCode"] == 67


@pytest.mark.parametrize(
    ("options", "words", "code", "fragment"),
    [
        ([], ["squar", "4"], 67, "methodNotFound: Method not found: squar"),
        ([], ["square", "x"], 68, "argumentError"),
        ([], ["square", "1", "2"], 68, "argumentError"),
        ([], ["fail"], 65, "math failed on purpose"),
        ([], ["failWithOwnType"], 64, "mathError: divided by zero"),
        (["--timeout", "0.5s"], ["slow"], 1, "timeout"),
    ],
    ids=["method-not-found", "wrong-type", "wrong-count", "generic-error", "application-type", "timeout"],
)
def test_tell_remote_error_exit_codes(world: CliWorld, options: list[str], words: list[str], code: int,
                                      fragment: str) -> None:
    result = run_kitectl("tell", *options, world.kite.url, *words, env=world.env)
    assert result.returncode == code, result.stderr
    assert fragment in error_line(result)
    assert result.stdout == ""


def test_tell_request_limit_exits_69(world: CliWorld) -> None:
    first = run_kitectl("tell", world.kite.url, "limited", env=world.env)
    assert first.returncode == 0, first.stderr
    second = run_kitectl("tell", world.kite.url, "limited", env=world.env)
    assert second.returncode == 69
    assert "requestLimitError" in error_line(second)


def test_tell_unreachable_kite_exits_1(world: CliWorld) -> None:
    url = f"http://127.0.0.1:{free_port()}/kite"
    result = run_kitectl("tell", url, "kite.ping", env=world.env)
    assert result.returncode == 1
    line = error_line(result)
    assert f"connection to {url} failed" in line
    assert "Connection refused" in line


def test_tell_debug_shows_traceback(world: CliWorld) -> None:
    url = f"http://127.0.0.1:{free_port()}/kite"
    result = run_kitectl("--debug", "tell", url, "kite.ping", env=world.env)
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("kitectl: connection to")


@pytest.mark.parametrize("url", ["not-a-url", "ftp://127.0.0.1/kite", "http://:80/kite", "http://host:port/kite"])
def test_tell_bad_url_exits_2(world: CliWorld, url: str) -> None:
    result = run_kitectl("tell", url, "kite.ping", env=world.env)
    assert result.returncode == 2
    assert "invalid kite URL" in error_line(result)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([], "Missing argument"),
        (["http://127.0.0.1:1/kite"], "missing METHOD"),
        (["--timeout", "soon", "http://127.0.0.1:1/kite", "kite.ping"], "invalid duration for --timeout"),
        (["--transport", "carrier-pigeon", "http://127.0.0.1:1/kite", "kite.ping"], "carrier-pigeon"),
        (["--args-json", "[1", "http://127.0.0.1:1/kite", "echo"], "invalid JSON in --args-json"),
        (["--args-json", "[1]", "http://127.0.0.1:1/kite", "echo", "2"], "both ARG words and --args-json"),
        (["--one", "http://127.0.0.1:1/kite", "echo"], "--one needs --query"),
        (["--query", "colour=blue", "echo"], "invalid --query"),
        (["--bogus", "http://127.0.0.1:1/kite", "echo"], "No such option"),
    ],
    ids=["no-args", "no-method", "bad-timeout", "bad-transport", "bad-args-json", "args-twice", "one-without-query",
         "bad-query-field", "unknown-option"],
)
def test_tell_usage_errors_exit_2(tmp_path: Path, args: list[str], fragment: str) -> None:
    result = run_kitectl("tell", *args, env=cli_env(tmp_path))
    assert result.returncode == 2
    assert fragment in error_line(result)


def test_tell_without_kite_key_exits_66(world: CliWorld, tmp_path: Path) -> None:
    result = run_kitectl("tell", world.kite.url, "square", "3", env=cli_env(tmp_path / "empty-home"))
    assert result.returncode == 66
    line = error_line(result)
    assert "authenticationError" in line
    assert "kite.key not found" in line


def test_tell_expired_kite_key_exits_66(world: CliWorld, tmp_path: Path) -> None:
    home = tmp_path / "expired-home"
    write_expired_kite_key(world, home)
    result = run_kitectl("tell", world.kite.url, "square", "3", env=cli_env(home))
    assert result.returncode == 66
    assert "expired" in error_line(result)


def test_tell_query_no_match_exits_3(world: CliWorld) -> None:
    result = run_kitectl("tell", "--query", "name=nosuchkite", "square", "3", env=world.env)
    assert result.returncode == 3
    assert "no kite matches the query" in error_line(result)


# --- ping -------------------------------------------------------------------


def test_ping_url_count(world: CliWorld) -> None:
    result = run_kitectl("ping", "-c", "3", world.kite.url, env=world.env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    identity, url, count, low, mean, high = lines[0].split("\t")
    assert identity == "-"
    assert url == world.kite.url
    assert count == "3"
    assert 0 < float(low) <= float(mean) <= float(high)


def test_ping_query_one_line_per_kite(world: CliWorld, second_math_kite: Process) -> None:
    result = run_kitectl("ping", "--query", "name=math", "--json", env=world.env)
    assert result.returncode == 0, result.stderr
    documents = json.loads(result.stdout)
    assert sorted(document["url"] for document in documents) == sorted([world.kite.url, second_math_kite.url])
    assert all(len(document["rttMs"]) == 1 and document["error"] is None for document in documents)
    assert all(document["kite"]["name"] == "math" for document in documents)

    plain = run_kitectl("ping", "-q", "name=math", env=world.env)
    assert plain.returncode == 0, plain.stderr
    assert len(plain.stdout.splitlines()) == 2


def test_ping_unreachable_exits_1(world: CliWorld) -> None:
    result = run_kitectl("ping", f"http://127.0.0.1:{free_port()}/kite", env=world.env)
    assert result.returncode == 1
    assert "connection to" in error_line(result)


def test_ping_needs_url_or_query(tmp_path: Path) -> None:
    result = run_kitectl("ping", env=cli_env(tmp_path))
    assert result.returncode == 2
    assert "give either URL or --query" in error_line(result)


# --- showkey ----------------------------------------------------------------


def test_showkey_plain_and_json(world: CliWorld) -> None:
    plain = run_kitectl("showkey", env=world.env)
    assert plain.returncode == 0, plain.stderr
    fields = dict(line.split("\t", 1) for line in plain.stdout.splitlines())
    assert fields["file"] == str(world.home / "kite.key")
    assert fields["sub"] == "kontrol"
    assert fields["kontrolURL"] == world.kontrol.url
    assert fields["kontrolKey"].startswith("PUBLIC KEY SHA256:")
    assert fields["signature"].startswith("valid")

    as_json = run_kitectl("showkey", "--json", env=world.env)
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["signature"] == {"valid": True, "error": None}
    assert document["claims"]["iss"] == "kontrol"
    assert document["claims"]["kontrolKey"].startswith("-----BEGIN PUBLIC KEY-----")
    assert document["expired"] is False


def test_showkey_tampered_key_exits_1(world: CliWorld, tmp_path: Path) -> None:
    token = (world.home / "kite.key").read_text()
    header, payload, signature = token.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    home = tmp_path / "tampered"
    home.mkdir()
    (home / "kite.key").write_text(f"{header}.{payload}.{flipped}")
    result = run_kitectl("showkey", env=cli_env(home))
    assert result.returncode == 1
    assert "signature\tINVALID" in result.stdout


def test_showkey_expired_key_exits_1(world: CliWorld, tmp_path: Path) -> None:
    home = tmp_path / "expired-home"
    write_expired_kite_key(world, home)
    result = run_kitectl("showkey", env=cli_env(home))
    assert result.returncode == 1
    assert "status\tEXPIRED" in result.stdout


def test_showkey_missing_key_exits_1(tmp_path: Path) -> None:
    result = run_kitectl("showkey", env=cli_env(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert "kite.key not found" in error_line(result)
