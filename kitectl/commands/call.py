"""``kitectl tell`` and ``kitectl ping``: call a method on one kite or on every match of a query."""

from __future__ import annotations

import enum
import json
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ..errors import EXIT_OK, REMOTE_EXIT_CODES, CLIError, from_kite_error, usage_error
from ..output import print_json, print_table, spinner, stdout_is_terminal
from ..runtime import authentication_hint, load_config, make_kite, parse_duration, run, setup_logging

if TYPE_CHECKING:
    from ..targets import Target

QueryOption = Annotated[Optional[str], typer.Option(
    "--query", "-q", metavar="FIELD=VALUE,...",
    help="Call the kites Kontrol finds for these identity fields instead of a URL, e.g. name=math,environment=prod. "
         "The username defaults to the one in kite.key.")]
TimeoutOption = Annotated[str, typer.Option(
    "--timeout", "-t", metavar="DURATION",
    help="Time limit for connecting and for each call: seconds (2.5) or a Go duration (4s, 1m, 500ms).")]


class Transport(str, enum.Enum):
    auto = "auto"
    websocket = "websocket"
    xhr = "xhr"


TransportOption = Annotated[Optional[Transport], typer.Option(
    "--transport", show_default=False,
    help="SockJS transport: auto tries WebSocket and falls back to XHR polling. Default: $KITE_TRANSPORT or auto.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document with results, errors and timings.")]
KontrolUrlOption = Annotated[Optional[str], typer.Option(
    "--kontrol-url", metavar="URL", help="Kontrol to query instead of the kontrolURL in kite.key or $KITE_KONTROL_URL.")]


@dataclass
class Outcome:
    """The result or error of one target's call, with its round-trip times in milliseconds."""

    target: "Target"
    result: Any = None
    error: CLIError | None = None
    wire_error: dict[str, str] | None = None
    rtts_ms: list[float] = field(default_factory=list)

    def error_json(self) -> dict[str, Any] | None:
        if self.error is None:
            return None
        document: dict[str, Any] = {"message": str(self.error), "exitCode": self.error.code}
        if self.wire_error is not None:
            document.update(self.wire_error)
        return document


def _call_error(exc: Any, action: str, target: "Target") -> CLIError:
    hint = ""
    if exc.type == "authenticationError" and target.identity is None:
        hint = authentication_hint("")
    return from_kite_error(exc, action, hint)


def _report_failures(outcomes: list[Outcome]) -> int:
    """Print every failure on stderr and return the exit code of the first, or 0."""
    code = EXIT_OK
    for outcome in outcomes:
        if outcome.error is not None:
            print(f"kitectl: {outcome.error}", file=sys.stderr, flush=True)
            if code == EXIT_OK:
                code = outcome.error.code
    return code


# --- tell ------------------------------------------------------------------


def tell(
    words: Annotated[list[str], typer.Argument(
        metavar="[URL] METHOD [ARG]...", show_default=False,
        help="The kite URL (left out with --query), the method, then its arguments.")],
    query_text: QueryOption = None,
    one: Annotated[bool, typer.Option("--one", help="With --query, call only the first match.")] = False,
    args_json: Annotated[Optional[str], typer.Option(
        "--args-json", metavar="JSON", help="All arguments as one JSON array, instead of ARG words.")] = None,
    timeout: TimeoutOption = "4s",
    transport: TransportOption = None,
    json_output: JsonOption = False,
    kontrol_url: KontrolUrlOption = None,
) -> None:
    """Call METHOD on a kite and print the result as JSON.

    Each ARG is sent as JSON when it is valid JSON and as a string otherwise:
    4 and 1.5 are numbers, true is a boolean, {"a":1} an object, while 007 and
    hello stay strings. Quote JSON strings for the shell: '"4"' sends the
    string "4". Put -- before arguments that start with a dash (negative
    numbers). To a URL, kitectl authenticates with the local kite.key if there
    is one; with --query it uses the tokens Kontrol hands out. With --query
    every match is called; when there are several, each result is printed on
    a line after the kite's identity.
    """
    if query_text is None:
        if len(words) < 2:
            raise usage_error("missing METHOD", " ".join(words), "use 'kitectl tell URL METHOD [ARG]...' or --query")
        url, method, raw_args = words[0], words[1], words[2:]
    else:
        url, method, raw_args = None, words[0], words[1:]
    if one and query_text is None:
        raise usage_error("--one needs --query", "", "drop --one or query Kontrol with --query FIELD=VALUE")

    from ..targets import parse_call_arguments

    arguments = parse_call_arguments(raw_args, args_json)
    seconds = parse_duration(timeout, "--timeout")
    setup_logging()
    transport_name = transport.value if transport is not None else None
    outcomes = run(lambda: _tell(url, query_text, one, method, arguments, seconds, transport_name, kontrol_url))

    if len(outcomes) == 1 and outcomes[0].error is not None and not json_output:
        raise outcomes[0].error
    if json_output:
        print_json([{**outcome.target.to_json(), "result": outcome.result, "error": outcome.error_json(),
                     "elapsedMs": round(outcome.rtts_ms[0], 3) if outcome.rtts_ms else None}
                    for outcome in outcomes])
    elif len(outcomes) == 1:
        if outcomes[0].error is None:
            _print_result(outcomes[0].result)
    else:
        rows = [(outcome.target.label, json.dumps(outcome.result, ensure_ascii=False))
                for outcome in outcomes if outcome.error is None]
        print_table(["KITE", "RESULT"], rows)
    code = _report_failures(outcomes)
    if code:
        raise typer.Exit(code)


def _print_result(result: Any) -> None:
    pretty = stdout_is_terminal() and isinstance(result, (dict, list)) and result
    print(json.dumps(result, indent=2 if pretty else None, ensure_ascii=False))


async def _tell(url: str | None, query_text: str | None, one: bool, method: str, arguments: list[Any],
                timeout: float, transport: str | None, kontrol_url: str | None) -> list[Outcome]:
    import asyncio

    from ..targets import apply_network_options, close_all, resolve_targets

    kite = make_kite(load_config())
    apply_network_options(kite, timeout=timeout, kontrol_url=kontrol_url)
    targets: list[Target] = []
    try:
        with spinner(f"calling {method}"):
            targets = await resolve_targets(kite, url=url, query_text=query_text, one=one, transport=transport,
                                            timeout=timeout)
            return list(await asyncio.gather(*(_tell_one(target, method, arguments, timeout)
                                               for target in targets)))
    finally:
        await close_all(kite, targets)


async def _tell_one(target: "Target", method: str, arguments: list[Any], timeout: float) -> Outcome:
    from kitelib.protocol.errors import KiteError

    from ..targets import connect

    outcome = Outcome(target)
    try:
        await connect(target)
        started = time.perf_counter()
        outcome.result = await target.client.tell(method, *arguments, timeout=timeout)
        outcome.rtts_ms.append((time.perf_counter() - started) * 1000)
    except CLIError as exc:
        outcome.error = exc
    except KiteError as exc:
        outcome.error = _call_error(exc, f"{method} on {target.label}", target)
        outcome.wire_error = exc.to_wire()
    return outcome


# --- ping ------------------------------------------------------------------


def ping(
    url: Annotated[Optional[str], typer.Argument(metavar="[URL]", show_default=False,
                                                 help="The kite URL; leave it out with --query.")] = None,
    query_text: QueryOption = None,
    count: Annotated[int, typer.Option("--count", "-c", min=1, metavar="COUNT",
                                       help="Pings per kite; the line shows min/avg/max when above 1.")] = 1,
    timeout: TimeoutOption = "4s",
    transport: TransportOption = None,
    json_output: JsonOption = False,
    kontrol_url: KontrolUrlOption = None,
) -> None:
    """Call kite.ping on a kite, or on every match of --query, and print one line per kite with its round-trip time.

    The time covers the call on an open connection, not the dial. kite.ping
    needs no credentials.
    """
    import statistics

    if (url is None) == (query_text is None):
        raise usage_error("give either URL or --query", url or query_text or "",
                          "use 'kitectl ping URL' or 'kitectl ping --query name=NAME'")
    seconds = parse_duration(timeout, "--timeout")
    setup_logging()
    transport_name = transport.value if transport is not None else None
    outcomes = run(lambda: _ping(url, query_text, count, seconds, transport_name, kontrol_url))

    if len(outcomes) == 1 and outcomes[0].error is not None and not json_output:
        raise outcomes[0].error
    if json_output:
        print_json([{**outcome.target.to_json(), "rttMs": [round(value, 3) for value in outcome.rtts_ms],
                     "error": outcome.error_json()} for outcome in outcomes])
    elif stdout_is_terminal():
        rows = [(_identity_text(outcome.target), outcome.target.url, _rtt_text(outcome.rtts_ms))
                for outcome in outcomes if outcome.error is None]
        print_table(["KITE", "URL", "RTT"], rows)
    else:
        for outcome in outcomes:
            if outcome.error is None:
                values = outcome.rtts_ms
                print("\t".join([_identity_text(outcome.target), outcome.target.url, str(len(values)),
                                 f"{min(values):.3f}", f"{statistics.fmean(values):.3f}", f"{max(values):.3f}"]))
    code = _report_failures(outcomes)
    if code:
        raise typer.Exit(code)


def _identity_text(target: "Target") -> str:
    return str(target.identity) if target.identity is not None else "-"


def _rtt_text(values: list[float]) -> str:
    import statistics

    if len(values) == 1:
        return f"{values[0]:.2f} ms"
    return f"{min(values):.2f}/{statistics.fmean(values):.2f}/{max(values):.2f} ms (min/avg/max of {len(values)})"


async def _ping(url: str | None, query_text: str | None, count: int, timeout: float, transport: str | None,
                kontrol_url: str | None) -> list[Outcome]:
    import asyncio

    from ..targets import apply_network_options, close_all, resolve_targets

    kite = make_kite(load_config())
    apply_network_options(kite, timeout=timeout, kontrol_url=kontrol_url)
    targets: list[Target] = []
    try:
        with spinner("pinging"):
            targets = await resolve_targets(kite, url=url, query_text=query_text, one=False, transport=transport,
                                            timeout=timeout)
            return list(await asyncio.gather(*(_ping_one(target, count, timeout) for target in targets)))
    finally:
        await close_all(kite, targets)


async def _ping_one(target: "Target", count: int, timeout: float) -> Outcome:
    from kitelib.protocol.errors import KiteError

    from ..targets import connect

    outcome = Outcome(target)
    try:
        await connect(target)
        for _ in range(count):
            started = time.perf_counter()
            answer = await target.client.tell("kite.ping", timeout=timeout)
            outcome.rtts_ms.append((time.perf_counter() - started) * 1000)
            if answer != "pong":
                raise CLIError(f"kite.ping on {target.label} returned an unexpected result", repr(answer)[:80],
                               "the remote end may not be a kite; check the URL",
                               code=REMOTE_EXIT_CODES["invalidResponse"])
    except CLIError as exc:
        outcome.error = exc
    except KiteError as exc:
        outcome.error = _call_error(exc, f"kite.ping on {target.label}", target)
        outcome.wire_error = exc.to_wire()
    return outcome
