"""``kitectl query``: list the kites registered with Kontrol, or follow their registrations with --watch."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ..errors import EXIT_FAILURE, CLIError
from ..output import print_json, print_json_line, print_table, spinner, stdout_is_terminal
from ..runtime import identity_fields, load_config, make_kite, parse_duration, run, setup_logging

if TYPE_CHECKING:
    from kitelib import Kite

COLUMNS = ["USERNAME", "ENVIRONMENT", "NAME", "VERSION", "REGION", "HOSTNAME", "ID", "URL"]
COLUMN_STYLES = [None, None, "bold cyan", None, None, None, "dim", None]
# The action printed for kites that were already registered when --watch started.
PRESENT = "PRESENT"


def _field(name: str, extra: str = "") -> Any:
    return typer.Option(f"--{name}", metavar=name.upper(), help=f"Match the {name} field exactly.{extra}")


def query(
    username: Annotated[Optional[str], _field("username", " Default: the username in kite.key.")] = None,
    environment: Annotated[Optional[str], _field("environment")] = None,
    name: Annotated[Optional[str], _field("name")] = None,
    version: Annotated[Optional[str], typer.Option(
        "--version", metavar="VERSION",
        help="Match the version: exact (1.0.0) or a constraint Kontrol understands (>=1.0.0).")] = None,
    region: Annotated[Optional[str], _field("region")] = None,
    hostname: Annotated[Optional[str], _field("hostname")] = None,
    kite_id: Annotated[Optional[str], _field("id")] = None,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print a JSON array of {kite, url}; with --watch one JSON object per line.")] = False,
    watch: Annotated[bool, typer.Option(
        "--watch", "-w", help="Keep running and print a line per REGISTER or DEREGISTER until Ctrl-C.")] = False,
    timeout: Annotated[str, typer.Option(
        "--timeout", "-t", metavar="DURATION", help="Time limit for reaching Kontrol: seconds or a Go duration.")] = "15s",
    kontrol_url: Annotated[Optional[str], typer.Option(
        "--kontrol-url", metavar="URL",
        help="Kontrol to query instead of the kontrolURL in kite.key or $KITE_KONTROL_URL.")] = None,
) -> None:
    """List the kites registered with Kontrol that match the given identity fields.

    Any subset of the seven fields works; the username defaults to the one in
    kite.key. On a terminal the matches are a table; piped, each match is one
    tab-separated line: username, environment, name, version, region,
    hostname, id, URL. With no match kitectl prints an error and exits 3.

    With --watch the kites already registered are printed first with the
    action PRESENT, then each REGISTER and DEREGISTER as it happens, until
    Ctrl-C (exit 0). Piped, a watch line is the action, the seven fields and
    the URL, tab-separated.
    """
    fields = {"username": username, "environment": environment, "name": name, "version": version,
              "region": region, "hostname": hostname, "id": kite_id}
    fields = {key: value for key, value in fields.items() if value}
    seconds = parse_duration(timeout, "--timeout")
    setup_logging()
    if watch:
        run(lambda: _watch(fields, seconds, kontrol_url, json_output))
        return
    entries = run(lambda: _query(fields, seconds, kontrol_url))
    if json_output:
        print_json(entries)
        return
    print_table(COLUMNS, [[*identity_fields(_identity(entry)), entry["url"]] for entry in entries], COLUMN_STYLES)


def _identity(entry: dict[str, Any]) -> Any:
    from kitelib.protocol.identity import Identity

    return Identity.from_dict(entry["kite"])


async def _open(seconds: float, kontrol_url: str | None) -> "Kite":
    from ..targets import apply_network_options

    kite = make_kite(load_config(need_kite_key=True))
    apply_network_options(kite, timeout=seconds, kontrol_url=kontrol_url)
    return kite


async def _query(fields: dict[str, str], seconds: float, kontrol_url: str | None) -> list[dict[str, Any]]:
    from ..targets import find_kites, no_match_error

    kite = await _open(seconds, kontrol_url)
    try:
        with spinner(f"querying Kontrol at {kite.config.kontrol_url}"):
            clients = await find_kites(kite, fields)
    finally:
        await kite.stop()
    if not clients:
        raise no_match_error(fields, kite.config.username)
    return [{"kite": client.identity.to_dict() if client.identity else None, "url": client.url}
            for client in clients]


async def _watch(fields: dict[str, str], seconds: float, kontrol_url: str | None, json_output: bool) -> None:
    import asyncio
    import signal

    from kitelib.kontrolclient import KontrolError
    from kitelib.protocol.errors import KiteError

    from ..errors import from_kite_error

    kite = await _open(seconds, kontrol_url)
    events: asyncio.Queue[tuple[str, Any, str]] = asyncio.Queue()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    url = kite.config.kontrol_url
    try:
        try:
            with spinner(f"watching Kontrol at {url}"):
                watch = await kite.watch_kites(fields, lambda event: events.put_nowait(
                    (event.action, event.identity, event.url)))
        except KontrolError as exc:
            raise CLIError("cannot watch Kontrol", exc.message) from exc
        except KiteError as exc:
            if exc.type == "sendError":
                raise CLIError("cannot watch Kontrol", f"{url}: {exc.message}",
                               "this Kontrol does not send events; poll with 'kitectl query' instead") from exc
            raise from_kite_error(exc, f"getKites with a watch on Kontrol {url}") from exc
        except (ConnectionError, OSError) as exc:
            raise CLIError(f"cannot reach Kontrol at {url}", str(exc),
                           "check that Kontrol runs there, or pass --kontrol-url") from exc

        for client in watch.kites:
            _print_event(PRESENT, client.identity, client.url, json_output)
        connection = kite.kontrol.client.connection
        closed = asyncio.ensure_future(connection.wait_closed())
        stopped = asyncio.ensure_future(stop.wait())
        while not stop.is_set():
            next_event = asyncio.ensure_future(events.get())
            await asyncio.wait({next_event, closed, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if next_event.done():
                _print_event(*next_event.result(), json_output)
                continue
            next_event.cancel()
            if closed.done() and not stop.is_set():
                raise CLIError(f"lost the connection to Kontrol at {url}", "",
                               "start the watch again once Kontrol is back", code=EXIT_FAILURE)
        stopped.cancel()
        closed.cancel()
        try:
            await watch.cancel()
        except (KiteError, ConnectionError, OSError):
            pass  # the process exits anyway; Kontrol drops the watcher with the connection
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await kite.stop()


def _print_event(action: str, identity: Any, url: str, json_output: bool) -> None:
    if json_output:
        print_json_line({"action": action, "kite": identity.to_dict(), "url": url,
                         "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        return
    if not stdout_is_terminal():
        print("\t".join([action, *identity_fields(identity), url]), flush=True)
        return
    from rich.text import Text

    from ..output import console

    style = {"REGISTER": "green", "DEREGISTER": "red"}.get(action, "dim")
    line = Text.assemble(time.strftime("%H:%M:%S "), (f"{action:<10}", style), f" {identity} {url}")
    console().print(line, soft_wrap=True)
    sys.stdout.flush()
