"""Terminal-aware output: rich tables and spinners on a terminal, plain tab-separated text when piped.

rich is imported only when something is drawn on a terminal, so piped
output and ``--help`` do not pay for it. rich itself honours ``NO_COLOR``.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any, Iterator, Sequence


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def console(stderr: bool = False) -> Any:
    """Return a rich Console on stdout (or stderr); rich disables colour when NO_COLOR is set."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]],
                styles: Sequence[str | None] | None = None) -> None:
    """Print rows as a rich table on a terminal, else as tab-separated lines without a header.

    ``styles`` gives a rich style per column, used on a terminal only.
    """
    if not stdout_is_terminal():
        for row in rows:
            print("\t".join(_plain(value) for value in row))
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for index, column in enumerate(columns):
        table.add_column(column, overflow="fold", style=styles[index] if styles else None)
    for row in rows:
        table.add_row(*(_plain(value) for value in row))
    console().print(table)


def _plain(value: Any) -> str:
    text = "" if value is None else str(value)
    # A tab or newline inside a value would shift the columns of tab-separated output.
    return text.replace("\t", " ").replace("\n", " ")


def print_json(document: Any) -> None:
    """Print one JSON document: indented on a terminal, one line when piped."""
    indent = 2 if stdout_is_terminal() else None
    print(json.dumps(document, indent=indent, ensure_ascii=False))


def print_json_line(document: Any) -> None:
    print(json.dumps(document, ensure_ascii=False), flush=True)


def note(message: str) -> None:
    """Print a status message for people on stderr, so stdout keeps only the result."""
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def spinner(message: str) -> Iterator[None]:
    """Show a spinner with ``message`` on stderr while the block runs, only when stderr is a terminal."""
    if not stderr_is_terminal():
        yield
        return
    with console(stderr=True).status(message):
        yield
