"""kitectl output on a terminal (a pseudo-terminal here): rich tables, colour, and NO_COLOR."""

from __future__ import annotations

import errno
import os
import re
import subprocess

from tests.cli.cli_support import KITECTL, REPO
from tests.cli.conftest import CliWorld

COLOUR = re.compile(r"\x1b\[[0-9;]*3[0-9](;[0-9]+)*m|\x1b\[[0-9;]*38;[25];")


def run_on_terminal(args: list[str], env: dict[str, str], timeout: float = 60.0) -> tuple[int, str]:
    """Run kitectl with stdin, stdout and stderr on a new pseudo-terminal; return its exit code and output."""
    controller, terminal = os.openpty()
    try:
        process = subprocess.Popen([*KITECTL, *args], cwd=REPO, env=env, stdin=terminal, stdout=terminal,
                                   stderr=terminal, close_fds=True)
    finally:
        os.close(terminal)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError as exc:
                if exc.errno != errno.EIO:  # EIO: the terminal closed because the process exited
                    raise
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(controller)
    return process.wait(timeout), b"".join(chunks).decode(errors="replace")


def terminal_env(world: CliWorld, **extra: str) -> dict[str, str]:
    return {**world.env, "TERM": "xterm-256color", "COLUMNS": "250", **extra}


def test_query_on_terminal_is_coloured_table(world: CliWorld) -> None:
    code, output = run_on_terminal(["query", "--name", "math"], terminal_env(world))
    assert code == 0, output
    assert "USERNAME" in output
    assert "URL" in output
    assert world.kite.url in output
    assert "\t" not in output
    assert COLOUR.search(output), repr(output)


def test_no_color_removes_colour(world: CliWorld) -> None:
    code, output = run_on_terminal(["query", "--name", "math"], terminal_env(world, NO_COLOR="1"))
    assert code == 0, output
    assert "USERNAME" in output
    assert world.kite.url in output
    assert not COLOUR.search(output), repr(output)


def test_tell_on_terminal_prints_result(world: CliWorld) -> None:
    code, output = run_on_terminal(["tell", world.kite.url, "echo", '{"a": [1, 2]}'], terminal_env(world))
    assert code == 0, output
    # Results stay JSON on a terminal, indented for reading.
    assert '"a": [' in output
