"""The tunnel proxy: kites behind NAT reached through tunnels they open themselves.

A private kite dials the tunnel proxy (a kite named ``tunnelproxy``) and calls
``register``; the reply is its public URL, ``http://<public host>/proxy?kiteID=<id>``.
For every outside session on that URL the proxy:

1. signs an RS256 token with its own key pair: ``sub`` = kite id, ``seq`` = the
   tunnel number, ``iat`` = now, ``exp`` = now + 1 h 1 min, ``nbf`` = now - 1 min;
2. calls ``kite.tunnel`` on the private kite's registration link (4 s timeout)
   with ``[{"url": "ws://<public host>/tunnel/<server>/<session>/websocket?token=<jwt>"}]``;
3. waits up to ``tunnel_timeout`` (1 min by default) for the kite to dial that
   URL, and rejects the dial unless the token verifies with the proxy's public key;
4. joins the outside session and the tunnel message by message.

The proxy is the SockJS server of both sessions: the outside client and the
private kite are both SockJS clients. These rules follow the Go tunnelproxy
(koding/kite, revision baa1a549), so Go kites can use this proxy.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..config import Config
from ..kite import Kite
from ..protocol.errors import ArgumentError, GenericError, KiteError
from ..transport.client import sockjs_session_path
from .relay import RelayEndpoint, RelaySockJSServer

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    from ..connection import Connection
    from ..method import Request

logger = logging.getLogger(__name__)

NAME = "tunnelproxy"
VERSION = "0.0.2"  # Go's ProxyVersion
DEFAULT_PORT = 3999
DEFAULT_TUNNEL_TIMEOUT = 60.0  # how long an outside session waits for the private kite to dial in, as in Go
DEFAULT_CALL_TIMEOUT = 4.0  # Go waits this long for the kite.tunnel reply
DEFAULT_TOKEN_TTL = 3660.0  # Go's tunnel tokens expire 1 h 1 min after issue
TOKEN_NOT_BEFORE = 60.0  # nbf is set this many seconds before now, which allows for clock skew
KITE_ID_PARAMETER = "kiteID"
CLOSE_TUNNEL_FAILED = 3002
# The tunnel number of an accepted tunnel dial, passed from the token check to the session hook.
TUNNEL_NUMBER = web.RequestKey("tunnel_number", int)


@dataclass
class PendingTunnel:
    """A tunnel the proxy asked a kite to open, waiting for the kite's dial."""

    kite_id: str
    waiter: "asyncio.Future[RelayEndpoint]"


class TunnelProxy:
    """A tunnel proxy on one port: ``/kite`` is its own kite, ``/proxy`` serves outside clients, ``/tunnel`` kites.

    ``public_host`` is the ``host:port`` outside clients and kites use to reach
    the proxy (default ``127.0.0.1:<port>``). ``private_key`` is a PEM text or
    a loaded RSA key for signing tunnel tokens. Without one, a key pair is
    generated at start, so tokens are valid only for this process.
    """

    def __init__(self, config: Config | None = None, *, public_host: str | None = None,
                 private_key: "str | RSAPrivateKey | None" = None, tunnel_timeout: float = DEFAULT_TUNNEL_TIMEOUT,
                 call_timeout: float = DEFAULT_CALL_TIMEOUT, token_ttl: float = DEFAULT_TOKEN_TTL,
                 version: str = VERSION):
        self.kite = Kite(NAME, version, config=config)
        self._public_host = public_host
        self.tunnel_timeout = tunnel_timeout
        self.call_timeout = call_timeout
        self.token_ttl = token_ttl
        self._private_key_source = private_key
        self._private_key: Any = None
        self._public_key: Any = None
        # Kite id -> the connection that kite registered on; kite.tunnel calls go over it.
        self.kites: dict[str, "Connection"] = {}
        self.pending: dict[int, PendingTunnel] = {}
        self._tunnel_numbers = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

        self.kite.handle("register", self.handle_register, spread_args=False)
        app = self.kite.make_app()
        self.outside = RelaySockJSServer(self.kite, role="outside", reject=self._reject_outside,
                                         on_session=self._outside_opened, query_key=KITE_ID_PARAMETER)
        self.outside.add_routes(app, "/proxy")
        self.tunnels = RelaySockJSServer(self.kite, role="tunnel", reject=self._reject_tunnel,
                                         on_session=self._tunnel_opened)
        app.router.add_get("/tunnel/{server:[^/.]+}/{session:[^/.]+}/websocket", self.tunnels.handle_sockjs_websocket)

    # Lifecycle

    @property
    def public_host(self) -> str:
        """The ``host:port`` in the URLs the proxy hands out."""
        if self._public_host:
            return self._public_host
        return f"127.0.0.1:{self.kite.port}"

    @property
    def kite_url(self) -> str:
        """The URL of the proxy's own kite, as it registers it with Kontrol."""
        return f"ws://{self.public_host}/kite"

    def _load_keys(self) -> None:
        from ..auth.tokens import generate_key_pair, load_private_key

        source = self._private_key_source
        if source is None:
            source = generate_key_pair().private_pem
        self._private_key = load_private_key(source) if isinstance(source, str) else source
        self._public_key = self._private_key.public_key()

    async def start(self, *, register: bool | None = None) -> None:
        """Serve, then register with Kontrol when ``register`` is true or, by default, when a kite.key is set."""
        self._load_keys()
        await self.kite.start()
        config = self.kite.config
        if register is None:
            register = bool(config.kite_key and config.kontrol_url)
        if register:
            self.kite.register(self.kite_url)
        logger.info("tunnel proxy serving on %s, public host %s", self.kite.url, self.public_host)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self.outside.close_all()
        self.tunnels.close_all()
        await self.kite.stop()

    # The register method

    async def handle_register(self, request: "Request") -> str:
        kite_id = request.kite.id
        if not kite_id:
            raise ArgumentError("register needs the caller's kite id in options.kite.id")
        current = self.kites.get(kite_id)
        if current is not None and current is not request.connection and not current.closed:
            if current.remote_username != request.connection.remote_username:
                raise GenericError(f"kite id {kite_id} is already registered by another user's live connection")
            logger.info("kite %s registered again from a new connection; dropping the old one", kite_id)
        self.kites[kite_id] = request.connection
        connection = request.connection

        def forget(_connection: Any) -> None:
            if self.kites.get(kite_id) is connection:
                del self.kites[kite_id]
                logger.info("kite %s left the tunnel proxy", kite_id)

        connection.on_close.append(forget)
        logger.info("kite %s registered with the tunnel proxy from %s", request.kite, connection.remote_address)
        return f"http://{self.public_host}/proxy?{KITE_ID_PARAMETER}={kite_id}"

    # Outside sessions

    @staticmethod
    def _kite_id(request: web.Request) -> str:
        return request.query.get(KITE_ID_PARAMETER, "").split("/", 1)[0]

    def _reject_outside(self, request: web.Request) -> web.Response | None:
        kite_id = self._kite_id(request)
        if not kite_id:
            return web.Response(status=400, text=f"missing the {KITE_ID_PARAMETER} query parameter: dial "
                                                 f"http://{self.public_host}/proxy?{KITE_ID_PARAMETER}=<kite id>\n")
        if kite_id not in self.kites:
            return web.Response(status=404, text=f"kite {kite_id} is not registered with this tunnel proxy\n")
        return None

    def _outside_opened(self, request: web.Request, outside: RelayEndpoint) -> None:
        task = asyncio.get_running_loop().create_task(self._open_tunnel(outside, self._kite_id(request)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

        def stop_waiting(_endpoint: RelayEndpoint) -> None:
            if not task.done() and task is not asyncio.current_task():
                task.cancel()

        outside.on_close.append(stop_waiting)

    def sign_tunnel_token(self, kite_id: str, number: int, *, now: float | None = None) -> str:
        """Return the RS256 token that lets kite ``kite_id`` open tunnel ``number``."""
        from ..auth.tokens import sign_claims

        now = time.time() if now is None else now
        claims = {"sub": kite_id, "seq": number, "iat": int(now), "exp": int(now + self.token_ttl),
                  "nbf": int(now - TOKEN_NOT_BEFORE)}
        return sign_claims(claims, self._private_key)

    async def _open_tunnel(self, outside: RelayEndpoint, kite_id: str) -> None:
        control = self.kites.get(kite_id)
        if control is None or control.closed:
            outside.close(CLOSE_TUNNEL_FAILED, f"kite {kite_id} is no longer registered with this tunnel proxy")
            return
        number = next(self._tunnel_numbers)
        waiter: asyncio.Future[RelayEndpoint] = asyncio.get_running_loop().create_future()
        self.pending[number] = PendingTunnel(kite_id, waiter)
        token = self.sign_tunnel_token(kite_id, number)
        # NOTE: the tunnel URL is always ws://, as in Go, so a kite cannot reach a proxy that only TLS reaches.
        url = f"ws://{self.public_host}/tunnel{sockjs_session_path()}/websocket?token={token}"
        try:
            await control.tell("kite.tunnel", {"url": url}, timeout=self.call_timeout)
            tunnel = await asyncio.wait_for(waiter, self.tunnel_timeout)
        except KiteError as exc:
            logger.warning("tunnel %d to kite %s for %s failed: %s", number, kite_id, outside.describe(), exc)
            outside.close(CLOSE_TUNNEL_FAILED, f"kite {kite_id} could not open a tunnel: {exc.message}")
            return
        except asyncio.TimeoutError:
            logger.warning("kite %s did not open tunnel %d within %gs", kite_id, number, self.tunnel_timeout)
            outside.close(CLOSE_TUNNEL_FAILED, f"kite {kite_id} did not open a tunnel within {self.tunnel_timeout:g}s")
            return
        finally:
            self.pending.pop(number, None)
        if outside.closed:
            tunnel.close()
            return
        logger.debug("joined %s with tunnel %d %s of kite %s", outside.describe(), number, tunnel.describe(), kite_id)
        outside.join(tunnel)

    # Tunnel sessions

    def _reject_tunnel(self, request: web.Request) -> web.Response | None:
        from ..auth.tokens import SignatureError, TokenError, verify_token

        token = request.query.get("token", "")
        if not token:
            return web.Response(status=401, text="missing the token query parameter: dial the URL from kite.tunnel\n")
        try:
            claims = verify_token(token, self._public_key, leeway=0)
        except SignatureError:
            logger.warning("rejected a tunnel dial from %s: the token is not signed by this proxy", request.remote)
            return web.Response(status=403, text="tunnel token is not signed by this tunnel proxy\n")
        except TokenError as exc:
            logger.warning("rejected a tunnel dial from %s: %s", request.remote, exc)
            return web.Response(status=401, text=f"invalid tunnel token: {exc}\n")
        number = claims.get("seq")
        pending = self.pending.get(number) if isinstance(number, int) else None
        if pending is None or pending.waiter.done():
            return web.Response(status=404, text=f"no tunnel {number} is waiting: it timed out or is already open\n")
        if claims.get("sub") != pending.kite_id:
            return web.Response(status=403, text=f"tunnel token of tunnel {number} names another kite\n")
        request[TUNNEL_NUMBER] = number
        return None

    def _tunnel_opened(self, request: web.Request, tunnel: RelayEndpoint) -> None:
        pending = self.pending.get(request[TUNNEL_NUMBER])
        if pending is None or pending.waiter.done():
            # The outside session gave up while this WebSocket was being accepted.
            tunnel.close(CLOSE_TUNNEL_FAILED, "the outside session of this tunnel has ended")
            return
        pending.waiter.set_result(tunnel)
