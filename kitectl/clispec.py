"""A plain description of the kitectl command tree, read from the click commands typer builds.

The man page and the shell completion scripts are generated from it, so
they list exactly the commands and options the parser accepts.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any


@dataclass
class OptionSpec:
    """One option: all its spellings, and what its value looks like."""

    names: list[str]  # long and short spellings, e.g. ["--count", "-c"]
    secondary_names: list[str]  # the "off" spellings of an on/off flag, e.g. ["--no-init"]
    takes_value: bool
    choices: list[str]
    is_path: bool
    metavar: str
    help: str

    @property
    def all_names(self) -> list[str]:
        return [*self.names, *self.secondary_names]


@dataclass
class ArgumentSpec:
    metavar: str
    choices: list[str]
    help: str


@dataclass
class CommandSpec:
    path: list[str]  # ["kitectl", "kontrol", "serve"]
    usage: str
    help: str
    short_help: str
    epilog: str
    options: list[OptionSpec] = field(default_factory=list)
    arguments: list[ArgumentSpec] = field(default_factory=list)
    subcommands: list["CommandSpec"] = field(default_factory=list)

    @property
    def name(self) -> str:
        return " ".join(self.path)

    def walk(self) -> list["CommandSpec"]:
        """Return this command and every command below it, depth first in name order."""
        found = [self]
        for sub in self.subcommands:
            found += sub.walk()
        return found


def build_spec(command: Any = None) -> CommandSpec:
    """Describe ``command`` (default: the kitectl root command) and everything below it."""
    if command is None:
        from .main import get_command

        command = get_command()
    context = command.make_context("kitectl", [], resilient_parsing=True)
    return _describe(command, context, ["kitectl"])


def _describe(command: Any, context: Any, path: list[str]) -> CommandSpec:
    context_class = type(context)
    options: list[OptionSpec] = []
    arguments: list[ArgumentSpec] = []
    for param in command.get_params(context):
        if getattr(param, "hidden", False):
            continue
        choices = _choices(param)
        if param.param_type_name == "argument":
            metavar = param.metavar or param.name.upper()
            arguments.append(ArgumentSpec(metavar, choices, getattr(param, "help", None) or ""))
            continue
        takes_value = not param.is_flag and not getattr(param, "count", False)
        metavar = ""
        if takes_value:
            metavar = param.metavar or ("|".join(choices) if choices else param.name.upper())
        record = param.get_help_record(context)
        options.append(OptionSpec(
            names=sorted(param.opts, key=lambda name: (not name.startswith("--"), name)),
            secondary_names=list(param.secondary_opts),
            takes_value=takes_value,
            choices=choices,
            is_path=_is_path(param),
            metavar=metavar,
            help=record[1] if record else "",
        ))
    usage = " ".join([*path, *command.collect_usage_pieces(context)])
    spec = CommandSpec(path=path, usage=usage, help=inspect.cleandoc(command.help or ""),
                       short_help=command.get_short_help_str(limit=80), epilog=command.epilog or "",
                       options=sorted(options, key=lambda option: option.names[0].lstrip("-")),
                       arguments=arguments)
    if hasattr(command, "list_commands"):
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            if sub is None or getattr(sub, "hidden", False):
                continue
            sub_context = context_class(sub, info_name=name, parent=context, resilient_parsing=True)
            spec.subcommands.append(_describe(sub, sub_context, [*path, name]))
    spec.subcommands.sort(key=lambda sub: sub.path[-1])
    return spec


# typer 0.29 keeps the value type in ``type_descriptor``; older releases use click's ``param.type``.

def _choices(param: Any) -> list[str]:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None:
        values = descriptor.choices or ()
    else:
        values = getattr(param.type, "choices", None) or ()
    return [str(getattr(value, "value", value)) for value in values]


def _is_path(param: Any) -> bool:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None:
        return bool(descriptor.is_path or descriptor.is_file)
    return getattr(param.type, "name", "") in ("path", "file", "filename")
