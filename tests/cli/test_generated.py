"""The checked-in completion scripts and man page: current, and working in bash, zsh, fish and man."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.cli_support import REPO, cli_env, run_kitectl

COMPLETIONS = REPO / "completions"
MAN_PAGE = REPO / "man" / "kitectl.1"


def test_generated_files_are_current(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "kitectl.gen", "--check"], cwd=REPO,
                            env=cli_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"run 'python -m kitectl.gen' and commit the result:\n{result.stderr}"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_command_prints_checked_in_script(tmp_path: Path, shell: str) -> None:
    result = run_kitectl("completion", shell, env=cli_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == (COMPLETIONS / f"kitectl.{shell}").read_text()


def test_completion_unknown_shell_exits_2(tmp_path: Path) -> None:
    result = run_kitectl("completion", "tcsh", env=cli_env(tmp_path))
    assert result.returncode == 2


def bash_complete(*words: str) -> list[str]:
    """Return bash's completions for the command line ``words`` (the last word is being completed)."""
    script = (
        f"source {COMPLETIONS / 'kitectl.bash'}\n"
        'COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n'
        "_kitectl\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(["bash", "-c", script, "bash", *words], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return [line for line in result.stdout.splitlines() if line]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["kitectl", "te"], ["tell"]),
        (["kitectl", "--debug", "kontrol", ""], ["init", "keys", "serve", "token", "user"]),
        (["kitectl", "kontrol", "keys", ""], ["rotate"]),
        (["kitectl", "tell", "--transport", ""], ["auto", "websocket", "xhr"]),
        (["kitectl", "tell", "-t", "4s", "--tr"], ["--transport"]),
        (["kitectl", "kontrol", "serve", "--storage", "p"], ["postgres"]),
        (["kitectl", "completion", ""], ["bash", "zsh", "fish"]),
        (["kitectl", "query", "--w"], ["--watch"]),
    ],
    ids=["prefix", "group-after-option", "nested-group", "choices", "option-after-value",
         "storage-choice", "argument-choices", "query-option"],
)
def test_bash_completion(words: list[str], expected: list[str]) -> None:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    assert bash_complete(*words) == expected


def test_bash_completion_lists_commands() -> None:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    commands = bash_complete("kitectl", "")
    assert commands == sorted(set(commands))
    for command in ("completion", "kontrol", "ping", "query", "register", "showkey", "tell"):
        assert command in commands


def test_bash_completion_of_file_option(tmp_path: Path) -> None:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    (tmp_path / "kontrol.db").write_text("")
    assert bash_complete("kitectl", "kontrol", "serve", "--db", str(tmp_path / "kon")) == [str(tmp_path / "kontrol.db")]


def test_zsh_completion_loads() -> None:
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed (Debian package zsh)")
    script = (
        "compdef() { print -r -- \"compdef $*\"; }\n"
        f"source {COMPLETIONS / 'kitectl.zsh'}\n"
        '_kitectl_describe_subcommands "kitectl kontrol"; print -l -- $_kitectl_entries\n'
        '_kitectl_option_values "kitectl tell|--transport"\n'
    )
    result = subprocess.run(["zsh", "-f", "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "compdef _kitectl kitectl"
    assert [line.split(":")[0] for line in lines[1:6]] == ["init", "keys", "serve", "token", "user"]
    assert lines[6] == "auto websocket xhr"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("kitectl te", ["tell"]),
        ("kitectl kontrol ", ["init", "keys", "serve", "token", "user"]),
        ("kitectl tell --transport ", ["auto", "websocket", "xhr"]),
        ("kitectl completion ", ["bash", "fish", "zsh"]),
    ],
)
def test_fish_completion(line: str, expected: list[str]) -> None:
    if shutil.which("fish") is None:
        pytest.skip("fish is not installed (Debian package fish)")
    script = f"source {COMPLETIONS / 'kitectl.fish'}; complete -C {line!r}"
    result = subprocess.run(["fish", "--no-config", "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert sorted(entry.split("\t")[0] for entry in result.stdout.splitlines()) == sorted(expected)


def test_man_page_renders() -> None:
    env = {**os.environ, "MANPAGER": "cat", "PAGER": "cat", "MANWIDTH": "100", "LANG": "C.UTF-8"}
    if shutil.which("man") is not None:
        command = ["man", str(MAN_PAGE)]
    elif shutil.which("groff") is not None:
        command = ["groff", "-man", "-Tutf8", str(MAN_PAGE)]
    else:
        pytest.skip("neither man nor groff is installed, so the page cannot be rendered")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    text = result.stdout.replace("\u2010", "-")
    for section in ("NAME", "SYNOPSIS", "COMMANDS", "EXIT STATUS", "ENVIRONMENT", "FILES", "EXAMPLES"):
        assert section in text
    for command in ("kitectl tell", "kitectl query", "kitectl kontrol serve", "kitectl kontrol keys rotate"):
        assert command in text
    assert "methodNotFound" in text


def test_man_page_has_no_groff_warnings() -> None:
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed")
    result = subprocess.run(["groff", "-man", "-ww", "-z", str(MAN_PAGE)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    assert result.stderr == ""
