"""The kitectl entry point: builds the typer app from the command modules and turns failures into exit codes.

Only typer and the command modules' signatures load at start-up; each
command imports kitelib or kontrol when it runs.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated, NoReturn

import typer

from . import __version__
from .commands import KitectlCommand, call, completion, kontrol_admin, query, register, showkey
from .proxy_cmd import proxy_app, tunnel_app
from .errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, CLIError, exit_status_epilog
from .runtime import State, debug_requested

try:
    from typer._click import exceptions as click_exceptions
except ImportError:  # typer releases before 0.20 use the click package itself
    import click.exceptions as click_exceptions  # type: ignore[no-redef]

HELP = """Run Kontrol, get kite keys, and find, call and ping kites.

kitectl speaks the Kite protocol, so it works with Go kites, kite.js and
Python kites alike. Commands that talk to Kontrol use the kite.key found in
$KITE_HOME, ~/.config/kite or ~/.kite ('kitectl showkey' tells which).
"""

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _print_version(value: bool) -> None:
    if value:
        print(f"kitectl {__version__}")
        raise typer.Exit()


def root(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="Print the kitectl version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show debug logs and tracebacks on stderr.")] = False,
) -> None:
    State.debug = debug or os.environ.get("KITECTL_DEBUG") == "1"


def build_app() -> typer.Typer:
    app = typer.Typer(name="kitectl", help=HELP, epilog=exit_status_epilog(), rich_markup_mode=None,
                      add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                      context_settings=CONTEXT_SETTINGS)
    app.callback()(root)
    app.add_typer(kontrol_admin.app, name="kontrol")
    app.add_typer(proxy_app, name="proxy")
    app.add_typer(tunnel_app, name="tunnel")
    app.command("register", cls=KitectlCommand)(register.register)
    app.command("showkey", cls=KitectlCommand)(showkey.showkey)
    app.command("query", cls=KitectlCommand, epilog=exit_status_epilog())(query.query)
    app.command("tell", cls=KitectlCommand, epilog=exit_status_epilog())(call.tell)
    app.command("ping", cls=KitectlCommand, epilog=exit_status_epilog())(call.ping)
    app.command("completion", cls=KitectlCommand)(completion.completion)
    return app


def get_command() -> typer.main.TyperGroup:  # type: ignore[name-defined]
    """Return the click command tree of kitectl, for the man page and completion generators."""
    return typer.main.get_command(build_app())


def _report(error: CLIError | str, debug: bool) -> None:
    if debug and sys.exc_info()[0] is not None:
        traceback.print_exc(file=sys.stderr)
    print(f"kitectl: {error}", file=sys.stderr, flush=True)


def _usage_message(exc: "click_exceptions.UsageError") -> CLIError:
    command_path = exc.ctx.command_path if exc.ctx is not None else "kitectl"
    message = exc.format_message().rstrip(".")
    return CLIError(f"invalid usage of '{command_path}'", message, f"see '{command_path} --help'", code=EXIT_USAGE)


def main(argv: list[str] | None = None) -> NoReturn:
    """Run kitectl with ``argv`` (default: sys.argv) and exit with its status."""
    args = sys.argv[1:] if argv is None else list(argv)
    command = get_command()
    code = 0
    try:
        result = command.main(args=args, prog_name="kitectl", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except CLIError as exc:
        _report(exc, debug_requested(args))
        code = exc.code
    except click_exceptions.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            # A group given no subcommand prints its help, on stdout as --help does.
            print(exc.format_message())
        else:
            _report(_usage_message(exc), debug_requested(args))
        code = EXIT_USAGE
    except click_exceptions.ClickException as exc:
        _report(exc.format_message(), debug_requested(args))
        code = exc.exit_code
    except typer.Abort:
        _report("aborted", debug_requested(args))
        code = EXIT_FAILURE
    except KeyboardInterrupt:
        _report("interrupted", debug_requested(args))
        code = EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout went away (kitectl query | head). Python would complain again while flushing at exit.
        sys.stdout = None  # type: ignore[assignment]
        code = EXIT_FAILURE
    except Exception as exc:  # a bug in kitectl or a library: one line, and the traceback with --debug
        _report(CLIError("internal error", f"{type(exc).__name__}: {exc}",
                         "rerun with --debug to see the traceback and report it"), debug_requested(args))
        code = EXIT_FAILURE
    sys.exit(code)
