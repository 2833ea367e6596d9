"""The kitectl command groups, one module each. Commands import kitelib and kontrol only when they run."""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand


class KitectlCommand(TyperCommand):
    """A typer command whose usage line and Arguments section show each argument's metavar as written.

    typer would print ``{[URL] METHOD [ARG]...}...`` and a ``<list[str]>``
    type label for tell's words; kitectl documents them as they are typed.
    """

    def _arguments(self) -> list[Any]:
        return [param for param in self.params if param.param_type_name == "argument" and not param.hidden]

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [self.options_metavar or "[OPTIONS]", *(param.metavar or param.name.upper() for param in self._arguments())]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments = [(param.metavar or param.name.upper(), param.help or "") for param in self._arguments()]
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        options = [record for param in self.get_params(ctx) if param.param_type_name == "option"
                   for record in [param.get_help_record(ctx)] if record is not None]
        if options:
            with formatter.section("Options"):
                formatter.write_dl(options)
