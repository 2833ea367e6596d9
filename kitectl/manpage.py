"""The kitectl(1) man page in roff, generated from the command tree plus the fixed sections below."""

from __future__ import annotations

import re

from . import __version__
from .clispec import CommandSpec, OptionSpec, build_spec
from .errors import EXIT_STATUS_TABLE

ENVIRONMENT = [
    ("KITE_HOME", "Directory of kite.key. When it is set, no other place is searched."),
    ("KITE_KONTROL_URL", "Kontrol URL, overriding the kontrolURL claim of kite.key."),
    ("KITE_USERNAME", "User name for 'kitectl register' when --username is not given."),
    ("KITE_TRANSPORT", "Default transport of tell and ping: auto, WebSocket or XHRPolling."),
    ("KITE_PASSWORD", "Password that 'kitectl register' answers Kontrol with instead of prompting."),
    ("KITECTL_DEBUG", "Set to 1 to act as if --debug were given."),
    ("NO_COLOR", "When set to any value, tables and watch lines are printed without colour."),
]

FILES = [
    ("$KITE_HOME/kite.key",
     "The kite key, when KITE_HOME is set. Otherwise kitectl reads the first of ~/.config/kite/kite.key "
     "(the platform's user configuration directory) and ~/.kite/kite.key, where the Go tools keep it, "
     "and writes new keys to the first."),
    ("~/.local/share/kontrol/kontrol.db",
     "The SQLite database of 'kitectl kontrol' on Linux when --db and KONTROL_DB_PATH are unset "
     "(the platform's user data directory elsewhere)."),
]

EXAMPLES = [
    ("Start a Kontrol with embedded SQLite storage; on first start it creates a key pair and writes its "
     "kite.key, which kites and kitectl on this machine then use:", "kitectl kontrol serve"),
    ("List every kite of your user, then only those named math:", "kitectl query\nkitectl query \\-\\-name math"),
    ("Call square on every kite named math and print the result:", "kitectl tell \\-\\-query name=math square 4"),
    ("Call a kite by URL with a JSON object argument and a 10 second limit:",
     "kitectl tell \\-\\-timeout 10s http://127.0.0.1:6000/kite store '{\"key\": \"a\"}'"),
    ("Ping every kite named math three times:", "kitectl ping \\-\\-query name=math \\-c 3"),
    ("Follow registrations as JSON lines:", "kitectl query \\-\\-watch \\-\\-json"),
    ("On the Kontrol host, add a user; on another machine, get a key for that user:",
     "kitectl kontrol user add alice\nkitectl register \\-\\-kontrol\\-url http://kontrol.example:4000/kite "
     "\\-\\-username alice"),
]

_OPTION_TOKEN = re.compile(r"(?<![\w/])(--?[A-Za-z][\w-]*)")


def escape(text: str) -> str:
    """Escape text for roff: backslashes, hyphens of option names, and lines that would start a request."""
    text = text.replace("\\", "\\e")
    text = _OPTION_TOKEN.sub(lambda match: match.group(1).replace("-", "\\-"), text)
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in text.split("\n"))


def _paragraphs(text: str) -> list[str]:
    blocks = [block for block in re.split(r"\n\s*\n", text.replace("\b", "")) if block.strip()]
    return [" ".join(block.split()) for block in blocks]


def _option_lines(option: OptionSpec) -> list[str]:
    names = ", ".join(f"\\fB{escape(name)}\\fR" for name in [*option.names, *option.secondary_names])
    if option.takes_value:
        names += f" \\fI{escape(option.metavar)}\\fR"
    return [".TP", names, escape(" ".join(option.help.split()))]


def _command_section(command: CommandSpec) -> list[str]:
    lines = [f'.SS "{escape(command.name)}"', f".B {escape(command.name)}",
             escape(command.usage.removeprefix(command.name).strip()), ".PP"]
    paragraphs = _paragraphs(command.help)
    for index, paragraph in enumerate(paragraphs):
        if index:
            lines.append(".PP")
        lines.append(escape(paragraph))
    for argument in command.arguments:
        if argument.help:
            lines += [".TP", f"\\fI{escape(argument.metavar)}\\fR", escape(argument.help)]
    for option in command.options:
        if option.names[0] != "--help":
            lines += _option_lines(option)
    return lines


def render(spec: CommandSpec | None = None) -> str:
    """Return the kitectl(1) man page source."""
    spec = spec or build_spec()
    from kontrol.settings import KontrolSettings

    description = _paragraphs(spec.help)
    lines = [
        ".\\\" Generated from the kitectl command definitions by 'python -m kitectl.gen'; do not edit.",
        f'.TH KITECTL 1 "" "kitectl {__version__}" "User Commands"',
        ".\\\" Option names and paths read better unhyphenated and ragged right.",
        ".nh",
        ".ad l",
        ".SH NAME",
        f"kitectl \\- {escape(description[0][0].lower() + description[0][1:].rstrip('.'))}",
        ".SH SYNOPSIS",
        ".B kitectl",
        "[\\fB\\-\\-debug\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGS\\fR]...",
        ".br",
        ".B kitectl",
        "\\fB\\-\\-version\\fR | \\fB\\-\\-help\\fR",
        ".SH DESCRIPTION",
    ]
    for index, paragraph in enumerate(description[1:]):
        if index:
            lines.append(".PP")
        lines.append(escape(paragraph))
    lines += [
        ".PP",
        escape("Output is a table on a terminal and tab-separated lines without a header when piped. "
               "Every read command takes --json. Errors are one line on stderr: what failed, the value, "
               "and what to do. Spinners appear only when stderr is a terminal."),
        ".SH GLOBAL OPTIONS",
    ]
    for option in spec.options:
        lines += _option_lines(option)
    lines.append(".SH COMMANDS")
    for command in spec.walk()[1:]:
        if not command.subcommands:
            lines += _command_section(command)
    lines.append(".SH EXIT STATUS")
    for code, meaning in EXIT_STATUS_TABLE:
        lines += [".TP", f".B {code}", escape(meaning)]
    lines.append(".SH ENVIRONMENT")
    for name, meaning in ENVIRONMENT:
        lines += [".TP", f".B {name}", escape(meaning)]
    setting_names = ", ".join(f"KONTROL_{field.upper()}" for field in KontrolSettings.__dataclass_fields__)
    lines += [".TP", ".B KONTROL_*",
              escape("Settings of 'kitectl kontrol', applied before the flags: " + setting_names + ". "
                     "Durations take seconds or Go durations (30s, 48h); lists are comma-separated.")]
    lines.append(".SH FILES")
    for name, meaning in FILES:
        lines += [".TP", f".I {escape(name)}", escape(meaning)]
    lines.append(".SH EXAMPLES")
    for text, command_lines in EXAMPLES:
        lines += [".PP", escape(text), ".PP", ".RS", ".nf", command_lines, ".fi", ".RE"]
    lines += [".SH SEE ALSO", "The Go kite and kitectl of koding/kite, and kite.js, which speak the same protocol.", ""]
    return "\n".join(lines)
