"""Finding the kites a command talks to: a URL given on the command line, or the matches of a Kontrol query.

Also the argument rules shared by tell and ping: query text, call arguments.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import EXIT_FAILURE, EXIT_NO_MATCH, CLIError, from_kite_error, usage_error
from .runtime import authentication_hint, check_kite_url

if TYPE_CHECKING:
    from kitelib import Client, Identity, Kite

logger = logging.getLogger(__name__)

QUERY_FIELDS = ("username", "environment", "name", "version", "region", "hostname", "id")


@dataclass
class Target:
    """One kite to call: its client, and its identity when Kontrol named it."""

    client: "Client"
    identity: "Identity | None" = None

    @property
    def url(self) -> str:
        return self.client.url

    @property
    def label(self) -> str:
        return str(self.identity) if self.identity is not None else self.client.url

    def to_json(self) -> dict[str, Any]:
        return {"kite": self.identity.to_dict() if self.identity is not None else None, "url": self.url}


def parse_query_text(text: str) -> dict[str, str]:
    """Parse ``FIELD=VALUE,...`` into query fields.

    A part without ``=`` continues the previous value, so a version
    constraint such as ``version=>=1.0,<2.0`` keeps its comma.
    """
    fields: dict[str, str] = {}
    last = ""
    for part in text.split(","):
        name, separator, value = part.partition("=")
        name = name.strip()
        if separator and name in QUERY_FIELDS:
            fields[name] = value.strip()
            last = name
        elif last and not (separator and name.isidentifier()):
            fields[last] += "," + part
        else:
            raise usage_error("invalid --query", repr(text),
                              f"use FIELD=VALUE pairs separated by commas, FIELD one of {', '.join(QUERY_FIELDS)}")
    if not any(fields.values()):
        raise usage_error("empty --query", repr(text), "give at least one field, for example --query name=math")
    return {name: value for name, value in fields.items() if value}


def parse_argument(text: str) -> Any:
    """Parse one command-line ARG: JSON when it is valid JSON, else the text itself.

    ``007`` is not valid JSON and stays the string "007"; ``1.5`` is a number,
    ``true`` a boolean, ``null`` None. NaN and Infinity stay strings, because
    they are not JSON.
    """
    def reject_constant(name: str) -> Any:
        raise ValueError(name)

    try:
        return json.loads(text, parse_constant=reject_constant)
    except ValueError:
        return text


def parse_call_arguments(words: list[str], args_json: str | None) -> list[Any]:
    if args_json is None:
        return [parse_argument(word) for word in words]
    if words:
        raise usage_error("both ARG words and --args-json given", " ".join(words), "use one or the other")
    try:
        values = json.loads(args_json)
    except ValueError as exc:
        raise usage_error("invalid JSON in --args-json", str(exc), "pass a JSON array such as '[4, \"x\"]'") from None
    if not isinstance(values, list):
        raise usage_error("--args-json is not a JSON array", args_json[:80], "wrap the arguments in [ ], e.g. '[4]'")
    return values


def apply_network_options(kite: "Kite", *, timeout: float | None, kontrol_url: str | None) -> None:
    """Use ``timeout`` for dialing and for Kontrol calls, and ``kontrol_url`` instead of the kite.key's."""
    config = kite.config
    if timeout is not None:
        config.timeout = timeout
        config.handshake_timeout = timeout
    if kontrol_url:
        config.kontrol_url = check_kite_url(kontrol_url, "Kontrol URL")


def kite_key_auth(kite: "Kite") -> dict[str, str] | None:
    """Return kiteKey authentication from the local kite.key, as Go kitectl sends it, or None without one."""
    key = kite.config.kite_key
    return {"type": "kiteKey", "key": key} if key else None


def client_for_url(kite: "Kite", url: str, transport: str | None, timeout: float | None) -> "Client":
    from kitelib import Client

    check_kite_url(url)
    if transport == "auto" and url.startswith(("ws://", "wss://")):
        transport = None  # a ws:// URL means a raw WebSocket unless a SockJS transport is named
    return Client(url, kite=kite, transport=transport, auth=kite_key_auth(kite), timeout=timeout)


async def find_kites(kite: "Kite", fields: dict[str, str]) -> list["Client"]:
    """Query Kontrol for ``fields`` and return a client per match; map every failure to a CLIError."""
    from kitelib.kontrolclient import KontrolError
    from kitelib.protocol.errors import KiteError

    url = kite.config.kontrol_url
    try:
        return await kite.get_kites(**fields)
    except KontrolError as exc:
        raise CLIError("cannot query Kontrol", exc.message, code=EXIT_FAILURE) from exc
    except KiteError as exc:
        hint = authentication_hint("") if exc.type == "authenticationError" else ""
        raise from_kite_error(exc, f"getKites on Kontrol {url}", hint) from exc
    except (ConnectionError, OSError) as exc:
        raise CLIError(f"cannot reach Kontrol at {url}", str(exc) or type(exc).__name__,
                       "check that Kontrol runs there, or pass --kontrol-url") from exc
    except ValueError as exc:
        raise usage_error("invalid query", str(exc)) from exc


def no_match_error(fields: dict[str, str], username: str) -> CLIError:
    query_fields = dict(fields)
    query_fields.setdefault("username", username)
    text = ",".join(f"{name}={value}" for name, value in query_fields.items())
    return CLIError("no kite matches the query", text,
                    "run 'kitectl query' without filters to list what is registered", code=EXIT_NO_MATCH)


async def resolve_targets(kite: "Kite", *, url: str | None, query_text: str | None, one: bool,
                          transport: str | None, timeout: float | None) -> list[Target]:
    """Return the kites to call: the one at ``url``, or the matches of ``query_text`` (only the first with ``one``)."""
    if url is not None:
        return [Target(client_for_url(kite, url, transport, timeout))]
    assert query_text is not None
    fields = parse_query_text(query_text)
    clients = await find_kites(kite, fields)
    if not clients:
        raise no_match_error(fields, kite.config.username)
    if one:
        clients = clients[:1]
    targets = []
    for client in clients:
        if transport not in (None, "auto"):
            client.transport = transport
        if timeout is not None:
            client.timeout = timeout
        targets.append(Target(client, client.identity))
    return targets


async def connect(target: Target) -> None:
    """Dial a target; a refused or timed-out dial becomes a CLIError with exit code 1."""
    try:
        await target.client.connect()
    except ValueError as exc:
        raise usage_error("invalid kite URL", target.url, str(exc)) from exc
    except (ConnectionError, OSError) as exc:
        raise CLIError(f"connection to {target.label} failed", str(exc) or type(exc).__name__,
                       "check the URL and that the kite is running") from exc


async def close_all(kite: "Kite", targets: list[Target]) -> None:
    for target in targets:
        try:
            await target.client.close()
        except Exception as exc:  # closing is best effort; the result is already known
            logger.debug("closing %s failed: %s", target.label, exc)
    await kite.stop()
