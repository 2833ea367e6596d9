"""Interop tests: a kite.js 1.0.13 client calls a kitelib kite that requires authentication.

A kitelib Kontrol with SQLite storage runs on 127.0.0.1. The kite ``math``
has a kite.key that Kontrol issued for user alice, so it trusts tokens
signed with Kontrol's key, and it registers with Kontrol. A kitelib client
holding bob's kite.key gets a token for ``math`` from Kontrol's ``getToken``,
and client.js hands it to kite.js as ``auth: {type: "token", key}``.

Like test_kitejs.py, these tests skip without node and npm unless
KITE_REQUIRE_INTEROP=1 is set, in which case they fail.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kitelib import Kite
from kitelib.auth.tokens import decode_unverified, generate_key_pair, sign_token
from kontrol.server import Kontrol
from tests.kontrol.conftest import KontrolFactory, config_for

from .kitejs_helpers import node, run_kitejs_client  # noqa: F401 (node is a fixture)

pytestmark = pytest.mark.interop

KITE_USER = "alice"
CALLER_USER = "bob"

# (client.js transport, URL template): the raw WebSocket that kite.js uses by
# default, sockjs-client with its default transports (WebSocket first) and
# sockjs-client limited to xhr-polling.
TRANSPORTS = [
    pytest.param("websocket", "ws://127.0.0.1:{port}/kite", id="raw-websocket"),
    pytest.param("sockjs", "http://127.0.0.1:{port}/kite", id="sockjs-websocket"),
    pytest.param("sockjs-xhr", "http://127.0.0.1:{port}/kite", id="sockjs-xhr-polling"),
]


@pytest.fixture
async def kontrol(tmp_path: Path) -> AsyncIterator[Kontrol]:
    """Start a Kontrol with SQLite storage in ``tmp_path`` on a free loopback port."""
    factory = KontrolFactory("sqlite", {"path": tmp_path / "kontrol.db", "sweep_interval": 0.2}, tmp_path)
    kontrol = await factory.start()
    try:
        yield kontrol
    finally:
        await factory.stop(kontrol)


@pytest.fixture
async def secure_kite(kontrol: Kontrol) -> AsyncIterator[Kite]:
    """Start the kite math for alice, with authentication on, registered with ``kontrol``."""
    config = config_for(kontrol, KITE_USER)
    assert config.disable_authentication is False
    kite = Kite("math", "1.0.0", config=config)
    kite.handle("square", lambda request, number: number * number)
    # The username the kite authenticated, which for a token is its "sub" claim.
    kite.handle("whoami", lambda request: request.username)

    await kite.start()
    try:
        kite.register()
        await kite.wait_registered(timeout=10)
        yield kite
    finally:
        await kite.stop()


def kite_url(url_template: str, kite: Kite) -> str:
    return url_template.format(port=kite.port)


def audience_of(kite: Kite) -> str:
    identity = kite.identity
    return f"/{identity.username}/{identity.environment}/{identity.name}"


@pytest.fixture
async def token(kontrol: Kontrol, secure_kite: Kite) -> str:
    """Get a token for calling ``secure_kite`` from Kontrol's getToken, as bob."""
    caller = Kite("caller", "1.0.0", config=config_for(kontrol, CALLER_USER))
    identity = secure_kite.identity
    query = {"username": identity.username, "environment": identity.environment, "name": identity.name}
    try:
        return await caller.get_token(query)
    finally:
        await caller.stop()


def test_token_issued_by_kontrol(kontrol, secure_kite, token):
    # Checks that the token the tests below use is Kontrol's, issued to bob, for the kite math.
    claims = decode_unverified(token).claims

    assert claims["iss"] == kontrol.settings.username
    assert claims["sub"] == CALLER_USER
    assert claims["aud"] == audience_of(secure_kite)
    assert claims["exp"] > time.time()


@pytest.mark.parametrize(("transport", "url_template"), TRANSPORTS)
async def test_kitejs_token_calls_square(node, secure_kite, token, transport, url_template):
    url = kite_url(url_template, secure_kite)

    square, whoami = await run_kitejs_client(node, url, transport, [["square", [4]], ["whoami", []]], token=token)

    assert square["error"] is None
    assert square["result"] == 16
    # kite.js claims the username "anonymous" in its kite info, so "bob" can only come from the token's subject.
    assert whoami["error"] is None
    assert whoami["result"] == CALLER_USER


@pytest.mark.parametrize(("transport", "url_template"), TRANSPORTS)
async def test_kitejs_without_token_rejected(node, secure_kite, transport, url_template):
    url = kite_url(url_template, secure_kite)

    square, ping = await run_kitejs_client(node, url, transport, [["square", [4]], ["kite.ping", []]])

    assert square["result"] is None
    assert square["error"]["type"] == "authenticationError"
    assert square["error"]["message"] == "No authentication information is provided"
    # kite.ping needs no authentication, so the connection itself still works.
    assert ping["error"] is None
    assert ping["result"] == "pong"


def foreign_key_token(kontrol: Kontrol, kite: Kite) -> str:
    """Return a token with valid claims, signed by a key that is not Kontrol's."""
    return sign_token(generate_key_pair().private_pem, issuer=kontrol.settings.username, subject=CALLER_USER,
                      audience=audience_of(kite))


def expired_token(kontrol: Kontrol, kite: Kite) -> str:
    """Return a token signed with Kontrol's own key that expired about a day ago."""
    three_days_ago = time.time() - 3 * 86400
    return sign_token(kontrol.keys.current.private_key, issuer=kontrol.settings.username, subject=CALLER_USER,
                      audience=audience_of(kite), now=three_days_ago)


# (token builder, text the rejection message must contain)
BAD_TOKENS = [
    pytest.param(foreign_key_token, "signature does not verify", id="foreign-key"),
    pytest.param(expired_token, "token is expired by", id="expired"),
]


@pytest.mark.parametrize(("transport", "url_template"), TRANSPORTS)
@pytest.mark.parametrize(("make_token", "reason"), BAD_TOKENS)
async def test_kitejs_bad_token_rejected(node, kontrol, secure_kite, token, make_token, reason, transport,
                                         url_template):
    url = kite_url(url_template, secure_kite)
    bad_token = make_token(kontrol, secure_kite)

    (rejected,) = await run_kitejs_client(node, url, transport, [["square", [4]]], token=bad_token)

    assert rejected["result"] is None
    assert rejected["error"]["type"] == "authenticationError"
    assert rejected["error"]["message"].startswith("token: ")
    assert reason in rejected["error"]["message"]
    assert bad_token not in rejected["error"]["message"]

    # The rejection leaves the kite serving: a client with Kontrol's token gets its result.
    (square,) = await run_kitejs_client(node, url, transport, [["square", [5]]], token=token)

    assert square["error"] is None
    assert square["result"] == 25
