"""Static bash, zsh and fish completion scripts, generated from the kitectl command tree.

The scripts hold the command names, options and option choices as data, so
completing never starts Python. Each one finds the command being typed by
walking the words before the cursor: a word that names a subcommand descends,
an option that takes a value skips the next word.
"""

from __future__ import annotations

from typing import Callable

from .clispec import CommandSpec, OptionSpec, build_spec

SHELLS = ("bash", "zsh", "fish")
HEADER = "generated from the kitectl command definitions by 'python -m kitectl.gen'; do not edit"
FILE_VALUE = "@file"


def render(shell: str, spec: CommandSpec | None = None) -> str:
    """Return the completion script for ``shell`` (bash, zsh or fish)."""
    renderers: dict[str, Callable[[CommandSpec], str]] = {"bash": render_bash, "zsh": render_zsh,
                                                          "fish": render_fish}
    if shell not in renderers:
        raise ValueError(f"unknown shell {shell!r}: use one of {', '.join(SHELLS)}")
    return renderers[shell](spec or build_spec())


def _first_sentence(text: str, limit: int = 90) -> str:
    text = " ".join(text.replace("\b", "").split())
    end = text.find(". ")
    sentence = text if end < 0 else text[: end + 1]
    if len(sentence) > limit:
        sentence = sentence[: limit - 3].rstrip() + "..."
    return sentence.rstrip(".")


def _value_words(option: OptionSpec) -> str:
    """Return the completion words for an option's value: its choices, @file for a path, or ""."""
    if option.choices:
        return " ".join(option.choices)
    return FILE_VALUE if option.is_path else ""


def _argument_choices(command: CommandSpec) -> list[str]:
    return [choice for argument in command.arguments for choice in argument.choices]


def _single_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _case_function(name: str, comment: str, entries: list[tuple[str, str]], *, zsh_array: str = "") -> list[str]:
    """Return a shell function that prints (or, for zsh, sets ``zsh_array`` to) a value per case key."""
    lines = [f"# {comment}", f"{name}() {{", '    case "$1" in']
    for key, value in entries:
        if zsh_array:
            lines.append(f'        "{key}") {zsh_array}=({value}) ;;')
        else:
            lines.append(f'        "{key}") echo {_single_quote(value)} ;;')
    if zsh_array:
        lines.append(f"        *) {zsh_array}=() ;;")
    lines += ["    esac", "}", ""]
    return lines


def _common_tables(spec: CommandSpec) -> list[str]:
    """Return the lookup functions bash and zsh share: subcommands, options, value options and values."""
    commands = spec.walk()
    subcommands = [(command.name, " ".join(sub.path[-1] for sub in command.subcommands))
                   for command in commands if command.subcommands]
    options = [(command.name, " ".join(sorted(name for option in command.options for name in option.all_names)))
               for command in commands]
    value_options = [(command.name, " ".join(sorted(name for option in command.options if option.takes_value
                                                    for name in option.names)))
                     for command in commands if any(option.takes_value for option in command.options)]
    values = [(f"{command.name}|{name}", _value_words(option)) for command in commands for option in command.options
              if option.takes_value and _value_words(option) for name in option.names]
    arguments = [(command.name, " ".join(_argument_choices(command)))
                 for command in commands if _argument_choices(command)]
    lines: list[str] = []
    lines += _case_function("_kitectl_subcommands", "Subcommands of a command path.", subcommands)
    lines += _case_function("_kitectl_options", "Every option of a command path.", options)
    lines += _case_function("_kitectl_value_options", "The options of a command path that take a value.",
                            value_options)
    lines += _case_function("_kitectl_option_values",
                            f"Values of an option given as 'PATH|OPTION': choices, or {FILE_VALUE} for a file name.",
                            values)
    lines += _case_function("_kitectl_arguments", "Choices for the positional arguments of a command path.", arguments)
    return lines


def render_bash(spec: CommandSpec) -> str:
    lines = [
        f"# bash completion for kitectl, {HEADER}.",
        "# Load it with: source <(kitectl completion bash)",
        "",
        *_common_tables(spec),
        "_kitectl() {",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
        '    local command="kitectl" word i skip=0',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        word="${COMP_WORDS[i]}"',
        "        if ((skip)); then",
        "            skip=0",
        "            continue",
        "        fi",
        '        if [[ "$word" == -* ]]; then',
        '            [[ " $(_kitectl_value_options "$command") " == *" $word "* ]] && skip=1',
        "            continue",
        "        fi",
        '        if [[ " $(_kitectl_subcommands "$command") " == *" $word "* ]]; then',
        '            command="$command $word"',
        "        fi",
        "    done",
        "    local values",
        "    if ((skip)); then",
        '        values="$(_kitectl_option_values "$command|$prev")"',
        f'        if [[ "$values" == "{FILE_VALUE}" ]]; then',
        "            compopt -o filenames 2>/dev/null",
        '            mapfile -t COMPREPLY < <(compgen -f -- "$cur")',
        "        else",
        '            mapfile -t COMPREPLY < <(compgen -W "$values" -- "$cur")',
        "        fi",
        "        return 0",
        "    fi",
        '    if [[ "$cur" == -* ]]; then',
        '        mapfile -t COMPREPLY < <(compgen -W "$(_kitectl_options "$command")" -- "$cur")',
        "        return 0",
        "    fi",
        '    values="$(_kitectl_subcommands "$command")"',
        '    if [[ -z "$values" ]]; then',
        '        values="$(_kitectl_arguments "$command")"',
        "    fi",
        '    mapfile -t COMPREPLY < <(compgen -W "$values" -- "$cur")',
        "    return 0",
        "}",
        "",
        "complete -F _kitectl kitectl",
        "",
    ]
    return "\n".join(lines)


def _zsh_entries(pairs: list[tuple[str, str]]) -> str:
    return " ".join(_single_quote(f"{name}:{description}") for name, description in pairs)


def render_zsh(spec: CommandSpec) -> str:
    commands = spec.walk()
    described_subcommands = [(command.name, _zsh_entries([(sub.path[-1], _first_sentence(sub.help or sub.short_help))
                                                          for sub in command.subcommands]))
                             for command in commands if command.subcommands]
    described_options = [(command.name, _zsh_entries([(name, _first_sentence(option.help)) for option in command.options
                                                      for name in option.all_names]))
                         for command in commands]
    lines = [
        "#compdef kitectl",
        f"# zsh completion for kitectl, {HEADER}.",
        "# Install it as _kitectl in a directory on $fpath, e.g. kitectl completion zsh > \"${fpath[1]}/_kitectl\",",
        "# or load it in a running shell with: source <(kitectl completion zsh)",
        "",
        *_common_tables(spec),
        *_case_function("_kitectl_describe_subcommands", "Subcommands with descriptions, as name:description.",
                        described_subcommands, zsh_array="_kitectl_entries"),
        *_case_function("_kitectl_describe_options", "Options with descriptions, as name:description.",
                        described_options, zsh_array="_kitectl_entries"),
        "_kitectl() {",
        '    local command="kitectl" word i skip=0 values',
        "    local -a _kitectl_entries",
        "    for ((i = 2; i < CURRENT; i++)); do",
        '        word="${words[i]}"',
        "        if ((skip)); then",
        "            skip=0",
        "            continue",
        "        fi",
        '        if [[ "$word" == -* ]]; then',
        '            [[ " $(_kitectl_value_options "$command") " == *" $word "* ]] && skip=1',
        "            continue",
        "        fi",
        '        if [[ " $(_kitectl_subcommands "$command") " == *" $word "* ]]; then',
        '            command="$command $word"',
        "        fi",
        "    done",
        "    if ((skip)); then",
        '        values="$(_kitectl_option_values "$command|${words[CURRENT-1]}")"',
        f'        if [[ "$values" == "{FILE_VALUE}" ]]; then',
        "            _files",
        '        elif [[ -n "$values" ]]; then',
        "            compadd -- ${=values}",
        "        else",
        '            _message "value for ${words[CURRENT-1]}"',
        "        fi",
        "        return",
        "    fi",
        '    if [[ "${words[CURRENT]}" == -* ]]; then',
        '        _kitectl_describe_options "$command"',
        "        _describe -t options option _kitectl_entries",
        "        return",
        "    fi",
        '    _kitectl_describe_subcommands "$command"',
        "    if (( ${#_kitectl_entries} )); then",
        "        _describe -t commands command _kitectl_entries",
        "        return",
        "    fi",
        '    values="$(_kitectl_arguments "$command")"',
        '    [[ -n "$values" ]] && compadd -- ${=values}',
        "}",
        "",
        'if [[ "${funcstack[1]}" == "_kitectl" ]]; then',
        '    _kitectl "$@"',
        "else",
        "    compdef _kitectl kitectl",
        "fi",
        "",
    ]
    return "\n".join(lines)


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_switch(name: str, comment: str, entries: list[tuple[str, list[str]]]) -> list[str]:
    lines = [f"# {comment}", f"function {name}", "    switch $argv[1]"]
    for key, words in entries:
        lines += [f"        case {_fish_quote(key)}", "            printf '%s\\n' " + " ".join(
            _fish_quote(word) for word in words)]
    lines += ["    end", "end", ""]
    return lines


def render_fish(spec: CommandSpec) -> str:
    commands = spec.walk()
    lines = [
        f"# fish completion for kitectl, {HEADER}.",
        "# Install it with: kitectl completion fish > ~/.config/fish/completions/kitectl.fish",
        "",
        *_fish_switch("__kitectl_subcommands", "Subcommands of a command path, one per line.",
                      [(command.name, [sub.path[-1] for sub in command.subcommands])
                       for command in commands if command.subcommands]),
        *_fish_switch("__kitectl_value_options", "The options of a command path that take a value, one per line.",
                      [(command.name, sorted(name for option in command.options if option.takes_value
                                             for name in option.names))
                       for command in commands if any(option.takes_value for option in command.options)]),
        "# Print the command path typed so far, e.g. 'kitectl kontrol keys'.",
        "function __kitectl_command",
        "    set -l tokens (commandline -opc)",
        "    set -e tokens[1]",
        "    set -l command kitectl",
        "    set -l skip 0",
        "    for token in $tokens",
        "        if test $skip = 1",
        "            set skip 0",
        "            continue",
        "        end",
        "        if string match -q -- '-*' $token",
        "            if contains -- $token (__kitectl_value_options $command)",
        "                set skip 1",
        "            end",
        "            continue",
        "        end",
        "        if contains -- $token (__kitectl_subcommands $command)",
        '            set command "$command $token"',
        "        end",
        "    end",
        "    echo $command",
        "end",
        "",
        "function __kitectl_at",
        '    test (__kitectl_command) = "$argv[1]"',
        "end",
        "",
        "complete -c kitectl -f",
    ]
    for command in commands:
        condition = _fish_quote(f"__kitectl_at {_fish_quote(command.name)}")
        for sub in command.subcommands:
            lines.append(f"complete -c kitectl -n {condition} -a {_fish_quote(sub.path[-1])} "
                         f"-d {_fish_quote(_first_sentence(sub.help or sub.short_help))}")
        for option in command.options:
            for names in ([*option.names], [*option.secondary_names]):
                if not names:
                    continue
                flags = " ".join(f"-l {name[2:]}" if name.startswith("--") else f"-s {name[1:]}" for name in names)
                if option.takes_value:
                    if option.choices:
                        flags += f" -x -a {_fish_quote(' '.join(option.choices))}"
                    elif option.is_path:
                        flags += " -r -F"
                    else:
                        flags += " -x"
                lines.append(f"complete -c kitectl -n {condition} {flags} -d {_fish_quote(_first_sentence(option.help))}")
        choices = _argument_choices(command)
        if choices:
            lines.append(f"complete -c kitectl -n {condition} -a {_fish_quote(' '.join(choices))}")
    lines.append("")
    return "\n".join(lines)
