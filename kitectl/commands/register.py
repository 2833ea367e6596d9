"""``kitectl register``: get a kite.key signed by Kontrol through its registerMachine method."""

from __future__ import annotations

import getpass
import os
import sys
from typing import Annotated, Any, Optional

import typer

from .. import __version__
from ..errors import CLIError, from_kite_error, usage_error
from ..output import spinner
from ..runtime import check_kite_url, parse_duration, run, setup_logging

DEFAULT_KONTROL_URL = "http://127.0.0.1:4000/kite"
PASSWORD_VARIABLE = "KITE_PASSWORD"


def register(
    kontrol_url: Annotated[Optional[str], typer.Option(
        "--kontrol-url", metavar="URL",
        help=f"Kontrol to register with. Default: $KITE_KONTROL_URL, else the kontrolURL of the kite.key being "
             f"replaced, else {DEFAULT_KONTROL_URL}.")] = None,
    username: Annotated[Optional[str], typer.Option(
        "--username", metavar="NAME", help="User to get the key for. Default: $KITE_USERNAME, else your login name.")
    ] = None,
    password: Annotated[bool, typer.Option(
        "--password", help="Authenticate with the user's password (the default): Kontrol asks for it and kitectl "
                           "prompts without echo.")] = False,
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help=f"Read the password from the first line of stdin instead of prompting "
                                 f"(${PASSWORD_VARIABLE} works too).")] = False,
    token: Annotated[Optional[str], typer.Option(
        "--token", metavar="TOKEN", help="Authenticate with a one-time token from 'kitectl kontrol token create'.")
    ] = None,
    open_registration: Annotated[bool, typer.Option(
        "--open", help="Ask without credentials; works only where Kontrol enables open registration.")] = False,
    force: Annotated[bool, typer.Option("--force", "-f", help="Replace an existing kite.key.")] = False,
    timeout: Annotated[str, typer.Option(
        "--timeout", "-t", metavar="DURATION",
        help="Time limit for the whole exchange, including typing the password.")] = "5m",
) -> None:
    """Get a kite.key signed by Kontrol and write it where kites and kitectl look for it.

    The key is written to $KITE_HOME/kite.key, or to ~/.config/kite/kite.key
    when KITE_HOME is unset. An existing key is kept unless --force is given.
    """
    from kitelib.auth.keyfile import kite_key_path

    if sum([password or password_stdin, token is not None, open_registration]) > 1:
        raise usage_error("conflicting authentication options", "", "use one of --password, --token or --open")
    seconds = parse_duration(timeout, "--timeout")
    path = kite_key_path()
    if path.exists() and not force:
        raise CLIError("kite.key already exists", str(path),
                       "pass --force to replace it, or set KITE_HOME to another directory")
    url = check_kite_url(kontrol_url or _default_kontrol_url(path), "Kontrol URL")
    name = username or os.environ.get("KITE_USERNAME") or getpass.getuser()
    if token is not None:
        options: dict[str, Any] = {"authType": "token", "username": name, "token": token}
    elif open_registration:
        options = {"authType": "open", "username": name}
    else:
        options = {"authType": "password", "username": name}
    supplied_password = _read_password(password_stdin) if options["authType"] == "password" else None

    setup_logging()
    key = run(lambda: _register(url, options, supplied_password, seconds))

    from kitelib.auth.keyfile import KiteKeyError, write_kite_key

    try:
        written = write_kite_key(key, path)
    except KiteKeyError as exc:
        raise CLIError("Kontrol returned an unusable kite.key", str(exc), "report this to the Kontrol operator") from exc
    except OSError as exc:
        raise CLIError("cannot write kite.key", f"{path}: {exc.strerror or exc}",
                       "check the directory permissions or set KITE_HOME") from exc
    print(f"registered user {name!r} with Kontrol at {url}; wrote kite.key to {written}")


def _default_kontrol_url(path: Any) -> str:
    if os.environ.get("KITE_KONTROL_URL"):
        return os.environ["KITE_KONTROL_URL"]
    from kitelib.auth.keyfile import KiteKeyError, load_kite_key

    try:
        claims = load_kite_key(path).claims
    except KiteKeyError:
        return DEFAULT_KONTROL_URL
    url = claims.get("kontrolURL")
    return url if isinstance(url, str) and url else DEFAULT_KONTROL_URL


def _read_password(from_stdin: bool) -> str | None:
    """Return the password given non-interactively, or None to prompt when Kontrol calls kite.getPass."""
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise usage_error("no password on stdin", "", "pipe the password in, e.g. printf '%s\\n' \"$PW\" | ...")
        return line.rstrip("\r\n")
    return os.environ.get(PASSWORD_VARIABLE) or None


async def _register(url: str, options: dict[str, Any], supplied_password: str | None, timeout: float) -> str:
    from kitelib import Client, Kite
    from kitelib.config import Config
    from kitelib.protocol.errors import KiteError

    config = Config.load(read_kite_key=False)
    config.username = options["username"]
    config.timeout = config.handshake_timeout = min(timeout, config.timeout)
    kite = Kite("kitectl", __version__, config=config)
    if supplied_password is not None:
        async def answer_password(request: Any) -> str:
            return supplied_password

        # Kontrol calls kite.getPass on this connection. Reply with the given password instead of prompting.
        kite.handle("kite.getPass", answer_password, spread_args=False)

    client = Client(url, kite=kite, timeout=timeout)
    try:
        with spinner(f"connecting to Kontrol at {url}"):
            try:
                await client.connect()
            except (ConnectionError, OSError) as exc:
                raise CLIError(f"cannot reach Kontrol at {url}", str(exc),
                               "check the URL (--kontrol-url) and that Kontrol runs there") from exc
        try:
            key = await client.tell("registerMachine", options, timeout=timeout)
        except KiteError as exc:
            raise from_kite_error(exc, f"registerMachine on Kontrol {url}",
                                  _register_hint(options["authType"], exc)) from exc
    finally:
        await client.close()
        await kite.stop()
    if not isinstance(key, str):
        raise CLIError("Kontrol returned no kite.key", repr(key)[:80], "check that the URL points at a Kontrol")
    return key


def _register_hint(auth_type: str, exc: Any) -> str:
    if exc.type == "methodNotFound":
        return "the URL does not point at a Kontrol"
    if "cannot authenticate user" not in exc.message:
        return ""
    if auth_type == "password":
        return "check the user name and password; the Kontrol operator adds users with 'kitectl kontrol user add'"
    if auth_type == "token":
        return "get a fresh token from the Kontrol operator ('kitectl kontrol token create')"
    return "this Kontrol does not allow open registration; use --password or --token"
