"""The Kite: a named, versioned RPC server that is also a client of other kites."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import re
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from . import defaults
from .config import Config
from .connection import Connection, RemoteFunction
from .method import Handler, Method, Request
from .protocol import envelope
from .protocol.dnode import Message, ProtocolError
from .protocol.errors import ArgumentError, AuthenticationError, GenericError, KiteError, MethodNotFoundError
from .protocol.identity import Identity, new_kite_id

if TYPE_CHECKING:
    from aiohttp import web

    from .client import Client

logger = logging.getLogger(__name__)

_VERSION_RE = re.compile(r"^[^./]+\.[^./]+\.[^./]+$")

# Sync handlers run here so that a slow one cannot stall other connections or heartbeats.
# 32 matches the size asyncio's default executor picks on small machines.
DEFAULT_HANDLER_THREADS = 32

Hook = Callable[[Connection], Any]


class Kite:
    """A kite named ``name`` at ``version`` (three dot-separated parts, as Go requires).

    Register methods with :meth:`handle`, then serve with :meth:`run` or
    ``await start()``. ``config`` defaults to :meth:`Config.load`: the
    kite.key if there is one, then ``KITE_*`` environment variables.
    """

    def __init__(self, name: str, version: str, config: Config | None = None, *,
                 handler_threads: int = DEFAULT_HANDLER_THREADS):
        if not name or "/" in name:
            raise ValueError(f"invalid kite name {name!r}: it must be non-empty and contain no '/'")
        if not _VERSION_RE.match(version):
            raise ValueError(f"invalid kite version {version!r}: use three dot-separated parts such as 1.0.0")
        self.name = name
        self.version = version
        self.config = config if config is not None else Config.load()
        self.id = new_kite_id()
        self.methods: dict[str, Method] = {}
        self.pre_handlers: list[Handler] = []
        self.post_handlers: list[Handler] = []
        self.final_handlers: list[Handler] = []
        self.on_connect_hooks: list[Hook] = []
        self.on_first_request_hooks: list[Hook] = []
        self.on_disconnect_hooks: list[Hook] = []
        self.connections: set[Connection] = set()
        self._handler_threads = handler_threads
        self.executor = ThreadPoolExecutor(max_workers=handler_threads, thread_name_prefix=f"kite-{name}")
        self._authenticators: Any = None
        self._server: Any = None
        self._kontrol: Any = None
        self._pending_registration: tuple[str, str | None] | None = None
        # ProxyRegistrations started by register_to_proxy and register_to_tunnel; stop() closes them.
        self.proxy_registrations: list[Any] = []
        self.heartbeat = defaults.HeartbeatTicker()
        defaults.register_default_methods(self)

    # Identity

    @property
    def identity(self) -> Identity:
        config = self.config
        return Identity(config.username, config.environment, self.name, self.version, config.region,
                        config.hostname, self.id)

    def __repr__(self) -> str:
        return f"<Kite {self.identity}>"

    # Methods and hooks

    def handle(self, name: str, handler: Handler | None = None, *, auth: bool | None = None,
               throttle: tuple[float, int] | None = None, spread_args: bool = True) -> Any:
        """Serve ``name`` with ``handler(request, *args)``; usable as a decorator.

        ``auth=False`` lets callers in without credentials; ``None`` follows
        ``config.disable_authentication``. ``throttle=(fill_interval_s,
        capacity)`` limits calls with a token bucket shared by all callers.
        Sync handlers run in a thread pool, async ones on the event loop.
        With ``spread_args=False`` the handler is called as ``handler(request)``
        and reads ``request.args`` itself.
        """
        def register(function: Handler) -> Handler:
            if not callable(function):
                raise TypeError(f"handler for {name!r} must be callable, got {function!r}")
            self.methods[name] = Method(name, function, auth=auth, throttle=throttle, spread_args=spread_args)
            return function

        if handler is not None:
            return register(handler)
        return register

    def method(self, name: str) -> Method:
        """Return the registered Method for ``name`` (to add pre/post handlers or throttling)."""
        try:
            return self.methods[name]
        except KeyError:
            raise KeyError(f"method {name!r} is not registered on kite {self.name}") from None

    def pre_handle(self, handler: Handler) -> Handler:
        """Run ``handler(request)`` before every method's handler; raising stops the call."""
        self.pre_handlers.append(handler)
        return handler

    def post_handle(self, handler: Handler) -> Handler:
        """Run ``handler(request, result)`` after every method's handler; raising fails the call."""
        self.post_handlers.append(handler)
        return handler

    def final_handle(self, handler: Handler) -> Handler:
        """Run ``handler(request, result, error)`` last, even after an error.

        It may return ``(result, error)`` to replace the reply, or None to keep it.
        """
        self.final_handlers.append(handler)
        return handler

    def on_connect(self, hook: Hook) -> Hook:
        """Run ``hook(connection)`` when a connection is accepted; the peer address is known, its identity not yet."""
        self.on_connect_hooks.append(hook)
        return hook

    def on_first_request(self, hook: Hook) -> Hook:
        """Run ``hook(connection)`` on the first request of an accepted connection, identity filled in."""
        self.on_first_request_hooks.append(hook)
        return hook

    def on_disconnect(self, hook: Hook) -> Hook:
        """Run ``hook(connection)`` when an accepted connection ends."""
        self.on_disconnect_hooks.append(hook)
        return hook

    @property
    def authenticators(self) -> Any:
        """The authenticator registry: ``kite.authenticators.register(type, fn)`` adds a type."""
        if self._authenticators is None:
            from .auth.authenticators import AuthenticatorRegistry

            self._authenticators = AuthenticatorRegistry(self)
        return self._authenticators

    # Connections

    def connection_made(self, connection: Connection) -> None:
        """Track an accepted connection and run the on_connect hooks."""
        self.connections.add(connection)
        connection.on_close.append(self._connection_closed)
        logger.debug("accepted %s", connection.describe())
        self._run_hooks(self.on_connect_hooks, connection)

    def _connection_closed(self, connection: Connection) -> None:
        self.connections.discard(connection)
        if not connection.dialed:
            self._run_hooks(self.on_disconnect_hooks, connection)

    def _run_hooks(self, hooks: list[Hook], connection: Connection) -> None:
        for hook in hooks:
            try:
                result = hook(connection)
                if inspect.isawaitable(result):
                    connection.loop.create_task(self._await_hook(result, connection))
            except Exception:
                logger.exception("connection hook %r failed for %s", hook, connection.describe())

    @staticmethod
    async def _await_hook(awaitable: Awaitable[Any], connection: Connection) -> None:
        try:
            await awaitable
        except Exception:
            logger.exception("connection hook failed for %s", connection.describe())

    # Request handling

    async def _handle_request(self, connection: Connection, message: Message) -> None:
        """Run one incoming method call through authentication, throttling and handlers, then reply."""
        assert isinstance(message.method, str)
        try:
            options = envelope.parse_request(message)
        except (ProtocolError, ArgumentError) as exc:
            await self._reply_to_unparsed(connection, message, exc)
            return

        reply = options.response_callback
        method = self.methods.get(message.method)
        if method is None:
            logger.info("method not found: %r called by %s", message.method, connection.describe())
            await self._reply(connection, reply, MethodNotFoundError(f"Method not found: {message.method}"), None)
            return

        if connection.remote_identity is None:
            connection.remote_identity = options.kite
            connection.remote_username = options.kite.username
            if not connection.dialed:
                self._run_hooks(self.on_first_request_hooks, connection)

        request = Request(
            id=os.urandom(8).hex(),
            method=message.method,
            args=options.with_args,
            kite=connection.remote_identity,
            username=options.kite.username,
            authentication=options.authentication,
            connection=connection,
            local_kite=self,
        )
        result: Any = None
        error: KiteError | None = None
        try:
            self._authenticate(method, request)
            method.check_rate(request.id)
            result = await self._run_handlers(method, request)
        except KiteError as exc:
            if not exc.id:
                exc.id = request.id
            error = exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("handler of %s raised for request %s from %s", method.name, request.id,
                             connection.describe())
            error = GenericError(str(exc) or type(exc).__name__, id=request.id)

        for final in self.final_handlers:
            try:
                replaced = await self._call(final, request, result, error)
            except Exception:
                logger.exception("final handler %r failed for request %s", final, request.id)
                continue
            if replaced is not None:
                result, error = replaced
        await self._reply(connection, reply, error, result, request.id)

    def _authenticate(self, method: Method, request: Request) -> None:
        needs_auth = method.auth if method.auth is not None else not self.config.disable_authentication
        # Calls on a connection this kite dialed itself are trusted, as in the Go kite.
        if not needs_auth or request.connection.dialed:
            return
        try:
            result = self.authenticators.authenticate(request.authentication)
        except AuthenticationError as exc:
            logger.info("authentication failed for %s on %s: %s", method.name, request.connection.describe(),
                        exc.message)
            raise
        request.auth = result
        request.username = result.username
        request.connection.remote_username = result.username

    async def _run_handlers(self, method: Method, request: Request) -> Any:
        for pre in [*method.pre_handlers, *self.pre_handlers]:
            await self._call(pre, request)
        method.bind_arguments(request)
        args = request.args if method.spread_args else ()
        if method.is_async:
            result = await method.handler(request, *args)
        else:
            result = await asyncio.get_running_loop().run_in_executor(
                self.executor, _call_handler, method.handler, request, args)
            if inspect.isawaitable(result):
                result = await result
        for post in [*method.post_handlers, *self.post_handlers]:
            await self._call(post, request, result)
        return result

    async def _call(self, function: Handler, *args: Any) -> Any:
        if inspect.iscoroutinefunction(function):
            return await function(*args)
        result = function(*args)
        if inspect.isawaitable(result):
            return await result
        return result

    async def _reply(self, connection: Connection, reply: Any, error: KiteError | None, result: Any,
                     request_id: str = "") -> None:
        if reply is None:
            if error is not None:
                logger.info("no responseCallback to report %s to %s", error, connection.describe())
            return
        try:
            if isinstance(reply, RemoteFunction) and reply.connection is connection:
                # Awaiting the send directly saves the task a RemoteFunction call creates.
                await connection.call_function(reply.callback_id, envelope.build_response(error, result))
            else:
                await reply(*envelope.build_response(error, result))
        except KiteError as exc:
            logger.info("could not reply to %s: %s", connection.describe(), exc)
        except TypeError as exc:
            # The result could not be serialised.
            logger.error("reply to %s could not be encoded: %s", connection.describe(), exc)
            encode_error = GenericError(f"result could not be encoded as JSON: {exc}", id=request_id)
            await reply(*envelope.build_response(encode_error, None))

    async def _reply_to_unparsed(self, connection: Connection, message: Message, exc: Exception) -> None:
        callback_id = envelope.find_response_callback(message)
        if callback_id is None:
            logger.warning("dropped request %r from %s: %s", message.method, connection.describe(), exc)
            return
        logger.info("rejected request %r from %s: %s", message.method, connection.describe(), exc)
        error = ArgumentError(str(exc))
        try:
            await connection.call_function(callback_id, envelope.build_response(error, None))
        except KiteError as send_error:
            logger.info("could not reply to %s: %s", connection.describe(), send_error)

    # Serving

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the kite is not serving; call await kite.start() first")
        return self._server.port

    @property
    def url(self) -> str:
        """The SockJS base URL other kites dial, e.g. ``http://127.0.0.1:6000/kite``."""
        if self._server is None:
            raise RuntimeError("the kite is not serving; call await kite.start() first")
        return self._server.url

    def setup_routes(self, app: "web.Application", prefix: str = "/kite") -> None:
        """Mount this kite's routes into an existing aiohttp application under ``prefix``."""
        from .transport.server import KiteServer

        KiteServer(self).add_routes(app, prefix)

    def make_app(self) -> "web.Application":
        """Return an aiohttp application serving this kite under ``/kite``; add more routes before starting."""
        from .transport.server import KiteServer

        if self._server is None:
            self._server = KiteServer(self)
        return self._server.app

    def handle_http(self, path: str, handler: Callable[["web.Request"], Awaitable["web.StreamResponse"]], *,
                    method: str = "GET") -> None:
        """Serve ``handler`` for ``method`` requests to ``path`` on the kite's port, next to ``/kite``.

        This is the Go kite's ``HandleHTTP``: one process serves the kite and
        the pages or endpoints that go with it. ``path`` takes aiohttp's
        route syntax, so ``/items/{name}`` puts ``name`` in
        ``request.match_info``. Add routes before :meth:`start`.
        """
        if not path.startswith("/"):
            raise ValueError(f"HTTP path {path!r} must start with '/', as in '/status'")
        self._add_route(lambda app: app.router.add_route(method.upper(), path, handler), path)

    def serve_static(self, prefix: str, directory: str | os.PathLike[str], *, index: str | None = "index.html"
                     ) -> None:
        """Serve the files under ``directory`` at ``prefix`` (``/`` for the site root).

        A request for ``prefix`` itself gets ``index`` from the directory, so
        ``serve_static("/", "site")`` returns ``site/index.html`` for
        ``GET /``. Folders below it get no index page. Files
        outside the directory are never served. Routes added earlier
        (``/kite`` among them) take precedence.
        """
        root = Path(directory)
        if not root.is_dir():
            raise ValueError(f"cannot serve {str(root)!r} ({root.resolve()}): it is not a directory;"
                             " a relative path starts from the working directory")
        if not prefix.startswith("/"):
            raise ValueError(f"static prefix {prefix!r} must start with '/', as in '/static'")
        base = prefix.rstrip("/")

        def add(app: "web.Application") -> None:
            from aiohttp import web

            if index is not None and (root / index).is_file():
                page = root / index

                async def serve_index(request: "web.Request") -> "web.StreamResponse":
                    return web.FileResponse(page)

                app.router.add_get(base or "/", serve_index)
                if base:
                    app.router.add_get(base + "/", serve_index)
            app.router.add_static(base or "/", root)

        self._add_route(add, prefix)

    def _add_route(self, add: Callable[["web.Application"], Any], path: str) -> None:
        app = self.make_app()
        if app.frozen:
            raise RuntimeError(f"cannot add HTTP route {path!r}: the kite is already serving; add routes before start()")
        add(app)

    async def start(self) -> None:
        """Bind the port from ``config`` (0 lets the OS choose) and serve until :meth:`stop`."""
        from .transport.server import KiteServer

        if self._server is None:
            self._server = KiteServer(self)
        if self.executor._shutdown:  # type: ignore[attr-defined]
            # stop() shut the pool down; a restarted kite needs a new one for its sync handlers.
            self.executor = ThreadPoolExecutor(max_workers=self._handler_threads, thread_name_prefix=f"kite-{self.name}")
        await self._server.start(self.config.ip, self.config.port)
        logger.info("kite %s serving on %s", self.identity, self.url)
        if self._pending_registration is not None:
            kind, url = self._pending_registration
            self._pending_registration = None
            self._start_registration(kind, url)

    async def stop(self) -> None:
        """Leave Kontrol first, so that queries stop returning this kite at once, then stop serving."""
        if self._kontrol is not None:
            await self._kontrol.close()
        for registration in self.proxy_registrations:
            await registration.close()
        self.heartbeat.stop()
        if self._server is not None:
            await self._server.stop()
        for connection in list(self.connections):
            await connection.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        logger.info("kite %s stopped", self.identity)

    async def serve_forever(self) -> None:
        """Start, wait for SIGINT or SIGTERM, then stop."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        await self.start()
        try:
            await stop.wait()
        finally:
            logger.info("kite %s shutting down", self.identity)
            await self.stop()

    def run(self) -> None:
        """Serve until SIGINT or SIGTERM, then exit cleanly. Blocks."""
        run_event_loop(self.serve_forever())

    # Kontrol

    @property
    def kontrol(self) -> Any:
        """The KontrolClient of this kite, created on first use."""
        if self._kontrol is None:
            from .kontrolclient import KontrolClient

            self._kontrol = KontrolClient(self)
        return self._kontrol

    def register(self, url: str | None = None) -> None:
        """Register with Kontrol and keep registered: heartbeats, redial with backoff, register again.

        ``url`` defaults to this kite's own URL. Call it before :meth:`run` or
        after ``await start()``; it returns at once. Await
        :meth:`wait_registered` for the first success.
        """
        self._request_registration("rpc", url)

    def register_http(self, url: str | None = None) -> None:
        """Register over HTTP (``POST /register``, then ``GET /heartbeat`` every interval)."""
        self._request_registration("http", url)

    def _request_registration(self, kind: str, url: str | None) -> None:
        if self._server is None or not self._server.url:
            self._pending_registration = (kind, url)
            return
        self._start_registration(kind, url)

    def _start_registration(self, kind: str, url: str | None) -> None:
        if kind == "http":
            self.kontrol.start_http_registration(url or self.url)
        else:
            self.kontrol.start_registration(url or self.url)

    async def wait_registered(self, timeout: float | None = None) -> Any:
        """Wait for the first successful registration and return its RegisterResult."""
        return await asyncio.wait_for(asyncio.shield(self.kontrol.registered_future()), timeout)

    def on_register(self, hook: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Run ``hook(RegisterResult)`` after every successful registration."""
        self.kontrol.on_register_hooks.append(hook)
        return hook

    def register_to_proxy(self, url: str | None = None, query: Any = None, *, kite_url: str | None = None,
                          ssl: Any = None) -> Any:
        """Register this kite with a reverse proxy and its proxy URL with Kontrol; keep both registered.

        The proxy is ``url``, else ``KITE_PROXY_URL``, else a random Kontrol
        match of ``query`` (default: the Kontrol user's kites named ``proxy``
        in this environment). The proxy forwards to ``kite_url``, by default
        this kite's URL, which exists after ``await start()``. ``ssl`` is an
        ssl.SSLContext for a proxy with a private certificate. Returns the
        ProxyRegistration, whose ``wait_registered()`` returns the proxy URL.
        """
        from .proxy.registration import REVERSE, ProxyRegistration

        if kite_url is None and (self._server is None or not self._server.url):
            raise RuntimeError("register_to_proxy needs the kite's URL: call await kite.start() first")
        registration = ProxyRegistration(self, REVERSE, url=url, query=query, kite_url=kite_url, ssl=ssl)
        self.proxy_registrations.append(registration)
        registration.start()
        return registration

    def register_to_tunnel(self, url: str | None = None, query: Any = None) -> Any:
        """Open a tunnel link to a tunnel proxy and register the URL it returns with Kontrol; keep both registered.

        The proxy is ``url``, else a random Kontrol match of ``query``
        (default: ``{username: kontrol_user, environment, name:
        "tunnelproxy"}``). The kite need not listen on a port. Needs a running
        event loop. Returns the ProxyRegistration.
        """
        from .proxy.registration import TUNNEL, ProxyRegistration

        registration = ProxyRegistration(self, TUNNEL, url=url, query=query)
        self.proxy_registrations.append(registration)
        registration.start()
        return registration

    async def get_kites(self, query: Any = None, **fields: str) -> list["Client"]:
        """Return ready-to-dial clients for the kites matching the query; [] when none match."""
        return await self.kontrol.get_kites(query, **fields)

    async def get_token(self, target: Any, *, force: bool = False) -> str:
        return await self.kontrol.get_token(target, force=force)

    async def get_key(self) -> str:
        return await self.kontrol.get_key()

    async def watch_kites(self, query: Any, callback: Callable[[Any], Any]) -> Any:
        """Watch REGISTER/DEREGISTER events for the query; ``await watch.cancel()`` ends it."""
        return await self.kontrol.watch_kites(query, callback)

    # Calling other kites

    def client(self, url: str, **options: Any) -> "Client":
        """Return a Client that dials ``url`` as this kite; calls arriving on it reach this kite's methods."""
        from .client import Client

        return Client(url, kite=self, **options)


def _call_handler(handler: Handler, request: Request, args: Any) -> Any:
    return handler(request, *args)


def run_event_loop(main: Awaitable[Any]) -> Any:
    """Run ``main`` on uvloop where it is installed, else on the default asyncio loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)  # type: ignore[arg-type]
    return uvloop.run(main)  # type: ignore[arg-type]
