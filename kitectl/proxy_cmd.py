"""``kitectl proxy`` and ``kitectl tunnel``: run the reverse proxy or the tunnel proxy, or expose a kite through a tunnel.

Settings come from the kite configuration (kite.key, then ``KITE_*``
variables), then the flags given here. A proxy registers itself with Kontrol
when a kite.key is found, so that kites can find it with a query.
"""

from __future__ import annotations

import enum
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from .commands import KitectlCommand
from .errors import CLIError, usage_error
from .runtime import check_kite_url, load_config, parse_duration, run, setup_logging

if TYPE_CHECKING:
    from kitelib import Config

proxy_app = typer.Typer(help="Run a reverse proxy: many kites behind one public host and port, with optional TLS.",
                        no_args_is_help=True, rich_markup_mode=None)
tunnel_app = typer.Typer(help="Run a tunnel proxy for kites behind NAT, or expose a local kite through one.",
                         no_args_is_help=True, rich_markup_mode=None)

DEFAULT_PORT = 3999


class LogLevel(str, enum.Enum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


HostOption = Annotated[str, typer.Option("--host", metavar="ADDRESS", help="Address to listen on.")]
PortOption = Annotated[int, typer.Option("--port", "-p", min=0, max=65535, metavar="PORT",
                                         help="TCP port to listen on; 0 picks a free one.")]
RegionOption = Annotated[Optional[str], typer.Option(
    "--region", metavar="REGION", help="Region in the kite identity. Default: $KITE_REGION or unknown.")]
EnvironmentOption = Annotated[Optional[str], typer.Option(
    "--environment", metavar="NAME",
    help="Environment in the kite identity; kites look for proxies in their own. Default: $KITE_ENVIRONMENT or "
         "unknown.")]
KontrolUrlOption = Annotated[Optional[str], typer.Option(
    "--kontrol-url", metavar="URL", help="Kontrol to register with. Default: $KITE_KONTROL_URL, else the kite.key's.")]
RegisterOption = Annotated[Optional[bool], typer.Option(
    "--register/--no-register",
    help="Register with Kontrol. Default: register when a kite.key is found.", show_default=False)]
LogLevelOption = Annotated[LogLevel, typer.Option("--log-level", help="Log level on stderr.")]


def _config(*, host: str | None = None, port: int | None = None, region: str | None, environment: str | None,
            kontrol_url: str | None) -> "Config":
    config = load_config()
    if host is not None:
        config.ip = host
    if port is not None:
        config.port = port
    if region:
        config.region = region
    if environment:
        config.environment = environment
    if kontrol_url:
        config.kontrol_url = check_kite_url(kontrol_url, "Kontrol URL")
    return config


def _should_register(config: "Config", register: bool | None) -> bool:
    if register is None:
        return bool(config.kite_key and config.kontrol_url)
    if register and not config.kite_key:
        from .runtime import kite_key_not_found

        raise kite_key_not_found()
    if register and not config.kontrol_url:
        raise usage_error("missing Kontrol URL", "", "pass --kontrol-url or set KITE_KONTROL_URL")
    return register


async def _wait_for_signal() -> None:
    # Imported here: asyncio and signal cost about 15 ms, which every `kitectl --help` would pay.
    import asyncio
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    await stop.wait()


def _listen_failed(config: "Config", exc: OSError) -> CLIError:
    return CLIError(f"cannot listen on {config.ip}:{config.port}", exc.strerror or str(exc),
                    "pick another --port or stop the process that uses it")


# --- proxy serve ---------------------------------------------------------------


@proxy_app.command("serve", cls=KitectlCommand)
def proxy_serve(
    host: HostOption = "0.0.0.0",
    port: PortOption = DEFAULT_PORT,
    public_host: Annotated[str, typer.Option(
        "--public-host", metavar="HOST", help="Host name or address in the URLs the proxy hands out.")] = "127.0.0.1",
    public_port: Annotated[int, typer.Option(
        "--public-port", min=0, max=65535, metavar="PORT",
        help="Port in the URLs the proxy hands out; 0 means the listening port.")] = 0,
    tls_cert: Annotated[Optional[Path], typer.Option(
        "--tls-cert", metavar="PATH", dir_okay=False, exists=True, help="TLS certificate (PEM); needs --tls-key.")
    ] = None,
    tls_key: Annotated[Optional[Path], typer.Option(
        "--tls-key", metavar="PATH", dir_okay=False, exists=True, help="TLS private key (PEM); needs --tls-cert.")
    ] = None,
    region: RegionOption = None,
    environment: EnvironmentOption = None,
    kontrol_url: KontrolUrlOption = None,
    register: RegisterOption = None,
    log_level: LogLevelOption = LogLevel.info,
) -> None:
    """Run a reverse proxy (a kite named proxy) until Ctrl-C or SIGTERM.

    Kites register with it ('register_to_proxy' in kitelib) and get the URL
    SCHEME://PUBLIC-HOST:PUBLIC-PORT/proxy/KITE-ID, which they register with
    Kontrol. Requests to that URL, WebSocket or SockJS XHR, go to the kite.
    It prints 'proxy serving on URL' on stdout once it accepts connections.
    """
    if (tls_cert is None) != (tls_key is None):
        raise usage_error("incomplete TLS settings", "", "pass --tls-cert and --tls-key together")
    config = _config(host=host, port=port, region=region, environment=environment, kontrol_url=kontrol_url)
    config.tls_cert = str(tls_cert) if tls_cert else ""
    config.tls_key = str(tls_key) if tls_key else ""
    should_register = _should_register(config, register)
    setup_logging(getattr(logging, log_level.value.upper()))
    run(lambda: _serve_reverse(config, public_host, public_port, should_register))


async def _serve_reverse(config: "Config", public_host: str, public_port: int, register: bool) -> None:
    import ssl

    from kitelib.proxy import ReverseProxy

    proxy = ReverseProxy(config, public_host=public_host, public_port=public_port)
    try:
        await proxy.start(register=register)
    except OSError as exc:
        await proxy.stop()
        raise _listen_failed(config, exc) from exc
    except ssl.SSLError as exc:
        await proxy.stop()
        raise CLIError("cannot load the TLS certificate or key", str(exc), "check --tls-cert and --tls-key") from exc
    print(f"proxy serving on {proxy.kite_url} (kites get {proxy.public_url}/proxy/KITE-ID)", flush=True)
    try:
        await _wait_for_signal()
    finally:
        await proxy.stop()


# --- tunnel serve --------------------------------------------------------------


@tunnel_app.command("serve", cls=KitectlCommand)
def tunnel_serve(
    host: HostOption = "0.0.0.0",
    port: PortOption = DEFAULT_PORT,
    public_host: Annotated[Optional[str], typer.Option(
        "--public-host", metavar="HOST:PORT",
        help="Host and port in the URLs the proxy hands out to clients and kites. Default: 127.0.0.1:PORT.")] = None,
    private_key: Annotated[Optional[Path], typer.Option(
        "--private-key", metavar="PATH", dir_okay=False, exists=True,
        help="RSA private key (PEM) that signs tunnel tokens. Default: a new key pair on every start.")] = None,
    tunnel_timeout: Annotated[str, typer.Option(
        "--tunnel-timeout", metavar="DURATION",
        help="How long a client waits for the kite to open its tunnel, in seconds or as 30s, 1m.")] = "1m",
    region: RegionOption = None,
    environment: EnvironmentOption = None,
    kontrol_url: KontrolUrlOption = None,
    register: RegisterOption = None,
    log_level: LogLevelOption = LogLevel.info,
) -> None:
    """Run a tunnel proxy (a kite named tunnelproxy) until Ctrl-C or SIGTERM.

    A kite behind NAT registers with it ('register_to_tunnel' in kitelib, or
    'kitectl tunnel expose') and gets the URL http://PUBLIC-HOST/proxy?kiteID=ID.
    For every client of that URL the proxy calls kite.tunnel on the kite,
    which dials a tunnel back, and joins the two. It prints 'tunnel proxy serving on URL' on stdout once
    it accepts connections.
    """
    timeout = parse_duration(tunnel_timeout, "--tunnel-timeout")
    config = _config(host=host, port=port, region=region, environment=environment, kontrol_url=kontrol_url)
    key_pem = None
    if private_key is not None:
        try:
            key_pem = private_key.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise CLIError("cannot read the private key", f"{private_key}: {exc}") from exc
    should_register = _should_register(config, register)
    setup_logging(getattr(logging, log_level.value.upper()))
    run(lambda: _serve_tunnel(config, public_host, key_pem, timeout, should_register))


async def _serve_tunnel(config: "Config", public_host: str | None, key_pem: str | None, timeout: float,
                        register: bool) -> None:
    from kitelib.auth.tokens import KeyFormatError
    from kitelib.proxy import TunnelProxy

    proxy = TunnelProxy(config, public_host=public_host, private_key=key_pem, tunnel_timeout=timeout)
    try:
        await proxy.start(register=register)
    except KeyFormatError as exc:
        await proxy.stop()
        raise CLIError("invalid private key", str(exc), "pass an RSA private key in PEM form") from exc
    except OSError as exc:
        await proxy.stop()
        raise _listen_failed(config, exc) from exc
    print(f"tunnel proxy serving on {proxy.kite_url} (kites get http://{proxy.public_host}/proxy?kiteID=KITE-ID)",
          flush=True)
    try:
        await _wait_for_signal()
    finally:
        await proxy.stop()


# --- tunnel expose -------------------------------------------------------------


@tunnel_app.command("expose", cls=KitectlCommand)
def tunnel_expose(
    url: Annotated[str, typer.Argument(metavar="URL", help="SockJS URL of the local kite, e.g. "
                                                           "http://127.0.0.1:6000/kite.")],
    tunnel_url: Annotated[Optional[str], typer.Option(
        "--tunnel-url", metavar="URL",
        help="Kite URL of the tunnel proxy, e.g. ws://proxy.example.com:3999/kite. Default: a tunnel proxy of the "
             "Kontrol user found through Kontrol.")] = None,
    name: Annotated[Optional[str], typer.Option(
        "--name", metavar="NAME",
        help="Name the exposed kite is registered under in Kontrol. Use the local kite's own name, because the "
             "tokens Kontrol gives callers name it. Required with --register.")] = None,
    version: Annotated[str, typer.Option("--kite-version", metavar="X.Y.Z", help="Version registered in Kontrol.")
    ] = "1.0.0",
    region: RegionOption = None,
    environment: EnvironmentOption = None,
    kontrol_url: KontrolUrlOption = None,
    register: RegisterOption = None,
    log_level: LogLevelOption = LogLevel.info,
) -> None:
    """Make the kite at URL reachable through a tunnel proxy until Ctrl-C or SIGTERM.

    kitectl opens a link to the tunnel proxy. For every client of the public
    URL it joins a tunnel to a new session on the local kite, and the local
    kite authenticates the client's calls itself. With a kite.key the public URL is
    registered with Kontrol under --name. It prints 'exposing URL at
    PUBLIC-URL' on stdout once the tunnel proxy and Kontrol accepted it.
    """
    local_url = check_kite_url(url, "kite URL")
    if tunnel_url is not None:
        check_kite_url(tunnel_url, "tunnel proxy URL")
    config = _config(region=region, environment=environment, kontrol_url=kontrol_url)
    should_register = _should_register(config, register)
    if should_register and not name:
        raise usage_error("missing --name", "",
                          "pass --name with the local kite's name to register it with Kontrol, or --no-register")
    if tunnel_url is None and not (config.kite_key and config.kontrol_url):
        raise usage_error("no tunnel proxy given", "",
                          "pass --tunnel-url, or use a kite.key so the proxy can be found through Kontrol")
    setup_logging(getattr(logging, log_level.value.upper()))
    run(lambda: _expose(config, local_url, tunnel_url, name or "tunnel-expose", version, should_register))


async def _expose(config: "Config", local_url: str, tunnel_url: str | None, name: str, version: str,
                  register: bool) -> None:
    from kitelib import Client, Kite
    from kitelib.protocol.errors import KiteError
    from kitelib.proxy import TunnelBridge
    from kitelib.proxy.registration import TUNNEL, ProxyRegistration

    try:
        kite = Kite(name, version, config=config)
    except ValueError as exc:
        raise usage_error("invalid kite identity", str(exc)) from exc
    try:
        async with Client(local_url, kite=kite, timeout=config.timeout) as probe:
            await probe.tell("kite.ping")
    except (ConnectionError, OSError, KiteError) as exc:
        await kite.stop()
        raise CLIError("cannot reach the kite to expose", f"{local_url}: {exc}", "start it first, or fix URL") from exc

    bridge = TunnelBridge(kite, local_url)
    registration = ProxyRegistration(kite, TUNNEL, url=tunnel_url, register_with_kontrol=register)
    kite.proxy_registrations.append(registration)
    registration.start()
    try:
        public_url = await registration.wait_registered()
        if register:
            await kite.wait_registered()
            print(f"exposing {local_url} at {public_url}, registered with Kontrol as {kite.identity}", flush=True)
        else:
            print(f"exposing {local_url} at {public_url}", flush=True)
        await _wait_for_signal()
    finally:
        await bridge.close()
        await kite.stop()
