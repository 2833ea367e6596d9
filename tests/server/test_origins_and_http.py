"""Origin checks and the kite's own HTTP routes, over real sockets.

The browser tests (tests/interop/test_browser.py) show the same rules from a
real page. These tests drive each route by hand, so every transport and
preflight is covered, including clients that send no ``Origin`` at all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import websockets
from aiohttp import web

from kitelib import Client, Config, Kite
from kitelib.config import ConfigError
from server_support import WAIT, add_math_methods, assert_still_serving, make_config, session_path, ws_base

MakeKite = Callable[..., Awaitable[Kite]]
Connect = Callable[..., Awaitable[Client]]
ALLOWED = "https://app.example.test"
STRANGER = "https://evil.example.test"


def origin_of(kite: Kite) -> str:
    return kite.url.removesuffix("/kite")


# Default: every origin, as sockjs-go


async def test_default_echoes_any_origin(kite: Kite) -> None:
    async with httpx.AsyncClient(timeout=WAIT) as http:
        info = await http.get(kite.url + "/info", headers={"Origin": STRANGER})
        poll = await http.post(kite.url + session_path() + "/xhr", headers={"Origin": STRANGER})

    assert info.status_code == 200
    assert info.headers["access-control-allow-origin"] == STRANGER
    assert poll.status_code == 200
    assert poll.text == "o\n"
    async with websockets.connect(ws_base(kite), origin=STRANGER, open_timeout=WAIT) as socket:  # type: ignore[arg-type]
        assert socket.protocol.state.name == "OPEN"


# An allow-list


@pytest.fixture
async def guarded(make_kite: MakeKite) -> Kite:
    return await make_kite(allowed_origins=[ALLOWED, "http://*.pages.example.test"])


@pytest.mark.parametrize("origin", [ALLOWED, "https://APP.example.test:443", "http://blue.pages.example.test"])
async def test_listed_origins_get_cors_headers(guarded: Kite, origin: str) -> None:
    async with httpx.AsyncClient(timeout=WAIT) as http:
        info = await http.get(guarded.url + "/info", headers={"Origin": origin})
        preflight = await http.options(guarded.url + session_path() + "/xhr_send",
                                       headers={"Origin": origin, "Access-Control-Request-Method": "POST"})

    assert info.status_code == 200
    assert info.headers["access-control-allow-origin"] == origin
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == origin


@pytest.mark.parametrize("path", ["/info", "/", ""])
async def test_unlisted_origin_rejected_with_fix(guarded: Kite, path: str) -> None:
    async with httpx.AsyncClient(timeout=WAIT) as http:
        response = await http.get(guarded.url + path, headers={"Origin": STRANGER})

    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers
    assert STRANGER in response.text
    assert "allowed_origins" in response.text
    assert "KITE_ALLOWED_ORIGINS" in response.text


async def test_unlisted_origin_gets_no_xhr_session(guarded: Kite) -> None:
    path = guarded.url + session_path()
    async with httpx.AsyncClient(timeout=WAIT) as http:
        preflight = await http.options(path + "/xhr", headers={"Origin": STRANGER,
                                                               "Access-Control-Request-Method": "POST"})
        poll = await http.post(path + "/xhr", headers={"Origin": STRANGER})
        streaming = await http.post(path + "/xhr_streaming", headers={"Origin": STRANGER})

    assert (preflight.status_code, poll.status_code, streaming.status_code) == (403, 403, 403)
    assert not guarded.connections


@pytest.mark.parametrize("suffix", ["", "/websocket", "/SERVER/SESSION/websocket"])
async def test_unlisted_origin_websocket_rejected(guarded: Kite, suffix: str) -> None:
    url = ws_base(guarded) + suffix.replace("/SERVER/SESSION", session_path())
    with pytest.raises(websockets.InvalidStatus) as raised:
        await websockets.connect(url, origin=STRANGER, open_timeout=WAIT)  # type: ignore[arg-type]

    assert raised.value.response.status_code == 403
    assert not guarded.connections


async def test_no_origin_and_own_origin_pass(guarded: Kite, connect: Connect) -> None:
    # Go kites and kitectl send the kite's own origin, and Node clients send none.
    client = await connect(guarded.url, transport="websocket")
    assert await client.tell("square", 3) == 9
    async with websockets.connect(ws_base(guarded), open_timeout=WAIT) as socket:
        assert socket.protocol.state.name == "OPEN"
    async with httpx.AsyncClient(timeout=WAIT) as http:
        same = await http.get(guarded.url + "/info", headers={"Origin": origin_of(guarded)})
    assert same.status_code == 200


async def test_own_page_behind_tls_proxy_passes(guarded: Kite) -> None:
    proxied = {"Origin": "https://kite.example.test", "X-Forwarded-Proto": "https",
               "X-Forwarded-Host": "kite.example.test"}
    async with httpx.AsyncClient(timeout=WAIT) as http:
        own = await http.get(guarded.url + "/info", headers=proxied)
        other = await http.get(guarded.url + "/info", headers={**proxied, "Origin": "https://other.example.test"})
        downgraded = await http.get(guarded.url + "/info", headers={**proxied, "X-Forwarded-Proto": "http"})

    assert own.status_code == 200
    assert other.status_code == 403
    assert downgraded.status_code == 403


async def test_rejections_keep_other_clients_served(guarded: Kite, connect: Connect) -> None:
    client = await connect(guarded.url, transport="xhr")
    for _ in range(3):
        with pytest.raises(websockets.InvalidStatus):
            await websockets.connect(ws_base(guarded), origin=STRANGER, open_timeout=WAIT)  # type: ignore[arg-type]

    await assert_still_serving(client)


async def test_allow_list_change_applies_live(guarded: Kite) -> None:
    async with httpx.AsyncClient(timeout=WAIT) as http:
        before = await http.get(guarded.url + "/info", headers={"Origin": STRANGER})
        guarded.config.allowed_origins.append(STRANGER)
        after = await http.get(guarded.url + "/info", headers={"Origin": STRANGER})

    assert (before.status_code, after.status_code) == (403, 200)


def test_environment_sets_the_allow_list() -> None:
    config = Config()
    config.apply_environment({"KITE_ALLOWED_ORIGINS": "https://a.example.test, http://localhost:3000"})

    assert config.allowed_origins == ["https://a.example.test", "http://localhost:3000"]


def test_environment_rejects_non_origin() -> None:
    with pytest.raises(ConfigError) as raised:
        Config().apply_environment({"KITE_ALLOWED_ORIGINS": "https://a.example.test/app"})

    message = str(raised.value)
    assert "'https://a.example.test/app'" in message
    assert "KITE_ALLOWED_ORIGINS" in message
    assert "scheme://host[:port]" in message


# The kite's own HTTP routes (Go's HandleHTTP)


@pytest.fixture
async def site_kite(tmp_path: Path) -> AsyncIterator[Kite]:
    site = tmp_path / "site"
    (site / "js").mkdir(parents=True)
    (site / "index.html").write_text("<h1>home</h1>")
    (site / "js" / "app.js").write_text("console.log('app')")
    (tmp_path / "secret.txt").write_text("outside the site")
    kite = Kite("site", "1.0.0", config=make_config())
    add_math_methods(kite)

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"kite": kite.name, "connections": len(kite.connections)})

    async def echo(request: web.Request) -> web.Response:
        return web.Response(text=request.match_info["word"] + ":" + (await request.text()))

    kite.handle_http("/status", status)
    kite.handle_http("/echo/{word}", echo, method="post")
    kite.serve_static("/", site)
    await kite.start()
    yield kite
    await kite.stop()


async def test_routes_and_files_share_port(site_kite: Kite, connect: Connect) -> None:
    client = await connect(site_kite.url, transport="xhr")
    base = origin_of(site_kite)
    async with httpx.AsyncClient(timeout=WAIT) as http:
        home = await http.get(base + "/")
        script = await http.get(base + "/js/app.js")
        status = await http.get(base + "/status")
        echoed = await http.post(base + "/echo/hi", content=b"there")
        info = await http.get(site_kite.url + "/info")

    assert (home.status_code, home.text) == (200, "<h1>home</h1>")
    assert home.headers["content-type"].startswith("text/html")
    assert script.text == "console.log('app')"
    assert status.json() == {"kite": "site", "connections": 1}
    assert echoed.text == "hi:there"
    # The SockJS routes were there first, so the site at / does not hide them.
    assert info.status_code == 200
    assert info.json()["websocket"] is True
    assert await client.tell("square", 6) == 36


@pytest.mark.parametrize("path", ["/../secret.txt", "/%2e%2e/secret.txt", "/js/../../secret.txt", "/missing.html"])
async def test_static_files_stay_inside_directory(site_kite: Kite, path: str) -> None:
    async with httpx.AsyncClient(timeout=WAIT) as http:
        response = await http.get(origin_of(site_kite) + path)

    assert response.status_code in (403, 404)
    assert "outside the site" not in response.text


async def test_routes_cannot_be_added_while_serving(site_kite: Kite, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="'/late'.*add routes before start"):
        site_kite.handle_http("/late", lambda request: web.Response())
    with pytest.raises(ValueError, match="not a directory"):
        Kite("x", "1.0.0").serve_static("/files", tmp_path / "nowhere")
    with pytest.raises(ValueError, match="must start with '/'"):
        Kite("x", "1.0.0").handle_http("status", lambda request: web.Response())
