"""``kitectl completion``: print a shell completion script generated from the command definitions."""

from __future__ import annotations

import enum
from typing import Annotated

import typer


class Shell(str, enum.Enum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


def completion(shell: Annotated[Shell, typer.Argument(metavar="bash|zsh|fish", help="The shell to print the script for.")]) -> None:
    """Print the completion script for a shell on stdout.

    bash: add 'source <(kitectl completion bash)' to ~/.bashrc. zsh: write
    it as _kitectl into a directory on $fpath. fish: write it to
    ~/.config/fish/completions/kitectl.fish. The same scripts ship in the
    completions/ directory of the source tree.
    """
    from ..completions import render

    print(render(shell.value), end="")
