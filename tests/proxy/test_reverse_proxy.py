"""The reverse proxy over real sockets: kites behind one port, found by URL and through Kontrol."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from kitelib import Client, Kite
from kitelib.protocol.errors import DisconnectError, KiteError
from kitelib.proxy import ReverseProxy
from kitelib.transport.client import HandshakeRejected, sockjs_session_path
from kontrol.server import Kontrol
from tests.proxy.support import WAIT, config_for, find_one

TRANSPORTS = ["websocket", "xhr"]

MakeKite = Callable[..., Awaitable[Kite]]
Connect = Callable[..., Awaitable[Client]]


async def register_backend(kite: Kite, proxy: ReverseProxy, *, by_url: bool = True) -> str:
    registration = kite.register_to_proxy(proxy.kite.url if by_url else None)
    return await registration.wait_registered(timeout=WAIT)


# Reaching a kite


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_reverse_proxy_by_url(reverse_proxy: ReverseProxy, make_kite: MakeKite, connect: Connect,
                                    transport: str) -> None:
    backend = await make_kite()

    url = await register_backend(backend, reverse_proxy)

    assert url == f"http://127.0.0.1:{reverse_proxy.kite.port}/proxy/{backend.id}"
    client = await connect(url, transport)
    assert await client.tell("square", 7) == 49
    assert await client.tell("echo", {"nested": [1, "two"]}) == {"nested": [1, "two"]}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_reverse_proxy_by_kontrol_query(reverse_proxy: ReverseProxy, make_kite: MakeKite, caller: Kite,
                                              transport: str) -> None:
    backend = await make_kite()

    proxy_url = await register_backend(backend, reverse_proxy, by_url=False)
    await backend.wait_registered(timeout=WAIT)

    client = await find_one(caller, username="alice", name="math")
    assert client.url == proxy_url
    assert client.identity is not None and client.identity.id == backend.id
    client.transport = transport
    async with client:
        assert await client.tell("square", 12) == 144


async def test_reverse_proxy_registers_itself_with_kontrol(reverse_proxy: ReverseProxy, caller: Kite) -> None:
    client = await find_one(caller, username="kontrol", name="proxy")

    assert client.url == f"http://127.0.0.1:{reverse_proxy.kite.port}/kite"
    async with client:
        assert await client.tell("kite.ping") == "pong"


async def test_reverse_proxy_forwards_info(reverse_proxy: ReverseProxy, make_kite: MakeKite) -> None:
    backend = await make_kite()
    url = await register_backend(backend, reverse_proxy)

    async with httpx.AsyncClient(timeout=WAIT) as http:
        response = await http.get(url + "/info?probe=1")

    assert response.status_code == 200
    assert response.json()["websocket"] is True


async def test_reverse_proxy_streams_xhr_streaming(reverse_proxy: ReverseProxy, make_kite: MakeKite) -> None:
    backend = await make_kite()
    url = await register_backend(backend, reverse_proxy)
    session_url = url + sockjs_session_path()

    received = b""
    async with httpx.AsyncClient(timeout=WAIT) as http:
        async with http.stream("POST", session_url + "/xhr_streaming") as response:
            assert response.status_code == 200
            # The backend keeps the response open, so the open frame arrives only if the proxy streams.
            async for chunk in response.aiter_raw():
                received += chunk
                if b"o\n" in received:
                    break

    assert received.startswith(b"h" * 2048 + b"\n")
    assert received.endswith(b"o\n")


async def test_reverse_proxy_tls(make_reverse_proxy: Callable[..., Awaitable[ReverseProxy]], kontrol: Kontrol,
                                 make_kite: MakeKite, connect: Connect, tmp_path: Path) -> None:
    cert, key = write_self_signed_certificate(tmp_path)
    config = config_for(kontrol, "kontrol")
    config.tls_cert, config.tls_key = str(cert), str(key)
    proxy = await make_reverse_proxy(config=config)
    backend = await make_kite()
    trust = ssl.create_default_context(cafile=str(cert))

    url = await backend.register_to_proxy(proxy.kite.url, ssl=trust).wait_registered(timeout=WAIT)

    assert url.startswith("https://127.0.0.1:")
    for transport in TRANSPORTS:
        client = await connect(url, transport, ssl=trust)
        assert await client.tell("square", 5) == 25


async def test_reverse_proxy_registers_again_after_restart(make_reverse_proxy: Callable[..., Awaitable[ReverseProxy]],
                                                           make_kite: MakeKite, connect: Connect) -> None:
    first = await make_reverse_proxy()
    port = first.kite.port
    backend = await make_kite()
    registration = backend.register_to_proxy(first.kite.url)
    url = await registration.wait_registered(timeout=WAIT)

    await first.stop()
    second = await make_reverse_proxy(port=port)

    assert await registration.wait_registered(timeout=WAIT) == url
    await asyncio.wait_for(wait_until(lambda: backend.id in second.backends), WAIT)
    client = await connect(url)
    assert await client.tell("square", 3) == 9


# Failures


async def test_reverse_proxy_unknown_kite_id(reverse_proxy: ReverseProxy, connect: Connect) -> None:
    url = f"http://127.0.0.1:{reverse_proxy.kite.port}/proxy/no-such-kite"

    async with httpx.AsyncClient(timeout=WAIT) as http:
        response = await http.get(url + "/info")
    assert response.status_code == 404
    assert "kite no-such-kite is not registered" in response.text

    with pytest.raises(HandshakeRejected) as rejected:
        await connect(url, "websocket")
    assert rejected.value.status == 404


async def test_reverse_proxy_forgets_disconnected_kite(reverse_proxy: ReverseProxy, make_kite: MakeKite) -> None:
    backend = await make_kite()
    registration = backend.register_to_proxy(reverse_proxy.kite.url)
    url = await registration.wait_registered(timeout=WAIT)

    await registration.close()
    await asyncio.wait_for(wait_until(lambda: backend.id not in reverse_proxy.backends), WAIT)

    async with httpx.AsyncClient(timeout=WAIT) as http:
        response = await http.get(url + "/info")
    assert response.status_code == 404


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_reverse_proxy_backend_down(reverse_proxy: ReverseProxy, connect: Connect,
                                          unused_tcp_port: int, transport: str) -> None:
    url = await register_url_as(connect, reverse_proxy, f"http://127.0.0.1:{unused_tcp_port}/kite")

    started = time.monotonic()
    with pytest.raises(ConnectionError) as failed:
        await connect(url, transport)

    assert time.monotonic() - started < WAIT
    assert "502" in str(failed.value)


async def test_reverse_proxy_silent_backend_times_out(make_reverse_proxy: Callable[..., Awaitable[ReverseProxy]],
                                                      connect: Connect) -> None:
    proxy = await make_reverse_proxy(handshake_timeout=0.5, read_timeout=0.5)
    accepted: list[asyncio.StreamWriter] = []

    async def accept_and_stay_silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    silent = await asyncio.start_server(accept_and_stay_silent, "127.0.0.1", 0)
    try:
        port = silent.sockets[0].getsockname()[1]
        url = await register_url_as(connect, proxy, f"http://127.0.0.1:{port}/kite")
        for transport in TRANSPORTS:
            with pytest.raises(ConnectionError) as failed:
                await connect(url, transport)
            assert "504" in str(failed.value)
    finally:
        for writer in accepted:
            writer.close()
        silent.close()
        await silent.wait_closed()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_reverse_proxy_backend_disconnects_mid_call(reverse_proxy: ReverseProxy, make_kite: MakeKite,
                                                          connect: Connect, transport: str) -> None:
    backend = await make_kite()
    url = await register_backend(backend, reverse_proxy)
    client = await connect(url, transport)
    call = asyncio.ensure_future(client.tell("hang", timeout=None))
    await asyncio.wait_for(backend.hang_started.wait(), WAIT)  # type: ignore[attr-defined]

    await backend.stop()

    with pytest.raises(DisconnectError):
        await asyncio.wait_for(call, WAIT)


async def test_reverse_proxy_register_rejects_bad_url(reverse_proxy: ReverseProxy, connect: Connect) -> None:
    client = await connect(reverse_proxy.kite.url)

    with pytest.raises(KiteError) as rejected:
        await client.tell("register", "not a url")

    assert rejected.value.type == "argumentError"
    assert "invalid kite URL" in rejected.value.message


async def test_reverse_proxy_concurrent_clients(reverse_proxy: ReverseProxy, make_kite: MakeKite,
                                                connect: Connect) -> None:
    backend = await make_kite()
    url = await register_backend(backend, reverse_proxy)
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


# Helpers


async def register_url_as(connect: Connect, proxy: ReverseProxy, backend_url: str) -> str:
    """Register ``backend_url`` with the proxy as the caller kite; return the proxy URL.

    The proxy keeps the entry while the client lives, and the connect fixture closes it.
    """
    client = await connect(proxy.kite.url)
    url = await client.tell("register", backend_url)
    assert re.fullmatch(rf"http://127\.0\.0\.1:{proxy.kite.port}/proxy/{client.kite.id}", url)
    return url


async def wait_until(condition: Callable[[], bool]) -> None:
    """Return once ``condition()`` holds; callers bound the wait with asyncio.wait_for."""
    while not condition():
        await asyncio.sleep(0.02)


def write_self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """Write a certificate for 127.0.0.1 and its key; return both paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "proxy.crt"
    key_path = directory / "proxy.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
