"""Exit codes and the one-line error messages of kitectl.

Every failure ends as a CLIError: main() prints it as
``kitectl: <what failed>: <value>: <what to do>`` on stderr and exits with its
code. Remote kite errors get 64 + a number per wire error type, the way
grpcurl adds 64 to the gRPC status code, so scripts can tell a missing method
from a refused connection. This module imports nothing heavy.
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NO_MATCH = 3
EXIT_INTERRUPTED = 130
REMOTE_ERROR_BASE = 64

# Wire error type -> exit code. A type not listed here (an application's own) exits with REMOTE_ERROR_BASE.
REMOTE_EXIT_CODES: dict[str, int] = {
    "genericError": 65,
    "authenticationError": 66,
    "methodNotFound": 67,
    "argumentError": 68,
    "requestLimitError": 69,
    "invalidResponse": 70,
}

# The client-side wire types that mean the link or the clock failed, not the remote handler.
LOCAL_ERROR_TYPES = ("sendError", "timeout", "disconnect")

# (code, meaning) rows for --help and the man page.
EXIT_STATUS_TABLE: list[tuple[str, str]] = [
    ("0", "success"),
    ("1", "local failure: connection refused, timeout, disconnect, missing or unreadable file"),
    ("2", "usage error: unknown option, missing argument, invalid value or URL"),
    ("3", "no kite matches the query (query, tell --query, ping --query)"),
    ("64", "the remote kite returned an error of a type not listed below (an application's own type)"),
    ("65", "genericError: the remote handler failed"),
    ("66", "authenticationError: the remote kite or Kontrol rejected the credentials"),
    ("67", "methodNotFound: the remote kite has no such method"),
    ("68", "argumentError: the remote method rejected the arguments"),
    ("69", "requestLimitError: the remote kite throttled the call"),
    ("70", "invalidResponse: the remote kite sent a reply that is not a kite response"),
    ("130", "interrupted by Ctrl-C (query --watch exits 0 instead)"),
]

_REMOTE_HINTS = {
    "genericError": "see the remote kite's log for the cause",
    "authenticationError": "check the key with 'kitectl showkey', or get a new one with 'kitectl register --force'",
    "methodNotFound": "check the method name; it is case-sensitive",
    "argumentError": "check the number and types of the arguments; pass them with --args-json if quoting is hard",
    "requestLimitError": "the kite limits its call rate; retry later",
    "invalidResponse": "the remote end may not be a kite; check the URL",
}


def exit_status_epilog() -> str:
    """Return the exit status table as a --help epilog that click prints without rewrapping."""
    lines = ["\b", "Exit status:"]
    lines += [f"  {code:>3}  {meaning}" for code, meaning in EXIT_STATUS_TABLE]
    return "\n".join(lines)


class CLIError(Exception):
    """A failure to report on one line: what failed, on which value, and what to do next."""

    def __init__(self, what: str, value: Any = None, hint: str = "", *, code: int = EXIT_FAILURE):
        super().__init__(what)
        self.what = what
        self.value = value
        self.hint = hint
        self.code = code

    def __str__(self) -> str:
        parts = [self.what]
        if self.value not in (None, ""):
            parts.append(str(self.value))
        if self.hint:
            parts.append(self.hint)
        return ": ".join(parts)


def usage_error(what: str, value: Any = None, hint: str = "") -> CLIError:
    return CLIError(what, value, hint, code=EXIT_USAGE)


def exit_code_for_type(wire_type: str) -> int:
    """Return the exit code of a kite error type; local link failures exit 1."""
    if wire_type in LOCAL_ERROR_TYPES:
        return EXIT_FAILURE
    return REMOTE_EXIT_CODES.get(wire_type, REMOTE_ERROR_BASE)


def from_kite_error(exc: Any, action: str, hint: str = "") -> CLIError:
    """Turn a kitelib KiteError raised while doing ``action`` into a CLIError with its exit code.

    ``hint`` replaces the default advice for the error type.
    """
    wire_type = getattr(exc, "type", "") or "genericError"
    if wire_type == "timeout":
        default_hint = "the call timed out; raise --timeout or check that the kite is alive"
    elif wire_type in LOCAL_ERROR_TYPES:
        default_hint = "the connection failed; check that the kite is running and retry"
    else:
        default_hint = _REMOTE_HINTS.get(wire_type, f"the remote kite returned its own error type {wire_type!r}")
    return CLIError(f"{action} failed", str(exc), hint or default_hint, code=exit_code_for_type(wire_type))
