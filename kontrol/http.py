"""Kontrol's HTTP registration: ``POST /register`` and ``GET /heartbeat?id=...``.

Kites that cannot keep a WebSocket open register over HTTP and then call
``/heartbeat`` every ``heartbeatInterval`` seconds. Errors are plain-text
bodies holding ``{"err": "<message>"}``, as Go Kontrol sends them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from kitelib.protocol.errors import AuthenticationError, KiteError
from kitelib.protocol.identity import Identity, IdentityError

from .registry import LiveKite
from .storage import StorageError

if TYPE_CHECKING:
    from .server import Kontrol

logger = logging.getLogger(__name__)

# A register body contains a kite.key and a URL; 64 KiB is far above any real one.
MAX_REGISTER_BODY = 64 * 1024


def _error(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=orjson.dumps({"err": message}).decode(), content_type="text/plain")


async def register(kontrol: "Kontrol", request: web.Request) -> web.Response:
    body = await request.content.read(MAX_REGISTER_BODY + 1)
    if len(body) > MAX_REGISTER_BODY:
        return _error(400, f"wrong register input: body is larger than {MAX_REGISTER_BODY} bytes")
    try:
        data = orjson.loads(body)
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object")
    except (orjson.JSONDecodeError, ValueError) as exc:
        return _error(400, f"wrong register input: '{exc}'")

    auth = data.get("auth")
    auth_type = auth.get("type") if isinstance(auth, dict) else None
    if auth_type != "kiteKey":
        return _error(400, f"unexpected authentication type: {auth_type}")
    url = data.get("url")
    if not url or not isinstance(url, str):
        return _error(400, "empty URL")
    try:
        kontrol._check_url(url)
    except KiteError as exc:
        return _error(400, exc.message)

    try:
        result = kontrol.kite.authenticators.authenticate(auth)
    except AuthenticationError as exc:
        logger.info("HTTP register from %s rejected: %s", request.remote, exc.message)
        return _error(401, exc.message)
    try:
        identity = Identity.from_dict(data.get("kite")).replace(username=result.username)
        identity.validate()
    except IdentityError as exc:
        return _error(400, str(exc))

    try:
        extra, key_id = kontrol._key_result(dict(result.claims))
    except KiteError as exc:
        return _error(400, exc.message)
    owner = kontrol.registry.owner_of(identity.id)
    if owner is not None and owner.connection is not None and not owner.connection.closed:
        return _error(400, f"kite {identity} is already registered from a live connection")
    try:
        await kontrol.registry.add(LiveKite(identity, url, key_id, None))
    except StorageError as exc:
        logger.warning("HTTP register of %s failed: %s", identity, exc)
        return _error(500, f"storage unavailable: {exc}")
    interval = kontrol.settings.heartbeat_interval
    # Go kites decode the interval as whole seconds; a fractional one (only used in tests) stays a float.
    reply = {"url": url, "heartbeatInterval": int(interval) if interval == int(interval) else interval, **extra}
    return web.Response(text=orjson.dumps(reply).decode(), content_type="application/json")


async def heartbeat(kontrol: "Kontrol", request: web.Request) -> web.Response:
    kite_id = request.query.get("id", "")
    if not kite_id:
        return web.Response(status=400, text="query id is empty")
    live = kontrol.registry.owner_of(kite_id)
    if live is None or live.connection is not None:
        return web.Response(text="registeragain")
    kontrol.registry.ping(live)
    return web.Response(text="pong")
