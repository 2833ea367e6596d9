"""Shared plumbing of the commands: the event loop, logging, configuration and the CLI's own kite.

kitelib and kontrol are imported inside these functions, never at module
level, so that ``kitectl --help`` does not load them.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, TypeVar
from urllib.parse import urlsplit

from . import __version__
from .errors import CLIError, usage_error

if TYPE_CHECKING:
    from kitelib import Config, Kite

logger = logging.getLogger(__name__)

T = TypeVar("T")


class State:
    """Options of the root command that every subcommand reads."""

    debug = False


def debug_requested(argv: list[str]) -> bool:
    """Return whether --debug or KITECTL_DEBUG=1 requests tracebacks, even when parsing failed."""
    if os.environ.get("KITECTL_DEBUG") == "1" or State.debug:
        return True
    options = argv[: argv.index("--")] if "--" in argv else argv
    return "--debug" in options


def setup_logging(level: int | None = None) -> None:
    """Send log records to stderr: debug with --debug, else ``level`` (warnings by default)."""
    if level is None:
        level = logging.WARNING
    if State.debug:
        level = logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def run(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` on the event loop kitelib uses (uvloop when installed)."""
    from kitelib.kite import run_event_loop

    return run_event_loop(main())


def parse_duration(text: str, option: str) -> float:
    """Parse seconds (``2.5``) or a Go duration (``4s``, ``1m30s``, ``500ms``); a bad value is a usage error."""
    from kitelib.config import ConfigError, _parse_duration

    try:
        seconds = _parse_duration(option, text)
    except ConfigError:
        raise usage_error(f"invalid duration for {option}", repr(text),
                          "use seconds (4, 0.5) or a Go duration (4s, 1m30s, 500ms)") from None
    if seconds <= 0:
        raise usage_error(f"invalid duration for {option}", repr(text), "use a duration greater than zero")
    return seconds


def check_kite_url(url: str, what: str = "kite URL") -> str:
    """Return ``url`` if it is an http(s) or ws(s) URL with a host; otherwise raise a usage error."""
    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError when the port is not a number from 0 to 65535
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise usage_error(f"invalid {what}", repr(url),
                          "use http://host:port/kite (SockJS) or ws://host:port (raw WebSocket)")
    return url


def load_config(*, need_kite_key: bool = False) -> "Config":
    """Load the kite configuration (defaults < kite.key < KITE_* variables) as kitelib does."""
    from kitelib.auth.keyfile import KiteKeyError
    from kitelib.config import Config, ConfigError

    try:
        config = Config.load()
    except ConfigError as exc:
        raise CLIError("invalid configuration", str(exc), "fix or unset the KITE_* variable") from exc
    except KiteKeyError as exc:
        raise CLIError("cannot use kite.key", str(exc)) from exc
    if need_kite_key and not config.kite_key:
        raise kite_key_not_found()
    return config


def kite_key_not_found() -> CLIError:
    from kitelib.auth.keyfile import kite_key_candidates

    searched = ", ".join(str(path) for path in kite_key_candidates())
    return CLIError("kite.key not found", f"searched {searched}",
                    "run 'kitectl register' to get one, or set KITE_HOME to the directory that contains it")


def make_kite(config: "Config") -> "Kite":
    """Return the kite that kitectl calls other kites as, named ``kitectl``."""
    from kitelib import Kite

    return Kite("kitectl", __version__, config=config)


def kite_key_problem() -> str:
    """Describe why the local kite.key may be refused (missing, expired), or return ""."""
    from kitelib.auth.keyfile import KiteKeyError, load_kite_key

    try:
        key = load_kite_key()
    except KiteKeyError as exc:
        return str(exc)
    expires = key.claims.get("exp")
    if isinstance(expires, (int, float)) and expires < time.time():
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(expires))
        return f"kite.key {key.path} expired at {stamp}: get a new one with 'kitectl register --force'"
    return ""


def authentication_hint(default: str) -> str:
    """Return the advice for an authenticationError: the kite.key problem if there is one."""
    problem = kite_key_problem()
    return problem or default


def identity_fields(identity: Any) -> list[str]:
    from kitelib.protocol.identity import FIELDS

    return [getattr(identity, field) for field in FIELDS]

