"""Keeping a kite registered with a reverse proxy or a tunnel proxy, and the proxy URL with Kontrol.

The kite dials the proxy, calls its ``register`` method and registers the
URL it gets back with Kontrol, so that callers who query Kontrol reach the
kite through the proxy. When the link to the proxy drops, the proxy deletes
the kite's entry, so the whole sequence runs again, with backoff after
failures.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from typing import TYPE_CHECKING, Any

from ..backoff import Backoff
from ..protocol.errors import KiteError

if TYPE_CHECKING:
    from ..client import Client
    from ..kite import Kite

logger = logging.getLogger(__name__)

REVERSE = "proxy"
TUNNEL = "tunnel"
# The Go kite retries a failed proxy registration after 10 s; this backoff starts sooner and stops there.
RETRY_BACKOFF = dict(initial=0.5, factor=2.0, maximum=10.0)
PROXY_URL_VARIABLE = "KITE_PROXY_URL"


class ProxyRegistration:
    """The registration of one kite with one kind of proxy; ``close()`` ends it.

    ``kind`` is ``"proxy"`` (reverse proxy: ``register`` gets the kite's own
    URL) or ``"tunnel"`` (tunnel proxy: ``register`` gets ``""``). The proxy is
    ``url`` when given. For a reverse proxy the ``KITE_PROXY_URL`` variable
    comes next. Otherwise it is a random match of ``query`` in Kontrol, by
    default the Kontrol user's kites named ``proxy`` or ``tunnelproxy`` in
    this kite's environment. With ``register_with_kontrol`` the returned URL
    is registered with Kontrol as this kite's URL.

    ``kite_url`` is the URL a reverse proxy forwards to, by default
    ``kite.url``. That names 127.0.0.1 when the kite listens on all
    addresses, so a proxy on another host needs the kite's public URL here.
    """

    def __init__(self, kite: "Kite", kind: str, *, url: str | None = None, query: Any = None,
                 kite_url: str | None = None, register_with_kontrol: bool = True, backoff: Backoff | None = None,
                 ssl: Any = None):
        if kind not in (REVERSE, TUNNEL):
            raise ValueError(f"invalid proxy kind {kind!r}: use {REVERSE!r} or {TUNNEL!r}")
        self.kite = kite
        self.kind = kind
        self.url = url
        self.query = query
        self.kite_url = kite_url
        self.register_with_kontrol = register_with_kontrol
        # An ssl.SSLContext for a proxy whose certificate the system store does not trust.
        self.ssl = ssl
        self.backoff = backoff or Backoff(**RETRY_BACKOFF)
        # The URL the proxy returned last; None until the first success.
        self.proxy_url: str | None = None
        self.client: Client | None = None
        self._registered = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def wait_registered(self, timeout: float | None = None) -> str:
        """Wait for a successful registration and return the URL the proxy handed out."""
        await asyncio.wait_for(self._registered.wait(), timeout)
        assert self.proxy_url is not None
        return self.proxy_url

    async def close(self) -> None:
        """Stop registering and close the link to the proxy, which makes the proxy delete this kite's entry."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self.client is not None:
            await self.client.close()

    # The loop

    async def _run(self) -> None:
        while not self._closing:
            try:
                client = await self._dial()
                self.client = client
                argument = (self.kite_url or self.kite.url) if self.kind == REVERSE else ""
                result = await client.tell("register", argument, timeout=self.kite.config.timeout)
                if not isinstance(result, str) or not result:
                    raise KiteError(f"the proxy returned an invalid register result: {result!r:.120}",
                                    type="invalidResponse")
                await self._registered_at(result)
                self.backoff.reset()
                assert client.connection is not None
                await client.connection.wait_closed()
                self._registered.clear()
                if not self._closing:
                    logger.info("connection to the %s at %s lost; registering %s again", self._what(), client.url,
                                self.kite.identity)
            except asyncio.CancelledError:
                raise
            except (ConnectionError, OSError, KiteError) as exc:
                delay = self.backoff.next_delay()
                logger.warning("registering %s with a %s failed: %s; retrying in %.1fs", self.kite.identity,
                               self._what(), exc, delay)
                if self.client is not None:
                    await self.client.close()
                await asyncio.sleep(delay)

    def _what(self) -> str:
        return "reverse proxy" if self.kind == REVERSE else "tunnel proxy"

    def _default_query(self) -> dict[str, str]:
        config = self.kite.config
        return {"username": config.kontrol_user, "environment": config.environment,
                "name": "proxy" if self.kind == REVERSE else "tunnelproxy"}

    async def _dial(self) -> "Client":
        from ..client import Client

        url = self.url
        if url is None and self.kind == REVERSE:
            url = os.environ.get(PROXY_URL_VARIABLE) or None
        if url is not None:
            key = self.kite.config.kite_key
            auth = {"type": "kiteKey", "key": key} if key else None
            client = Client(url, kite=self.kite, auth=auth, ssl=self.ssl)
        else:
            query = self.query if self.query is not None else self._default_query()
            matches = await self.kite.get_kites(query)
            if not matches:
                raise ConnectionError(f"no {self._what()} matches the Kontrol query {query}: start one "
                                      f"(kitectl {'proxy' if self.kind == REVERSE else 'tunnel'} serve) "
                                      f"or pass its URL")
            client = random.choice(matches)
            client.ssl = self.ssl
        await client.connect()
        return client

    async def _registered_at(self, proxy_url: str) -> None:
        self.proxy_url = proxy_url
        self._registered.set()
        logger.info("registered %s with the %s: %s", self.kite.identity, self._what(), proxy_url)
        config = self.kite.config
        if not self.register_with_kontrol or not (config.kite_key and config.kontrol_url):
            return
        kontrol = self.kite.kontrol
        if kontrol.register_url is None:
            kontrol.start_registration(proxy_url)
            return
        if kontrol.register_url == proxy_url:
            return
        # The registration loop sends its URL again only after a reconnect, so send the new one now.
        kontrol.start_registration(proxy_url)
        try:
            await kontrol.tell("register", {"url": proxy_url})
        except (ConnectionError, OSError, KiteError) as exc:
            logger.warning("registering the new proxy URL %s of %s with Kontrol failed: %s; the registration "
                           "loop sends it after its next reconnect", proxy_url, self.kite.identity, exc)
