"""The tunnel proxy over real sockets: kites that do not listen, reached through tunnels they open."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from kitelib import Client, Kite
from kitelib.auth.tokens import generate_key_pair, sign_claims
from kitelib.protocol.errors import AuthenticationError, DisconnectError, KiteError
from kitelib.protocol.identity import Identity
from kitelib.proxy import TunnelBridge, TunnelProxy
from kitelib.transport.client import HandshakeRejected, sockjs_session_path
from tests.proxy.support import WAIT, find_one

TRANSPORTS = ["websocket", "xhr"]

MakeKite = Callable[..., Awaitable[Kite]]
MakeTunnelProxy = Callable[..., Awaitable[TunnelProxy]]
Connect = Callable[..., Awaitable[Client]]


async def private_kite(make_kite: MakeKite, proxy: TunnelProxy, *, by_url: bool = True) -> tuple[Kite, str]:
    """Return a kite that does not listen on any port, registered with ``proxy``, and its public URL."""
    kite = await make_kite("private", listen=False)
    registration = kite.register_to_tunnel(proxy.kite.url if by_url else None)
    return kite, await registration.wait_registered(timeout=WAIT)


def tunnel_ws_url(proxy: TunnelProxy, token: str) -> str:
    return f"ws://{proxy.public_host}/tunnel{sockjs_session_path()}/websocket?token={token}"


# Reaching a kite


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_tunnel_proxy_by_url(tunnel_proxy: TunnelProxy, make_kite: MakeKite, connect: Connect,
                                   transport: str) -> None:
    kite, url = await private_kite(make_kite, tunnel_proxy)

    assert url == f"http://127.0.0.1:{tunnel_proxy.kite.port}/proxy?kiteID={kite.id}"
    client = await connect(url, transport)
    assert await client.tell("square", 9) == 81
    assert await client.tell("echo", ["a", {"b": None}]) == ["a", {"b": None}]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_tunnel_proxy_by_kontrol_query(tunnel_proxy: TunnelProxy, make_kite: MakeKite, caller: Kite,
                                             transport: str) -> None:
    kite, url = await private_kite(make_kite, tunnel_proxy, by_url=False)
    await kite.wait_registered(timeout=WAIT)

    client = await find_one(caller, username="alice", name="private")
    assert client.url == url
    client.transport = transport
    async with client:
        assert await client.tell("square", 11) == 121


async def test_tunnel_proxy_registers_itself_with_kontrol(tunnel_proxy: TunnelProxy, caller: Kite) -> None:
    client = await find_one(caller, username="kontrol", name="tunnelproxy")

    assert client.url == f"ws://127.0.0.1:{tunnel_proxy.kite.port}/kite"
    async with client:
        assert await client.tell("kite.ping") == "pong"


async def test_tunnel_requests_are_authenticated(tunnel_proxy: TunnelProxy, make_kite: MakeKite,
                                                 connect: Connect) -> None:
    _kite, url = await private_kite(make_kite, tunnel_proxy)

    client = await connect(url, auth=None)

    assert await client.tell("kite.ping") == "pong"
    with pytest.raises(AuthenticationError) as rejected:
        await client.tell("square", 2)
    assert "No authentication information" in rejected.value.message


async def test_tunnel_bridge_exposes_kite_of_other_process(tunnel_proxy: TunnelProxy, make_kite: MakeKite,
                                                           connect: Connect) -> None:
    local = await make_kite("local")
    bridge_kite = await make_kite("local", listen=False)
    bridge = TunnelBridge(bridge_kite, local.url)
    url = await bridge_kite.register_to_tunnel(tunnel_proxy.kite.url).wait_registered(timeout=WAIT)

    try:
        client = await connect(url, "websocket")
        assert await client.tell("square", 6) == 36
        assert len(local.connections) == 1
    finally:
        await bridge.close()


async def test_tunnel_proxy_standard_xhr_path(tunnel_proxy: TunnelProxy, make_kite: MakeKite) -> None:
    kite, _url = await private_kite(make_kite, tunnel_proxy)
    session_url = f"http://127.0.0.1:{tunnel_proxy.kite.port}/proxy{sockjs_session_path()}"
    params = {"kiteID": kite.id}
    ping = orjson.dumps({
        "method": "kite.ping",
        "arguments": [{"kite": Identity("bob", "unknown", "caller", "1.0.0", "unknown", "host", "b0b").to_dict(),
                       "withArgs": [], "responseCallback": "[Function]"}],
        "callbacks": {"0": [0, "responseCallback"]},
    }).decode()

    async with httpx.AsyncClient(timeout=WAIT) as http:
        opened = await http.post(session_url + "/xhr", params=params)
        sent = await http.post(session_url + "/xhr_send", params=params, content=orjson.dumps([ping]))
        polled = await http.post(session_url + "/xhr", params=params)

    assert opened.text == "o\n"
    assert sent.status_code == 204
    assert polled.text.startswith("a[")
    [reply] = [orjson.loads(message) for message in orjson.loads(polled.text[1:])]
    assert reply["method"] == 0
    assert reply["arguments"][0]["result"] == "pong"


# Failures


async def test_tunnel_proxy_unknown_kite_id(tunnel_proxy: TunnelProxy, connect: Connect) -> None:
    url = f"http://127.0.0.1:{tunnel_proxy.kite.port}/proxy?kiteID=no-such-kite"

    with pytest.raises(HandshakeRejected) as rejected:
        await connect(url, "websocket")
    assert rejected.value.status == 404

    async with httpx.AsyncClient(timeout=WAIT) as http:
        response = await http.post(f"http://127.0.0.1:{tunnel_proxy.kite.port}/proxy{sockjs_session_path()}/xhr",
                                   params={"kiteID": "no-such-kite"})
    assert response.status_code == 404
    assert "kite no-such-kite is not registered" in response.text


async def test_tunnel_token_expired_rejected(tunnel_proxy: TunnelProxy) -> None:
    token = tunnel_proxy.sign_tunnel_token("some-kite", 1, now=time.time() - 2 * tunnel_proxy.token_ttl)

    with pytest.raises(InvalidStatus) as rejected:
        await websockets.connect(tunnel_ws_url(tunnel_proxy, token))

    assert rejected.value.response.status_code == 401
    assert b"token is expired" in rejected.value.response.body


async def test_tunnel_token_of_other_key_rejected(tunnel_proxy: TunnelProxy) -> None:
    now = int(time.time())
    claims = {"sub": "some-kite", "seq": 1, "iat": now, "exp": now + 3600, "nbf": now - 60}
    token = sign_claims(claims, generate_key_pair().private_pem)

    with pytest.raises(InvalidStatus) as rejected:
        await websockets.connect(tunnel_ws_url(tunnel_proxy, token))

    assert rejected.value.response.status_code == 403
    assert b"not signed by this tunnel proxy" in rejected.value.response.body


async def test_tunnel_token_without_pending_tunnel_rejected(tunnel_proxy: TunnelProxy) -> None:
    token = tunnel_proxy.sign_tunnel_token("some-kite", 424242)

    with pytest.raises(InvalidStatus) as rejected:
        await websockets.connect(tunnel_ws_url(tunnel_proxy, token))

    assert rejected.value.response.status_code == 404


async def test_tunnel_expired_token_fails_outside_call(make_tunnel_proxy: MakeTunnelProxy, make_kite: MakeKite,
                                                       connect: Connect) -> None:
    # Tokens of this proxy expire two minutes before they are issued, so the proxy rejects every tunnel dial.
    proxy = await make_tunnel_proxy(token_ttl=-120.0)
    _kite, url = await private_kite(make_kite, proxy)
    client = await connect(url, "websocket")

    started = time.monotonic()
    with pytest.raises(DisconnectError):
        await client.tell("square", 2)

    assert time.monotonic() - started < WAIT


async def test_tunnel_kite_never_dials(make_tunnel_proxy: MakeTunnelProxy, make_kite: MakeKite,
                                       connect: Connect) -> None:
    proxy = await make_tunnel_proxy(tunnel_timeout=0.5)
    kite, url = await private_kite(make_kite, proxy)
    dial_requests: list[Any] = []

    async def ignore_tunnel(request: Any) -> None:
        dial_requests.append(request.args)

    kite.handle("kite.tunnel", ignore_tunnel, spread_args=False)
    client = await connect(url, "websocket")

    with pytest.raises(DisconnectError):
        await client.tell("square", 2)

    assert len(dial_requests) == 1
    assert dial_requests[0][0]["url"].startswith(f"ws://{proxy.public_host}/tunnel/")
    assert not proxy.pending


async def test_kite_tunnel_rejected_from_accepted_connection(make_kite: MakeKite, connect: Connect) -> None:
    kite = await make_kite()
    client = await connect(kite.url)

    with pytest.raises(KiteError) as rejected:
        await client.tell("kite.tunnel", {"url": "ws://127.0.0.1:9/tunnel/1/2/websocket"})

    assert "accepted only from a tunnel proxy" in rejected.value.message


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_tunnel_kite_disconnects_mid_call(tunnel_proxy: TunnelProxy, make_kite: MakeKite, connect: Connect,
                                                transport: str) -> None:
    kite, url = await private_kite(make_kite, tunnel_proxy)
    client = await connect(url, transport)
    call = asyncio.ensure_future(client.tell("hang", timeout=None))
    await asyncio.wait_for(kite.hang_started.wait(), WAIT)  # type: ignore[attr-defined]

    await kite.stop()

    with pytest.raises(DisconnectError):
        await asyncio.wait_for(call, WAIT)


async def test_tunnel_outside_client_leaving_closes_tunnel(tunnel_proxy: TunnelProxy, make_kite: MakeKite,
                                                           connect: Connect) -> None:
    kite, url = await private_kite(make_kite, tunnel_proxy)
    client = await connect(url, "websocket")
    assert await client.tell("square", 4) == 16
    [tunnel] = [connection for connection in kite.connections if connection.transport.kind == "tunnel"]

    await client.close()

    await asyncio.wait_for(tunnel.wait_closed(), WAIT)


async def test_tunnel_proxy_concurrent_clients(tunnel_proxy: TunnelProxy, make_kite: MakeKite,
                                               connect: Connect) -> None:
    _kite, url = await private_kite(make_kite, tunnel_proxy)
    clients = [await connect(url, TRANSPORTS[number % 2]) for number in range(20)]

    async def calls_of(number: int, client: Client) -> list[str]:
        values = [f"client {number} call {call}" for call in range(20)]
        # Replies to shuffled delays come back out of order, so a reply routed to the wrong caller shows.
        replies = await asyncio.gather(*(client.tell("echo", value, (call * 7 % 5) / 1000)
                                         for call, value in enumerate(values)))
        assert replies == values
        return replies

    results = await asyncio.gather(*(calls_of(number, client) for number, client in enumerate(clients)))

    assert sum(len(replies) for replies in results) == 400
